// Job page: live status (one GET /jobs/{id} per poll interval, until the job ends), the error in
// words for a failed job, the two-step cancel with its dialog, and for a finished job the 3D
// viewer, the downloads, the preview and the report's figures.
import { confirmCancel, fetchOutput, getJob, requestCancel, TERMINAL_STATUSES } from "../api.js";
import { errorInWords, formatBytes, formatTime, h, percent, stageLabel, statusWords } from "../format.js";
import { Poller } from "../poll.js";

const CANCELLABLE = new Set(["CREATED", "QUEUED", "RUNNING"]);
const MODEL_FILE = "model.glb";
const REPORT_FILE = "report.json";
const PREVIEW_FILE = "preview.png";

function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

const fixed = (value, digits) => (Number.isFinite(value) ? value.toFixed(digits) : "–");

function reportTable(report) {
  const rows = [
    ["Preset", report.preset],
    ["Device", report.device],
    ["Total seconds", fixed(report.seconds?.total, 1)],
    ["Faces", report.faces?.final?.toLocaleString()],
    ["Vertices", report.vertices?.toLocaleString()],
    ["Texture", report.texture ? `${report.texture[1]} × ${report.texture[0]} px atlas` : "vertex colours"],
    ["Views (training / held out)", report.views ? `${report.views.training} / ${report.views.held_out}` : undefined],
    ["Held-out mask IoU", fixed(report.holdout?.mask_iou, 3)],
    ["Held-out PSNR", report.holdout?.psnr === undefined ? undefined : `${fixed(report.holdout.psnr, 1)} dB`],
  ].filter(([, value]) => value !== undefined && value !== null);
  return h(
    "table",
    { class: "report" },
    h("caption", { text: "Report" }),
    h("tbody", {}, ...rows.map(([label, value]) => h("tr", {}, h("th", { scope: "row", text: label }), h("td", { text: String(value) })))),
  );
}

