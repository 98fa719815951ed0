#!/usr/bin/env python3
"""Helpers of bench/run.sh (python3 standard library only).

  snap OUT LABEL=PID[,PID...] ...   CPU ticks (process and per thread), VmHWM,
                                    the machine's /proc/stat, the time
  drain URL TIMEOUT OUT [PID]       wait until GET URL/sagas?status=IN_PROGRESS&limit=1
                                    lists nothing (sagad; gives up if PID has exited)
  store DB SINCE_US OUT             sagad's store, read-only: sagas created since
                                    SINCE_US by status, first creation, last completion,
                                    peak number in flight
  peerstore DB OUT                  the tuned peer's store: rows by overall_status
  peerdrain DB TIMEOUT OUT          wait until the peer's store has no IN_PROGRESS/PENDING row
  post URL N CONNS OUT              POST N sagas with Prefer: respond-async over CONNS
                                    keep-alive connections (the in-flight cell)
  cell DIR KIND MODE CONNS NAME     combine a cell's files into one JSON line (stdout)
  machine PATH OUT                  nproc, CPU model, kernel, memory, the disk under PATH
"""

import asyncio
import datetime
import json
import os
import sqlite3
import sys
import time
import urllib.parse
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
BODY = b'{"image_id":"img_123","data":"datos de prueba"}'


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)
        f.write("\n")


def read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


# ---------------------------------------------------------------- snap

def stat_ticks(path):
    """utime + stime of a /proc/.../stat file, and the comm."""
    with open(path) as f:
        s = f.read()
    comm = s[s.index("(") + 1:s.rindex(")")]
    fields = s[s.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15.
    return comm, int(fields[11]) + int(fields[12])


def proc_status(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def snap_pid(pid):
    try:
        _, ticks = stat_ticks("/proc/%d/stat" % pid)
    except OSError:
        return None
    tasks = {}
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                comm, t = stat_ticks("/proc/%d/task/%s/stat" % (pid, tid))
                tasks[tid] = [comm, t]
            except OSError:
                pass  # a thread that just ended
    except OSError:
        pass
    return {"pid": pid, "ticks": ticks, "hwm_kb": proc_status(pid, "VmHWM"),
            "rss_kb": proc_status(pid, "VmRSS"), "tasks": tasks}


def machine_cpu():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest is inside user):
    # [total, idle + iowait, user + nice + system, irq + softirq, steal]. Time
    # in interrupts (loopback TCP's softirq work) is in no process's times.
    return [sum(v[:8]), v[3] + v[4], v[0] + v[1] + v[2], v[5] + v[6], v[7]]


def cmd_snap(out, *specs):
    procs = {}
    for spec in specs:
        label, _, pids = spec.partition("=")
        procs[label] = [s for s in (snap_pid(int(p)) for p in pids.split(",") if p) if s]
    write_json(out, {"t": time.time(), "mono": time.monotonic(), "cpu": machine_cpu(),
                     "procs": procs})


# ---------------------------------------------------------------- drain

def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def cmd_drain(url, timeout, out, pid=None):
    t0 = time.monotonic()
    deadline = t0 + float(timeout)
    drained, polls = False, 0
    while time.monotonic() < deadline:
        if pid and not os.path.exists("/proc/%s" % pid):
            break  # sagad is gone: nothing will finish

        polls += 1
        try:
            if not http_get(url.rstrip("/") + "/sagas?status=IN_PROGRESS&limit=1")["sagas"]:
                drained = True
                break
        except Exception:  # noqa: BLE001 - keep polling until the deadline
            pass
        time.sleep(0.05)
    write_json(out, {"drained": drained, "seconds": time.monotonic() - t0, "polls": polls})


# ---------------------------------------------------------------- stores

def ro_connect(db):
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=30)
    c.execute("PRAGMA query_only=1")
    return c


