/* store-bench: what the store's writer costs per saga, without HTTP.
 *
 * Runs N sagas of the STA shape, C of them in flight, each making the four
 * writes the engine makes for a saga that succeeds (insert with step 1
 * RUNNING; step 1 done + step 2 RUNNING + its event; step 2 done + event
 * delivered + step 3 RUNNING; step 3 done + saga COMPLETED). Ids are made
 * as the engine makes them.
 *   default   through the real store (its writer thread, group commit):
 *             each saga submits its next write as soon as the previous
 *             one commits; batches are whatever the writer finds queued.
 *   --batch   through the backend alone, in lockstep: every transaction
 *             holds the next write of each saga in flight, their phases
 *             spread evenly, so every batch is alike and the figures do
 *             not depend on thread scheduling (under valgrind too). Also
 *             prints the wall time of the transactions (p50, p99).
 *
 * It counts, through a VFS shim registered as the default VFS and a
 * statement trace on every connection (sqlite3_auto_extension), so it
 * measures any store build the same way: statements run, WAL writes and
 * bytes, database writes and bytes (the checkpoints), reads, fsyncs;
 * transactions; CPU of the writer (default: the process's minus the loop
 * thread's; --batch: the one thread's, building the writes included), per
 * saga. STORE_BENCH_PAGES=1 also counts the WAL frames of each B-tree
 * (--batch). The shim initialises SQLite before the store does, which
 * defeats the store's sqlite3_config (MEMSTATUS off): STORE_BENCH_NOSHIM=1
 * leaves it out (no counts then) to measure the store as sagad runs it.
 *
 *   store-bench [--sagas N] [--inflight C] [--db PATH] [--normal] [--v4]
 *               [--batch] [--sql SQL]
 *
 * --normal: synchronous=NORMAL; --v4 makes random (version 4) ids instead
 * of time-ordered ones; --sql runs SQL on the database once the store has
 * opened it (experiments: "DROP INDEX sagas_type"). */
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "sg/records.h"
#include "store/store_int.h"
#include "sg/store.h"
#include "sg/util.h"

/* ---- counting VFS ---------------------------------------------------------- */

enum { F_DB, F_WAL, F_OTHER, F_N };
static const char *const fnames[F_N] = {"db", "wal", "other"};

static struct {
    _Atomic uint64_t writes[F_N], wbytes[F_N], reads[F_N], rbytes[F_N], syncs[F_N];
    _Atomic uint64_t stmts;
} cnt;

static sqlite3_vfs *base_vfs;
static sqlite3_vfs shim_vfs;

typedef struct shim_file {
    sqlite3_file base;  /* our methods */
    sqlite3_file *real; /* the real file, allocated after us */
    int kind;
} shim_file;

static int sh_close(sqlite3_file *f)
{
    shim_file *s = (shim_file *)f;
    return s->real->pMethods ? s->real->pMethods->xClose(s->real) : SQLITE_OK;
}
static int sh_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
    shim_file *s = (shim_file *)f;
    cnt.reads[s->kind]++;
    cnt.rbytes[s->kind] += (uint64_t)n;
    return s->real->pMethods->xRead(s->real, p, n, off);
}
/* With STORE_BENCH_PAGES set: WAL frames written per database page. */
#define MAX_PGNO 1000000
static _Atomic uint32_t *frames_of;