export function jobPage({ config, jobId }) {
  let job = null;
  let viewer = null;
  let resultShown = false;
  let cancelRequest = null;
  let confirming = false; // the dialog closes because the cancel was confirmed

  const heading = h("h1", { text: "Job" });
  const facts = h("dl", { class: "facts" });
  const bar = h("progress", { max: "100", value: "0", "aria-label": "Job progress" });
  const barText = h("span", { class: "bar-text" });
  const message = h("p", { class: "muted", id: "job-message" });
  const live = h("p", { class: "visually-hidden", role: "status", "aria-live": "polite" });
  const failure = h("div", { class: "error-box", role: "alert", hidden: true });
  const notice = h("p", { role: "status", class: "notice", hidden: true });
  const cancelButton = h("button", { type: "button", class: "danger", text: "Cancel job…", hidden: true });
  const result = h("div", { class: "result" });

  // The confirmation dialog: what will be deleted, and until when the request holds.
  const dialogText = h("p", { id: "cancel-dialog-text" });
  const dialogExpiry = h("p", { id: "cancel-dialog-expiry", class: "muted" });
  const confirmButton = h("button", { type: "button", class: "danger", text: "Confirm cancel" });
  const keepButton = h("button", { type: "button", text: "Keep the job" });
  const dialog = h(
    "dialog",
    { "aria-labelledby": "cancel-dialog-title", "aria-describedby": "cancel-dialog-text cancel-dialog-expiry" },
    h("h2", { id: "cancel-dialog-title", text: "Cancel this job?" }),
    dialogText,
    dialogExpiry,
    h("div", { class: "actions" }, keepButton, confirmButton),
  );

  const element = h(
    "section",
    {},
    h("p", {}, h("a", { href: "#/", text: "← All jobs" })),
    heading,
    facts,
    h("div", { class: "bar" }, bar, barText),
    message,
    live,
    failure,
    notice,
    h("div", { class: "actions" }, cancelButton),
    result,
    dialog,
  );

  function showNotice(text) {
    notice.textContent = text;
    notice.hidden = !text;
  }

  function render(next) {
    const statusChanged = !job || job.status !== next.status || job.stage !== next.stage;
    job = next;
    heading.textContent = job.name || `Job ${job.job_id}`;
    const rows = [
      ["Job id", job.job_id],
      ["Status", statusWords(job.status)],
      ["Stage", stageLabel(job) || "–"],
      ["Preset", job.preset],
      ["Created", formatTime(job.created_at)],
      ["Finished", job.finished_at ? formatTime(job.finished_at) : null],
    ].filter(([, value]) => value);
    facts.replaceChildren(...rows.flatMap(([label, value]) => [h("dt", { text: label }), h("dd", { text: value })]));
    bar.value = String(Number(job.progress) || 0);
    barText.textContent = `${percent(job.progress)} ${stageLabel(job)}`;
    message.textContent = job.message || "";
    if (statusChanged) live.textContent = `Status: ${statusWords(job.status)}${job.stage ? `, stage ${job.stage}` : ""}`;
    cancelButton.hidden = !CANCELLABLE.has(job.status);
    if (job.status === "FAILED") {
      failure.hidden = false;
      failure.replaceChildren(
        h("h2", { text: "The job failed" }),
        h("p", { text: errorInWords(job.error) }),
        job.error?.code ? h("p", { class: "muted" }, "Error code: ", h("code", { text: job.error.code })) : null,
      );
    }
    if (job.status === "CANCELLED") {
      showNotice("This job was cancelled: its work stopped and everything stored for it was deleted.");
    }
    if (job.status === "SUCCEEDED" && !resultShown) {
      resultShown = true;
      showResult(job);
    }
  }

  async function showResult(finished) {
    const downloads = finished.downloads || {};
    const viewerSection = h("section", { "aria-labelledby": "model-heading" }, h("h2", { id: "model-heading", text: "Model" }));
    const viewerStatus = h("p", { class: "muted", role: "status", "aria-live": "polite", text: "Loading the model…" });
    const stage = h("div", { class: "viewer" });
    viewerSection.append(stage, viewerStatus);

    const downloadList = h("ul", { class: "downloads" });
    for (const [file, url] of Object.entries(downloads)) {
      const button = h("button", { type: "button", text: `Download ${file}` });
      button.addEventListener("click", async () => {
        button.disabled = true;
        try {
          saveBlob(await fetchOutput(url), file);
        } catch (error) {
          showNotice(`Could not download ${file}: ${error.message}`);
        } finally {
          button.disabled = false;
        }
      });
      downloadList.append(h("li", {}, button));
    }
    const expiry = finished.downloads_expire_in
      ? h("p", { class: "muted", text: `Download links stay valid for ${Math.round(finished.downloads_expire_in / 60)} minutes; reload the page for fresh ones.` })
      : null;
    const side = h("section", { "aria-labelledby": "downloads-heading" }, h("h2", { id: "downloads-heading", text: "Downloads" }), downloadList, expiry);
    result.replaceChildren(h("div", { class: "result-grid" }, viewerSection, side));

    if (downloads[PREVIEW_FILE]) {
      side.append(h("figure", {}, h("img", { src: downloads[PREVIEW_FILE], alt: "Preview render of the model from a held-out camera", width: "256" }), h("figcaption", { text: "Preview" })));
    }
    if (downloads[REPORT_FILE]) {
      fetchOutput(downloads[REPORT_FILE])
        .then((blob) => blob.text())
        .then((text) => side.append(reportTable(JSON.parse(text))))
        .catch((error) => showNotice(`Could not read the report: ${error.message}`));
    }
    if (!downloads[MODEL_FILE]) {
      viewerStatus.textContent = "This job has no model.glb to show.";
      return;
    }
    try {
      const [{ ModelViewer }, blob] = await Promise.all([import("../viewer.js"), fetchOutput(downloads[MODEL_FILE])]);
      viewer = new ModelViewer(stage);
      const model = await viewer.show(blob);
      viewerStatus.textContent = `Model loaded: ${model.triangles.toLocaleString()} triangles, ${formatBytes(blob.size)}${model.textured ? ", textured" : ", vertex colours"}. Drag to orbit, scroll or +/− to zoom, arrow keys to turn.`;
    } catch (error) {
      viewerStatus.textContent = `The model could not be shown: ${error.message}`;
    }
  }

  const poller = new Poller({
    request: () => getJob(jobId),
    onResult: (next) => {
      render(next);
      return !TERMINAL_STATUSES.has(next.status);
    },
    onError: (error) => {
      if (error.status === 404 || error.status === 400) {
        heading.textContent = "Job not found";
        message.textContent = errorInWords({ code: error.code });
        poller.stop();
      } else {
        message.textContent = `Could not refresh the job: ${error.message}`;
      }
    },
    intervalMs: config.pollIntervalMs,
  });

  cancelButton.addEventListener("click", async () => {
    cancelButton.disabled = true;
    try {
      cancelRequest = await requestCancel(jobId);
      const until = new Date(cancelRequest.expires_at);
      dialogText.textContent =
        "Its work stops within seconds and everything stored for it is deleted: the uploaded capture, " +
        "every stage's intermediate results and any outputs. This cannot be undone.";
      dialogExpiry.textContent = `This cancel request holds until ${until.toLocaleString()}; confirm before then.`;
      confirming = false;
      dialog.showModal();
      keepButton.focus();
    } catch (error) {
      showNotice(`Could not request the cancel: ${errorInWords({ code: error.code, message: error.message })}`);
    } finally {
      cancelButton.disabled = false;
    }
  });
  // "Keep the job" and Escape both close the dialog without confirming: the job is kept.
  keepButton.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    if (confirming) return;
    showNotice("Not cancelled. The request expires by itself.");
    cancelButton.focus();
  });
  confirmButton.addEventListener("click", async () => {
    confirming = true;
    confirmButton.disabled = true;
    try {
      const answer = await confirmCancel(jobId, cancelRequest.token);
      dialog.close();
      showNotice(`Cancel confirmed (${statusWords(answer.status)}): the job stops and its files are deleted.`);
      cancelButton.hidden = true;
      poller.soon();
    } catch (error) {
      dialog.close();
      showNotice(`Could not confirm the cancel: ${errorInWords({ code: error.code, message: error.message })}`);
    } finally {
      confirmButton.disabled = false;
    }
  });

  poller.start();
  return {
    element,
    destroy: () => {
      poller.stop();
      viewer?.dispose();
      if (dialog.open) dialog.close();
    },
  };
}
