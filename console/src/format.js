// Words for what the API answers in codes: job errors, statuses, times, sizes.
import { STAGE_COUNT, TERMINAL_STATUSES } from "./api.js";

// error.code of a failed job (the capture rules, the stage runner, the upload handler) in words.
const ERROR_WORDS = {
  not_a_zip: "The file is not a zip archive.",
  zip_slip: "The archive holds a path that leaves its folder.",
  zip_bomb: "The archive expands to far more than it holds.",
  missing_transforms: "The archive has no transforms.json.",
  malformed_transforms: "transforms.json could not be read.",
  missing_image: "An image named in transforms.json is not in the archive.",
  corrupt_image: "An image could not be decoded.",
  image_size_mismatch: "The images are not all of one size.",
  image_too_large: "An image is larger than the service accepts.",
  bad_camera_matrix: "A camera matrix is not a rigid 4×4 transform.",
  bad_intrinsics: "The camera intrinsics are missing or invalid.",
  too_few_views: "The capture has too few views.",
  missing_mask: "An image has neither an alpha channel nor a mask.",
  upload_too_large: "The uploaded file is larger than the service accepts.",
  upload_expired: "No capture was uploaded in time.",
  stage_failed: "A processing stage crashed.",
  network_error: "The service could not be reached.",
  state_conflict: "The job's state does not allow that any more.",
  cancel_conflict: "The cancel request expired or was replaced.",
  job_not_found: "There is no such job (or it is not yours).",
  invalid_job_id: "That is not a job id.",
  invalid_request: "The request was refused.",
  unauthenticated: "You are not signed in.",
};

export function errorInWords(error) {
  if (!error) return "";
  const words = ERROR_WORDS[error.code] || "The job failed.";
  return error.message ? `${words} ${capitalise(error.message)}` : words;
}

function capitalise(text) {
  const trimmed = String(text).trim();
  const sentence = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(sentence) ? sentence : `${sentence}.`;
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