static int sh_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
    shim_file *s = (shim_file *)f;
    if (frames_of && s->kind == F_WAL && n == 24) {
        const unsigned char *h = p;
        uint32_t pg = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
        if (pg < MAX_PGNO) frames_of[pg]++;
    }
    cnt.writes[s->kind]++;
    cnt.wbytes[s->kind] += (uint64_t)n;
    return s->real->pMethods->xWrite(s->real, p, n, off);
}
static int sh_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    shim_file *s = (shim_file *)f;
    return s->real->pMethods->xTruncate(s->real, size);
}
static int sh_sync(sqlite3_file *f, int flags)
{
    shim_file *s = (shim_file *)f;
    cnt.syncs[s->kind]++;
    return s->real->pMethods->xSync(s->real, flags);
}
static int sh_size(sqlite3_file *f, sqlite3_int64 *size)
{
    shim_file *s = (shim_file *)f;
    return s->real->pMethods->xFileSize(s->real, size);
}
static int sh_lock(sqlite3_file *f, int l)
{
    shim_file *s = (shim_file *)f;
    return s->real->pMethods->xLock(s->real, l);
}
static int sh_unlock(sqlite3_file *f, int l)
{
    shim_file *s = (shim_file *)f;
    return s->real->pMethods->xUnlock(s->real, l);
}
static int sh_check(sqlite3_file *f, int *out)
{
    shim_file *s = (shim_file *)f;
    return s->real->pMethods->xCheckReservedLock(s->real, out);
}
static int sh_fcntl(sqlite3_file *f, int op, void *arg)
{
    shim_file *s = (shim_file *)f;
    return s->real->pMethods->xFileControl(s->real, op, arg);
}
static int sh_sector(sqlite3_file *f)
{
    shim_file *s = (shim_file *)f;
    return s->real->pMethods->xSectorSize(s->real);
}
static int sh_devchar(sqlite3_file *f)
{
    shim_file *s = (shim_file *)f;
    return s->real->pMethods->xDeviceCharacteristics(s->real);
}
static int sh_shmmap(sqlite3_file *f, int pg, int sz, int ext, void volatile **pp)
{
    shim_file *s = (shim_file *)f;
    return s->real->pMethods->xShmMap(s->real, pg, sz, ext, pp);
}
static int sh_shmlock(sqlite3_file *f, int off, int n, int flags)
{
    shim_file *s = (shim_file *)f;
    return s->real->pMethods->xShmLock(s->real, off, n, flags);
}
static void sh_shmbarrier(sqlite3_file *f)
{
    shim_file *s = (shim_file *)f;
    s->real->pMethods->xShmBarrier(s->real);
}
static int sh_shmunmap(sqlite3_file *f, int del)
{
    shim_file *s = (shim_file *)f;
    return s->real->pMethods->xShmUnmap(s->real, del);
}
static int sh_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    shim_file *s = (shim_file *)f;
    return s->real->pMethods->xFetch(s->real, off, n, pp);
}
static int sh_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    shim_file *s = (shim_file *)f;
    return s->real->pMethods->xUnfetch(s->real, off, p);
}

static const sqlite3_io_methods shim_io = {
    3,          sh_close,      sh_read,     sh_write, sh_truncate, sh_sync,    sh_size,
    sh_lock,    sh_unlock,     sh_check,    sh_fcntl, sh_sector,   sh_devchar, sh_shmmap,
    sh_shmlock, sh_shmbarrier, sh_shmunmap, sh_fetch, sh_unfetch,
};

static int sh_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags, int *out)
{
    (void)v;
    shim_file *s = (shim_file *)f;
    s->real = (sqlite3_file *)(s + 1);
    s->kind = flags & SQLITE_OPEN_MAIN_DB ? F_DB : flags & SQLITE_OPEN_WAL ? F_WAL : F_OTHER;
    int rc = base_vfs->xOpen(base_vfs, name, s->real, flags, out);
    s->base.pMethods = s->real->pMethods ? &shim_io : NULL;
    return rc;
}

static int sh_delete(sqlite3_vfs *v, const char *n, int d)
{
    (void)v;
    return base_vfs->xDelete(base_vfs, n, d);
}
static int sh_access(sqlite3_vfs *v, const char *n, int f, int *o)
{
    (void)v;
    return base_vfs->xAccess(base_vfs, n, f, o);
}
static int sh_full(sqlite3_vfs *v, const char *n, int len, char *o)
{
    (void)v;
    return base_vfs->xFullPathname(base_vfs, n, len, o);
}
static int sh_rand(sqlite3_vfs *v, int n, char *o)
{
    (void)v;
    return base_vfs->xRandomness(base_vfs, n, o);
}
static int sh_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return base_vfs->xSleep(base_vfs, us);
}
static int sh_time64(sqlite3_vfs *v, sqlite3_int64 *t)
{
    (void)v;
    return base_vfs->xCurrentTimeInt64(base_vfs, t);
}
static int sh_lasterr(sqlite3_vfs *v, int n, char *o)
{
    (void)v;
    return base_vfs->xGetLastError(base_vfs, n, o);
}

