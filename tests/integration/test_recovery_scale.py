"""True bounds at start-up (issue 7): a store holding 1,000,000 unfinished
sagas starts in seconds and in bounded memory, resuming at most
--max-inflight sagas at once and streaming the rest as room frees up."""

import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Sagad, Stubs, wait_until  # noqa: E402

N = int(os.environ.get("RECOVERY_SAGAS", "1000000"))
MAX_INFLIGHT = 500


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@harness.unittest.skipIf(harness.store_mode() != "sqlite",
                         "fills the SQLite file behind sagad's back (the Redis store's recovery "
                         "paging is covered by unit/store/test_backend@redis)")
class RecoveryScaleTest(harness.unittest.TestCase):

    @staticmethod
    def fill_sqlite(path):
        db = sqlite3.connect(path)
        db.executescript("""
            PRAGMA journal_mode=WAL;
            BEGIN;
            WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < %d)
            INSERT INTO sagas(id, def_name, request, idem_key, status, comp_status, error,
                              created_us, updated_us, nsteps)
              SELECT printf('%%08x-0000-4000-8000-%%012x', n, n), 'sta', '{"n":' || n || '}',
                     NULL, 0, 0, NULL, n, n, 3 FROM c;
            INSERT INTO steps(saga_id, idx, name, status, attempts, started_us, finished_us)
              SELECT id, 0, 'anonymizer', 1, 1, created_us, 0 FROM sagas;
            INSERT INTO steps(saga_id, idx, name, status, attempts, started_us, finished_us)
              SELECT id, 1, 'tokenizer', 0, 0, 0, 0 FROM sagas;
            INSERT INTO steps(saga_id, idx, name, status, attempts, started_us, finished_us)
              SELECT id, 2, 'ai_model', 0, 0, 0, 0 FROM sagas;
            COMMIT;
        """ % N)
        db.close()

    @staticmethod
    def fill_postgres(url):
        # The same rows in PostgreSQL's dialect (request is BYTEA there).
        harness.pg_server().psql(url.rsplit("/", 1)[1], """
            BEGIN;
            INSERT INTO sagas(id, def_name, request, idem_key, status, comp_status, error,
                              created_us, updated_us, nsteps)
              SELECT lpad(to_hex(n), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(n), 12, '0'),
                     'sta', convert_to('{"n":' || n || '}', 'UTF8'), NULL, 0, 0, NULL, n, n, 3
              FROM generate_series(1, %d) AS n;
            INSERT INTO steps(saga_id, idx, name, status, attempts, started_us, finished_us)
              SELECT id, 0, 'anonymizer', 1, 1, created_us, 0 FROM sagas;
            INSERT INTO steps(saga_id, idx, name, status, attempts, started_us, finished_us)
              SELECT id, 1, 'tokenizer', 0, 0, 0, 0 FROM sagas;
            INSERT INTO steps(saga_id, idx, name, status, attempts, started_us, finished_us)
              SELECT id, 2, 'ai_model', 0, 0, 0, 0 FROM sagas;
            COMMIT;
        """ % N)

    def test_a_million_unfinished_sagas(self):
        stubs = Stubs("--quiet")
        self.addCleanup(stubs.proc.kill)
        sg = Sagad(stubs, step_timeout_ms=3000, args=("--max-inflight", str(MAX_INFLIGHT)))
        self.addCleanup(lambda: sg.proc.kill())
        sg.stop()  # the schema exists now; fill it behind sagad's back
        if sg.db.startswith("postgres"):
            self.fill_postgres(sg.db)
        else:
            self.fill_sqlite(sg.db)

        t0 = time.monotonic()
        t0 = time.monotonic()
        sg.start(timeout=60)
        started_s = time.monotonic() - t0
        self.assertLess(started_s, 15.0, "start-up took %.1f s" % started_s)
        # Sagas resume and complete while the rest waits in the store.
        def completed():
            rows = sg.db_query("SELECT count(*) FROM sagas WHERE status=1")
            return rows[0][0] >= 3 * MAX_INFLIGHT and rows[0][0]
        done = wait_until(completed, 120, 0.5, "sagas completing after the restart")
        peak = rss_kb(sg.pid)
        # Bounded by --max-inflight, not by the million waiting in the store
        # (loading them all takes gigabytes); AddressSanitizer's shadow
        # memory and quarantine add a few hundred MB of their own.
        limit_mb = 600 if harness.is_sanitized(harness.SAGAD) else 150
        self.assertLess(peak, limit_mb * 1024, "RSS %d kB with %d unfinished sagas" % (peak, N))
        sg.stop()
        left = sg.db_query("SELECT count(*) FROM sagas WHERE status=0")[0][0]
        self.assertGreater(left, 0)  # still there, durable, for the next start
        print("%d unfinished sagas: started in %.2f s, %d completed, RSS %d kB, %d left"
              % (N, started_s, done, peak, left))


if __name__ == "__main__":
    harness.main()
