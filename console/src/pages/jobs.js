// Jobs list: the caller's jobs, newest first, a page at a time, with live status and progress.
// One GET /jobs per poll covers every job on the page (so never more than one status request per
// job per interval); when every job shown has finished, the list is refreshed ten times less often.
import { listJobs, TERMINAL_STATUSES } from "../api.js";
import { formatTime, h, percent, stageLabel, statusWords } from "../format.js";
import { Poller } from "../poll.js";

const IDLE_SLOWDOWN = 10;

function row(job) {
  const name = job.name || job.job_id;
  return h(
    "tr",
    {},
    h("th", { scope: "row" }, h("a", { href: `#/jobs/${job.job_id}`, text: name }), h("div", { class: "muted mono", text: job.job_id })),
    h("td", {}, h("span", { class: `status status-${String(job.status).toLowerCase()}`, text: statusWords(job.status) })),
    h("td", { text: stageLabel(job) }),
    h(
      "td",
      {},
      h("progress", { max: "100", value: String(Number(job.progress) || 0), "aria-label": `Progress of ${name}` }),
      h("span", { class: "muted", text: ` ${percent(job.progress)}` }),
    ),
    h("td", {}, h("time", { datetime: job.created_at || "", text: formatTime(job.created_at) })),
  );
}

export function jobsPage({ config }) {
  const cursors = [null]; // cursors[i]: the cursor of page i (null: the first page)
  let page = 0;
  let nextCursor = null;

  const body = h("tbody");
  const status = h("p", { class: "muted", role: "status", "aria-live": "polite" });
  const newer = h("button", { type: "button", text: "Newer jobs", disabled: true });
  const older = h("button", { type: "button", text: "Older jobs", disabled: true });
  const table = h(
    "table",
    { class: "jobs" },
    h("caption", { text: "Your jobs, newest first" }),
    h(
      "thead",
      {},
      h("tr", {}, ...["Job", "Status", "Stage", "Progress", "Created"].map((label) => h("th", { scope: "col", text: label }))),
    ),
    body,
  );
  const element = h(
    "section",
    {},
    h("div", { class: "title-row" }, h("h1", { text: "Jobs" }), h("a", { class: "button primary", href: "#/new", text: "New job" })),
    table,
    h("nav", { class: "pager", "aria-label": "Pages of jobs" }, newer, older),
    status,
  );

  function render(answer) {
    const jobs = answer.jobs || [];
    nextCursor = answer.next_cursor || null;
    body.replaceChildren(
      ...(jobs.length ? jobs.map(row) : [h("tr", {}, h("td", { colspan: "5", text: "No jobs yet. Create one with New job." }))]),
    );
    newer.disabled = page === 0;
    older.disabled = !nextCursor;
    status.textContent = `Page ${page + 1} · ${jobs.length} job${jobs.length === 1 ? "" : "s"}`;
    const allFinished = jobs.every((job) => TERMINAL_STATUSES.has(job.status));
    poller.intervalMs = config.pollIntervalMs * (allFinished ? IDLE_SLOWDOWN : 1);
  }

  const poller = new Poller({
    request: () => listJobs({ limit: config.pageSize, cursor: cursors[page] }),
    onResult: (answer) => render(answer),
    onError: (error) => {
      status.textContent = `Could not load the jobs: ${error.message}`;
    },
    intervalMs: config.pollIntervalMs,
  });

  function go(to) {
    page = to;
    poller.lastStart = -Infinity;
    poller.soon();
  }
  newer.addEventListener("click", () => go(Math.max(0, page - 1)));
  older.addEventListener("click", () => {
    if (!nextCursor) return;
    cursors[page + 1] = nextCursor;
    go(page + 1);
  });

  poller.start();
  return { element, destroy: () => poller.stop() };
}