def peak_in_flight(rows):
    """rows: (created_us, end_us or None). Most sagas alive at one time."""
    ev = []
    for c, e in rows:
        ev.append((c, 1))
        if e is not None:
            ev.append((e, -1))
    ev.sort(key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, d in ev:
        cur += d
        best = max(best, cur)
    return best


def cmd_store(db, since_us, out):
    # sagas.status: 0 IN_PROGRESS, 1 COMPLETED, 2 FAILED (include/sg/records.h)
    since = int(since_us)
    c = ro_connect(db)
    by = {0: 0, 1: 0, 2: 0}
    for st, n in c.execute("SELECT status, count(*) FROM sagas WHERE created_us >= ? "
                           "GROUP BY status", (since,)):
        by[st] = n
    first, last_done = c.execute(
        "SELECT (SELECT min(created_us) FROM sagas WHERE created_us >= ?),"
        " (SELECT max(updated_us) FROM sagas WHERE created_us >= ? AND status = 1)",
        (since, since)).fetchone()
    rows = c.execute("SELECT created_us, CASE WHEN status = 0 THEN NULL ELSE updated_us END "
                     "FROM sagas WHERE created_us >= ?", (since,)).fetchall()
    c.close()
    write_json(out, {"in_progress": by[0], "completed": by[1], "failed": by[2],
                     "first_created_us": first, "last_completed_us": last_done,
                     "peak_in_flight": peak_in_flight(rows)})


def iso_us(s):
    """'2026-11-28T10:00:00.000000Z' -> microseconds since the epoch."""
    d = datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")
    return int(d.replace(tzinfo=datetime.timezone.utc).timestamp()) * 1000000 + d.microsecond


def cmd_store_api(url, since_us, out):
    """cmd_store for any store: the same figures read through sagad's own
    listing (GET /sagas, newest first, 1000 a page) instead of the SQLite
    file, for --db postgres:// and redis://."""
    since = int(since_us)
    by = {"IN_PROGRESS": 0, "COMPLETED": 0, "FAILED": 0}
    rows, after = [], None
    base = url.rstrip("/") + "/sagas?limit=1000"
    while True:
        page = http_get(base + ("&after=" + urllib.parse.quote(after) if after else ""), 60)
        older = False
        for r in page["sagas"]:
            c = iso_us(r["created_at"])
            if c < since:
                older = True
                break
            st = r["overall_status"]
            by[st] = by.get(st, 0) + 1
            rows.append((c, None if st == "IN_PROGRESS" else iso_us(r["updated_at"]), st))
        after = page.get("next")
        if older or not after:
            break
    done = [e for _, e, st in rows if st == "COMPLETED"]
    write_json(out, {"in_progress": by["IN_PROGRESS"], "completed": by["COMPLETED"],
                     "failed": by["FAILED"],
                     "first_created_us": min((c for c, _, _ in rows), default=None),
                     "last_completed_us": max(done, default=None),
                     "peak_in_flight": peak_in_flight([(c, e) for c, e, _ in rows])})


def peer_counts(db):
    try:
        c = ro_connect(db)
        rows = dict(c.execute("SELECT overall_status, count(*) FROM saga_requests "
                              "GROUP BY overall_status").fetchall())
        c.close()
        return rows
    except sqlite3.Error as e:
        return {"error": str(e)}


def cmd_peerstore(db, out):
    write_json(out, peer_counts(db))


def cmd_peerdrain(db, timeout, out):
    t0 = time.monotonic()
    deadline = t0 + float(timeout)
    drained = False
    while time.monotonic() < deadline:
        r = peer_counts(db)
        if "error" not in r and not r.get("IN_PROGRESS") and not r.get("PENDING"):
            drained = True
            break
        time.sleep(0.2)
    write_json(out, {"drained": drained, "seconds": time.monotonic() - t0})


# ---------------------------------------------------------------- post

async def post_worker(host, port, req, state, lat, codes, errs):
    reader = writer = None
    while state["left"] > 0:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            state["left"] -= 1
            t = time.perf_counter()
            writer.write(req)
            line = await reader.readline()
            if not line:
                raise ConnectionError("closed")
            status = int(line.split()[1])
            clen, close = 0, False
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b""):
                    break
                k, _, v = h.partition(b":")
                k = k.strip().lower()
                if k == b"content-length":
                    clen = int(v)
                elif k == b"connection" and v.strip().lower() == b"close":
                    close = True
            await reader.readexactly(clen)
            lat.append(time.perf_counter() - t)
            codes[status] = codes.get(status, 0) + 1
            if close:
                writer.close()
                writer = None
        except (OSError, ConnectionError, ValueError, IndexError,
                asyncio.IncompleteReadError) as e:
            errs[type(e).__name__] = errs.get(type(e).__name__, 0) + 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def post_main(url, n, conns):
    u = urllib.parse.urlsplit(url)
    req = (b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
           b"Prefer: respond-async\r\nContent-Length: %d\r\n\r\n%s"
           % (u.path.encode(), u.netloc.encode(), len(BODY), BODY))
    state = {"left": n}
    lat, codes, errs = [], {}, {}
    t0 = time.time()
    await asyncio.gather(*(post_worker(u.hostname, u.port, req, state, lat, codes, errs)
                           for _ in range(conns)))
    return t0, time.time(), lat, codes, errs


