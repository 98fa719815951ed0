"""The dashboard (/ui/) in a real browser: starts sta-stubs and sagad (with
a definitions file of two saga types) through tests/integration/harness.py,
then runs dashboard.test.js, which drives the system Chromium with
playwright-core and checks what the page shows and that its buttons work.

Installs nothing: scripts/deps.sh installs chromium and runs `npm ci` here.
Without them the test fails and says what is missing.

    python3 tests/ui/test_dashboard.py [--sagad PATH] [--stubs PATH]
        [--screenshot PATH]
"""

import os
import shutil
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import harness  # noqa: E402
from harness import Sagad, Stubs  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = None

# The STA saga of design §6 and a one-step type, for the type filter.
DEFINITIONS = {"default": "sta", "sagas": {
    "sta": harness.STA_DEFINITIONS["sagas"]["sta"],
    "echo": {"version": 1, "steps": [
        {"name": "anonymizer", "http": {"url": "${SAGAD_ANONYMIZER_URL}"},
         "output": "anonymized", "label": "Anonymizer"}]}}}

TOKEN = "ui-test-token-7f3a"


def missing_tools():
    out = []
    if not os.access(CHROMIUM, os.X_OK):
        out.append("%s (Debian package chromium; scripts/deps.sh installs it)" % CHROMIUM)
    node = shutil.which("node")
    if not node:
        out.append("node (Debian package nodejs; scripts/deps.sh installs it)")
    if not os.path.isfile(os.path.join(HERE, "node_modules", "playwright-core", "package.json")):
        out.append("tests/ui/node_modules/playwright-core (run `npm ci` in tests/ui; "
                   "scripts/deps.sh does)")
    return out


def supports_api_token():
    st, out, err = harness.run([harness.SAGAD, "--help"])
    return "--api-token" in out + err


class DashboardTest(unittest.TestCase):

    def test_dashboard_in_chromium(self):
        missing = missing_tools()
        if missing:
            self.fail("the browser test needs: " + "; ".join(missing))
        slow = harness.is_sanitized(harness.SAGAD)
        stubs = Stubs("--quiet")
        self.addCleanup(stubs.proc.kill)
        sagad = Sagad(stubs, step_timeout_ms=10000, definitions=DEFINITIONS)
        self.addCleanup(lambda: sagad.proc.kill())
        env = dict(os.environ, SAGAD_URL="http://127.0.0.1:%d" % sagad.port,
                   STUBS_URL=stubs.url(""), CHROMIUM=CHROMIUM,
                   SAGAD_UI_SLOW="3" if slow else "1")
        env.pop("SCREENSHOT", None)
        if SCREENSHOT:
            env["SCREENSHOT"] = SCREENSHOT
        if supports_api_token():
            guarded = Sagad(stubs, step_timeout_ms=10000, definitions=DEFINITIONS,
                            args=("--api-token", TOKEN))
            self.addCleanup(lambda: guarded.proc.kill())
            env["SAGAD_TOKEN_URL"] = "http://127.0.0.1:%d" % guarded.port
            env["SAGAD_TOKEN"] = TOKEN
        else:
            sys.stderr.write("this sagad has no --api-token: the token prompt is not tested\n")
        p = subprocess.run(["node", os.path.join(HERE, "dashboard.test.js")], cwd=HERE, env=env,
                           stdin=subprocess.DEVNULL, timeout=600 if slow else 240,
                           preexec_fn=harness._pdeathsig)
        if p.returncode != 0:
            sys.stderr.write("\n----- sagad stderr (last lines) -----\n%s\n" % sagad.log(40))
        self.assertEqual(p.returncode, 0, "dashboard.test.js failed (its output is above)")


if __name__ == "__main__":
    if "--screenshot" in sys.argv:
        i = sys.argv.index("--screenshot")
        SCREENSHOT = os.path.abspath(sys.argv[i + 1])
        del sys.argv[i:i + 2]
    harness.main()
