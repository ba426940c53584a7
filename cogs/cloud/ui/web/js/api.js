// The one way the console speaks to cogsd: /v1 with the user's token, errors as ApiError.
// The token lives in sessionStorage (this tab only, gone when it closes) and travels only in the
// Authorization header, never in a URL.

const KEY = "cogs.token";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

export function token() {
  return sessionStorage.getItem(KEY) || "";
}

export function setToken(t) {
  sessionStorage.setItem(KEY, t);
}

export function clearToken() {
  sessionStorage.removeItem(KEY);
  validated.clear();
}

// The last 200 of each GET, by token and path, with its ETag: the next GET of that path sends
// If-None-Match, and cogsd's 304 (docs/api.md "Polling") answers with what is kept, so an unchanged
// poll transfers and parses nothing. Bounded: the oldest entry goes past MAX_VALIDATED.
const validated = new Map();
const MAX_VALIDATED = 64;

function remember(key, etag, json) {
  validated.delete(key);
  validated.set(key, { etag, json });
  if (validated.size > MAX_VALIDATED) validated.delete(validated.keys().next().value);
}

// Calls the API; resolves to the parsed JSON body (null for an empty one), rejects with ApiError.
// `as` overrides the stored token (the sign-in form checks one before keeping it). A GET's answer
// may be the object an earlier call got (a 304): callers must not change it.
export async function api(path, { method = "GET", body, as } = {}) {
  const bearer = as ?? token();
  const headers = { Authorization: "Bearer " + bearer };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method === "POST") headers["Idempotency-Key"] = crypto.randomUUID();
  const key = bearer + " " + path;
  const kept = method === "GET" ? validated.get(key) : undefined;
  if (kept) headers["If-None-Match"] = kept.etag;
  let answer;
  try {
    answer = await fetch("/v1" + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      // Revalidation is ours (above), not the HTTP cache's: no answer of a token is stored on disk.
      cache: "no-store",
      credentials: "omit",
    });
  } catch (e) {
    throw new ApiError(0, "unreachable", "cogsd did not answer: " + e.message);
  }
  if (answer.status === 304 && kept) return kept.json;
  const text = await answer.text();
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (answer.status === 401 && as === undefined) {
    // The kept token stopped working (revoked, expired, rotated): the shell signs out (app.js).
    window.dispatchEvent(new CustomEvent("cogs:unauthorized", { detail: json?.message || "" }));
  }
  if (!answer.ok) {
    const code = json?.code || "http_" + answer.status;
    const message = json?.message || answer.statusText || "HTTP " + answer.status;
    throw new ApiError(answer.status, code, message, json?.details);
  }
  const etag = method === "GET" ? answer.headers.get("ETag") : null;
  if (etag) remember(key, etag, json);
  return json;
}

// Who the stored (or given) token is: {project_id, project_name, role, token_id}.
export function whoami(as) {
  return api("/whoami", { as });
}

// A query string from an object, leaving out empty values.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? "?" + s : "";
}