static int on_trace(unsigned type, void *ctx, void *p, void *x)
{
    (void)type, (void)ctx, (void)p, (void)x;
    cnt.stmts++;
    return 0;
}

static int count_statements(sqlite3 *db, char **err, const sqlite3_api_routines *api)
{
    (void)err, (void)api;
    sqlite3_trace_v2(db, SQLITE_TRACE_STMT, on_trace, NULL);
    return SQLITE_OK;
}

static void shim_install(void)
{
    base_vfs = sqlite3_vfs_find(NULL);
    shim_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(shim_file) + base_vfs->szOsFile,
        .mxPathname = base_vfs->mxPathname,
        .zName = "count",
        .xOpen = sh_open,
        .xDelete = sh_delete,
        .xAccess = sh_access,
        .xFullPathname = sh_full,
        .xRandomness = sh_rand,
        .xSleep = sh_sleep,
        .xCurrentTimeInt64 = sh_time64,
        .xGetLastError = sh_lasterr,
    };
    sqlite3_vfs_register(&shim_vfs, 1);
    sqlite3_auto_extension((void (*)(void))count_statements);
}

/* ---- the sagas -------------------------------------------------------------------- */

static const char request[] = "{\"image_id\":\"img_123\",\"data\":\"datos de prueba\"}";
static const char resp1[] = "{\"anonymized\": true, \"image_id\": \"img_123\", \"bytes\": 47}";
static const char resp3[] = "{\"result\": \"processed\", \"label\": \"cat\", \"score\": 0.97}";
static const char *const names[] = {"anonymizer", "tokenizer", "ai_model"};

typedef struct bsaga {
    sg_saga_rec rec;
    sg_event_rec ev;
    int phase; /* the write in flight: 0..3 */
} bsaga;

static sg_store *store;
static size_t todo, done_sagas, failures;
static int use_v4;

static void make_id(char out[SG_ID_LEN + 1])
{
    if (use_v4)
        sg_uuid_v4(out);
    else
        sg_uuid_v7(out);
}

static void start_saga(bsaga *b);

static void step_completed(bsaga *b, size_t i, const char *resp, int64_t now)
{
    sg_step_rec *st = &b->rec.steps[i];
    st->status = SG_STEP_COMPLETED;
    st->finished_us = now;
    free(st->response);
    st->response = resp ? strdup(resp) : NULL;
    st->response_len = resp ? strlen(resp) : 0;
}

static void step_running(bsaga *b, size_t i, int64_t now)
{
    b->rec.steps[i].status = SG_STEP_RUNNING;
    b->rec.steps[i].attempts++;
    b->rec.steps[i].started_us = now;
}

static void on_done(void *arg, sg_status st);

/* The write of b's current phase, as the engine would make it. */
static sg_write *build_write(bsaga *b)
{
    sg_write *w = sg_write_create();
    int64_t now = sg_now_us();
    sg_saga_rec *r = &b->rec;
    switch (b->phase) {
    case 0:
        sg_write_saga_insert(w, r);
        break;
    case 1: /* step 1 done; step 2 (publish) RUNNING with its event */
        step_completed(b, 0, resp1, now);
        sg_write_step_update(w, r->id, 0, &r->steps[0]);
        step_running(b, 1, now);
        memset(&b->ev, 0, sizeof b->ev);
        make_id(b->ev.id);
        memcpy(b->ev.saga_id, r->id, sizeof b->ev.saga_id);
        b->ev.topic = (char *)"tokenizer_event";
        b->ev.payload = (char *)request;
        b->ev.payload_len = sizeof request - 1;
        b->ev.created_us = now;
        b->ev.deadline_us = now + 3000000;
        b->ev.step_index = 1;
        sg_write_event_insert(w, &b->ev);
        sg_write_step_update(w, r->id, 1, &r->steps[1]);
        break; /* a step moving on leaves the saga's row alone */
    case 2:    /* event acknowledged: step 2 done, step 3 RUNNING */
        step_completed(b, 1, NULL, now);
        sg_write_step_update(w, r->id, 1, &r->steps[1]);
        sg_write_event_update(w, b->ev.id, SG_EVENT_DELIVERED, 1, NULL, now);
        step_running(b, 2, now);
        sg_write_step_update(w, r->id, 2, &r->steps[2]);
        break;
    case 3: /* step 3 done: COMPLETED */
        step_completed(b, 2, resp3, now);
        sg_write_step_update(w, r->id, 2, &r->steps[2]);
        r->status = SG_SAGA_COMPLETED;
        r->updated_us = now;
        sg_write_saga_update(w, r->id, r->status, r->comp_status, NULL, now);
        break;
    }
    return w;
}

