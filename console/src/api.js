// The console's one way to the server: JSON over fetch, errors as values.
// The token lives in memory only (typed by the user, sent as a header,
// never stored in a cookie or in the page's storage).

let token = "";

export function setToken(t) { token = t.trim(); }
export function hasToken() { return token !== ""; }

async function call(method, path, body, withToken) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (withToken && token) headers.Authorization = "Bearer " + token;
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                              credentials: "omit", cache: "no-store" });
  } catch (e) {
    return { ok: false, status: 0, error: { code: "network", message: String(e) } };
  }
  let doc = null;
  try { doc = await res.json(); } catch (e) { doc = null; }
  if (!res.ok) {
    const error = (doc && doc.error) || { code: "http_" + res.status, message: res.statusText };
    return { ok: false, status: res.status, error };
  }
  return { ok: true, status: res.status, data: doc };
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body, true);

export function enc(s) { return encodeURIComponent(String(s)); }
