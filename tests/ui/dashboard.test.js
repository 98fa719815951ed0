// Browser test of sagad's dashboard (/ui/): the system Chromium driven by
// playwright-core against a real sagad and sta-stubs, which
// tests/ui/test_dashboard.py starts and names in the environment:
//   SAGAD_URL, STUBS_URL   http://127.0.0.1:<port> of each
//   SAGAD_TOKEN_URL        (optional) a second sagad started with --api-token
//   SAGAD_TOKEN            its token
//   CHROMIUM               the browser (default /usr/bin/chromium)
//   SCREENSHOT             where to write the README's screenshot (optional)
// Every check throws on failure; the process exits 1 with the reason.
'use strict';

const assert = require('node:assert/strict');
const { chromium } = require('playwright-core');

const SAGAD = process.env.SAGAD_URL;
const STUBS = process.env.STUBS_URL;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SLOW = Number(process.env.SAGAD_UI_SLOW || '1'); // ASan builds: longer waits

function log(msg) {
  process.stderr.write('[ui] ' + msg + '\n');
}

/* ------------------------------------------------ API of the services */

async function call(base, method, path, body, headers) {
  const h = Object.assign({}, headers || {});
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const r = await fetch(base + path, {
    method: method,
    headers: h,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch (e) {
    /* not JSON */
  }
  return { status: r.status, json: json, text: text };
}

async function stubConfig(cfg) {
  const r = await call(STUBS, 'POST', '/_config', cfg);
  assert.ok(r.status === 200 || r.status === 204, 'POST /_config ' + r.status + ' ' + r.text);
}

// A synchronous saga: its id (from the answer or the error detail).
async function saga(type, body, expect) {
  const r = await call(SAGAD, 'POST', type ? '/sagas/' + type : '/saga', body);
  assert.equal(r.status, expect, 'POST saga: ' + r.status + ' ' + r.text);
  return r.status === 200 ? r.json.id : r.json.detail.id;
}

async function record(id) {
  const r = await call(SAGAD, 'GET', '/saga/' + id);
  assert.equal(r.status, 200, r.text);
  return r.json;
}

async function waitFor(what, fn, timeoutMs) {
  const deadline = Date.now() + (timeoutMs || 15000) * SLOW;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + what + ' (last: ' + last + ')');
    await new Promise((res) => setTimeout(res, 100));
  }
}

/* ---------------------------------------------------------- the page */

// A page that records every request and console error. Requests must stay
// on sagad's origin; console errors fail the test unless `allowed` says
// it is an expected failed load (a 401 before a token, /metrics missing).
async function openPage(browser, origin, allowed) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  const seen = { requests: [], foreign: [], errors: [] };
  page.on('request', (req) => {
    seen.requests.push(req);
    if (!req.url().startsWith(origin + '/')) seen.foreign.push(req.url());
  });
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const where = (msg.location() && msg.location().url) || '';
    if (allowed && allowed(msg.text(), where)) return;
    seen.errors.push(msg.text() + ' @ ' + where);
  });
  page.on('pageerror', (err) => seen.errors.push('page error: ' + err.message));
  return { context, page, seen };
}

function checkClean(seen, name) {
  assert.deepEqual(seen.foreign, [], name + ': requests left the origin');
  assert.deepEqual(seen.errors, [], name + ': console errors');
}

async function rows(page, selector) {
  return page.$$eval(selector, (trs) =>
    trs.map((tr) => ({
      id: tr.dataset.id,
      status: tr.dataset.status,
      cells: [...tr.children].map((td) => td.textContent),
    })),
  );
}

async function text(page, selector) {
  return (await page.textContent(selector)) || '';
}

async function waitText(page, selector, want, timeoutMs) {
  await waitFor(
    selector + ' to show ' + want,
    async () => (await text(page, selector)).includes(want),
    timeoutMs,
  );
}

// The rows shown once the list has settled on `n` rows.
async function sagaRows(page, n) {
  await waitFor(n + ' saga rows', async () => (await page.$$('tr.saga-row')).length === n);
  return rows(page, 'tr.saga-row');
}

