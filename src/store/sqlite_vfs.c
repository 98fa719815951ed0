/* A VFS over the default one that hands a WAL commit's frames to the
 * kernel in one write instead of two per page (a 24-byte header, then the
 * page).
 *
 * Why: the writer spends about half its wall clock in the fsync that ends
 * each commit, and on the benchmark's virtual disk (ext4 on virtio) that
 * fsync is slower the more the commit did to the file before it: 26
 * frames written as 52 pwrites then fdatasync took 0.25-0.8 ms there, the
 * same bytes as one write 0.06 ms. Part of it is the time the 52 writes
 * take (an fsync after the disk sat idle for more than ~50 us is slow:
 * docs/benchmark.md, "the disk alone"), part the writes themselves. In
 * sagad it gave 1-6% more sagas/s and 53 syscalls fewer per commit.
 *
 * How: writes to a file opened as a WAL (SQLITE_OPEN_WAL) that continue
 * the pending run are appended to a buffer (capped at SG_SQ_VFS_RUN) and
 * written as one by the next operation that needs them on disk or in the
 * file: xSync, xRead, xFileSize, xTruncate, xFileControl, xClose, or a
 * write elsewhere. Every other file and call passes straight through.
 *
 * Why this is safe only for a connection with synchronous=FULL: SQLite
 * publishes new frames to other connections (the wal-index header) after
 * writing them, and in FULL mode after xSync, which writes the run first.
 * Under NORMAL a commit has no xSync, so another connection could be told
 * of frames still in the buffer. sqlite.c opens only the writer
 * connection through this VFS, and only with synchronous=FULL; a reader
 * never writes the WAL. The run belongs to its file handle, which one
 * connection (one thread at a time) uses, so it needs no lock. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sg/alloc.h"
#include "sqlite_int.h"

typedef struct wal_file {
    sqlite3_file base;     /* pMethods: ours, or NULL when the open failed */
    sqlite3_file *real;    /* the default VFS's file, just after this struct */
    int coalesce;          /* a WAL: writes are gathered */
    unsigned char *run;    /* owned; the pending bytes, or NULL */
    size_t len, cap;       /* of run */
    sqlite3_int64 run_off; /* where run goes in the file */
} wal_file;

#define REAL(pf) (((wal_file *)(pf))->real)

static sqlite3_vfs *parent;
static sqlite3_vfs shim;
/* Ours for a file whose default methods have version v: shim_io[v]. */
static sqlite3_io_methods shim_io[4];
static int registered; /* SQLite's code of the registration */

/* The most one xWrite of the default VFS takes: unixWrite masks a length
 * to 17 bits (its 128 KiB limit), so a longer write comes back short and
 * fails as "disk full". */
#define WRITE_MAX (124u * 1024)

/* Writes the pending run, if any, in as few writes as the default VFS
 * takes (one for the usual commit of well under 124 KiB). The run is
 * dropped either way: after a failed write SQLite rolls the transaction
 * back and writes its frames again. */
static int flush_run(wal_file *f)
{
    int rc = SQLITE_OK;
    for (size_t done = 0; done < f->len && rc == SQLITE_OK; done += WRITE_MAX) {
        size_t n = f->len - done < WRITE_MAX ? f->len - done : WRITE_MAX;
        rc = f->real->pMethods->xWrite(f->real, f->run + done, (int)n,
                                       f->run_off + (sqlite3_int64)done);
    }
    f->len = 0;
    return rc;
}

static int shim_write(sqlite3_file *pf, const void *buf, int amt, sqlite3_int64 off)
{
    wal_file *f = (wal_file *)pf;
    if (!f->coalesce) return f->real->pMethods->xWrite(f->real, buf, amt, off);
    size_t n = (size_t)amt; /* a frame header or a page: far below SG_SQ_VFS_RUN */
    int follows = f->len && off == f->run_off + (sqlite3_int64)f->len;
    if (!follows || f->len + n > SG_SQ_VFS_RUN) {
        int rc = flush_run(f);
        if (rc != SQLITE_OK) return rc;
    }
    if (!f->len) f->run_off = off;
    if (f->len + n > f->cap) {
        size_t cap = f->cap ? f->cap : 64 * 1024;
        while (cap < f->len + n)
            cap *= 2;
        f->run = sg_xrealloc(f->run, cap);
        f->cap = cap;
    }
    memcpy(f->run + f->len, buf, n);
    f->len += n;
    return SQLITE_OK;
}

static int shim_close(sqlite3_file *pf)
{
    wal_file *f = (wal_file *)pf;
    int rc = flush_run(f);
    int rc2 = f->real->pMethods->xClose(f->real);
    free(f->run);
    f->run = NULL;
    f->cap = 0;
    return rc != SQLITE_OK ? rc : rc2;
}

/* Everything that reads, sizes, syncs or controls the file sees the
 * held-back run written first. */
#define FLUSHED(pf, call)                                                                          \
    do {                                                                                           \
        int rc_ = flush_run((wal_file *)(pf));                                                     \
        return rc_ != SQLITE_OK ? rc_ : (call);                                                    \
    } while (0)