/* A new saga in b, at phase 0. */
static void new_saga(bsaga *b)
{
    sg_saga_rec *r = &b->rec;
    sg_saga_rec_free(r);
    memset(r, 0, sizeof *r);
    make_id(r->id);
    r->def_name = strdup("sta");
    r->def_version = 1;
    r->request = strdup(request);
    r->request_len = sizeof request - 1;
    r->created_us = r->updated_us = sg_now_us();
    r->nsteps = 3;
    r->steps = calloc(3, sizeof *r->steps);
    for (int i = 0; i < 3; i++)
        r->steps[i].name = strdup(names[i]);
    step_running(b, 0, r->created_us);
    b->phase = 0;
}

static void submit_next(bsaga *b)
{
    sg_write *w = build_write(b);
    if (sg_store_submit(store, w, on_done, b) != SG_OK) {
        fprintf(stderr, "store-bench: submit failed\n");
        exit(1);
    }
}

static void start_saga(bsaga *b)
{
    new_saga(b);
    todo--;
    submit_next(b);
}

static void on_done(void *arg, sg_status st)
{
    bsaga *b = arg;
    if (st != SG_OK) failures++;
    if (++b->phase < 4) {
        submit_next(b);
        return;
    }
    done_sagas++;
    if (todo) start_saga(b);
}

/* Experiments: change the schema under the open store. */
static int run_sql(const char *db, const char *sql)
{
    sqlite3 *x = NULL;
    char *msg = NULL;
    int rc = sqlite3_open(db, &x);
    if (rc == SQLITE_OK) rc = sqlite3_exec(x, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) fprintf(stderr, "store-bench: --sql: %s\n", msg ? msg : sqlite3_errmsg(x));
    sqlite3_free(msg);
    sqlite3_close(x);
    return rc != SQLITE_OK;
}

/* Which B-tree the frames went to (the pages' owners at the end). */
static void report_pages(const char *db, double sagas)
{
    if (!frames_of) return;
    sqlite3 *x = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_open(db, &x) != SQLITE_OK ||
        sqlite3_prepare_v2(x, "SELECT name, pageno FROM dbstat", -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "store-bench: dbstat: %s\n", sqlite3_errmsg(x));
        sqlite3_close(x);
        return;
    }
    struct {
        char name[64];
        double frames;
    } t[64];
    int nt = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        int pg = sqlite3_column_int(st, 1);
        if (pg <= 0 || pg >= MAX_PGNO || !frames_of[pg]) continue;
        int k = 0;
        while (k < nt && strcmp(t[k].name, name) != 0)
            k++;
        if (k == nt && nt < 64) {
            snprintf(t[nt].name, sizeof t[0].name, "%s", name);
            t[nt++].frames = 0;
        }
        if (k < nt) t[k].frames += frames_of[pg];
    }
    sqlite3_finalize(st);
    sqlite3_close(x);
    printf("WAL frames per saga by B-tree:");
    for (int k = 0; k < nt; k++)
        printf(" %s=%.2f", t[k].name, t[k].frames / sagas);
    printf("\n");
}

