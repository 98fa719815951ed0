"""Command line and environment (design §3, §4 bus selection)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Sagad, Stubs, clean_env, jbody, run, tmpdir  # noqa: E402

FLAGS = ["--listen", "--db", "--anonymizer-url", "--ai-model-url", "--bus", "--step-timeout-ms",
         "--retention", "--help"]
ENVS = ["SAGAD_LISTEN", "SAGAD_DB", "SAGAD_ANONYMIZER_URL", "SAGAD_AI_MODEL_URL", "SAGAD_BUS",
        "SAGAD_STEP_TIMEOUT_MS", "SAGAD_RETENTION"]


class CliTest(harness.unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.stubs = Stubs("--quiet")
        cls.addClassCleanup(cls.stubs.proc.kill)

    def sagad_run(self, args, env=None, timeout=10):
        """Runs sagad expecting it to exit by itself (bad usage)."""
        d = tmpdir()
        base = ["--listen", "127.0.0.1:0", "--db", os.path.join(d, "s.db")]
        try:
            return run([harness.SAGAD] + base + list(args), env=clean_env(env), timeout=timeout, cwd=d)
        except subprocess.TimeoutExpired:
            self.fail("sagad %s did not exit (it started?)" % " ".join(args))

    def assert_usage_error(self, args, env=None, mention=None):
        rc, out, err = self.sagad_run(args, env)
        self.assertEqual(rc, 2, (args, env, err))
        self.assertTrue(err.strip(), "no message on stderr for %r" % (args,))
        if mention:
            self.assertIn(mention, err, (args, err))
        return err

    def test_help(self):
        rc, out, err = run([harness.SAGAD, "--help"], env=clean_env())
        self.assertEqual(rc, 0, err)
        text = out + err
        for f in FLAGS:
            self.assertIn(f, text)
        for e in ENVS:
            self.assertIn(e, text)

    def test_unknown_flag(self):
        self.assert_usage_error(["--bogus"], mention="bogus")
        self.assert_usage_error(["--bogus=1"], mention="bogus")
        self.assert_usage_error(["stray-argument"], mention="stray-argument")

    def test_missing_value(self):
        for f in ("--db", "--bus", "--step-timeout-ms", "--listen"):
            self.assert_usage_error([f])

    def test_bad_listen(self):
        for v in ("127.0.0.1:70000", "127.0.0.1:abc", "127.0.0.1:-1", "127.0.0.1:", "nohost",
                  ":", "127.0.0.1:65536"):
            self.assert_usage_error(["--listen", v], mention=v if v not in (":",) else None)

    def test_bad_urls(self):
        for f in ("--anonymizer-url", "--ai-model-url"):
            for v in ("ftp://x", "not-a-url", "", "http://", "file:///etc/passwd"):
                self.assert_usage_error([f, v])

    def test_bad_step_timeout(self):
        for v in ("0", "-5", "abc", "1.5", "", "10ms", "99999999999999999999"):
            self.assert_usage_error(["--step-timeout-ms", v])

    def test_bad_retention(self):
        for v in ("-1", "abc", "1.5", "", "2s", "315360001"):
            err = self.assert_usage_error(["--retention", v], mention="retention")
            self.assertIn("0-315360000", err)
        rc, out, err = run([harness.SAGAD, "--db", os.path.join(tmpdir(), "x.db")],
                           env=clean_env({"SAGAD_RETENTION": "soon",
                                          "SAGAD_LISTEN": "127.0.0.1:0"}), timeout=10)
        self.assertEqual(rc, 2, err)
        self.assertIn("SAGAD_RETENTION", err)

    def test_bad_bus(self):
        for v in ("kafka://x:9092", "ftp://x", "nonsense", "", "http://"):
            self.assert_usage_error(["--bus", v])

    def test_bad_env_values(self):
        for k, v in (("SAGAD_STEP_TIMEOUT_MS", "abc"), ("SAGAD_LISTEN", "127.0.0.1:70000"),
                     ("SAGAD_ANONYMIZER_URL", "ftp://x"), ("SAGAD_AI_MODEL_URL", "nope"),
                     ("SAGAD_BUS", "kafka://x")):
            rc, out, err = run([harness.SAGAD, "--db", os.path.join(tmpdir(), "x.db")],
                               env=clean_env({k: v, "SAGAD_LISTEN": "127.0.0.1:0"} if k != "SAGAD_LISTEN"
                                             else {k: v}), timeout=10)
            self.assertEqual(rc, 2, (k, v, err))
            # A clear message: it names the variable or the bad value.
            self.assertTrue(k in err or v.split(":")[0] in err, (k, v, err))

    def test_port_in_use(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(5)
        port = s.getsockname()[1]
        try:
            d = tmpdir()
            rc, out, err = run([harness.SAGAD, "--listen", "127.0.0.1:%d" % port,
                                "--db", os.path.join(d, "s.db")], env=clean_env(), timeout=10)
            self.assertEqual(rc, 2, err)
            self.assertTrue(err.strip())
        finally:
            s.close()

    def test_db_in_missing_directory(self):
        rc, out, err = run([harness.SAGAD, "--listen", "127.0.0.1:0", "--db",
                            "/nonexistent-dir-%d/sub/s.db" % os.getpid()], env=clean_env(), timeout=10)
        self.assertNotEqual(rc, 0)
        self.assertTrue(err.strip())
        self.assertIn("nonexistent-dir", err)

    def test_env_twins(self):
        d = tmpdir()
        db = os.path.join(d, "env.db")
        env = {"SAGAD_LISTEN": "127.0.0.1:0", "SAGAD_DB": db,
               "SAGAD_ANONYMIZER_URL": self.stubs.anonymizer_url,
               "SAGAD_AI_MODEL_URL": self.stubs.ai_model_url,
               "SAGAD_BUS": self.stubs.events_url, "SAGAD_STEP_TIMEOUT_MS": "700"}
        p = harness.Proc([harness.SAGAD], env=clean_env(env), cwd=d, name="sagad")
        try:
            m = p.wait_line(Sagad.LISTEN_RX)
            port = int(m.group(2))
            self.assertTrue(os.path.exists(db), "SAGAD_DB not used")
            harness.wait_until(lambda: harness.http(port, "GET", "/healthz")[0] == 200, 10)
            st, _, b = harness.http(port, "POST", "/saga", {"env": 1})
            self.assertEqual(st, 200, b)
            sid = jbody(b)["id"]
            paths = sorted(r["path"] for r in self.stubs.requests(sid))
            self.assertEqual(paths, ["/anonymize", "/events", "/process"])
            # 700 ms from the environment: a 1.5 s anonymizer times out.
            t0 = time.monotonic()
            st, _, b = harness.http(port, "POST", "/saga",
                                    {"env": 2, "_stub": {"anonymizer": {"delay_ms": 1500}}})
            self.assertEqual(st, 400, b)
            self.assertLess(time.monotonic() - t0, 1.4)
        finally:
            p.kill()

    def test_flag_wins_over_env(self):
        d = tmpdir()
        env = {"SAGAD_LISTEN": "127.0.0.1:1", "SAGAD_DB": os.path.join(d, "env.db"),
               "SAGAD_ANONYMIZER_URL": "http://127.0.0.1:1/nothing",
               "SAGAD_AI_MODEL_URL": "http://127.0.0.1:1/nothing",
               "SAGAD_BUS": "http://127.0.0.1:1/nothing", "SAGAD_STEP_TIMEOUT_MS": "300"}
        db = os.path.join(d, "flag.db")
        p = harness.Proc([harness.SAGAD, "--listen", "127.0.0.1:0", "--db", db,
                          "--anonymizer-url", self.stubs.anonymizer_url,
                          "--ai-model-url", self.stubs.ai_model_url,
                          "--bus", self.stubs.events_url, "--step-timeout-ms", "3000"],
                         env=clean_env(env), cwd=d, name="sagad")
        try:
            m = p.wait_line(Sagad.LISTEN_RX)
            port = int(m.group(2))
            self.assertTrue(os.path.exists(db))
            self.assertFalse(os.path.exists(os.path.join(d, "env.db")))
            harness.wait_until(lambda: harness.http(port, "GET", "/healthz")[0] == 200, 10)
            st, _, b = harness.http(port, "POST", "/saga",
                                    {"flag": 1, "_stub": {"anonymizer": {"delay_ms": 800}}})
            self.assertEqual(st, 200, b)
        finally:
            p.kill()

    def test_log_bus_default(self):
        d = tmpdir()
        p = harness.Proc([harness.SAGAD, "--listen", "127.0.0.1:0", "--db", os.path.join(d, "s.db"),
                          "--anonymizer-url", self.stubs.anonymizer_url,
                          "--ai-model-url", self.stubs.ai_model_url], env=clean_env(), cwd=d,
                         name="sagad")
        try:
            m = p.wait_line(Sagad.LISTEN_RX)
            port = int(m.group(2))
            # Warned at start-up that events go nowhere.
            self.assertRegex(p.output("err", 200).lower(), r"warn.*(nowhere|log)")
            harness.wait_until(lambda: harness.http(port, "GET", "/healthz")[0] == 200, 10)
            st, _, b = harness.http(port, "POST", "/saga", {"logbus": "\u00e9\\u0000"})
            self.assertEqual(st, 200, b)
            sid = jbody(b)["id"]
            # The envelope is printed on stdout.
            m = p.wait_line(re.escape(sid), which="out", timeout=5)
            line = m.string
            start = line.index("{")
            env = json.loads(line[start:])
            self.assertEqual(env["topic"], "tokenizer_event")
            self.assertEqual(env["saga_id"], sid)
            self.assertEqual(env["payload"], {"logbus": "\u00e9\\u0000"})
            self.assertEqual(p.stop(signal.SIGTERM), 0)
        finally:
            p.kill()

    def test_log_line_per_transition(self):
        d = tmpdir()
        p = harness.Proc([harness.SAGAD, "--listen", "127.0.0.1:0", "--db", os.path.join(d, "s.db"),
                          "--anonymizer-url", self.stubs.anonymizer_url,
                          "--ai-model-url", self.stubs.ai_model_url, "--bus", self.stubs.events_url],
                         env=clean_env(), cwd=d, name="sagad")
        try:
            port = int(p.wait_line(Sagad.LISTEN_RX).group(2))
            harness.wait_until(lambda: harness.http(port, "GET", "/healthz")[0] == 200, 10)
            st, _, b = harness.http(port, "POST", "/saga", {"log": 1})
            sid = jbody(b)["id"]
            p.wait_line(re.escape(sid) + r".*COMPLETED\s*$", timeout=5)
            lines = [l for l in p.output("err", 1000).splitlines() if sid in l]
            self.assertGreaterEqual(len(lines), 4, lines)
        finally:
            p.kill()


if __name__ == "__main__":
    harness.main()