async function counters(page) {
  const get = async (id) => text(page, '#' + id);
  return {
    inflight: await get('c-inflight'),
    completed: await get('c-completed'),
    failed: await get('c-failed'),
    pending: await get('c-pending'),
    parked: await get('c-parked'),
  };
}

/* ------------------------------------------------------------ scenario */

let expectConflict = false;
let metricsStatus = 0; // GET /metrics: 200 once sagad has it, else 404

async function makeSagas(first) {
  const made = { all: [first], completed: [first], failed: [], echo: [] };
  const add = (id, status) => {
    made.all.push(id);
    made[status].push(id);
  };
  for (let i = 0; i < 9; i++) add(await saga(null, { n: i }, 200), 'completed');
  for (let i = 0; i < 2; i++) {
    const id = await saga('echo', { e: i }, 200);
    add(id, 'completed');
    made.echo.push(id);
  }
  // Step 3 fails: the tokenizer's compensation runs (COMPLETED).
  made.step3 = await saga(null, { n: 's3', _stub: { ai_model: { status: 400 } } }, 400);
  add(made.step3, 'failed');
  // Markup in a body must stay text on the page.
  made.markup = await saga(null, { html: '<img src=x id=injected onerror="window.pwned=1">' }, 200);
  add(made.markup, 'completed');
  // Step 1 fails for every call until the stub is healed: a retry candidate.
  await stubConfig({ anonymizer: { status: 404 } });
  made.step1 = await saga(null, { n: 's1' }, 400);
  add(made.step1, 'failed');
  await stubConfig({ anonymizer: null });
  // Two sagas whose compensation is refused (403): parked, as in
  // tests/integration/test_retries.py. Step 3 is slow so that the stub
  // is switched while it runs.
  made.parked = [];
  for (let i = 0; i < 2; i++) {
    const r = await call(
      SAGAD,
      'POST',
      '/saga',
      { n: 'p' + i, _stub: { ai_model: { status: 400, delay_ms: 1500 } } },
      { Prefer: 'respond-async' },
    );
    assert.equal(r.status, 202, r.text);
    made.parked.push(r.json.id);
    add(r.json.id, 'failed');
  }
  for (const id of made.parked)
    await waitFor('step 3 of ' + id + ' running', async () => (await record(id)).step3_status === 'RUNNING');
  await stubConfig({ tokenizer: { status: 403 } });
  for (const id of made.parked)
    await waitFor(
      id + ' compensation PARKED',
      async () => (await record(id)).compensation_status === 'PARKED',
    );
  await stubConfig({ tokenizer: null });
  const ev = await call(SAGAD, 'GET', '/events?status=PARKED&limit=1000');
  made.parkedEvents = ev.json.events.map((e) => e.id);
  assert.equal(made.parkedEvents.length, 2, ev.text);
  return made;
}

