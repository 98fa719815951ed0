/* The live counters: sagad's GET /metrics when it has one, else counts
 * of the listings (one page each). */
import { $, AuthError, api, authPending, parseMetrics, sum } from './lib.js';

/* ------------------------------------------------------ counters */

let metricsMissing = false;

async function countersFromMetrics() {
  const r = await api('GET', '/metrics');
  if (r.status === 404) {
    metricsMissing = true;
    return null;
  }
  if (!r.ok) throw new Error('GET /metrics answered ' + r.status);
  const m = parseMetrics(r.body);
  return {
    source: 'from /metrics (completed and failed since sagad started)',
    inflight: sum(m, 'sagad_sagas_in_flight'),
    completed: sum(m, 'sagad_sagas_finished_total', (l) => l.status === 'COMPLETED'),
    failed: sum(m, 'sagad_sagas_finished_total', (l) => l.status === 'FAILED'),
    pending: sum(m, 'sagad_outbox_events', (l) => l.status === 'PENDING'),
    parked: sum(m, 'sagad_outbox_events', (l) => l.status === 'PARKED'),
  };
}

// Without /metrics: one page of each listing; "1000+" past it.
async function countOf(path, key) {
  const r = await api('GET', path + '&limit=1000');
  if (!r.ok) throw new Error('GET ' + path + ' answered ' + r.status);
  const n = (r.body[key] || []).length;
  return r.body.next ? n + '+' : n;
}

async function countersFromListings() {
  const [inflight, completed, failed, pending, parked] = await Promise.all([
    countOf('/sagas?status=IN_PROGRESS', 'sagas'),
    countOf('/sagas?status=COMPLETED', 'sagas'),
    countOf('/sagas?status=FAILED', 'sagas'),
    countOf('/events?status=PENDING', 'events'),
    countOf('/events?status=PARKED', 'events'),
  ]);
  return {
    source: 'from the stored sagas and events',
    inflight: inflight,
    completed: completed,
    failed: failed,
    pending: pending,
    parked: parked,
  };
}

let counterBusy = false;

export async function refreshCounters() {
  if (counterBusy || authPending) return;
  counterBusy = true;
  try {
    let c = metricsMissing ? null : await countersFromMetrics();
    if (!c) c = await countersFromListings();
    const show = (id, v) => {
      $(id).textContent = v === null || v === undefined ? '–' : String(v);
    };
    show('c-inflight', c.inflight);
    show('c-completed', c.completed);
    show('c-failed', c.failed);
    show('c-pending', c.pending);
    show('c-parked', c.parked);
    $('c-source').textContent = c.source;
    $('counters').classList.remove('stale');
  } catch (e) {
    if (!(e instanceof AuthError)) $('counters').classList.add('stale');
  } finally {
    counterBusy = false;
  }
}