static double cpu_s(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report(const char *mode, size_t n, size_t inflight, int full, double secs,
                   double writer_s, double loop_s, double txns, double writes)
{
    double dn = (double)n;
    printf("%s sagas=%zu inflight=%zu %s ids=%s sagas_per_s=%.0f writer_cpu_ms=%.4f "
           "loop_cpu_ms=%.4f txn_per_saga=%.3f writes_per_txn=%.1f stmts_per_saga=%.2f",
           mode, n, inflight, full ? "FULL" : "NORMAL", use_v4 ? "v4" : "v7", dn / secs,
           writer_s * 1e3 / dn, loop_s * 1e3 / dn, txns / dn, writes / (txns ? txns : 1),
           (double)cnt.stmts / dn);
    for (int k = 0; k < F_N; k++) {
        if (!cnt.writes[k] && !cnt.reads[k] && !cnt.syncs[k]) continue;
        printf(" %s:w=%.2f/%.0fB,r=%.2f/%.0fB,sync=%.3f", fnames[k], (double)cnt.writes[k] / dn,
               (double)cnt.wbytes[k] / dn, (double)cnt.reads[k] / dn, (double)cnt.rbytes[k] / dn,
               (double)cnt.syncs[k] / dn);
    }
    printf(" failures=%zu\n", failures);
}

/* The real store: its writer thread groups whatever the loop submitted. */
static int run_store(const char *db, const char *sql, size_t n, size_t inflight, int full)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256];
    sg_store_options opt = {.synchronous_full = full};
    if (sg_store_open(&store, db, &loop, &opt, err, sizeof err) != SG_OK) {
        fprintf(stderr, "store-bench: %s\n", err);
        return 1;
    }
    if (sql && run_sql(db, sql) != 0) return 1;
    bsaga *bs = calloc(inflight, sizeof *bs);
    memset(&cnt, 0, sizeof cnt);
    uint64_t t0, w0;
    sg_store_stats(store, &t0, &w0);
    double p0 = cpu_s(CLOCK_PROCESS_CPUTIME_ID), l0 = cpu_s(CLOCK_THREAD_CPUTIME_ID);
    double r0 = cpu_s(CLOCK_MONOTONIC);
    todo = n;
    for (size_t i = 0; i < inflight; i++)
        start_saga(&bs[i]);
    while (done_sagas < n)
        uv_run(&loop, UV_RUN_ONCE);
    double r1 = cpu_s(CLOCK_MONOTONIC);
    double p1 = cpu_s(CLOCK_PROCESS_CPUTIME_ID), l1 = cpu_s(CLOCK_THREAD_CPUTIME_ID);
    uint64_t t1, w1;
    sg_store_stats(store, &t1, &w1);
    report("store", n, inflight, full, r1 - r0, (p1 - p0) - (l1 - l0), l1 - l0, (double)(t1 - t0),
           (double)(w1 - w0));
#ifndef STORE_BENCH_NO_COUNTS /* to build against a store from before sg_store_counts */
    sg_store_counters c;
    sg_store_counts(store, &c);
    printf("store's own counts per saga: statements=%.2f wal_pages=%.2f wal_bytes=%.0f\n",
           (double)c.statements / (double)n, (double)c.wal_pages / (double)n,
           (double)c.wal_bytes / (double)n);
#endif
    sg_store_close(store);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    for (size_t i = 0; i < inflight; i++)
        sg_saga_rec_free(&bs[i].rec);
    free(bs);
    return 0;
}

#define MAX_ROUNDS 100000
static double rt[MAX_ROUNDS]; /* wall time of each measured transaction */
static size_t nrt;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The backend alone, in lockstep: each transaction holds the next write of
 * every saga in flight, whose phases are spread evenly (a quarter of them
 * insert, a quarter finish), so every batch is alike and the figures do
 * not depend on thread scheduling. The calling thread runs it all. */
