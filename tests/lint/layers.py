#!/usr/bin/env python3
"""Checks that src/ layers strictly: cli -> api -> engine -> {bus, http, store}
-> util (bus may use http), with no #include that runs back up, no private
header of another component, and no source file over the size limit."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Which component each public header belongs to.
PUBLIC = {
    "alloc.h": "util", "buf.h": "util", "json.h": "util", "records.h": "util",
    "status.h": "util", "util.h": "util", "crash.h": "util", "trace.h": "util",
    "metrics.h": "util",
    "store.h": "store", "http_client.h": "http", "bus.h": "bus",
    "engine.h": "engine", "def.h": "engine", "outcome.h": "engine",
    "api.h": "api", "auth.h": "api", "config.h": "cli",
}
# What each component may include besides itself.
ALLOWED = {
    "util": set(),
    "store": {"util"},
    "http": {"util"},
    "bus": {"http", "util"},
    "engine": {"bus", "http", "store", "util"},
    "api": {"engine", "bus", "http", "store", "util"},
    "cli": {"api", "engine", "bus", "http", "store", "util"},
    "stubs": {"util"},
}
MAX_LINES = 520
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def component_of_header(path):
    if path.startswith("sg/"):
        return PUBLIC.get(path[3:], "?")
    if "/" in path:
        return path.split("/")[0]
    return None  # a header beside the including file


def main():
    errors = []
    for comp in sorted(os.listdir(os.path.join(ROOT, "src"))):
        folder = os.path.join(ROOT, "src", comp)
        if comp not in ALLOWED:
            errors.append(f"src/{comp}: unknown component (add it to tests/lint/layers.py)")
            continue
        for name in sorted(os.listdir(folder)):
            if not name.endswith((".c", ".h")):
                continue
            rel = f"src/{comp}/{name}"
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                lines = f.read().splitlines()
            if len(lines) > MAX_LINES:
                errors.append(f"{rel}: {len(lines)} lines (more than {MAX_LINES}: split it)")
            if not lines or not lines[0].startswith("/*"):
                errors.append(f"{rel}: does not open with a comment saying what it owns")
            for no, line in enumerate(lines, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                target = component_of_header(m.group(1))
                if target is None or target == comp:
                    continue
                if not m.group(1).startswith("sg/"):
                    errors.append(f"{rel}:{no}: includes {m.group(1)}, private to src/{target}")
                elif target not in ALLOWED[comp]:
                    errors.append(f"{rel}:{no}: {comp} includes {m.group(1)} ({target}): "
                                  f"the layers run cli -> api -> engine -> bus/http/store -> util")
    for e in errors:
        print(e)
    print(f"{len(errors)} layering problem(s)" if errors else "layers ok")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