def cmd_post(url, n, conns, out):
    t0, t1, lat, codes, errs = asyncio.run(post_main(url, int(n), int(conns)))
    lat.sort()

    def pct(p):
        return lat[min(len(lat) - 1, int(len(lat) * p / 100))] * 1e6 if lat else 0

    ok = sum(v for k, v in codes.items() if 200 <= k < 300)
    write_json(out, {"posted": int(n), "ok": ok, "non2xx": sum(codes.values()) - ok,
                     "codes": {str(k): v for k, v in codes.items()}, "socket_errors": errs,
                     "start": t0, "end": t1, "p50_us": pct(50), "p90_us": pct(90),
                     "p99_us": pct(99)})


# ---------------------------------------------------------------- cell

def wrk_result(path):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("RESULT "):
                    return json.loads(line[7:])
    except OSError:
        pass
    return None


def window(a, b):
    """CPU of each labelled process between two snaps."""
    wall = b["mono"] - a["mono"]
    d = [y - x for x, y in zip(a["cpu"], b["cpu"])]
    ncpu = os.cpu_count() or 1
    # Each a share of all CPUs, times the CPUs: cores.
    cores = [x / d[0] * ncpu if d[0] > 0 else None for x in d]
    res = {"wall": wall, "idle": d[1] / d[0] if d[0] > 0 else None, "procs": {},
           "idle_cores": cores[1], "task_cores": cores[2], "irq_cores": cores[3],
           "steal_cores": cores[4]}
    for label, plist in b["procs"].items():
        before = {p["pid"]: p for p in a["procs"].get(label, [])}
        ticks, threads, hwm = 0, {}, 0
        for p in plist:
            q = before.get(p["pid"])
            if q is None:
                continue
            ticks += p["ticks"] - q["ticks"]
            hwm = max(hwm, p["hwm_kb"])
            for tid, (comm, t) in p["tasks"].items():
                t0 = q["tasks"].get(tid, [comm, 0])[1]
                cat = thread_category(p["pid"], int(tid), comm)
                threads[cat] = threads.get(cat, 0) + t - t0
        res["procs"][label] = {"cpu_s": ticks / CLK_TCK, "hwm_kb": hwm,
                               "threads_s": {k: v / CLK_TCK for k, v in threads.items()}}
    return res


def thread_category(pid, tid, comm):
    if comm.startswith("MHD"):
        return "api"
    if comm == "sagad-writer":
        return "writer"
    if tid == pid:
        return "loop"  # sagad's main thread runs the libuv loop
    return "other"


