/* The Redis backend (redis://[[user]:pass@]host[:port][/N][?durability=
 * relaxed]): URL, connections, open (layout version, durability
 * settings, the lease) and close. The writes are in redis_write.c, the
 * reads in redis_read.c, the scripts in redis_lua.c; the key layout is in
 * docs/store.md. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "redis_int.h"
#include "sg/alloc.h"
#include "sg/util.h"

#define DEFAULT_PORT 6379
#define MAX_DB 1000000
#define CONNECT_TIMEOUT_MS 5000
#define READER_MAXBUF (64 * 1024)

/* ---- URL --------------------------------------------------------------------- */

/* A decimal number of 1..maxdigits digits in [s, e), at most max. -1 if not. */
static long parse_num(const char *s, const char *e, long max)
{
    long v = 0;
    if (s == e || e - s > 9) return -1;
    for (; s < e; s++) {
        if (!isdigit((unsigned char)*s)) return -1;
        v = v * 10 + (*s - '0');
    }
    return v <= max ? v : -1;
}

/* Copies [s, e) into out (n bytes) if it fits: 0, else -1. */
static int copy_part(char *out, size_t n, const char *s, const char *e)
{
    if ((size_t)(e - s) >= n) return -1;
    memcpy(out, s, (size_t)(e - s));
    out[e - s] = '\0';
    return 0;
}

/* target: what follows "redis://". Strict: anything not understood is an
 * error naming it, never ignored. */
static sg_status parse_url(rd_addr *a, const char *url, const char *target, char *err,
                           size_t errlen)
{
    memset(a, 0, sizeof *a);
    a->port = DEFAULT_PORT;
    if (strncasecmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "Redis store URL must be redis://host:port/N");
        return SG_EINVAL;
    }
    const char *p = target;
    const char *end = p + strcspn(p, "/?");
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@') at = q;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) {
            snprintf(err, errlen,
                     "Redis store URL: credentials must be :password@ or "
                     "user:password@");
            return SG_EINVAL;
        }
        if (copy_part(a->user, sizeof a->user, p, colon) != 0 ||
            copy_part(a->pass, sizeof a->pass, colon + 1, at) != 0 || !a->pass[0]) {
            snprintf(err, errlen, "Redis store URL: user or password empty or too long");
            return SG_EINVAL;
        }
        p = at + 1;
    }
    const char *hend = memchr(p, ':', (size_t)(end - p));
    if (!hend) hend = end;
    if (hend == p || copy_part(a->host, sizeof a->host, p, hend) != 0) {
        snprintf(err, errlen, "Redis store URL '%.64s...' has no host (redis://host:port/N)", url);
        return SG_EINVAL;
    }
    for (const char *q = a->host; *q; q++) {
        if (!isalnum((unsigned char)*q) && *q != '.' && *q != '-' && *q != '_') {
            snprintf(err, errlen, "Redis store URL: bad character in host '%s'", a->host);
            return SG_EINVAL;
        }
    }
    if (hend < end) {
        long port = parse_num(hend + 1, end, 65535);
        if (port < 1) {
            snprintf(err, errlen, "Redis store URL: port must be 1-65535");
            return SG_EINVAL;
        }
        a->port = (int)port;
    }
    p = end;
    if (*p == '/') {
        const char *dend = p + 1 + strcspn(p + 1, "?");
        long db = parse_num(p + 1, dend, MAX_DB);
        if (db < 0) {
            snprintf(err, errlen, "Redis store URL: database must be a number 0-%d after '/'",
                     MAX_DB);
            return SG_EINVAL;
        }
        a->db = (int)db;
        p = dend;
    }
    if (*p == '?') {
        if (strcmp(p + 1, "durability=relaxed") == 0)
            a->relaxed = 1;
        else if (strcmp(p + 1, "durability=strict") != 0) {
            snprintf(err, errlen,
                     "Redis store URL: unknown option '%.64s' (only durability=relaxed or "
                     "durability=strict)",
                     p + 1);
            return SG_EINVAL;
        }
    } else if (*p) {
        snprintf(err, errlen, "Redis store URL: unexpected '%.32s'", p);
        return SG_EINVAL;
    }
    snprintf(a->shown, sizeof a->shown, "redis://%s:%d/%d", a->host, a->port, a->db);
    return SG_OK;
}

