// The JSON API client: same-origin fetch with the session cookie, the CSRF
// header on every non-GET request, errors as ApiError ({error, message}),
// and a 401 anywhere (but the sign-in POST itself) reported to the app.

let csrf = null;
let onUnauthorized = () => {};

export function setCsrf(token) { csrf = token || null; }
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

/** Builds "?a=1&b=x,y" from an object, leaving out empty values. */
export function query(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v == null || v === '' || (Array.isArray(v) && v.length === 0)) continue;
    p.set(k, Array.isArray(v) ? v.join(',') : String(v));
  }
  const s = p.toString();
  return s ? `?${s}` : '';
}

async function errorOf(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  const code = (body && body.error) || `http_${res.status}`;
  let message = (body && body.message) || `${res.status} ${res.statusText || 'error'}`.trim();
  if (body && body.field && !message.includes(body.field)) message = `${body.field}: ${message}`;
  return new ApiError(res.status, code, message, body);
}

/**
 * One request. `body` is sent as JSON; `raw: true` returns the Response
 * (for downloads). 204 resolves to null.
 */
export async function request(method, url, body, { raw = false, signal, noAuthRedirect = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
  const init = { method, credentials: 'same-origin', headers, signal };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `The server could not be reached (${e && e.message ? e.message : e}).`);
  }
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401 && !noAuthRedirect) onUnauthorized(err);
    throw err;
  }
  if (raw) return res;
  if (res.status === 204) return null;
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(res.status, 'bad_json', 'The server sent a response that is not JSON.');
  }
}

export const get = (url, opts) => request('GET', url, undefined, opts);
export const post = (url, body, opts) => request('POST', url, body, opts);
export const del = (url, opts) => request('DELETE', url, undefined, opts);

/** Saves a Blob as a file through an object URL and an <a download>. */
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  a.hidden = true;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Is `e` an aborted fetch (a page left before its response)? */
export const aborted = (e) => e && e.name === 'AbortError';
