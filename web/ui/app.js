/* sagad's dashboard: plain JavaScript modules, no build step, nothing
 * fetched but this sagad's own API. Views: the sagas (#/sagas), one saga
 * (#/saga/<id>), the outbox by status (#/events). */
import {
  $,
  answer,
  api,
  authPending,
  badge,
  detailText,
  duration,
  el,
  guarded,
  micros,
  notice,
  pretty,
  qs,
  sagaLink,
  setBadge,
  setToken,
  shortId,
  td,
  updateTokenButton,
  when,
} from './lib.js';
import { refreshCounters } from './counters.js';

const COUNTER_MS = 3000;
const VIEW_MS = 3000;
const EVENT_SCAN_PAGES = 3;

$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const v = $('token-input').value.trim();
  if (!v) return;
  $('token-input').value = '';
  setToken(v);
  refreshCounters();
  render();
});

$('forget-token').addEventListener('click', () => {
  setToken('');
  render();
});

/* --------------------------------------------------- definitions */

let definitions = null; // [{name, steps: [{name, label}]}]

async function loadDefinitions() {
  if (definitions) return;
  const r = await api('GET', '/definitions');
  if (!r.ok || !Array.isArray(r.body.definitions)) return;
  definitions = r.body.definitions;
  const sel = $('f-type');
  const keep = sel.value;
  while (sel.options.length > 1) sel.remove(1);
  for (const d of definitions) {
    const o = el('option', null, d.name);
    o.value = String(d.name);
    sel.appendChild(o);
  }
  sel.value = keep;
}

function stepLabel(type, name) {
  const d = (definitions || []).find((x) => x.name === type);
  const s = d && (d.steps || []).find((x) => x.name === name);
  return s && s.label ? s.label : null;
}

/* ---------------------------------------------------- sagas list */

// Pages seen in this listing: cursors[i] is the `after` of page i.
const sagaPages = { cursors: [''], index: 0, next: null };

function resetPages(p) {
  p.cursors = [''];
  p.index = 0;
  p.next = null;
}

// A later render supersedes an earlier one still waiting for its answer
// (a filter changed during an auto-refresh): only the latest is shown.
let sagasSeq = 0;
let eventsSeq = 0;

