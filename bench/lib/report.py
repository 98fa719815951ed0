#!/usr/bin/env python3
"""Markdown report of bench/run.sh: report.py META.json RESULTS.jsonl [PROFILE.md]

META: what run.sh knows (flags, commit, machine); RESULTS: one JSON line per
cell from `benchlib.py cell`. Prints the report on stdout."""

import json
import sys


def num(x, nd=0):
    if x is None:
        return "–"
    return "{:,.{}f}".format(x, nd)


def ms(us):
    if us is None:
        return "–"
    v = us / 1000
    return "%.2f ms" % v if v < 10 else "%.1f ms" % v if v < 100 else "%.0f ms" % v


def errors(r):
    e = r.get("errors") or {}
    if "socket" in e:  # the in-flight cell's poster
        parts = ["%s %d" % (k, v) for k, v in e["socket"].items() if v]
        if e.get("non2xx"):
            parts.append("non-2xx %d" % e["non2xx"])
    else:
        parts = ["%s %d" % (k, e[k]) for k in ("connect", "read", "write", "timeout") if e.get(k)]
        if e.get("non2xx"):
            parts.append("non-2xx %d" % e["non2xx"])
    return ", ".join(parts) if parts else "0"


def total_errors(r):
    e = r.get("errors") or {}
    if "socket" in e:
        return sum(e["socket"].values()) + (e.get("non2xx") or 0)
    return sum(v or 0 for v in e.values())


def cores(r):
    t = r.get("thread_cores")
    if not t:
        return "–"
    return " / ".join("%.2f" % t.get(k, 0) for k in ("loop", "writer", "api", "other"))


def verified(r):
    st = r.get("store") or {}
    if r["kind"] == "stubs":
        return "–"
    if r["kind"] == "peer":
        v = r.get("verified")
        if v is None:
            return "? (%s)" % st.get("error", "no store")
        left = st.get("IN_PROGRESS", 0) + st.get("PENDING", 0)
        ok = v >= (r.get("answers") or 0) and not st.get("FAILED") and not left
        extra = []
        if st.get("FAILED"):
            extra.append("FAILED %d" % st["FAILED"])
        if left:
            extra.append("unfinished %d" % left)
        return "%s %s%s" % (num(v), "✓" if ok else "✗",
                            " (%s)" % ", ".join(extra) if extra else "")
    done = st.get("completed", 0)
    ok = (done >= (r.get("answers") or 0) and not st.get("failed")
          and not st.get("in_progress") and r.get("drained"))
    extra = []
    if st.get("failed"):
        extra.append("FAILED %d" % st["failed"])
    if st.get("in_progress"):
        extra.append("IN_PROGRESS %d" % st["in_progress"])
    if not r.get("drained"):
        extra.append("not drained")
    return "%s %s%s" % (num(done), "✓" if ok else "✗",
                        " (%s)" % ", ".join(extra) if extra else "")


def label(r, meta):
    k = r["kind"]
    if k == "stubs":
        return "stubs alone (%s `/anonymize`), requests/s" % meta["stubs"]
    if k == "peer":
        return "%s Python peer, sync" % r["name"]
    if k == "inflight":
        return "%s in flight (AI model %s ms), async" % (num(r.get("posted")),
                                                           meta.get("inflight_delay_ms", "?"))
    name = "sagad" if r["name"].startswith("sagad") else r["name"]
    if r["name"].startswith("nats"):
        name = "sagad, NATS JetStream bus"
    if r["name"] == "tmpfs":
        name = "sagad, database on tmpfs (fsync free: a diagnostic, not a target)"
    return "%s, %s" % (name, "sync" if r["mode"] == "sync" else "async (completed end to end)")


def machine(r):
    v = [r.get(k) for k in ("idle_cores", "irq_cores", "steal_cores", "other_cores")]
    return "–" if v[0] is None else " / ".join("%.2f" % (x or 0) for x in v)


def row(r, meta):
    if r.get("error"):
        return "| %s | %d | %s |" % (label(r, meta), r["conns"], r["error"]) + " |" * 12
    rss = r.get("rss_kb")
    lat = (lambda k: ms(r.get(k))) if r.get("answers") else (lambda k: "–")
    return "| " + " | ".join([
        label(r, meta), str(r["conns"]), num(r.get("rate")),
        lat("p50_us"), lat("p90_us"), lat("p99_us"), errors(r),
        "–" if r.get("cpu_ms_per_saga") is None else "%.3f" % r["cpu_ms_per_saga"],
        cores(r),
        "–" if r.get("stubs_cores") is None else "%.2f" % r["stubs_cores"],
        "–" if r.get("wrk_cores") is None else "%.2f" % r["wrk_cores"],
        machine(r),
        "–" if not rss else "%.1f MB" % (rss / 1024),
        num(r.get("answers")), verified(r)]) + " |"


