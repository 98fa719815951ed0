/* Loading saga types: the file is read and validated whole, every version
 * the store already has is made known first (a running saga may be on
 * one), a changed definition that kept its version is refused, and new
 * versions are stored before any saga can start on them. */
#include "defs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sg/alloc.h"
#include "sg/def.h"
#include "sg/util.h"

#define MAX_FILE ((size_t)4 << 20)

static sg_def_defaults defaults_of(const sg_config *c)
{
    sg_def_defaults d = {.retry = SG_RETRY_DEFAULT};
    d.retry.attempts = (int)c->step_retries + 1;
    d.retry.backoff_ms = c->retry_backoff_ms;
    if (d.retry.max_backoff_ms < d.retry.backoff_ms) d.retry.max_backoff_ms = d.retry.backoff_ms;
    return d;
}

static sg_status read_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    char *b = NULL;
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    b = sg_xmalloc(MAX_FILE + 1);
    size_t n = fread(b, 1, MAX_FILE + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        goto fail;
    }
    if (n > MAX_FILE) {
        snprintf(err, errlen, "%s: larger than %zu bytes", path, MAX_FILE);
        goto fail;
    }
    fclose(f);
    b[n] = '\0';
    *out = b;
    *len = n;
    return SG_OK;
fail:
    if (f) fclose(f);
    free(b);
    return SG_EINVAL;
}

static void defs_free(sg_def **defs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sg_def_destroy(defs[i]);
    free(defs);
}

void sg_defs_file_clear(sg_defs_file *f)
{
    defs_free(f->defs, f->n);
    f->defs = NULL;
    f->n = 0;
}

/* The file read and validated; on failure err has "FILE: place: why". */
static sg_status parse_file(const sg_config *c, sg_defs_file *f, char *err, size_t errlen)
{
    char *text = NULL, why[512];
    size_t len = 0;
    if (read_file(c->definitions, &text, &len, err, errlen) != SG_OK) return SG_EINVAL;
    sg_def_defaults dflt = defaults_of(c);
    sg_status st = sg_defs_parse(text, len, &dflt, &f->defs, &f->n, why, sizeof why);
    free(text);
    if (st != SG_OK) snprintf(err, errlen, "%s: %s", c->definitions, why);
    return st;
}

/* Every definition of f against the versions known by now; on failure f
 * is cleared and err says which changed without a new version. */
static sg_status check_file(const sg_config *c, sg_defs_file *f, char *err, size_t errlen)
{
    char why[512];
    for (size_t i = 0; i < f->n; i++) {
        if (sg_def_check(f->defs[i], why, sizeof why) == SG_OK) continue;
        snprintf(err, errlen, "%s: %s", c->definitions, why);
        sg_defs_file_clear(f);
        return SG_ECONFLICT;
    }
    return SG_OK;
}

static sg_write *insert_versions(sg_def **defs, size_t n)
{
    sg_write *w = sg_write_create();
    int64_t now = sg_now_us();
    for (size_t i = 0; i < n; i++)
        sg_write_def_insert(w, defs[i]->name, defs[i]->version, defs[i]->canonical, now);
    return w;
}

typedef struct keep_ctx {
    sg_def_defaults dflt;
} keep_ctx;

/* A stored version: known, so that its sagas resume on it, unless the
 * current set already has that name and version. */
static void on_stored(void *arg, const char *name, int version, const char *canonical)
{
    keep_ctx *k = arg;
    if (sg_def_find_version(name, version)) return;
    sg_def *d = NULL;
    char why[512];
    if (sg_def_parse_one(name, canonical, &k->dflt, &d, why, sizeof why) != SG_OK) {
        sg_log(SG_LOG_WARN,
               "stored definition %s version %d cannot be loaded (%s); its sagas "
               "stay as they are",
               name, version, why);
        return;
    }
    d->version = version;
    sg_def_keep(d);
}