/* ---- connections --------------------------------------------------------------- */

const char *sg__rd_reply_text(const redisReply *r)
{
    if (!r) return "no reply";
    if ((r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STATUS ||
         r->type == REDIS_REPLY_STRING) &&
        r->str)
        return r->str;
    return "unexpected reply type";
}

redisReply *sg__rd_cmd(redisContext **c, int n, const char **argv, const size_t *len,
                       const char *what, char *err, size_t errlen)
{
    redisReply *r = redisCommandArgv(*c, n, argv, len);
    if (!r) {
        snprintf(err, errlen, "Redis %s: %s", what, (*c)->errstr[0] ? (*c)->errstr : "no reply");
        redisFree(*c);
        *c = NULL;
    }
    return r;
}

/* A command with text arguments only; its reply must not be an error. */
static redisReply *cmd_ok(redisContext **c, const char *what, char *err, size_t errlen, int n,
                          const char **argv)
{
    redisReply *r = sg__rd_cmd(c, n, argv, NULL, what, err, errlen);
    if (r && r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "Redis %s: %s", what, sg__rd_reply_text(r));
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static int load_script(redisContext **c, const char *body, const char *want, char *err,
                       size_t errlen)
{
    const char *argv[] = {"SCRIPT", "LOAD", body};
    redisReply *r = cmd_ok(c, "SCRIPT LOAD", err, errlen, 3, argv);
    if (!r) return -1;
    int ok = r->type == REDIS_REPLY_STRING && r->len == 40 && (!want || !strcmp(r->str, want));
    if (!ok) snprintf(err, errlen, "Redis SCRIPT LOAD: unexpected answer");
    freeReplyObject(r);
    return ok ? 0 : -1;
}

redisContext *sg__rd_connect(const rd_addr *a, const sg_store_backend *b, char *err, size_t errlen)
{
    struct timeval ct = {CONNECT_TIMEOUT_MS / 1000, 0};
    struct timeval tv = {a->timeout_ms / 1000, (a->timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(a->host, a->port, ct);
    redisReply *r = NULL;
    char dbs[16];
    if (!c) {
        snprintf(err, errlen, "cannot connect to Redis %s: out of memory", a->shown);
        return NULL;
    }
    if (c->err) {
        snprintf(err, errlen, "cannot connect to Redis %s: %s", a->shown, c->errstr);
        goto fail;
    }
    /* Replies are ours, but a server that is not Redis (or a broken one)
     * must not make us hold an unbounded idle buffer. */
    c->reader->maxbuf = READER_MAXBUF;
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        snprintf(err, errlen, "Redis %s: cannot set the timeout", a->shown);
        goto fail;
    }
    if (a->pass[0]) {
        const char *av[] = {"AUTH", a->user, a->pass};
        r = a->user[0] ? cmd_ok(&c, "AUTH", err, errlen, 3, av)
                       : cmd_ok(&c, "AUTH", err, errlen, 2, (const char *[]){"AUTH", a->pass});
        if (!r) goto fail;
        freeReplyObject(r);
    }
    snprintf(dbs, sizeof dbs, "%d", a->db);
    r = cmd_ok(&c, "SELECT", err, errlen, 2, (const char *[]){"SELECT", dbs});
    if (!r) goto fail;
    freeReplyObject(r);
    if (b && (load_script(&c, sg__rd_lua_write, b->sha_write, err, errlen) != 0 ||
              load_script(&c, sg__rd_lua_lease, b->sha_lease, err, errlen) != 0 ||
              load_script(&c, sg__rd_lua_read, b->sha_read, err, errlen) != 0))
        goto fail;
    return c;
fail:
    if (c) redisFree(c);
    return NULL;
}

/* ---- open ---------------------------------------------------------------------------- */

/* One CONFIG GET value into out ("" if the server has none). */
static int config_get(redisContext **c, const char *name, char *out, size_t n, char *err,
                      size_t errlen)
{
    redisReply *r =
        sg__rd_cmd(c, 3, (const char *[]){"CONFIG", "GET", name}, NULL, "CONFIG GET", err, errlen);
    if (!r) return -1;
    int ok = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen,
                 "cannot check the Redis durability settings (CONFIG GET %s: %s); the server "
                 "must run with appendonly yes and appendfsync always; if it does and CONFIG "
                 "is disabled, add ?durability=relaxed to the store URL",
                 name, sg__rd_reply_text(r));
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
               r->element[1]->type == REDIS_REPLY_STRING) {
        snprintf(out, n, "%s", r->element[1]->str);
        ok = 1;
    } else {
        snprintf(err, errlen, "Redis CONFIG GET %s: unexpected answer", name);
    }
    freeReplyObject(r);
    return ok ? 0 : -1;
}

