/* store-bench: what the store's writer costs per saga, without HTTP.
 *
 * Runs N sagas of the STA shape through the real store (its writer thread,
 * group commit, synchronous=FULL by default), C of them in flight, each
 * submitting the four writes the engine submits for a saga that succeeds
 * (insert with step 1 RUNNING; step 1 done + step 2 RUNNING + its event;
 * step 2 done + event delivered + step 3 RUNNING; step 3 done + saga
 * COMPLETED), the next one as soon as the previous commits. Ids are made
 * as the engine makes them.
 *
 * It counts, through a VFS shim registered as the default VFS and a
 * statement trace on every connection (sqlite3_auto_extension), so it
 * measures any store build the same way:
 *   statements run, WAL writes and bytes, database writes and bytes (the
 *   checkpoints), reads, fsyncs; transactions (sg_store_stats);
 *   CPU of the writer (the process's minus the loop thread's: the store
 *   has no other thread here), per saga.
 *
 *   store-bench [--sagas N] [--inflight C] [--db PATH] [--normal] [--v4]
 *
 * --v4 makes random (version 4) ids instead of time-ordered ones. */
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
static int sh_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
    shim_file *s = (shim_file *)f;
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

static void submit_next(bsaga *b)
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
        r->updated_us = now;
        sg_write_saga_update(w, r->id, r->status, r->comp_status, NULL, now);
        break;
    case 2: /* event acknowledged: step 2 done, step 3 RUNNING */
        step_completed(b, 1, NULL, now);
        sg_write_step_update(w, r->id, 1, &r->steps[1]);
        sg_write_event_update(w, b->ev.id, SG_EVENT_DELIVERED, 1, NULL, now);
        step_running(b, 2, now);
        sg_write_step_update(w, r->id, 2, &r->steps[2]);
        sg_write_saga_update(w, r->id, r->status, r->comp_status, NULL, now);
        break;
    case 3: /* step 3 done: COMPLETED */
        step_completed(b, 2, resp3, now);
        sg_write_step_update(w, r->id, 2, &r->steps[2]);
        r->status = SG_SAGA_COMPLETED;
        sg_write_saga_update(w, r->id, r->status, r->comp_status, NULL, now);
        break;
    }
    if (sg_store_submit(store, w, on_done, b) != SG_OK) {
        fprintf(stderr, "store-bench: submit failed\n");
        exit(1);
    }
}

static void start_saga(bsaga *b)
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

static double cpu_s(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    size_t n = 20000, inflight = 64;
    const char *db = NULL;
    int full = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sagas") && i + 1 < argc)
            n = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--inflight") && i + 1 < argc)
            inflight = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--db") && i + 1 < argc)
            db = argv[++i];
        else if (!strcmp(argv[i], "--normal"))
            full = 0;
        else if (!strcmp(argv[i], "--v4"))
            use_v4 = 1;
        else {
            fprintf(
                stderr,
                "usage: store-bench [--sagas N] [--inflight C] [--db PATH] [--normal] [--v4]\n");
            return 2;
        }
    }
    char dir[] = "/tmp/store-bench-XXXXXX", path[64];
    if (!db) {
        if (!mkdtemp(dir)) return 1;
        snprintf(path, sizeof path, "%s/b.db", dir);
        db = path;
    }
    sg_log_set_level(SG_LOG_WARN);
    shim_install();
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256];
    sg_store_options opt = {.synchronous_full = full};
    if (sg_store_open(&store, db, &loop, &opt, err, sizeof err) != SG_OK) {
        fprintf(stderr, "store-bench: %s\n", err);
        return 1;
    }
    if (inflight > n) inflight = n;
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
    double dn = (double)n;
    printf("sagas=%zu inflight=%zu %s ids=%s sagas_per_s=%.0f writer_cpu_ms=%.4f loop_cpu_ms=%.4f "
           "txn_per_saga=%.3f writes_per_txn=%.1f stmts_per_saga=%.2f",
           n, inflight, full ? "FULL" : "NORMAL", use_v4 ? "v4" : "v7", dn / (r1 - r0),
           ((p1 - p0) - (l1 - l0)) * 1e3 / dn, (l1 - l0) * 1e3 / dn, (double)(t1 - t0) / dn,
           (double)(w1 - w0) / (double)(t1 - t0 ? t1 - t0 : 1), (double)cnt.stmts / dn);
    for (int k = 0; k < F_N; k++) {
        if (!cnt.writes[k] && !cnt.reads[k] && !cnt.syncs[k]) continue;
        printf(" %s:w=%.2f/%.0fB,r=%.2f/%.0fB,sync=%.3f", fnames[k], (double)cnt.writes[k] / dn,
               (double)cnt.wbytes[k] / dn, (double)cnt.reads[k] / dn, (double)cnt.rbytes[k] / dn,
               (double)cnt.syncs[k] / dn);
    }
    printf(" failures=%zu\n", failures);
    sg_store_close(store);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    for (size_t i = 0; i < inflight; i++)
        sg_saga_rec_free(&bs[i].rec);
    free(bs);
    if (db == path) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0) return 1;
    }
    return failures ? 1 : 0;
}
