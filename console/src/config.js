// The console's settings come from /config.json beside index.html: the local stack writes it when
// it serves the console, and python -m reconflow.console_publish writes it to the console bucket on AWS.
//
// {
//   "apiUrl": "https://abc123.execute-api.eu-west-1.amazonaws.com",
//   "auth": {"mode": "oidc", "issuer": "https://...", "clientId": "...", "scope": "openid"}
//          | {"mode": "local", "sub": "local-dev"},
//   "pollIntervalMs": 2000
// }

/** Never poll one job faster than this, whatever config.json says. */
export const MIN_POLL_INTERVAL_MS = 2000;
export const DEFAULT_PAGE_SIZE = 20;

export async function loadConfig() {
  const response = await fetch("./config.json", { cache: "no-store" });
  if (!response.ok) {
    throw new Error(`config.json could not be loaded (HTTP ${response.status})`);
  }
  const config = await response.json();
  if (!config.apiUrl || !config.auth || !config.auth.mode) {
    throw new Error("config.json needs apiUrl and auth.mode");
  }
  return {
    ...config,
    apiUrl: config.apiUrl.replace(/\/+$/, ""),
    pollIntervalMs: Math.max(MIN_POLL_INTERVAL_MS, Number(config.pollIntervalMs) || 0),
    pageSize: Number(config.pageSize) || DEFAULT_PAGE_SIZE,
  };
}