async function renderSagas() {
  const seq = ++sagasSeq;
  await loadDefinitions();
  const params = {
    status: $('f-status').value,
    type: $('f-type').value,
    limit: $('f-limit').value,
    after: sagaPages.cursors[sagaPages.index],
  };
  const r = await api('GET', '/sagas' + qs(params));
  if (seq !== sagasSeq) return;
  if (!r.ok) {
    notice('GET /sagas: ' + r.status + ' ' + detailText(r.body));
    return;
  }
  notice('');
  const body = $('sagas-body');
  const rows = [];
  for (const s of r.body.sagas || []) {
    const tr = el('tr', 'saga-row');
    tr.dataset.id = String(s.id);
    tr.dataset.status = String(s.overall_status);
    const c0 = el('td');
    c0.appendChild(sagaLink(s.id));
    tr.appendChild(c0);
    tr.appendChild(td(s.type));
    const c2 = el('td');
    c2.appendChild(badge(s.overall_status));
    tr.appendChild(c2);
    const c3 = el('td');
    c3.appendChild(badge(s.compensation_status));
    tr.appendChild(c3);
    tr.appendChild(td(when(s.created_at)));
    tr.appendChild(td(when(s.updated_at)));
    tr.appendChild(td(s.error, 'error'));
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  $('sagas-empty').hidden = rows.length > 0;
  sagaPages.next = r.body.next || null;
  $('sagas-page').textContent = 'page ' + (sagaPages.index + 1);
  $('sagas-prev').disabled = sagaPages.index === 0;
  $('sagas-first').disabled = sagaPages.index === 0;
  $('sagas-next').disabled = !sagaPages.next;
}

for (const id of ['f-status', 'f-type', 'f-limit']) {
  $(id).addEventListener('change', () => {
    resetPages(sagaPages);
    writeFilterHash();
  });
}
$('saga-filters').addEventListener('submit', (ev) => ev.preventDefault());
$('sagas-refresh').addEventListener('click', () => guarded(renderSagas));
$('sagas-first').addEventListener('click', () => {
  resetPages(sagaPages);
  guarded(renderSagas);
});
$('sagas-prev').addEventListener('click', () => {
  if (sagaPages.index > 0) sagaPages.index--;
  guarded(renderSagas);
});
$('sagas-next').addEventListener('click', () => {
  if (!sagaPages.next) return;
  sagaPages.cursors.length = sagaPages.index + 1;
  sagaPages.cursors.push(sagaPages.next);
  sagaPages.index++;
  guarded(renderSagas);
});

// Filters live in the address (#/sagas?status=FAILED&type=sta): links work.
function writeFilterHash() {
  const h = '#/sagas' + qs({ status: $('f-status').value, type: $('f-type').value });
  if (location.hash !== h) location.hash = h;
  else guarded(renderSagas);
}

function readFilterHash(query) {
  const p = new URLSearchParams(query || '');
  const st = p.get('status') || '';
  const ty = p.get('type') || '';
  if ($('f-status').value !== st || $('f-type').value !== ty) resetPages(sagaPages);
  $('f-status').value = st;
  if (ty && ![...$('f-type').options].some((o) => o.value === ty)) {
    const o = el('option', null, ty);
    o.value = ty;
    $('f-type').appendChild(o);
  }
  $('f-type').value = ty;
}

/* ---------------------------------------------------- one saga */

let currentSaga = null;

function stepItem(type, s) {
  const li = el('li', 'step st-' + String(s.status || '').toLowerCase().replace(/[^a-z_]/g, ''));
  li.dataset.step = String(s.name);
  const head = el('div', 'step-head');
  const label = stepLabel(type, s.name);
  head.appendChild(el('span', 'step-name', s.name));
  if (label && label !== s.name) head.appendChild(el('span', 'step-label', label));
  head.appendChild(badge(s.status));
  li.appendChild(head);
  li.appendChild(stepFacts(s));
  if (s.error) li.appendChild(el('div', 'error step-error', s.error));
  if (s.compensation) {
    const c = el('div', 'compensation');
    const ch = el('div', 'step-head');
    ch.appendChild(el('span', 'step-name', 'compensation'));
    ch.appendChild(badge(s.compensation.status));
    c.appendChild(ch);
    c.appendChild(stepFacts(s.compensation));
    if (s.compensation.error) c.appendChild(el('div', 'error step-error', s.compensation.error));
    li.appendChild(c);
  }
  return li;
}

function stepFacts(s) {
  const f = el('div', 'step-facts');
  const add = (k, v) => {
    if (v === '' || v === null || v === undefined) return;
    const span = el('span', 'fact');
    span.appendChild(el('span', 'k', k));
    span.appendChild(el('span', 'v', v));
    f.appendChild(span);
  };
  add('attempts', s.attempts);
  add('started', when(s.started_at));
  add('finished', when(s.finished_at));
  add('took', s.started_at && s.finished_at ? duration(s.started_at, s.finished_at) : '');
  return f;
}

// The outbox entries of one saga: GET /events has no saga filter, so
// the newest pages are scanned (and the parked ones, which matter most).
async function sagaEvents(id) {
  const found = new Map();
  let complete = true;
  for (const status of ['', 'PARKED']) {
    let after = '';
    for (let i = 0; ; i++) {
      if (i === EVENT_SCAN_PAGES) {
        if (status === '') complete = false;
        break;
      }
      const r = await api('GET', '/events' + qs({ status: status, limit: 1000, after: after }));
      if (!r.ok) throw new Error('GET /events answered ' + r.status);
      for (const e of r.body.events || []) if (e.saga_id === id) found.set(e.id, e);
      if (!r.body.next) break;
      after = r.body.next;
    }
  }
  const list = [...found.values()].sort((a, b) => micros(a.created_at) - micros(b.created_at));
  return { list: list, complete: complete };
}

function eventRow(e, withSaga, answerNode) {
  const tr = el('tr', 'event-row');
  tr.dataset.id = String(e.id);
  tr.dataset.status = String(e.status);
  const c0 = el('td', 'id', shortId(e.id));
  c0.title = String(e.id);
  tr.appendChild(c0);
  if (withSaga) {
    const cs = el('td');
    if (e.saga_id) cs.appendChild(sagaLink(e.saga_id));
    tr.appendChild(cs);
  }
  tr.appendChild(td(e.topic !== null && e.topic !== undefined ? e.topic : e.url));
  const c2 = el('td');
  c2.appendChild(badge(e.status));
  tr.appendChild(c2);
  tr.appendChild(td(e.attempts));
  tr.appendChild(td(e.last_error, 'error'));
  if (!withSaga) tr.appendChild(td(when(e.created_at)));
  tr.appendChild(td(when(e.updated_at)));
  const ca = el('td');
  if (e.status === 'PARKED') {
    const b = el('button', 'redeliver', 'Redeliver');
    b.type = 'button';
    b.addEventListener('click', () => redeliver(e.id, b, answerNode));
    ca.appendChild(b);
  }
  tr.appendChild(ca);
  return tr;
}

async function redeliver(id, button, answerNode) {
  button.disabled = true;
  await guarded(async () => {
    const r = await api('POST', '/events/' + encodeURIComponent(id) + '/redeliver');
    answer(answerNode, r);
  });
  await guarded(render);
  refreshCounters();
}

let sagaSeq = 0;

async function renderSaga(id) {
  const seq = ++sagaSeq;
  const r = await api('GET', '/saga/' + encodeURIComponent(id));
  if (seq !== sagaSeq) return;
  if (r.status === 404) {
    notice('No saga ' + id + '.');
    $('view-saga').hidden = true;
    return;
  }
  if (!r.ok) {
    notice('GET /saga: ' + r.status + ' ' + detailText(r.body));
    return;
  }
  await loadDefinitions();
  if (seq !== sagaSeq) return;
  notice('');
  const s = r.body;
  if (currentSaga !== id) {
    $('s-retry-answer').hidden = true;
    $('s-event-answer').hidden = true;
  }
  currentSaga = id;
  $('s-id').textContent = String(s.id);
  setBadge($('s-status'), s.overall_status);
  $('s-type').textContent = s.type ? s.type + (s.version ? ' v' + s.version : '') : '';
  setBadge($('s-comp'), s.compensation_status);
  $('s-created').textContent = when(s.created_at);
  $('s-updated').textContent = when(s.updated_at);
  $('s-duration').textContent =
    s.overall_status === 'IN_PROGRESS' ? 'running' : duration(s.created_at, s.updated_at);
  $('s-trace').textContent = s.trace_id ? String(s.trace_id) : '–';
  $('s-error').textContent = s.error ? String(s.error) : '';
  $('s-error').hidden = !s.error;
  const retry = $('s-retry');
  retry.hidden = s.overall_status !== 'FAILED';
  if (!retryBusy) retry.disabled = false;
  $('s-steps').replaceChildren(...(s.steps || []).map((st) => stepItem(s.type, st)));
  $('s-request').textContent = pretty(s.request_data);
  $('s-processed').textContent = pretty(s.processed_data);

  const ev = await sagaEvents(id);
  if (seq !== sagaSeq) return;
  $('s-events-body').replaceChildren(
    ...ev.list.map((e) => eventRow(e, false, $('s-event-answer'))),
  );
  $('s-events-empty').hidden = ev.list.length > 0;
  $('s-events-note').textContent = ev.complete
    ? ''
    : 'Only the newest events were searched; older ones of this saga may be missing.';
  $('s-events-note').hidden = ev.complete;
}

let retryBusy = false;

$('s-retry').addEventListener('click', async () => {
  const id = currentSaga;
  if (!id || retryBusy) return;
  retryBusy = true;
  $('s-retry').disabled = true;
  const ans = $('s-retry-answer');
  ans.textContent = 'Retrying…';
  ans.className = 'answer';
  ans.hidden = false;
  await guarded(async () => {
    const r = await api('POST', '/saga/' + encodeURIComponent(id) + '/retry');
    answer(ans, r);
  });
  retryBusy = false;
  await guarded(render);
  refreshCounters();
});

/* ------------------------------------------------- events view */

const eventPages = { cursors: [''], index: 0, next: null };

async function renderEvents() {
  const seq = ++eventsSeq;
  const r = await api(
    'GET',
    '/events' +
      qs({ status: $('e-status').value, limit: 50, after: eventPages.cursors[eventPages.index] }),
  );
  if (seq !== eventsSeq) return;
  if (!r.ok) {
    notice('GET /events: ' + r.status + ' ' + detailText(r.body));
    return;
  }
  notice('');
  const rows = (r.body.events || []).map((e) => eventRow(e, true, $('events-answer')));
  $('events-body').replaceChildren(...rows);
  $('events-empty').hidden = rows.length > 0;
  eventPages.next = r.body.next || null;
  $('events-page').textContent = 'page ' + (eventPages.index + 1);
  $('events-prev').disabled = eventPages.index === 0;
  $('events-first').disabled = eventPages.index === 0;
  $('events-next').disabled = !eventPages.next;
}

$('e-status').addEventListener('change', () => {
  resetPages(eventPages);
  $('events-answer').hidden = true;
  guarded(renderEvents);
});
$('events-refresh').addEventListener('click', () => guarded(renderEvents));
$('events-first').addEventListener('click', () => {
  resetPages(eventPages);
  guarded(renderEvents);
});
$('events-prev').addEventListener('click', () => {
  if (eventPages.index > 0) eventPages.index--;
  guarded(renderEvents);
});
$('events-next').addEventListener('click', () => {
  if (!eventPages.next) return;
  eventPages.cursors.length = eventPages.index + 1;
  eventPages.cursors.push(eventPages.next);
  eventPages.index++;
  guarded(renderEvents);
});

/* ------------------------------------------------------ routing */

function route() {
  const h = location.hash.replace(/^#/, '') || '/sagas';
  const q = h.indexOf('?');
  const path = q < 0 ? h : h.slice(0, q);
  const query = q < 0 ? '' : h.slice(q + 1);
  const m = /^\/saga\/([^/?]+)$/.exec(path);
  if (m) return { view: 'saga', id: decodeURIComponent(m[1]) };
  if (path === '/events') return { view: 'events', query: query };
  return { view: 'sagas', query: query };
}

let renderBusy = false;

async function render() {
  if (authPending) return;
  const r = route();
  $('view-sagas').hidden = r.view !== 'sagas';
  $('view-saga').hidden = r.view !== 'saga';
  $('view-events').hidden = r.view !== 'events';
  $('nav-sagas').classList.toggle('active', r.view !== 'events');
  $('nav-events').classList.toggle('active', r.view === 'events');
  if (r.view !== 'saga') currentSaga = null;
  renderBusy = true;
  try {
    if (r.view === 'saga') await guarded(() => renderSaga(r.id));
    else if (r.view === 'events') await guarded(renderEvents);
    else {
      readFilterHash(r.query);
      await guarded(renderSagas);
      readFilterHash(r.query); // the type list may have just arrived
    }
  } finally {
    renderBusy = false;
  }
}

// The view follows the store: the first page of a list, or a saga that
// is not settled yet (running, or its compensation still pending).
function autoRefresh() {
  if (renderBusy || authPending || document.hidden) return;
  const r = route();
  if (r.view === 'sagas' && sagaPages.index === 0) guarded(renderSagas);
  else if (r.view === 'events' && eventPages.index === 0) guarded(renderEvents);
  else if (r.view === 'saga' && !retryBusy) {
    const st = $('s-status').textContent;
    const comp = $('s-comp').textContent;
    if (st === 'IN_PROGRESS' || comp === 'PENDING') guarded(() => renderSaga(r.id));
  }
}

window.addEventListener('hashchange', render);
updateTokenButton();
render();
refreshCounters();
setInterval(refreshCounters, COUNTER_MS);
setInterval(autoRefresh, VIEW_MS);
