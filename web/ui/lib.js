/* The dashboard's plumbing: calls to sagad's API with the bearer token,
 * the token prompt, and DOM helpers that put API data on the page as text
 * only (never as HTML: saga bodies and errors are untrusted). */

const TOKEN_KEY = 'sagad.token';
// The API lives next to /ui/ (the same prefix if a proxy adds one).
const BASE = location.pathname.replace(/ui\/[^/]*$/, '');

export const $ = (id) => document.getElementById(id);

export class AuthError extends Error {}

/* ------------------------------------------------------------ API */

export let authPending = false;

export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch (e) {
    return '';
  }
}

// One call to the API: {status, ok, body (parsed JSON or text)}. A 401
// opens the token prompt and throws AuthError (the caller stops).
export async function api(method, path, extraHeaders) {
  let t, r, text;
  // A 401 for a token the user has replaced since is stale: send the call
  // again with the new one rather than reopen the prompt over it.
  do {
    t = token();
    const headers = { Accept: 'application/json' };
    if (t) headers.Authorization = 'Bearer ' + t;
    Object.assign(headers, extraHeaders || {});
    r = await fetch(BASE + path.replace(/^\//, ''), {
      method: method,
      headers: headers,
      cache: 'no-store',
      credentials: 'same-origin',
    });
    text = await r.text();
  } while (r.status === 401 && t !== token());
  if (r.status === 401) {
    askToken(t ? 'The token was refused; enter another.' : 'This sagad asks for an API token.');
    throw new AuthError('401');
  }
  let body = text;
  try {
    body = JSON.parse(text);
  } catch (e) {
    /* not JSON: keep the text (e.g. /metrics) */
  }
  return { status: r.status, ok: r.ok, body: body };
}

// A token from the prompt: kept in this tab's sessionStorage ('' forgets).
export function setToken(v) {
  try {
    if (v) sessionStorage.setItem(TOKEN_KEY, v);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch (e) {
    /* storage refused: the token is not kept */
  }
  authPending = false;
  $('token-form').hidden = true;
  updateTokenButton();
}

function askToken(msg) {
  authPending = true;
  $('token-msg').textContent = msg;
  $('token-form').hidden = false;
  $('token-input').focus();
}

export function updateTokenButton() {
  $('forget-token').hidden = !token();
}

export function detailText(body) {
  if (body && typeof body === 'object' && 'detail' in body) {
    const d = body.detail;
    return typeof d === 'string' ? d : JSON.stringify(d);
  }
  return typeof body === 'string' ? body : JSON.stringify(body);
}

export function notice(msg) {
  const n = $('notice');
  n.textContent = msg || '';
  n.hidden = !msg;
}

// Runs an async view function; API and network failures become a notice.
export async function guarded(fn) {
  try {
    await fn();
    return true;
  } catch (e) {
    if (!(e instanceof AuthError)) notice('Cannot reach sagad: ' + e.message);
    return false;
  }
}

/* ------------------------------------------------------- helpers */

export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

export function td(text, cls) {
  return el('td', cls, text === null || text === undefined ? '' : text);
}

export function badge(status) {
  const s = typeof status === 'string' ? status : '';
  return el('span', 'badge st-' + s.toLowerCase().replace(/[^a-z_]/g, ''), s || '–');
}

export function setBadge(node, status) {
  const s = typeof status === 'string' ? status : '';
  node.className = 'badge st-' + s.toLowerCase().replace(/[^a-z_]/g, '');
  node.textContent = s || '–';
}

export function sagaLink(id) {
  const a = el('a', 'id', shortId(id));
  a.href = '#/saga/' + encodeURIComponent(String(id));
  a.title = String(id);
  return a;
}

export function shortId(id) {
  const s = String(id === null || id === undefined ? '' : id);
  return s.length > 13 ? s.slice(0, 8) + '…' + s.slice(-4) : s;
}

// "2026-11-28T10:00:00.123456Z" -> microseconds since the epoch (or NaN).
export function micros(ts) {
  if (typeof ts !== 'string') return NaN;
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?Z$/.exec(ts);
  if (!m) return NaN;
  const frac = (m[2] || '').padEnd(6, '0');
  return Date.parse(m[1] + 'Z') * 1000 + Number(frac);
}

export function when(ts) {
  if (typeof ts !== 'string') return '';
  const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d{1,3})?/.exec(ts);
  return m ? m[1] + ' ' + m[2] + (m[3] || '') : ts;
}

export function duration(from, to) {
  const us = micros(to) - micros(from);
  if (!isFinite(us) || us < 0) return '';
  if (us < 1000) return us + ' µs';
  if (us < 1e6) return (us / 1000).toFixed(us < 1e4 ? 2 : 1) + ' ms';
  if (us < 6e7) return (us / 1e6).toFixed(2) + ' s';
  return Math.floor(us / 6e7) + ' min ' + Math.round((us % 6e7) / 1e6) + ' s';
}

export function pretty(v) {
  try {
    return JSON.stringify(v, null, 2);
  } catch (e) {
    return String(v);
  }
}

export function answer(node, res) {
  node.textContent = 'HTTP ' + res.status + '\n' + pretty(res.body);
  node.className = 'answer ' + (res.ok ? 'good' : 'bad');
  node.hidden = false;
}

export function qs(params) {
  const parts = [];
  for (const k of Object.keys(params)) {
    const v = params[k];
    if (v !== '' && v !== null && v !== undefined)
      parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(v));
  }
  return parts.length ? '?' + parts.join('&') : '';
}

// Prometheus text format: {name: [{labels: {...}, value}]}.
export function parseMetrics(text) {
  const out = {};
  const rx = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/;
  const lrx = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (const line of String(text).split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = rx.exec(line);
    if (!m) continue;
    const labels = {};
    let l;
    lrx.lastIndex = 0;
    while (m[3] && (l = lrx.exec(m[3])) !== null)
      labels[l[1]] = l[2].replace(/\\n/g, '\n').replace(/\\(.)/g, '$1');
    (out[m[1]] = out[m[1]] || []).push({ labels: labels, value: Number(m[4]) });
  }
  return out;
}

export function sum(metrics, name, pred) {
  let n = 0;
  let seen = false;
  for (const s of metrics[name] || []) {
    if (!pred || pred(s.labels)) {
      n += s.value;
      seen = true;
    }
  }
  return seen ? n : null;
}