static sg_status check_durability(sg_store_backend *b, char *err, size_t errlen)
{
    char aof[32] = "", fsync[32] = "";
    if (config_get(&b->w, "appendonly", aof, sizeof aof, err, errlen) != 0 ||
        config_get(&b->w, "appendfsync", fsync, sizeof fsync, err, errlen) != 0)
        return SG_EUNAVAIL;
    if (strcmp(aof, "yes") != 0 || strcmp(fsync, "always") != 0) {
        snprintf(err, errlen,
                 "Redis %s runs with appendonly %s and appendfsync %s: sagad needs appendonly "
                 "yes and appendfsync always so that a write is on disk before it is "
                 "acknowledged (or ?durability=relaxed in the URL to accept losing the last "
                 "second of writes)",
                 b->a.shown, aof, fsync);
        return SG_EUNAVAIL;
    }
    return SG_OK;
}

/* The layout version: set on an empty database, else checked. */
static sg_status check_version(sg_store_backend *b, char *err, size_t errlen)
{
    char v[16];
    snprintf(v, sizeof v, "%d", SG_RD_LAYOUT_VERSION);
    redisReply *r =
        cmd_ok(&b->w, "SET", err, errlen, 4, (const char *[]){"SET", "sagad:version", v, "NX"});
    if (!r) return SG_EIO;
    freeReplyObject(r);
    r = cmd_ok(&b->w, "GET", err, errlen, 2, (const char *[]){"GET", "sagad:version"});
    if (!r) return SG_EIO;
    sg_status st = SG_OK;
    long have = -1;
    if (r->type == REDIS_REPLY_STRING) have = parse_num(r->str, r->str + r->len, 1000000);
    if (have > SG_RD_LAYOUT_VERSION) {
        snprintf(err, errlen,
                 "Redis %s has sagad layout version %ld, newer than this sagad supports (%d): it "
                 "was written by a newer sagad; run that one, or point this one at another "
                 "database",
                 b->a.shown, have, SG_RD_LAYOUT_VERSION);
        st = SG_EINVAL;
    } else if (have < 1) {
        snprintf(err, errlen, "Redis %s: key sagad:version holds no layout version sagad writes",
                 b->a.shown);
        st = SG_EINVAL;
    }
    freeReplyObject(r);
    return st;
}

static void rd_free(sg_store_backend *b)
{
    if (b->w) redisFree(b->w);
    free(b->doubt);
    free(b);
}

/* The digest Redis gives body (SCRIPT LOAD answers it), from a first
 * connection: later connections load the scripts and check they match. */
static int script_sha(redisContext **c, const char *body, char out[41], char *err, size_t errlen)
{
    const char *argv[] = {"SCRIPT", "LOAD", body};
    redisReply *r = cmd_ok(c, "SCRIPT LOAD", err, errlen, 3, argv);
    if (!r) return -1;
    int ok = r->type == REDIS_REPLY_STRING && r->len == 40;
    if (ok)
        memcpy(out, r->str, 41);
    else
        snprintf(err, errlen, "Redis SCRIPT LOAD: unexpected answer");
    freeReplyObject(r);
    return ok ? 0 : -1;
}

