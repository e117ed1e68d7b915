// The one module that talks to the ReconFlow API (the five routes of the README's API section and
// the OpenAPI document), plus the presigned S3 form and links the API hands out.
// Every API error answers {"error": {"code", "message"}}; it is thrown as an ApiError.

export const PRESETS = ["draft", "standard", "high"];
export const DEFAULT_PRESET = "standard";
export const TERMINAL_STATUSES = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);
export const STAGE_COUNT = 6;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let settings = { apiUrl: "", token: async () => null, onUnauthenticated: () => {} };

/** apiUrl: the API's base URL; token(): the bearer token or null (the local stack needs none). */
export function configure({ apiUrl, token, onUnauthenticated }) {
  settings = { apiUrl, token: token || settings.token, onUnauthenticated: onUnauthenticated || (() => {}) };
}

async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = await settings.token();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(`${settings.apiUrl}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, "network_error", `The API could not be reached (${error.message}).`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    if (response.status === 401) settings.onUnauthenticated();
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || (data && data.message) || response.statusText || "request failed",
    );
  }
  return data;
}

const jobPath = (jobId) => `/jobs/${encodeURIComponent(jobId)}`;

/** POST /jobs -> 201 {job_id, status, upload: {url, fields, expires_in, max_bytes}} */
export function createJob({ preset, name, capture } = {}) {
  const body = {};
  if (preset) body.preset = preset;
  if (name) body.name = name;
  if (capture) body.capture = capture;
  return call("POST", "/jobs", body);
}

/** GET /jobs?limit=&cursor= -> 200 {jobs: [...], next_cursor} (newest first) */
export function listJobs({ limit, cursor } = {}) {
  const query = new URLSearchParams();
  if (limit) query.set("limit", String(limit));
  if (cursor) query.set("cursor", cursor);
  const suffix = query.toString() ? `?${query}` : "";
  return call("GET", `/jobs${suffix}`);
}

/** GET /jobs/{job_id} -> 200 job (downloads once SUCCEEDED) */
export function getJob(jobId) {
  return call("GET", jobPath(jobId));
}

/** POST /jobs/{job_id}/cancel -> 202 {job_id, status: "cancel_requested", token, expires_at} */
export function requestCancel(jobId) {
  return call("POST", `${jobPath(jobId)}/cancel`);
}

/** POST /jobs/{job_id}/cancel/confirm {token} -> 202 {job_id, status: "CANCELLING"} */
export function confirmCancel(jobId, token) {
  return call("POST", `${jobPath(jobId)}/cancel/confirm`, { token });
}

/** The text of an S3 XML error (<Code>, <Message>), for a refused upload. */
function s3Error(status, text) {
  const doc = new DOMParser().parseFromString(text || "<x/>", "application/xml");
  const field = (name) => doc.getElementsByTagName(name)[0]?.textContent || "";
  return new ApiError(status, field("Code") || `http_${status}`, field("Message") || "the upload was refused");
}

/**
 * Send the capture through the presigned POST form: every field of upload.fields, then the file as
 * the last field "file". onProgress(sentBytes, totalBytes) follows the upload. Resolves when S3
 * has stored it; rejects with an ApiError otherwise.
 */
export function uploadCapture(upload, file, onProgress = () => {}) {
  if (upload.max_bytes && file.size > upload.max_bytes) {
    return Promise.reject(
      new ApiError(413, "upload_too_large", `The file is ${file.size} bytes; at most ${upload.max_bytes} are accepted.`),
    );
  }
  const form = new FormData();
  for (const [name, value] of Object.entries(upload.fields || {})) form.append(name, value);
  form.append("file", file);
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", upload.url);
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    request.addEventListener("load", () => {
      if (request.status >= 200 && request.status < 300) {
        onProgress(file.size, file.size);
        resolve();
      } else {
        reject(s3Error(request.status, request.responseText));
      }
    });
    request.addEventListener("error", () => reject(new ApiError(0, "network_error", "The upload could not reach storage.")));
    request.send(form);
  });
}

/** One output file of a finished job, through its presigned link (a Blob). */
export async function fetchOutput(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new ApiError(0, "network_error", `The file could not be fetched (${error.message}).`);
  }
  if (!response.ok) throw s3Error(response.status, await response.text());
  return response.blob();
}
