// The console is plain static files: `npm run build` writes console/dist/, which the local stack
// serves and which is uploaded to the console bucket on AWS. No CDN: three.js is bundled, in its
// own chunk that only the job page loads (src/pages/job.js imports the viewer dynamically).
import { defineConfig } from "vite";

export default defineConfig({
  base: "./",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // three.js alone is about 600 kB minified.
    chunkSizeWarningLimit: 800,
  },
});
