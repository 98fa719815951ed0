/* The Redis backend's leases (design §7; docs/store.md "Leases"): each
 * a call of the lease script (redis_lua.c), atomic on the server. Taking
 * one at open, upgrading a layout-1 database, adopting the sagas of
 * expired leases (at open and from the engine, on a reader), giving it up
 * at close. The renewal and the check are in every write (redis_write.c). */
#include <stdio.h>
#include <string.h>

#include "redis_int.h"
#include "sg/util.h"

int sg__rd_lease_call(const sg_store_backend *b, redisContext **c, const char *mode, int n,
                      const char **argv, long long *out, char *err, size_t errlen)
{
    const char *av[8] = {"EVALSHA", b->sha_lease, "0", mode, b->owner};
    for (int i = 0; i < n && i < 3; i++)
        av[5 + i] = argv[i];
    redisReply *r = sg__rd_cmd(c, 5 + (n < 3 ? n : 3), av, NULL, "lease", err, errlen);
    if (!r) return -1;
    int res = -1;
    if (r->type == REDIS_REPLY_INTEGER) {
        *out = r->integer;
        res = 0;
    } else {
        snprintf(err, errlen, "Redis %s lease: %s", b->a.shown, sg__rd_reply_text(r));
        /* The server lost its scripts (SCRIPT FLUSH): a new connection
         * loads them. */
        if (!strncmp(sg__rd_reply_text(r), "NOSCRIPT", 8)) {
            redisFree(*c);
            *c = NULL;
        }
    }
    freeReplyObject(r);
    return res;
}

/* Adoption on *c: the sagas of expired leases become this process's. */
static sg_status adopt_on(const sg_store_backend *b, redisContext **c, size_t *taken, char *err,
                          size_t errlen)
{
    char ep[24];
    long long n = 0;
    *taken = 0;
    snprintf(ep, sizeof ep, "%lld", (long long)b->epoch);
    if (sg__rd_lease_call(b, c, "adopt", 1, (const char *[]){ep}, &n, err, errlen) != 0)
        return SG_EIO;
    if (n < 0) {
        snprintf(err, errlen, "this process's lease %s/%s is gone: it takes nothing over", b->owner,
                 ep);
        return SG_EFENCED;
    }
    *taken = (size_t)n;
    return SG_OK;
}

sg_status sg__rd_adopt(sg_store_breader *r, size_t *taken, char *err, size_t errlen)
{
    sg_status st = SG_EIO;
    *taken = 0;
    /* Once more on a new connection if the first one was lost. */
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!r->c && !(r->c = sg__rd_connect(&r->be->a, r->be, err, errlen))) return SG_EIO;
        st = adopt_on(r->be, &r->c, taken, err, errlen);
        if (st != SG_EIO || r->c) break;
    }
    return st;
}

/* A fresh owner id and the next epoch, the lease expiring lease_ms on. */
sg_status sg__rd_lease_take(sg_store_backend *b, char *err, size_t errlen)
{
    char ms[24];
    long long ep = 0;
    sg_uuid_v4(b->owner);
    snprintf(ms, sizeof ms, "%ld", b->lease_ms);
    if (sg__rd_lease_call(b, &b->w, "take", 1, (const char *[]){ms}, &ep, err, errlen) != 0)
        return SG_EIO;
    if (ep < 1) {
        snprintf(err, errlen, "Redis %s: taking a lease: no epoch returned", b->a.shown);
        return SG_EIO;
    }
    b->epoch = ep;
    return SG_OK;
}

/* A database of layout 1 (one sagad at a time, no leases) becomes
 * layout 2, its sagas this process's; refused while an older sagad runs
 * on it (its owner key lives). */
sg_status sg__rd_lease_upgrade(sg_store_backend *b, char *err, size_t errlen)
{
    long long n = 0;
    if (sg__rd_lease_call(b, &b->w, "upgrade", 0, NULL, &n, err, errlen) != 0) return SG_EIO;
    if (n < 0) {
        snprintf(err, errlen,
                 "store %s is in use by an older sagad (layout 1, key sagad:owner): stop it "
                 "first; this one then upgrades the database to layout %d",
                 b->a.shown, SG_RD_LAYOUT_VERSION);
        return SG_EUNAVAIL;
    }
    if (n > 0)
        sg_log(SG_LOG_INFO, "store: %s: upgraded to layout %d; its %lld sagas are this process's",
               b->a.shown, SG_RD_LAYOUT_VERSION, n);
    return SG_OK;
}

/* Gives the lease up (it expires now): others may take its sagas at once. */
void sg__rd_lease_drop(sg_store_backend *b)
{
    char ep[24], err[256];
    long long res = 0;
    if (!b->epoch) return;
    snprintf(ep, sizeof ep, "%lld", (long long)b->epoch);
    if (!b->w) b->w = sg__rd_connect(&b->a, b, err, sizeof err);
    if (!b->w ||
        sg__rd_lease_call(b, &b->w, "drop", 1, (const char *[]){ep}, &res, err, sizeof err) != 0)
        sg_log(SG_LOG_WARN, "store: %s: lease %s/%s not given up (%s); it expires in %ld ms",
               b->a.shown, b->owner, ep, err, b->lease_ms);
}

void sg__rd_owner(sg_store_backend *b, char id[SG_ID_LEN + 1], int64_t *epoch)
{
    memcpy(id, b->owner, SG_ID_LEN + 1);
    *epoch = b->epoch;
}

sg_status sg__rd_adopt_at_open(sg_store_backend *b, size_t *taken, char *err, size_t errlen)
{
    return adopt_on(b, &b->w, taken, err, errlen);
}
