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
  const json = answered(answer.status, answer.statusText, await answer.text(), as === undefined);
  const etag = method === "GET" ? answer.headers.get("ETag") : null;
  if (etag) remember(key, etag, json);
  return json;
}

// An answer's parsed body (null for an empty one or one that is not JSON); throws ApiError unless
// it is a success. A 401 of the kept token (`kept`) tells the shell, which signs out (app.js).
function answered(status, statusText, text, kept) {
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (status === 401 && kept) {
    // The kept token stopped working (revoked, expired, rotated).
    window.dispatchEvent(new CustomEvent("cogs:unauthorized", { detail: json?.message || "" }));
  }
  if (status < 200 || status > 299) {
    const code = json?.code || "http_" + status;
    const message = json?.message || statusText || "HTTP " + status;
    throw new ApiError(status, code, message, json?.details);
  }
  return json;
}

// PUTs `file` (a Blob) as the body of /v1`path` with the stored token, as api() does (the token
// only in the Authorization header; the same ApiError; a 401 signs out), but through
// XMLHttpRequest, whose upload reports progress (fetch's does not): onProgress(sent, total).
// Resolves to the parsed JSON answer.
export function upload(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", "/v1" + path);
    xhr.setRequestHeader("Authorization", "Bearer " + token());
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.withCredentials = false;
    if (onProgress) {
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) onProgress(e.loaded, e.total);
      });
    }
    xhr.addEventListener("load", () => {
      try {
        resolve(answered(xhr.status, xhr.statusText, xhr.responseText, true));
      } catch (e) {
        reject(e);
      }
    });
    // A connection closed before an answer (cogsd may close it at once on a body over its limit).
    xhr.addEventListener("error", () =>
      reject(new ApiError(0, "unreachable", "the connection closed before cogsd answered (a file over its size limit is refused unread)")),
    );
    xhr.addEventListener("abort", () => reject(new ApiError(0, "aborted", "the upload was cancelled")));
    xhr.send(file);
  });
}

// The hex SHA-256 of `blob` (read whole into memory: callers bound its size), or "" where the
// browser has no crypto.subtle (a page not served over https or from localhost).
export async function sha256Hex(blob) {
  if (!globalThis.crypto?.subtle) return "";
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
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
