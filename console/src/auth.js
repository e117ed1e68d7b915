// Sign-in. On AWS: OpenID Connect authorization code flow with PKCE (S256) against the API's JWT
// issuer, as a public client (no secret in the browser); tokens live in sessionStorage only. On
// the local stack: its development identity (the emulated API takes no token).

const STORAGE_KEY = "reconflow.tokens";
const PENDING_KEY = "reconflow.signin";
// Sign in again this long before the token expires, so a request never carries a stale one.
const EXPIRY_MARGIN_S = 30;

function base64url(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(byteCount = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(byteCount)));
}

export async function pkceChallenge(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(digest);
}

function claimsOf(jwt) {
  try {
    const payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload));
  } catch {
    return {};
  }
}

const isJwt = (token) => typeof token === "string" && token.split(".").length === 3;

function redirectUri(auth) {
  return auth.redirectUri || `${location.origin}${location.pathname}`;
}

async function discover(issuer) {
  const url = `${issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`;
  const response = await fetch(url);
  if (!response.ok) throw new Error(`the identity provider's discovery document answered HTTP ${response.status}`);
  return response.json();
}

class LocalIdentity {
  constructor(auth) {
    this.sub = auth.sub || "local-dev";
  }
  async start() {
    return true;
  }
  async token() {
    return null;
  }
  get label() {
    return `${this.sub} (development identity)`;
  }
  get signedIn() {
    return true;
  }
  signOut() {}
}

class OidcSession {
  constructor(auth) {
    this.auth = auth;
    this.tokens = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
  }

  get signedIn() {
    return Boolean(this.tokens && this.tokens.expires_at - EXPIRY_MARGIN_S > Date.now() / 1000);
  }

  get label() {
    const claims = claimsOf(this.tokens?.id_token || this.tokens?.access_token || "");
    return claims.email || claims.preferred_username || claims["cognito:username"] || claims.sub || "signed in";
  }

  /** Finish a sign-in when the provider sent the browser back with ?code=&state=; true when signed in. */
  async start() {
    const query = new URLSearchParams(location.search);
    if (query.has("error")) {
      throw new Error(`sign-in refused: ${query.get("error_description") || query.get("error")}`);
    }
    if (query.has("code")) {
      await this.exchange(query.get("code"), query.get("state"));
    }
    return this.signedIn;
  }

  async signIn() {
    const provider = await discover(this.auth.issuer);
    const verifier = randomString(48);
    const state = randomString(16);
    sessionStorage.setItem(PENDING_KEY, JSON.stringify({ verifier, state, returnTo: location.hash || "#/" }));
    const query = new URLSearchParams({
      response_type: "code",
      client_id: this.auth.clientId,
      redirect_uri: redirectUri(this.auth),
      scope: this.auth.scope || "openid",
      state,
      code_challenge: await pkceChallenge(verifier),
      code_challenge_method: "S256",
    });
    location.assign(`${provider.authorization_endpoint}?${query}`);
  }

  async exchange(code, state) {
    const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) || "null");
    sessionStorage.removeItem(PENDING_KEY);
    if (!pending || pending.state !== state) throw new Error("sign-in answer does not match the request (state)");
    const provider = await discover(this.auth.issuer);
    const response = await fetch(provider.token_endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        client_id: this.auth.clientId,
        code,
        redirect_uri: redirectUri(this.auth),
        code_verifier: pending.verifier,
      }),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(`token request refused: ${answer.error_description || answer.error || response.status}`);
    const expiresIn = Number(answer.expires_in) || 3600;
    this.tokens = { ...answer, expires_at: Math.floor(Date.now() / 1000) + expiresIn };
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(this.tokens));
    // Drop ?code=&state= from the address bar and go back where the sign-in started.
    history.replaceState(null, "", `${location.pathname}${pending.returnTo}`);
  }

  /** The bearer token for the API: the access token when it is a JWT (Cognito's is), else the ID token. */
  async token() {
    if (!this.signedIn) return null;
    return isJwt(this.tokens.access_token) ? this.tokens.access_token : this.tokens.id_token;
  }

  signOut() {
    this.tokens = null;
    sessionStorage.removeItem(STORAGE_KEY);
  }
}

export function createSession(auth) {
  if (auth.mode === "local") return new LocalIdentity(auth);
  if (auth.mode === "oidc") {
    if (!auth.issuer || !auth.clientId) throw new Error("config.json: auth needs issuer and clientId");
    return new OidcSession(auth);
  }
  throw new Error(`config.json: unknown auth.mode ${auth.mode}`);
}
