/* Several sagad on one PostgreSQL database (design §7): each process
 * holds a lease, a row of sg_leases (owner id, epoch, expiry on the
 * database's clock, the mark of its last batch); every saga row names the
 * lease that runs it (sagas.owner, sagas.epoch).
 *
 * - Taking: at open, a fresh owner id and the next epoch (sg_counters),
 *   expiring lease_ms later.
 * - Renewing and fencing: the first statement of every transaction of
 *   the writer (P_LEASE, postgres_write.c) renews it only while it is
 *   still this process's and unexpired; otherwise the transaction fails
 *   as a whole with SG_EFENCED. The row stays locked until the
 *   transaction ends, so a takeover and a renewal never interleave.
 * - Taking over (sg__pg_adopt): the expired leases no one else is taking
 *   (FOR UPDATE SKIP LOCKED) are deleted, and their unfinished sagas (in
 *   progress, or with compensations to deliver) become this process's, in
 *   one transaction that also holds this process's own lease row.
 * - Giving up: a clean close expires the lease at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postgres_int.h"
#include "sg/util.h"

/* Runs sql with text parameters on pg; the result is the caller's to
 * PQclear, NULL on failure with err set ("PostgreSQL <what>: <why>"). */
static PGresult *run(PGconn *pg, const char *sql, int n, const char *const *vals, const char *what,
                     char *err, size_t errlen)
{
    PGresult *res = PQexecParams(pg, sql, n, NULL, vals, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) return res;
    char m[200];
    sg__pg_msg(m, sizeof m, pg, res);
    snprintf(err, errlen, "PostgreSQL %s: %s", what, m);
    PQclear(res);
    return NULL;
}

sg_status sg__pg_lease_take(sg_store_backend *be, char *err, size_t errlen)
{
    char ms[24];
    sg_uuid_v4(be->owner);
    snprintf(ms, sizeof ms, "%lld", (long long)be->lease_ms);
    const char *vals[] = {be->owner, ms};
    /* One statement, so one transaction: the counter and the row. */
    PGresult *res =
        run(be->w.pg,
            "WITH e AS (INSERT INTO sg_counters(name, value) VALUES('epoch', 1) ON "
            "CONFLICT(name) DO UPDATE SET value=sg_counters.value+1 RETURNING value) "
            "INSERT INTO sg_leases(owner, epoch, expires_us, seq) SELECT $1, value, " SG_PG_NOW_US
            "+$2::BIGINT*1000, 0 FROM e RETURNING epoch",
            2, vals, "taking a lease", err, errlen);
    if (!res) return SG_EIO;
    int ok = PQntuples(res) == 1;
    if (ok) be->epoch = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    if (!ok) {
        snprintf(err, errlen, "PostgreSQL taking a lease: no epoch returned");
        return SG_EIO;
    }
    be->seq = 0;
    return SG_OK;
}

void sg__pg_lease_drop(sg_store_backend *be)
{
    if (!be->w.pg || PQstatus(be->w.pg) != CONNECTION_OK ||
        PQtransactionStatus(be->w.pg) != PQTRANS_IDLE)
        return; /* it expires by itself */
    char ep[24], err[64];
    snprintf(ep, sizeof ep, "%lld", (long long)be->epoch);
    const char *vals[] = {be->owner, ep};
    PQclear(run(be->w.pg, "UPDATE sg_leases SET expires_us=0 WHERE owner=$1 AND epoch=$2::BIGINT",
                2, vals, "giving the lease up", err, sizeof err));
}

void sg__pg_owner(sg_store_backend *be, char id[SG_ID_LEN + 1], int64_t *epoch)
{
    memcpy(id, be->owner, SG_ID_LEN + 1);
    *epoch = be->epoch;
}

/* The body of sg__pg_adopt's transaction; *taken counts what moved. */
static sg_status adopt_in(PGconn *pg, const sg_store_backend *be, size_t *taken, char *err,
                          size_t errlen)
{
    char ep[24];
    snprintf(ep, sizeof ep, "%lld", (long long)be->epoch);
    const char *mine[] = {be->owner, ep};
    PGresult *res = run(pg,
                        "SELECT 1 FROM sg_leases WHERE owner=$1 AND epoch=$2::BIGINT AND "
                        "expires_us>" SG_PG_NOW_US " FOR UPDATE",
                        2, mine, "checking the lease", err, errlen);
    if (!res) return SG_EIO;
    int held = PQntuples(res) == 1;
    PQclear(res);
    if (!held) {
        snprintf(err, errlen, "this process's lease %s/%s is gone: it takes nothing over",
                 be->owner, ep);
        return SG_EFENCED;
    }
    PGresult *dead = run(pg,
                         "SELECT owner FROM sg_leases WHERE expires_us<" SG_PG_NOW_US
                         " AND owner<>$1 ORDER BY owner FOR UPDATE SKIP LOCKED",
                         1, mine, "finding expired leases", err, errlen);
    if (!dead) return SG_EIO;
    sg_status st = SG_OK;
    for (int i = 0; i < PQntuples(dead) && st == SG_OK; i++) {
        const char *args[] = {PQgetvalue(dead, i, 0), be->owner, ep};
        res = run(pg,
                  "UPDATE sagas SET owner=$2, epoch=$3::BIGINT WHERE owner=$1 AND (status=0 OR "
                  "comp_status=1 OR comp_status=3)",
                  3, args, "taking sagas over", err, errlen);
        if (!res) {
            st = SG_EIO;
            break;
        }
        *taken += strtoull(PQcmdTuples(res), NULL, 10);
        PQclear(res);
        res = run(pg, "DELETE FROM sg_leases WHERE owner=$1", 1, args, "removing a lease", err,
                  errlen);
        if (!res) st = SG_EIO;
        PQclear(res);
    }
    PQclear(dead);
    return st;
}

/* sg__pg_adopt on connection c of be. */
static sg_status adopt_on(pgc *c, const sg_store_backend *be, size_t *taken, char *err,
                          size_t errlen)
{
    *taken = 0;
    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
        if (sg__pg_connect(c, be, 0, err, errlen) != SG_OK) return SG_EIO;
    }
    PGresult *res = run(c->pg, "BEGIN", 0, NULL, "begin", err, errlen);
    if (!res) goto broken;
    PQclear(res);
    sg_status st = adopt_in(c->pg, be, taken, err, errlen);
    res = run(c->pg, st == SG_OK ? "COMMIT" : "ROLLBACK", 0, NULL,
              st == SG_OK ? "commit" : "rollback", err, errlen);
    if (!res) goto broken;
    PQclear(res);
    if (st != SG_OK) *taken = 0;
    return st;
broken:
    *taken = 0;
    if (PQstatus(c->pg) != CONNECTION_OK || PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        sg__pg_disconnect(c);
    return SG_EIO;
}

sg_status sg__pg_adopt(sg_store_breader *r, size_t *taken, char *err, size_t errlen)
{
    return adopt_on(&r->c, r->be, taken, err, errlen);
}

sg_status sg__pg_adopt_at_open(sg_store_backend *be, char *err, size_t errlen)
{
    size_t taken = 0;
    return adopt_on(&be->w, be, &taken, err, errlen);
}
