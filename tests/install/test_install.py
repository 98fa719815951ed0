#!/usr/bin/env python3
"""make install's result, checked where it lands (issue 11, part 6).

Installs the build into a temporary prefix (and once more through DESTDIR
as a packager would), then checks: the files are where the FHS wants them;
the systemd unit names the installed binary, runs sagad on
/var/lib/sagad/saga.db with the sandboxing the README promises, passes
`systemd-analyze verify` without a single warning and scores as well
sandboxed by `systemd-analyze security`; the man page renders without
warnings and documents exactly the options `sagad --help` lists; and the
installed sagad serves on its own (its pages are inside the binary)."""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

BUILD = None


def run(cmd, env=None, check=True):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd}: status {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class InstallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sagad-install-")
        cls.prefix = os.path.join(cls.tmp, "usr")
        run(["cmake", "--install", BUILD, "--prefix", cls.prefix])
        cls.unit = os.path.join(cls.prefix, "lib/systemd/system/sagad.service")
        cls.man = os.path.join(cls.prefix, "share/man/man8/sagad.8")
        cls.sagad = os.path.join(cls.prefix, "sbin/sagad")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def unit_settings(self, path=None):
        out = {}
        with open(path or self.unit) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith(("#", "[")) and "=" in line:
                    k, v = line.split("=", 1)
                    out.setdefault(k, []).append(v)
        return out

    def test_files_in_place(self):
        for rel in ("sbin/sagad", "bin/sta-stubs"):
            p = os.path.join(self.prefix, rel)
            self.assertTrue(os.access(p, os.X_OK), p)
        self.assertTrue(os.path.isfile(self.man))
        self.assertTrue(os.path.isfile(self.unit))

    def test_destdir_stages_under_the_final_prefix(self):
        stage = os.path.join(self.tmp, "stage")
        run(["cmake", "--install", BUILD, "--prefix", "/usr"], env={"DESTDIR": stage})
        unit = os.path.join(stage, "usr/lib/systemd/system/sagad.service")
        self.assertEqual(self.unit_settings(unit)["ExecStart"], ["/usr/sbin/sagad"])
        self.assertTrue(os.access(os.path.join(stage, "usr/sbin/sagad"), os.X_OK))
        self.assertTrue(os.path.isfile(os.path.join(stage, "usr/share/man/man8/sagad.8")))

    def test_unit_runs_the_installed_sagad_sandboxed(self):
        s = self.unit_settings()
        self.assertEqual(s["ExecStart"], [self.sagad])
        self.assertIn("SAGAD_DB=/var/lib/sagad/saga.db", s["Environment"])
        for key, want in (("DynamicUser", "yes"), ("StateDirectory", "sagad"),
                          ("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"),
                          ("ProtectHome", "yes"), ("PrivateTmp", "yes")):
            self.assertEqual(s.get(key), [want], key)

    def test_systemd_analyze_verify_is_clean(self):
        p = run(["systemd-analyze", "verify", self.unit],
                env={"MANPATH": os.path.join(self.prefix, "share/man")}, check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr.strip(), "", "systemd-analyze verify warned")

    def test_verify_catches_a_broken_unit(self):
        """The check above can fail: a misspelt key is reported."""
        bad = os.path.join(self.tmp, "bad", "sagad.service")
        os.makedirs(os.path.dirname(bad), exist_ok=True)
        with open(self.unit) as f, open(bad, "w") as g:
            g.write(f.read().replace("DynamicUser=yes", "DynamicUsr=yes"))
        p = run(["systemd-analyze", "verify", bad],
                env={"MANPATH": os.path.join(self.prefix, "share/man")}, check=False)
        self.assertIn("DynamicUsr", p.stderr)

    def test_sandbox_exposure_is_low(self):
        # 0 (locked down) .. 100 (exposed); 2.0 and under is systemd's "OK".
        p = run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", self.unit],
                check=False)
        self.assertEqual(p.returncode, 0, p.stdout[-2000:] + p.stderr)

    def test_man_page_renders_and_lists_every_option(self):
        p = run(["groff", "-man", "-ww", "-z", self.man], check=False)
        self.assertEqual((p.returncode, p.stderr), (0, ""))
        help_text = run([self.sagad, "--help"]).stdout
        flags = set(re.findall(r"^\s+(--[a-z][a-z-]*)", help_text, re.M))
        with open(self.man) as f:
            man = f.read().replace("\\-", "-")
        documented = set(re.findall(r"^\.BI? (--[a-z][a-z-]*)", man, re.M))
        self.assertTrue(flags)
        self.assertEqual(flags, documented)

    def test_installed_sagad_serves_alone(self):
        state = os.path.join(self.tmp, "state")
        os.makedirs(state)
        port = free_port()
        env = dict(os.environ, SAGAD_DB=os.path.join(state, "saga.db"),
                   SAGAD_LISTEN=f"127.0.0.1:{port}")
        proc = subprocess.Popen([self.sagad], cwd=state, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 20
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                        self.assertEqual(r.status, 200)
                        break
                except OSError:
                    if time.time() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.05)
            for path in ("/ui/", "/docs", "/openapi.json"):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    self.assertEqual(r.status, 200, path)
                    self.assertTrue(r.read())
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        self.assertEqual(proc.returncode, 0)
        self.assertTrue(os.path.isfile(os.path.join(state, "saga.db")))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    args, rest = ap.parse_known_args()
    BUILD = args.build
    unittest.main(argv=[sys.argv[0]] + rest)
