// Words for what the API answers in codes: job errors, statuses, times, sizes.
import { STAGE_COUNT, TERMINAL_STATUSES } from "./api.js";

// error.code of a failed job (the capture rules, the stage runner, the upload handler) and of
// refused requests, in words. The API's message says what exactly (the file, the field); these
// words say what kind of failure it is, and stand alone when there is no message.
const CAPTURE_CODES = new Set([
  "not_a_zip",
  "zip_slip",
  "zip_bomb",
  "missing_transforms",
  "malformed_transforms",
  "missing_image",
  "corrupt_image",
  "image_size_mismatch",
  "image_too_large",
  "bad_camera_matrix",
  "bad_intrinsics",
  "too_few_views",
  "missing_mask",
]);
const ERROR_LEADS = {
  upload_too_large: "The upload was refused:",
  upload_expired: "No capture arrived:",
  stage_failed: "A processing stage crashed:",
  network_error: "The service could not be reached:",
  state_conflict: "Not possible any more:",
  cancel_conflict: "The cancel could not be confirmed:",
  job_not_found: "No such job:",
  invalid_job_id: "That is not a job id:",
  invalid_request: "The request was refused:",
  unauthenticated: "You are not signed in:",
};
const ERROR_WORDS = {
  job_not_found: "There is no such job (or it is not yours).",
  upload_expired: "No capture was uploaded in time.",
  stage_failed: "A processing stage crashed.",
};

export function errorInWords(error) {
  if (!error) return "";
  const lead = CAPTURE_CODES.has(error.code) ? "The capture was refused:" : ERROR_LEADS[error.code];
  if (!error.message) return ERROR_WORDS[error.code] || (lead ? lead.replace(/:$/, ".") : "The job failed.");
  return lead ? `${lead} ${sentence(error.message, false)}` : sentence(error.message, true);
}

function sentence(text, capitalise) {
  const trimmed = String(text).trim();
  const start = capitalise ? trimmed.charAt(0).toUpperCase() : trimmed.charAt(0);
  const whole = start + trimmed.slice(1);
  return /[.!?]$/.test(whole) ? whole : `${whole}.`;
}

const STATUS_WORDS = {
  CREATED: "waiting for the upload",
  QUEUED: "queued",
  RUNNING: "running",
  SUCCEEDED: "finished",
  FAILED: "failed",
  CANCELLING: "cancelling",
  CANCELLED: "cancelled",
};

export const statusWords = (status) => STATUS_WORDS[status] || String(status || "").toLowerCase();

export function stageLabel(job) {
  if (!job.stage || TERMINAL_STATUSES.has(job.status)) return "";
  return `${job.stage} (${job.stage_index ?? "?"}/${STAGE_COUNT})`;
}

export function formatTime(iso) {
  if (!iso) return "";
  const when = new Date(iso);
  return Number.isNaN(when.getTime()) ? String(iso) : when.toLocaleString();
}

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "";
  const units = ["bytes", "kB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

export const percent = (value) => `${Math.round(Number(value) || 0)} %`;

/** A DOM element from a tag, attributes and children (text or elements); no HTML strings. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2).toLowerCase(), value);
    else if (name === "text") element.textContent = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}