static sg_status rd_open(sg_store_backend **out, const char *url, const char *target,
                         const sg_store_options *opt, char *err, size_t errlen)
{
    sg_store_backend *b = sg_xcalloc(1, sizeof *b);
    sg_status st = SG_EINVAL;
    *out = NULL;
    if (parse_url(&b->a, url, target, err, errlen) != SG_OK) goto fail;
    int busy = opt && opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms : SG_STORE_BUSY_TIMEOUT_MS;
    b->a.timeout_ms = busy * 2;
    b->lease_ms = opt && opt->lease_ms > 0 ? opt->lease_ms : SG_STORE_LEASE_MS;
    st = SG_EIO;
    b->w = sg__rd_connect(&b->a, NULL, err, errlen);
    if (!b->w) goto fail;
    if (script_sha(&b->w, sg__rd_lua_write, b->sha_write, err, errlen) != 0 ||
        script_sha(&b->w, sg__rd_lua_lease, b->sha_lease, err, errlen) != 0 ||
        script_sha(&b->w, sg__rd_lua_read, b->sha_read, err, errlen) != 0)
        goto fail;
    if (!b->a.relaxed && (st = check_durability(b, err, errlen)) != SG_OK) goto fail;
    if ((st = check_version(b, err, errlen)) != SG_OK) goto fail;
    if ((st = sg__rd_lease_take(b, err, errlen)) != SG_OK) goto fail;
    if ((st = sg__rd_lease_upgrade(b, err, errlen)) != SG_OK) goto fail;
    /* A sagad restarted after a clean close (or after its lease ran out)
     * resumes its sagas at once rather than at the first adoption. */
    size_t taken = 0;
    if ((st = sg__rd_adopt_at_open(b, &taken, err, errlen)) != SG_OK) goto fail;
    if (taken)
        sg_log(SG_LOG_INFO, "store: %s: took over %zu sagas of expired leases", b->a.shown, taken);
    *out = b;
    return SG_OK;
fail:
    sg__rd_lease_drop(b);
    rd_free(b);
    return st;
}

static void rd_close(sg_store_backend *b)
{
    if (!b) return;
    if (!b->fenced) sg__rd_lease_drop(b);
    rd_free(b);
}

void sg__rd_own_index(char *out, size_t n, const sg_store_backend *b, const char *which)
{
    snprintf(out, n, "o:%s:%s", b->owner, which);
}

void sg__rd_member(char out[SG_RD_KEY_LEN + 1], int64_t created_us, const char *id)
{
    uint64_t u = (uint64_t)created_us ^ ((uint64_t)1 << 63);
    snprintf(out, SG_RD_KEY_LEN + 1, "%020llu:%.36s", (unsigned long long)u, id);
}

static const char *const redis_schemes[] = {"redis", NULL};

const struct sg_store_ops sg_store_redis_ops = {
    .schemes = redis_schemes,
    .plain_paths = 0,
    .shared = 1,
    .open = rd_open,
    .close = rd_close,
    .exec_batch = sg__rd_exec_batch,
    .reader_open = sg__rd_reader_open,
    .reader_close = sg__rd_reader_close,
    .get = sg__rd_get,
    .get_by_idem = sg__rd_get_by_idem,
    .list = sg__rd_list,
    .load_unfinished = sg__rd_load_unfinished,
    .load_pending_events = sg__rd_load_pending_events,
    .load_unfinished_page = sg__rd_load_unfinished_page,
    .load_compensations = sg__rd_load_compensations,
    .has_orphans = sg__rd_has_orphans,
    .get_event = sg__rd_get_event,
    .list_events = sg__rd_list_events,
    .count_events = sg__rd_count_events,
    .load_defs = sg__rd_load_defs,
    .counts = sg__rd_counts,
    .owner = sg__rd_owner,
    .adopt = sg__rd_adopt,
};
