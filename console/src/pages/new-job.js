// New job: drop (or choose) a capture (zip or video), pick a preset, then POST /jobs, upload through the
// presigned POST with a progress bar, and go to the job page.
import { createJob, DEFAULT_PRESET, PRESETS, uploadCapture } from "../api.js";
import { errorInWords, formatBytes, h } from "../format.js";

const PRESET_WORDS = {
  draft: "draft: fastest, vertex colours",
  standard: "standard: textured, minutes on a GPU",
  high: "high: finest, slowest",
};
// The API's capture formats (POST /jobs "capture") by file suffix; the pipeline checks the content.
const FORMAT_BY_SUFFIX = { ".zip": "zip", ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov" };
const ACCEPTED = Object.keys(FORMAT_BY_SUFFIX);

/** The capture format of a file from its name, or null. */
function captureFormat(file) {
  const name = file.name.toLowerCase();
  const suffix = ACCEPTED.find((candidate) => name.endsWith(candidate));
  return suffix ? FORMAT_BY_SUFFIX[suffix] : null;
}

/** Why this file cannot be a capture, or null; checked before any job is created. */
function refuse(file) {
  if (!file) return "Choose a capture file first.";
  if (!captureFormat(file)) {
    return `${file.name} is not a capture: a .zip of photos (with or without transforms.json) or an .mp4/.mov video.`;
  }
  if (file.size === 0) return `${file.name} is empty.`;
  return null;
}

export function newJobPage() {
  let file = null;

  const input = h("input", { type: "file", id: "capture-file", accept: ACCEPTED.join(","), class: "visually-hidden" });
  const chosen = h("p", { id: "capture-chosen", class: "muted", "aria-live": "polite", text: "No file chosen." });
  const zone = h(
    "div",
    { class: "dropzone", id: "capture-dropzone", role: "group", "aria-labelledby": "capture-label", "aria-describedby": "capture-chosen" },
    h("p", { id: "capture-label", text: "Capture (.zip of photos, or an .mp4/.mov video): drop it here, or" }),
    input,
    h("label", { for: "capture-file", class: "button", text: "Choose a capture file" }),
    chosen,
  );
  const preset = h(
    "select",
    { id: "preset", name: "preset" },
    ...PRESETS.map((name) => h("option", { value: name, selected: name === DEFAULT_PRESET, text: PRESET_WORDS[name] })),
  );
  const name = h("input", { id: "job-name", name: "name", type: "text", maxlength: "200", autocomplete: "off" });
  const progress = h("progress", { id: "upload-progress", max: "100", value: "0", "aria-label": "Upload progress", hidden: true });
  const status = h("p", { role: "status", "aria-live": "polite", class: "muted" });
  const problem = h("p", { role: "alert", class: "error" });
  const submit = h("button", { type: "submit", class: "primary", text: "Create job and upload" });

  function choose(picked) {
    file = picked || null;
    problem.textContent = "";
    chosen.textContent = file ? `${file.name}, ${formatBytes(file.size)}` : "No file chosen.";
    zone.classList.toggle("has-file", Boolean(file));
  }

  input.addEventListener("change", () => choose(input.files[0]));
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    choose(event.dataTransfer.files[0]);
  });

  const form = h(
    "form",
    { class: "card", novalidate: true },
    zone,
    h("div", { class: "field" }, h("label", { for: "preset", text: "Preset" }), preset),
    h("div", { class: "field" }, h("label", { for: "job-name", text: "Job name (optional)" }), name),
    submit,
    progress,
    status,
    problem,
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const refusal = refuse(file);
    if (refusal) {
      problem.textContent = refusal;
      return;
    }
    submit.disabled = true;
    problem.textContent = "";
    try {
      status.textContent = "Creating the job…";
      const created = await createJob({
        preset: preset.value,
        name: name.value.trim() || file.name,
        capture: captureFormat(file),
      });
      progress.hidden = false;
      status.textContent = `Uploading ${file.name}…`;
      await uploadCapture(created.upload, file, (sent, total) => {
        progress.value = String(total ? (100 * sent) / total : 0);
        status.textContent = `Uploading ${file.name}: ${formatBytes(sent)} of ${formatBytes(total)}`;
      });
      status.textContent = "Uploaded.";
      location.hash = `#/jobs/${created.job_id}`;
    } catch (error) {
      problem.textContent = `Could not create the job: ${errorInWords({ code: error.code, message: error.message })}`;
      submit.disabled = false;
    }
  });

  const element = h("section", {}, h("h1", { text: "New job" }), form);
  return { element, destroy: () => {} };
}