static int keep_stored(const sg_config *c, sg_store *store, char *err, size_t errlen)
{
    sg_store_reader *r = NULL;
    keep_ctx k = {.dflt = defaults_of(c)};
    if (sg_store_reader_open(store, &r, err, errlen) != SG_OK) return 1;
    sg_status st = sg_store_load_defs(r, on_stored, &k);
    if (st != SG_OK)
        snprintf(err, errlen, "cannot read stored definitions: %s", sg_store_reader_error(r));
    sg_store_reader_close(r);
    return st == SG_OK ? 0 : 1;
}

static void log_current(const char *what)
{
    char list[1024] = "";
    size_t used = 0;
    const sg_def *d;
    for (size_t i = 0; (d = sg_def_at(i)) && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s v%d%s", i ? ", " : "",
                                 d->name, d->version, i ? "" : " (default)");
    sg_log(SG_LOG_INFO, "%s: %s", what, list);
}

int sg_defs_read(const sg_config *c, sg_defs_file *f, char *err, size_t errlen)
{
    f->defs = NULL;
    f->n = 0;
    if (!c->definitions) return 0;
    return parse_file(c, f, err, errlen) == SG_OK ? 0 : 2;
}

int sg_defs_load(const sg_config *c, sg_store *store, sg_defs_file *f, char *err, size_t errlen)
{
    if (!c->definitions) {
        sg_def *sta = NULL;
        if (sg_def_create_sta(&sta, c->anonymizer_url, c->ai_model_url) != SG_OK) {
            snprintf(err, errlen, "cannot build the saga definition");
            return 2;
        }
        sg_def_defaults dflt = defaults_of(c);
        sg_def_set_retry(sta, &dflt.retry);
        sg_def_register(sta);
        return keep_stored(c, store, err, errlen);
    }
    /* Stored versions first: the file is checked against them. */
    int rc = keep_stored(c, store, err, errlen);
    if (rc != 0) {
        sg_defs_file_clear(f);
        return rc;
    }
    if (check_file(c, f, err, errlen) != SG_OK) return 2;
    sg_status st = sg_store_commit_sync(store, insert_versions(f->defs, f->n));
    if (st != SG_OK) {
        snprintf(err, errlen, "%s: %s", c->definitions,
                 st == SG_ECONFLICT ? "a definition changed without a new version number "
                                      "(another sagad stored it meanwhile)"
                                    : "cannot store the definitions");
        sg_defs_file_clear(f);
        return st == SG_ECONFLICT ? 2 : 1;
    }
    sg_def_install(f->defs, f->n); /* takes them */
    f->defs = NULL;
    f->n = 0;
    log_current("definitions");
    return 0;
}

/* ---- SIGHUP --------------------------------------------------------------- */

typedef struct reload {
    sg_defs_file file;
    char *path;
} reload;

static void on_versions_stored(void *arg, sg_status st)
{
    reload *r = arg;
    if (st == SG_OK) {
        sg_def_install(r->file.defs, r->file.n); /* takes them */
        r->file.defs = NULL;
        r->file.n = 0;
        log_current("definitions reloaded");
    } else {
        sg_log(SG_LOG_ERROR, "%s: not reloaded, the old definitions stay: %s", r->path,
               st == SG_ECONFLICT ? "a definition changed without a new version number"
                                  : sg_status_text(st));
        sg_defs_file_clear(&r->file);
    }
    free(r->path);
    free(r);
}

void sg_defs_reload(const sg_config *c, sg_store *store)
{
    if (!c->definitions) {
        sg_log(SG_LOG_INFO, "SIGHUP: no --definitions file to reload");
        return;
    }
    char err[768];
    sg_defs_file f = {0};
    if (parse_file(c, &f, err, sizeof err) != SG_OK ||
        check_file(c, &f, err, sizeof err) != SG_OK) {
        sg_log(SG_LOG_ERROR, "%s; not reloaded, the old definitions stay", err);
        return;
    }
    reload *r = sg_xcalloc(1, sizeof *r);
    r->file = f;
    r->path = sg_xstrdup(c->definitions);
    if (sg_store_submit(store, insert_versions(f.defs, f.n), on_versions_stored, r) != SG_OK)
        on_versions_stored(r, SG_ECLOSED);
}