async function checkList(page, made) {
  log('list: newest first, every saga');
  const n = made.all.length;
  const all = await sagaRows(page, n);
  assert.deepEqual(
    all.map((r) => r.id),
    [...made.all].reverse(),
    'rows newest first',
  );
  const byId = Object.fromEntries(all.map((r) => [r.id, r]));
  for (const id of made.completed) assert.equal(byId[id].status, 'COMPLETED', id);
  for (const id of made.failed) assert.equal(byId[id].status, 'FAILED', id);
  assert.ok(byId[made.step3].cells[6].includes('Error en Step 3 (AI Model Process)'));
  assert.equal(byId[made.echo[0]].cells[1], 'echo');

  log('counters');
  const c = await waitFor('counters', async () => {
    const v = await counters(page);
    return v.failed === String(made.failed.length) && v.parked === '2' ? v : null;
  });
  assert.equal(c.completed, String(made.completed.length));
  const source = await text(page, '#c-source');
  assert.ok(source.includes(metricsStatus === 200 ? '/metrics' : 'stored'), source);
  assert.equal(c.inflight, '0');
  assert.equal(c.pending, '0');

  log('status filter');
  await page.selectOption('#f-status', 'FAILED');
  let shown = await sagaRows(page, made.failed.length);
  assert.deepEqual(shown.map((r) => r.id).sort(), [...made.failed].sort());
  assert.ok(shown.every((r) => r.status === 'FAILED'));
  assert.ok(page.url().includes('status=FAILED'), page.url());

  log('type filter');
  await page.selectOption('#f-status', '');
  await page.selectOption('#f-type', 'echo');
  shown = await sagaRows(page, made.echo.length);
  assert.deepEqual(shown.map((r) => r.id), [...made.echo].reverse());
  await page.selectOption('#f-type', '');
  await sagaRows(page, n);

  log('paging');
  await page.selectOption('#f-limit', '10');
  const p1 = await sagaRows(page, 10);
  assert.ok(await page.isDisabled('#sagas-prev'));
  await page.click('#sagas-next');
  await waitText(page, '#sagas-page', 'page 2');
  const p2 = await sagaRows(page, n - 10);
  assert.ok(await page.isDisabled('#sagas-next'));
  assert.deepEqual(
    p1.concat(p2).map((r) => r.id),
    [...made.all].reverse(),
    'two pages: every saga once, in order',
  );
  await page.click('#sagas-prev');
  await waitText(page, '#sagas-page', 'page 1');
  assert.deepEqual((await sagaRows(page, 10)).map((r) => r.id), p1.map((r) => r.id));
  await page.selectOption('#f-limit', '50');
  await sagaRows(page, n);
}

async function checkFailedTimeline(page, made) {
  log('timeline of a saga failed at step 3');
  await page.click('tr.saga-row[data-id="' + made.step3 + '"] a');
  await waitText(page, '#s-id', made.step3);
  await waitText(page, '#s-status', 'FAILED');
  await waitText(page, '#s-comp', 'COMPLETED');
  const steps = await page.$$eval('#s-steps > li', (lis) =>
    lis.map((li) => ({
      name: li.dataset.step,
      status: li.querySelector('.step-head .badge').textContent,
      facts: li.querySelector('.step-facts').textContent,
      error: (li.querySelector(':scope > .step-error') || {}).textContent || '',
      comp: (li.querySelector('.compensation .badge') || {}).textContent || '',
    })),
  );
  assert.deepEqual(
    steps.map((s) => [s.name, s.status]),
    [
      ['anonymizer', 'COMPLETED'],
      ['tokenizer', 'COMPLETED'],
      ['ai_model', 'FAILED'],
    ],
  );
  assert.ok(steps[2].error.includes('HTTP 400'), steps[2].error);
  assert.equal(steps[1].comp, 'COMPLETED');
  for (const s of steps) {
    assert.match(s.facts, /attempts1/);
    assert.match(s.facts, /took\d/);
  }
  assert.ok((await text(page, '#s-error')).includes('Error en Step 3 (AI Model Process)'));
  await waitFor('two events', async () => (await page.$$('#s-events-body tr')).length === 2);
  const evs = await rows(page, '#s-events-body tr');
  assert.deepEqual(
    evs.map((e) => [e.cells[1], e.status]),
    [
      ['tokenizer_event', 'DELIVERED'],
      ['tokenizer_compensation', 'DELIVERED'],
    ],
  );

  log('retry refused after a compensation: the answer is shown');
  assert.ok(await page.isVisible('#s-retry'));
  expectConflict = true;
  await page.click('#s-retry');
  await waitText(page, '#s-retry-answer', 'HTTP 409');
  await waitText(page, '#s-retry-answer', 'compensation');
  expectConflict = false;
}