static int run_batches(const char *db, const char *sql, size_t n, size_t inflight, int full)
{
    const struct sg_store_ops *ops = &sg_store_sqlite_ops;
    sg_store_backend *be = NULL;
    char err[256];
    sg_store_options opt = {.max_batch = inflight, .synchronous_full = full};
    if (ops->open(&be, db, db, &opt, err, sizeof err) != SG_OK) {
        fprintf(stderr, "store-bench: %s\n", err);
        return 1;
    }
    if (sql && run_sql(db, sql) != 0) return 1;
    bsaga *bs = calloc(inflight, sizeof *bs);
    sg_write **w = calloc(inflight, sizeof *w);
    bsaga **who = calloc(inflight, sizeof *who);
    sg_status *res = calloc(inflight, sizeof *res);
    /* Saga i starts in round i % 4; measuring starts in round 4. */
    size_t writes = 0, txns = 0, measured = 0;
    double c0 = 0, r0 = 0;
    for (size_t round = 0; measured < 4 * n; round++) {
        if (round == 4) {
            memset(&cnt, 0, sizeof cnt);
            if (frames_of) memset(frames_of, 0, MAX_PGNO * sizeof *frames_of);
            c0 = cpu_s(CLOCK_THREAD_CPUTIME_ID);
            r0 = cpu_s(CLOCK_MONOTONIC);
        }
        size_t k = 0;
        for (size_t i = 0; i < inflight; i++) {
            if (round < i % 4) continue;
            if (round == i % 4) new_saga(&bs[i]);
            who[k] = &bs[i];
            w[k++] = build_write(&bs[i]);
        }
        err[0] = '\0';
        double t0 = cpu_s(CLOCK_MONOTONIC);
        sg_status bst = ops->exec_batch(be, w, k, res, err, sizeof err);
        if (round >= 4 && nrt < MAX_ROUNDS) rt[nrt++] = cpu_s(CLOCK_MONOTONIC) - t0;
        if (bst != SG_OK) {
            fprintf(stderr, "store-bench: %s\n", err);
            return 1;
        }
        for (size_t i = 0; i < k; i++) {
            if (res[i] != SG_OK) failures++;
            sg_write_destroy(w[i]);
            if (++who[i]->phase == 4) new_saga(who[i]);
        }
        if (round >= 4) {
            measured += k;
            writes += k;
            txns++;
        }
    }
    double c1 = cpu_s(CLOCK_THREAD_CPUTIME_ID), r1 = cpu_s(CLOCK_MONOTONIC);
    qsort(rt, nrt, sizeof *rt, cmp_double);
    if (nrt)
        printf("transaction ms: p50=%.3f p90=%.3f p99=%.3f max=%.3f\n", rt[nrt / 2] * 1e3,
               rt[nrt * 9 / 10] * 1e3, rt[nrt * 99 / 100] * 1e3, rt[nrt - 1] * 1e3);
    report("batch", measured / 4, inflight, full, r1 - r0, c1 - c0, 0, (double)txns,
           (double)writes);
    ops->close(be);
    report_pages(db, (double)(measured / 4));
    for (size_t i = 0; i < inflight; i++)
        sg_saga_rec_free(&bs[i].rec);
    free(bs);
    free(w);
    free(who);
    free(res);
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = 20000, inflight = 64;
    const char *db = NULL, *sql = NULL;
    int full = 1, batches = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sagas") && i + 1 < argc)
            n = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--inflight") && i + 1 < argc)
            inflight = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--db") && i + 1 < argc)
            db = argv[++i];
        else if (!strcmp(argv[i], "--normal"))
            full = 0;
        else if (!strcmp(argv[i], "--sql") && i + 1 < argc)
            sql = argv[++i];
        else if (!strcmp(argv[i], "--v4"))
            use_v4 = 1;
        else if (!strcmp(argv[i], "--batch"))
            batches = 1;
        else {
            fprintf(stderr, "usage: store-bench [--sagas N] [--inflight C] [--db PATH] [--normal] "
                            "[--v4] [--batch] [--sql SQL]\n");
            return 2;
        }
    }
    if (inflight < 1) inflight = 1;
    if (inflight > n) inflight = n;
    char dir[] = "/tmp/store-bench-XXXXXX", path[64];
    if (!db) {
        if (!mkdtemp(dir)) return 1;
        snprintf(path, sizeof path, "%s/b.db", dir);
        db = path;
    }
    sg_log_set_level(SG_LOG_WARN);
    if (getenv("STORE_BENCH_PAGES")) frames_of = calloc(MAX_PGNO, sizeof *frames_of);
    if (!getenv("STORE_BENCH_NOSHIM")) shim_install();
    int rc =
        batches ? run_batches(db, sql, n, inflight, full) : run_store(db, sql, n, inflight, full);
    if (db == path) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0) return 1;
    }
    return rc || failures ? 1 : 0;
}