def cmd_cell(d, kind, mode, conns, name):
    j = lambda f: read_json(os.path.join(d, f))  # noqa: E731
    rec = {"name": name, "kind": kind, "mode": mode, "conns": int(conns)}
    s0, s1, s2 = j("snap0.json"), j("snap1.json"), j("snap2.json")
    end = s2 if (mode == "async" or kind == "inflight") and s2 else s1
    w = window(s0, end) if s0 and end else None
    if kind == "inflight":
        p = j("post.json") or {}
        rec.update(answers=p.get("ok"), non2xx=p.get("non2xx"), p50_us=p.get("p50_us"),
                   p90_us=p.get("p90_us"), p99_us=p.get("p99_us"),
                   socket_errors=sum((p.get("socket_errors") or {}).values()),
                   errors={"socket": p.get("socket_errors") or {}, "non2xx": p.get("non2xx")},
                   post_s=(p["end"] - p["start"]) if p else None, posted=p.get("posted"))
    else:
        r = wrk_result(os.path.join(d, "wrk.out"))
        if r is None:
            rec["error"] = "no RESULT line from wrk (see %s/wrk.out)" % d
            return rec
        dur = r["duration_us"] / 1e6
        rec.update(answers=r["ok"], non2xx=r["non2xx"], p50_us=r["p50_us"],
                   p90_us=r["p90_us"], p99_us=r["p99_us"], requests=r["requests"],
                   duration_s=dur, answer_rate=r["ok"] / dur if dur else 0,
                   errors={k: r[k] for k in ("connect", "read", "write", "timeout")})
        rec["errors"]["non2xx"] = r["non2xx"]
    if w:
        rec["wall_s"], rec["idle"] = w["wall"], w["idle"]
        for f in ("wrk.out.time", "post.json.time"):
            # The load generator's CPU (wrk, or the in-flight cell's poster),
            # inside the window (which also holds the drain for async).
            try:
                with open(os.path.join(d, f)) as fh:
                    u, s = fh.read().split()[:2]
                rec["wrk_cores"] = (float(u) + float(s)) / w["wall"]
            except (OSError, ValueError):
                pass
        for k in ("idle_cores", "irq_cores", "steal_cores"):
            rec[k] = w[k]
        ours = sum(p["cpu_s"] for p in w["procs"].values()) / w["wall"] if w["wall"] else 0
        if w["task_cores"] is not None:
            # User and system time of processes other than ours: other load.
            rec["other_cores"] = max(0.0, w["task_cores"] - ours - rec.get("wrk_cores", 0))
        st = w["procs"].get("stubs")
        if st and w["wall"] > 0:
            rec["stubs_cores"] = st["cpu_s"] / w["wall"]
    if kind == "stubs":
        rec["rate"] = rec.get("answer_rate")
        return rec
    srv = w["procs"].get("server") if w else None
    if kind in ("sagad", "inflight"):
        st = j("store.json") or {}
        dr = j("drain.json") or {}
        rec["store"] = st
        rec["drained"] = dr.get("drained")
        done = st.get("completed") or 0
        first, last = st.get("first_created_us"), st.get("last_completed_us")
        span = (last - first) / 1e6 if first and last and last > first else None
        rec["e2e_s"] = span
        if kind == "inflight" or mode == "async":
            rec["rate"] = done / span if span else 0
            rec["sagas_for_cpu"] = done
        else:
            rec["rate"] = rec["answer_rate"]
            rec["sagas_for_cpu"] = rec["answers"]
        rec["verified"] = done
    else:  # peer
        a, b = j("peerstore0.json") or {}, j("peerstore1.json") or {}
        rec["store"] = b
        rec["verified"] = (b.get("COMPLETED", 0) - a.get("COMPLETED", 0)
                           if "error" not in b else None)
        rec["rate"] = rec["answer_rate"]
        rec["sagas_for_cpu"] = rec["answers"]
        rec["drained"] = (j("drain.json") or {}).get("drained")
    if srv:
        n = rec["sagas_for_cpu"] or 0
        rec["cpu_ms_per_saga"] = srv["cpu_s"] * 1000 / n if n else None
        rec["rss_kb"] = srv["hwm_kb"]
        if kind != "peer" and w["wall"] > 0:
            rec["thread_cores"] = {k: v / w["wall"] for k, v in srv["threads_s"].items()}
            # Threads that ended inside the window (e.g. resolver threads)
            # are in the process total only.
            rec["thread_cores"]["other"] = (rec["thread_cores"].get("other", 0) +
                                            (srv["cpu_s"] - sum(srv["threads_s"].values()))
                                            / w["wall"])
    return rec


# ---------------------------------------------------------------- machine

def cmd_machine(path, out):
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    # The mount holding PATH: longest mount point that prefixes it.
    path = os.path.realpath(path)
    best = ("", "?", "?")
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, mnt, fstype = line.split()[:3]
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
                best = (mnt, dev, fstype)
    mnt, dev, fstype = best
    disk = "%s on %s" % (fstype, dev)
    base = os.path.basename(dev)
    blk = base.rstrip("0123456789") if not base.startswith("nvme") else base.split("p")[0]
    rot = read_first("/sys/block/%s/queue/rotational" % blk)
    if rot is not None:
        kind = "virtio" if blk.startswith("vd") else ("NVMe" if blk.startswith("nvme") else "")
        disk += " (%s%s)" % (kind + ", " if kind else "",
                             "rotational" if rot == "1" else "non-rotational")
    u = os.uname()
    write_json(out, {"nproc": os.cpu_count(), "cpu": model, "kernel": u.release,
                     "mem_gb": round(mem_kb / 1048576, 1), "disk": disk, "fstype": fstype,
                     "hostname": u.nodename})


def read_first(p):
    try:
        with open(p) as f:
            return f.read().strip()
    except OSError:
        return None


def main(argv):
    cmds = {"snap": cmd_snap, "drain": cmd_drain, "store": cmd_store, "store-api": cmd_store_api,
            "peerstore": cmd_peerstore, "peerdrain": cmd_peerdrain, "post": cmd_post,
            "machine": cmd_machine}
    if len(argv) < 2:
        sys.exit(__doc__)
    if argv[1] == "cell":
        print(json.dumps(cmd_cell(*argv[2:])))
    elif argv[1] in cmds:
        cmds[argv[1]](*argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