async function checkRetry(page, made) {
  log('retry of a saga failed at step 1, the stub healed');
  await page.goto(SAGAD + '/ui/#/saga/' + made.step1);
  await waitText(page, '#s-status', 'FAILED');
  const err = await page.textContent('#s-steps li[data-step="anonymizer"] .step-error');
  assert.ok(err.includes('HTTP 404'), err);
  await page.click('#s-retry');
  await waitText(page, '#s-retry-answer', 'HTTP 200');
  await waitText(page, '#s-status', 'COMPLETED');
  assert.ok(await page.isHidden('#s-retry'));
  assert.ok(await page.isHidden('#s-error'));
  const facts = await page.textContent('#s-steps li[data-step="anonymizer"] .step-facts');
  assert.match(facts, /attempts2/);
  assert.equal((await record(made.step1)).overall_status, 'COMPLETED');
}

async function checkParked(page, made) {
  log('parked events view and redeliver');
  await page.click('#nav-events');
  await waitFor('two parked rows', async () => (await page.$$('#events-body tr')).length === 2);
  const parked = await rows(page, '#events-body tr');
  assert.deepEqual(parked.map((r) => r.id).sort(), [...made.parkedEvents].sort());
  for (const r of parked) {
    assert.equal(r.status, 'PARKED');
    assert.equal(r.cells[2], 'tokenizer_compensation');
    assert.ok(r.cells[5].includes('403'), r.cells[5]);
  }
  const first = parked[0];
  await page.click('#events-body tr[data-id="' + first.id + '"] button.redeliver');
  await waitText(page, '#events-answer', 'HTTP 202');
  await waitFor('one parked row left', async () => (await page.$$('#events-body tr')).length === 1);
  const sagaOf = (await call(SAGAD, 'GET', '/events?limit=1000')).json.events.find(
    (e) => e.id === first.id,
  ).saga_id;
  await waitFor(
    'compensation delivered',
    async () => (await record(sagaOf)).compensation_status === 'COMPLETED',
  );

  log('redeliver from the saga view');
  const other = made.parked.find((id) => id !== sagaOf);
  await page.goto(SAGAD + '/ui/#/saga/' + other);
  await waitText(page, '#s-comp', 'PARKED');
  await waitFor('a redeliver button', async () => (await page.$$('#s-events-body button.redeliver')).length === 1);
  await page.click('#s-events-body button.redeliver');
  await waitText(page, '#s-event-answer', 'HTTP 202');
  await waitText(page, '#s-comp', 'COMPLETED');
  await waitFor('parked counter 0', async () => (await text(page, '#c-parked')) === '0');
}

async function checkMarkup(page, made) {
  log('markup in a saga body stays text');
  await page.goto(SAGAD + '/ui/#/saga/' + made.markup);
  await waitText(page, '#s-request', '<img src=x id=injected');
  assert.equal(await page.$('#injected'), null);
  assert.equal(await page.evaluate(() => window.pwned), undefined);
}

async function screenshot(page, made) {
  if (!process.env.SCREENSHOT) return;
  log('screenshot ' + process.env.SCREENSHOT);
  // A saga with a failure and a compensation: the list, then the saga.
  await page.goto(SAGAD + '/ui/#/sagas');
  await sagaRows(page, made.all.length);
  await page.goto(SAGAD + '/ui/#/saga/' + made.step3);
  await waitFor('events', async () => (await page.$$('#s-events-body tr')).length === 2);
  await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
}