static int shim_read(sqlite3_file *pf, void *buf, int amt, sqlite3_int64 off)
{
    FLUSHED(pf, REAL(pf)->pMethods->xRead(REAL(pf), buf, amt, off));
}
static int shim_truncate(sqlite3_file *pf, sqlite3_int64 size)
{
    FLUSHED(pf, REAL(pf)->pMethods->xTruncate(REAL(pf), size));
}
static int shim_sync(sqlite3_file *pf, int flags)
{
    FLUSHED(pf, REAL(pf)->pMethods->xSync(REAL(pf), flags));
}
static int shim_file_size(sqlite3_file *pf, sqlite3_int64 *size)
{
    FLUSHED(pf, REAL(pf)->pMethods->xFileSize(REAL(pf), size));
}
static int shim_file_control(sqlite3_file *pf, int op, void *arg)
{
    FLUSHED(pf, REAL(pf)->pMethods->xFileControl(REAL(pf), op, arg));
}

/* ---- the rest passes through ---------------------------------------------- */

static int shim_lock(sqlite3_file *pf, int l)
{
    return REAL(pf)->pMethods->xLock(REAL(pf), l);
}
static int shim_unlock(sqlite3_file *pf, int l)
{
    return REAL(pf)->pMethods->xUnlock(REAL(pf), l);
}
static int shim_check_lock(sqlite3_file *pf, int *out)
{
    return REAL(pf)->pMethods->xCheckReservedLock(REAL(pf), out);
}
static int shim_sector_size(sqlite3_file *pf)
{
    return REAL(pf)->pMethods->xSectorSize(REAL(pf));
}
static int shim_device_chars(sqlite3_file *pf)
{
    return REAL(pf)->pMethods->xDeviceCharacteristics(REAL(pf));
}
static int shim_shm_map(sqlite3_file *pf, int pg, int sz, int extend, void volatile **pp)
{
    return REAL(pf)->pMethods->xShmMap(REAL(pf), pg, sz, extend, pp);
}
static int shim_shm_lock(sqlite3_file *pf, int off, int n, int flags)
{
    return REAL(pf)->pMethods->xShmLock(REAL(pf), off, n, flags);
}
static void shim_shm_barrier(sqlite3_file *pf)
{
    REAL(pf)->pMethods->xShmBarrier(REAL(pf));
}
static int shim_shm_unmap(sqlite3_file *pf, int del)
{
    return REAL(pf)->pMethods->xShmUnmap(REAL(pf), del);
}
static int shim_fetch(sqlite3_file *pf, sqlite3_int64 off, int amt, void **pp)
{
    return REAL(pf)->pMethods->xFetch(REAL(pf), off, amt, pp);
}
static int shim_unfetch(sqlite3_file *pf, sqlite3_int64 off, void *p)
{
    return REAL(pf)->pMethods->xUnfetch(REAL(pf), off, p);
}

static int shim_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *pf, int flags,
                     int *out_flags)
{
    (void)vfs;
    wal_file *f = (wal_file *)pf;
    memset(f, 0, sizeof *f);
    f->real = (sqlite3_file *)(f + 1);
    int rc = parent->xOpen(parent, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK) {
        /* SQLite may call xClose after a failed open only if pMethods is
         * set; the default VFS leaves its own NULL, and so do we. */
        if (f->real->pMethods) f->real->pMethods->xClose(f->real);
        return rc;
    }
    int v = f->real->pMethods->iVersion;
    f->coalesce = (flags & SQLITE_OPEN_WAL) != 0;
    f->base.pMethods = &shim_io[v < 1 ? 1 : v > 3 ? 3 : v];
    return SQLITE_OK;
}

static void shim_init(void)
{
    parent = sqlite3_vfs_find(NULL);
    if (!parent || parent->iVersion < 1) {
        registered = SQLITE_ERROR;
        return;
    }
    shim = *parent; /* every VFS-level call passes straight through */
    shim.szOsFile = (int)sizeof(wal_file) + parent->szOsFile;
    shim.zName = SG_SQ_VFS_NAME;
    shim.pNext = NULL;
    shim.xOpen = shim_open;
    sqlite3_io_methods io = {
        .iVersion = 3,
        .xClose = shim_close,
        .xRead = shim_read,
        .xWrite = shim_write,
        .xTruncate = shim_truncate,
        .xSync = shim_sync,
        .xFileSize = shim_file_size,
        .xLock = shim_lock,
        .xUnlock = shim_unlock,
        .xCheckReservedLock = shim_check_lock,
        .xFileControl = shim_file_control,
        .xSectorSize = shim_sector_size,
        .xDeviceCharacteristics = shim_device_chars,
        .xShmMap = shim_shm_map,
        .xShmLock = shim_shm_lock,
        .xShmBarrier = shim_shm_barrier,
        .xShmUnmap = shim_shm_unmap,
        .xFetch = shim_fetch,
        .xUnfetch = shim_unfetch,
    };
    for (int v = 1; v <= 3; v++) {
        shim_io[v] = io;
        shim_io[v].iVersion = v; /* SQLite calls nothing past its version */
    }
    registered = sqlite3_vfs_register(&shim, 0);
}

const char *sg__sq_vfs(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, shim_init);
    return registered == SQLITE_OK ? SG_SQ_VFS_NAME : NULL;
}