def find(results, kind, mode, conns):
    for r in results:
        if (r["kind"] == kind and r["mode"] == mode and r["conns"] == conns and not r.get("error")
                and (kind != "sagad" or r["name"] == "sagad")):
            return r
    return None


def main():
    meta = json.load(open(sys.argv[1]))
    results = [json.loads(x) for x in open(sys.argv[2]) if x.strip()]
    extra = [open(p).read() for p in sys.argv[3:]]  # sections: the disk, the profile
    m = meta["machine"]
    out = []
    w = out.append
    w("# sagad benchmark, %s" % meta["date"])
    w("")
    w("- machine: %d CPUs, %s, %s GB RAM, kernel %s; database on %s"
      % (m["nproc"], m["cpu"], m["mem_gb"], m["kernel"], m["disk"]))
    if m.get("fstype") == "tmpfs":
        w("- **warning: the databases are on tmpfs: fsync costs nothing there, so the figures "
          "overstate what a disk allows (set BENCH_TMPDIR to a directory on a disk)**")
    w("- commit %s; build `%s` (%s); wrk %s" % (meta["commit"], meta["build"],
                                              meta["build_type"], meta["wrk"]))
    w("- flags: %s" % meta["flags"])
    w("- sagad: `%s`, a fresh sagad and database for every row (one warm-up saga "
      "first, not counted)" % meta["sagad_cmd"])
    w("- stubs: %s" % meta["stubs_desc"])
    w("- store: %s" % meta.get("store_desc", "SQLite"))
    if meta.get("peer_desc"):
        w("- peer: %s" % meta["peer_desc"])
    w("")
    w("| run | conns | sagas/s | p50 | p90 | p99 | errors | CPU ms/saga "
      "| cores: loop / writer / api / other | stubs cores | wrk cores "
      "| machine cores: idle / irq / steal / others | peak RSS | 2xx answers "
      "| COMPLETED in store |")
    w("|---|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---|")
    for r in results:
        w(row(r, meta))
    w("")

    # Notes on the async and in-flight rows.
    notes = []
    for r in results:
        if r.get("error"):
            continue
        if r["kind"] == "sagad" and r["mode"] == "async":
            notes.append("async c=%d: 202 answers at %s/s during the %.0f-s wrk run; %s sagas "
                         "completed %.2f s from the first request to the last completion"
                         % (r["conns"], num(r.get("answer_rate")), r.get("duration_s") or 0,
                            num(r.get("verified")), r.get("e2e_s") or 0))
        if r["kind"] == "inflight":
            st = r.get("store") or {}
            notes.append("in flight (sta-stubs with `--ai-model delay=%s` on a port of its own, "
                         "all three services): %s sagas posted in %.1f s over %d connections; "
                         "the last completed %.1f s after the first was posted; at most %s in flight "
                         "at once (from the store's created/updated times); peak RSS %s "
                         "(target < 100 MB)"
                         % (meta.get("inflight_delay_ms", "?"), num(r.get("posted")),
                            r.get("post_s") or 0, r["conns"],
                            r.get("e2e_s") or 0, num(st.get("peak_in_flight")),
                            "%.1f MB" % (r["rss_kb"] / 1024) if r.get("rss_kb") else "–"))
    busy = [r for r in results
            if (r.get("other_cores") or 0) + (r.get("steal_cores") or 0) > 0.2]
    if busy:
        names = ["%s c=%d" % (r["name"] + (" " + r["mode"] if r["kind"] == "sagad" else ""),
                              r["conns"]) for r in busy]
        notes.append("**other processes, or the hypervisor (steal), took up to %.1f cores during "
                     "%s: this machine was not idle, the figures are disturbed**"
                     % (max((r.get("other_cores") or 0) + (r.get("steal_cores") or 0)
                            for r in busy),
                        ", ".join(names) if len(names) <= 4
                        else "%d of the %d rows" % (len(names), len(results))))
    if notes:
        w("Notes:")
        w("")
        for n in notes:
            w("- " + n)
        w("")

    # Ratios.
    rat = []
    for r in results:
        if r["kind"] != "peer" or r.get("error"):
            continue
        s = find(results, "sagad", "sync", r["conns"])
        if s and r.get("rate"):
            cpu = ""
            if s.get("cpu_ms_per_saga") and r.get("cpu_ms_per_saga"):
                cpu = ", %.1f× less CPU per saga" % (r["cpu_ms_per_saga"] / s["cpu_ms_per_saga"])
            rat.append("sagad / %s peer at c=%d (sync): **%.1f×** the sagas/s%s"
                       % (r["name"], r["conns"], s["rate"] / r["rate"], cpu))
    for mode in ("sync", "async"):
        parts = []
        for r in results:
            if r["kind"] != "stubs" or r.get("error") or not r.get("rate"):
                continue
            s = find(results, "sagad", mode, r["conns"])
            if s and s.get("rate") is not None:
                parts.append("c=%d %.1f%% (stub requests %.0f%%)"
                             % (r["conns"], 100 * s["rate"] / r["rate"],
                                300 * s["rate"] / r["rate"]))
        if parts:
            rat.append("sagad %s sagas/s as a share of the stubs-alone ceiling (a saga makes "
                       "3 stub requests): %s" % (mode, "; ".join(parts)))
    if rat:
        w("Ratios:")
        w("")
        for x in rat:
            w("- " + x)
        w("")

    # The targets of issue 9.
    tg = []

    def target(text, ok, got):
        tg.append("%s %s: %s" % ("✓" if ok else "✗", text, got))

    s64 = find(results, "sagad", "sync", 64)
    if s64:
        target("≥ 10,000 sagas/s at 64 connections (sync)", s64["rate"] >= 10000, num(s64["rate"]))
        hi = [find(results, "sagad", "sync", c) for c in (256, 1024)]
        hi = [h for h in hi if h]
        if hi:
            target("no lower at 256 and 1,024", all(h["rate"] >= s64["rate"] for h in hi),
                   ", ".join("c=%d %s" % (h["conns"], num(h["rate"])) for h in hi))
        target("p99 ≤ 10 ms at 64", (s64.get("p99_us") or 1e99) <= 10000, ms(s64.get("p99_us")))
        c = s64.get("cpu_ms_per_saga")
        target("sagad CPU ≤ 0.1 ms per saga (c=64)", c is not None and c <= 0.1,
               "–" if c is None else "%.3f ms" % c)
    s1 = find(results, "sagad", "sync", 1)
    if s1:
        target("p50 ≤ 0.5 ms at one connection", (s1.get("p50_us") or 1e99) <= 500,
               ms(s1.get("p50_us")))
    a = [r for r in results if r["kind"] == "sagad" and r["mode"] == "async" and r.get("rate")]
    if a:
        best = max(a, key=lambda r: r["rate"])
        target("async ≥ 10,000 sagas/s completed end to end", best["rate"] >= 10000,
               "best %s at c=%d" % (num(best["rate"]), best["conns"]))
    inf = [r for r in results if r["kind"] == "inflight" and not r.get("error")]
    if inf:
        r = inf[0]
        st = r.get("store") or {}
        ok = (st.get("completed") == r.get("posted") and (r.get("rss_kb") or 1e99) < 100 * 1024)
        target("%s in flight: all complete, peak RSS < 100 MB" % num(r.get("posted")), ok,
               "%s of %s COMPLETED, %s" % (num(st.get("completed")), num(r.get("posted")),
                                          "%.1f MB" % (r["rss_kb"] / 1024)
                                          if r.get("rss_kb") else "RSS ?"))
    sag = [r for r in results if r["kind"] in ("sagad", "inflight")]
    if sag:
        bad = [r for r in sag if r.get("error") or total_errors(r) or "✗" in verified(r)]
        target("zero errors at every level, every answer COMPLETED in the store", not bad,
               "all clean" if not bad else ", ".join("%s c=%d" % (r["mode"], r["conns"])
                                                     for r in bad))
    if tg:
        w("Targets (issue 9):")
        w("")
        for x in tg:
            w("- " + x)
        w("")

    w("Columns: *sagas/s* sync = 2xx answers / wrk's duration; async = sagas COMPLETED in the "
      "store / (last completion − first creation), both from the store; stubs alone = "
      "2xx requests/s. *p50/p90/p99*: wrk's latency of the answer (for async, of the 202). "
      "*errors*: wrk's connect/read/write/timeout errors and non-2xx answers (counted in the "
      "Lua response callback). *CPU ms/saga*: sagad's utime+stime (/proc/PID/stat) over the "
      "wrk run (async: until the last saga completed) / sagas. *cores*: CPU seconds per "
      "second of each thread class (/proc/PID/task/*/stat: loop = main thread, writer = "
      "`sagad-writer`, api = `MHD-*`). *stubs cores*: the stubs' processes over the same "
      "window. *wrk cores*: the load generator's user+system time (bash's `time`; wrk, or "
      "the in-flight poster) / the window. *machine cores* (/proc/stat over the window): "
      "idle (+iowait); irq (+softirq: mostly the loopback TCP of this benchmark, which no "
      "process is charged for); steal (taken by the hypervisor); others: user+system time of "
      "processes other than sagad (or the peer), the stubs and wrk. *peak RSS*: "
      "VmHWM. *COMPLETED in store*: sagas with status COMPLETED created since the run "
      "started, read-only from the SQLite file (with STORE=postgres or redis: through sagad's GET /sagas) once no saga is IN_PROGRESS; ✓ when it is "
      "≥ the 2xx answers and none FAILED or unfinished.")
    for section in extra:
        if section.strip():
            w("")
            w(section.rstrip())
    print("\n".join(out))


if __name__ == "__main__":
    main()