async function checkToken(browser, metrics) {
  const base = process.env.SAGAD_TOKEN_URL;
  const tok = process.env.SAGAD_TOKEN;
  if (!base) return;
  log('behind --api-token: prompt, refused token, accepted token');
  const r = await call(base, 'POST', '/saga', { t: 1 }, { Authorization: 'Bearer ' + tok });
  assert.equal(r.status, 200, r.text);
  // The page's own loads answer 401 until a token is given: expected.
  const { context, page, seen } = await openPage(
    browser,
    base,
    (t, where) =>
      /status of 401/.test(t) ||
      (metrics === 404 && /status of 404/.test(t) && where.endsWith('/metrics')),
  );
  // The counters' call made with the refused token is held until the right
  // token is in: its late 401 must not reopen the prompt (it did once,
  // when sagad answered slowly under ASan).
  const bad = 'Bearer not-' + tok;
  let release;
  const held = new Promise((res) => (release = res));
  await page.route('**/metrics', async (route) => {
    if (route.request().headers().authorization === bad) await held;
    await route.continue();
  });
  const metricsAnswers = [];
  page.on('response', (resp) => {
    if (resp.url().endsWith('/metrics')) metricsAnswers.push(resp.request().headers().authorization);
  });
  await page.goto(base + '/ui/');
  await page.waitForSelector('#token-form:not([hidden])');
  await page.fill('#token-input', 'not-' + tok);
  await page.click('#token-form button[type=submit]');
  await waitText(page, '#token-msg', 'refused');
  await page.fill('#token-input', tok);
  await page.click('#token-form button[type=submit]');
  const shown = await sagaRows(page, 1);
  assert.equal(shown[0].id, r.json.id);
  const before = metricsAnswers.length;
  release();
  await waitFor(
    'the held call answered and sent again with the token (or the prompt back)',
    async () =>
      metricsAnswers.slice(before).includes('Bearer ' + tok) || !(await page.isHidden('#token-form')),
  );
  assert.ok(metricsAnswers.slice(before).includes(bad), 'the held call was answered');
  assert.ok(await page.isHidden('#token-form'), 'a stale 401 reopened the token prompt');
  const stored = await page.evaluate(() => sessionStorage.getItem('sagad.token'));
  assert.equal(stored, tok);
  const last = seen.requests.filter((q) => q.url().includes('/sagas?')).pop();
  assert.equal(last.headers().authorization, 'Bearer ' + tok);
  checkClean(seen, 'token page');
  await context.close();
}

async function main() {
  assert.ok(SAGAD && STUBS, 'SAGAD_URL and STUBS_URL must be set (tests/ui/test_dashboard.py does)');
  await stubConfig({ anonymizer: null, tokenizer: null, ai_model: null });
  const metrics = (await call(SAGAD, 'GET', '/metrics')).status;
  metricsStatus = metrics;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  try {
    // Chromium logs every 4xx load as a console error. Expected ones:
    // until sagad has /metrics, the counters' probe of it (404), and the
    // retry refused on purpose (409) in checkFailedTimeline.
    const { page, seen } = await openPage(
      browser,
      SAGAD,
      (t, where) =>
        (metrics === 404 && /status of 404/.test(t) && where.endsWith('/metrics')) ||
        (expectConflict && /status of 409/.test(t) && where.endsWith('/' + made.step3 + '/retry')),
    );
    await page.goto(SAGAD + '/ui/');
    await sagaRows(page, 0);
    await page.waitForSelector('#sagas-empty:not([hidden])');
    log('live counters: a slow saga in flight, then completed');
    const slow = await call(
      SAGAD,
      'POST',
      '/saga',
      { n: 'slow', _stub: { ai_model: { delay_ms: 6000 } } },
      { Prefer: 'respond-async' },
    );
    assert.equal(slow.status, 202, slow.text);
    await waitFor('1 in flight', async () => (await text(page, '#c-inflight')) === '1', 5000);
    await waitFor('completed', async () => (await text(page, '#c-completed')) === '1', 12000);
    assert.equal(await text(page, '#c-inflight'), '0');
    const made = await makeSagas(slow.json.id);
    log('sagas made: ' + made.all.length + '; GET /metrics -> ' + metrics);
    await page.reload();
    await checkList(page, made);
    await checkFailedTimeline(page, made);
    await checkRetry(page, made);
    await checkParked(page, made);
    await checkMarkup(page, made);
    await screenshot(page, made);
    checkClean(seen, 'dashboard');
    assert.ok(seen.requests.length > 20, 'the page made its requests');
    await checkToken(browser, metrics);
  } finally {
    await browser.close();
  }
  log('all checks passed');
}

main().catch((e) => {
  process.stderr.write('[ui] FAILED: ' + (e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
