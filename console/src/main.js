// The console's shell: config, sign-in, and a hash router over the three pages
// (#/ jobs list, #/new new job, #/jobs/<id> job page). Hash routes need no rewrite rules on S3.
import "./style.css";
import * as api from "./api.js";
import { createSession } from "./auth.js";
import { loadConfig } from "./config.js";
import { h } from "./format.js";
import { jobPage } from "./pages/job.js";
import { jobsPage } from "./pages/jobs.js";
import { newJobPage } from "./pages/new-job.js";

const main = document.getElementById("main");
const identity = document.getElementById("identity");
let current = null; // the page on screen: {element, destroy()}

function route(config, session) {
  const hash = location.hash || "#/";
  const jobMatch = hash.match(/^#\/jobs\/([^/?#]+)$/);
  if (jobMatch) return jobPage({ config, jobId: decodeURIComponent(jobMatch[1]) });
  if (hash === "#/new") return newJobPage({ config });
  return jobsPage({ config, session });
}

function show(config, session) {
  current?.destroy?.();
  current = route(config, session);
  main.replaceChildren(current.element);
  for (const link of document.querySelectorAll("nav a")) {
    const active = link.getAttribute("href") === (location.hash || "#/");
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const heading = main.querySelector("h1");
  document.title = heading ? `${heading.textContent} · ReconFlow` : "ReconFlow console";
}

function showIdentity(session) {
  const children = [h("span", { text: `Signed in as ${session.label}` })];
  if (session.signOut && session.auth) {
    children.push(
      h("button", {
        type: "button",
        text: "Sign out",
        onclick: () => {
          session.signOut();
          location.reload();
        },
      }),
    );
  }
  identity.replaceChildren(...children);
}

function signInScreen(session, problem) {
  main.replaceChildren(
    h(
      "section",
      { class: "card" },
      h("h1", { text: "Sign in" }),
      h("p", { text: "ReconFlow needs you to sign in with your organisation's identity provider." }),
      problem ? h("p", { class: "error", role: "alert", text: problem }) : null,
      h("button", { type: "button", class: "primary", text: "Sign in", onclick: () => session.signIn() }),
    ),
  );
}

async function boot() {
  let config;
  let session;
  try {
    config = await loadConfig();
    session = createSession(config.auth);
    api.configure({
      apiUrl: config.apiUrl,
      token: () => session.token(),
      onUnauthenticated: () => {
        if (session.auth) {
          session.signOut();
          signInScreen(session, "Your session ended; sign in again.");
        }
      },
    });
    if (!(await session.start())) {
      signInScreen(session);
      return;
    }
  } catch (error) {
    if (session?.auth) signInScreen(session, error.message);
    else main.replaceChildren(h("p", { class: "error", role: "alert", text: `The console could not start: ${error.message}` }));
    return;
  }
  showIdentity(session);
  window.addEventListener("hashchange", () => {
    show(config, session);
    main.focus();
  });
  show(config, session);
}

boot();
