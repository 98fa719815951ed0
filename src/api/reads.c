/* The read routes: GET /saga/{id}, GET /sagas and GET /readyz, answered on
 * the MHD thread from its own store reader, never waiting for the writer. */
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "api_int.h"
#include "render.h"
#include "server_int.h"
#include "sg/alloc.h"
#include "sg/def.h"
#include "sg/json.h"
#include "sg/util.h"

/* Caps on what we render: one record holds a request (<= max_body) and
 * step responses (capped by the HTTP client). A GET /sagas page ends early
 * rather than grow past PAGE_BUDGET (its next cursor picks up from there),
 * and its records are fetched from the store a few at a time: the first
 * FIRST_CHUNK, then as many as the largest record so far says fit in
 * CHUNK_BYTES, so memory stays bounded however large records are. */
#define OUT_MAX_ONE ((size_t)64 << 20)
#define PAGE_BUDGET ((size_t)32 << 20)
#define FIRST_CHUNK ((size_t)16)
#define CHUNK_BYTES ((size_t)16 << 20)

sg_store_reader *sg__api_reader(sg_api *a, char *err, size_t errlen)
{
    snprintf(err, errlen, "store unavailable");
    if (!a->have_key || !a->store) return NULL;
    sg_store_reader *r = pthread_getspecific(a->reader_key);
    if (r) return r;
    if (sg_store_reader_open(a->store, &r, err, errlen) != SG_OK) return NULL;
    reader_slot *slot = sg_xcalloc(1, sizeof *slot);
    slot->reader = r;
    pthread_mutex_lock(&a->readers_mu);
    DL_APPEND(a->readers, slot);
    pthread_mutex_unlock(&a->readers_mu);
    pthread_setspecific(a->reader_key, r);
    return r;
}

void sg__api_close_readers(sg_api *a)
{
    reader_slot *slot, *tmp;
    DL_FOREACH_SAFE(a->readers, slot, tmp)
    {
        DL_DELETE(a->readers, slot);
        sg_store_reader_close(slot->reader);
        free(slot);
    }
}

enum MHD_Result sg__serve_get(sg_api *a, struct MHD_Connection *c, const char *id)
{
    char err[256];
    if (!sg_uuid_valid(id, strnlen(id, SG_ID_LEN + 1)))
        return sg__send_detail(c, MHD_HTTP_NOT_FOUND, "Saga no encontrada", NULL);
    sg_store_reader *r = sg__api_reader(a, err, sizeof err);
    if (!r) return sg__send_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, err, NULL);

    sg_saga_rec rec;
    enum MHD_Result ret;
    sg_status st = sg_store_get(r, id, &rec);
    if (st == SG_ENOTFOUND) {
        ret = sg__send_detail(c, MHD_HTTP_NOT_FOUND, "Saga no encontrada", NULL);
        goto done;
    }
    if (st != SG_OK) {
        ret = sg__send_detailf(c, MHD_HTTP_SERVICE_UNAVAILABLE, "store error: %s",
                               sg_store_reader_error(r));
        goto done;
    }
    sg_buf b;
    sg_buf_init(&b, OUT_MAX_ONE);
    if (sg_render_saga(&b, &rec, sg_def_find_version(rec.def_name, rec.def_version)) != SG_OK) {
        sg_buf_free(&b);
        ret =
            sg__send_detail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "record too large to render", NULL);
        goto done;
    }
    ret = sg__send_buf(c, MHD_HTTP_OK, &b, NULL);
done:
    sg_saga_rec_free(&rec);
    return ret;
}

/* A query argument; *bad is set when it hides a NUL (%00), which a C
 * string would silently cut short. */
static const char *query_arg(struct MHD_Connection *c, const char *key, int *bad)
{
    const char *v = NULL;
    size_t n = 0;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, key, strlen(key), &v, &n) !=
        MHD_YES)
        return NULL;
    if (v && strlen(v) != n) *bad = 1;
    return v;
}

/* Fills page from the store, chunk by chunk, until the limit, the end of
 * the listing or the page's budget. next gets the store's cursor. */
static sg_status fill_page(sg_store_reader *r, sg_list_query q, sg_api_page *page,
                           char next[SG_CURSOR_MAX])
{
    char cursor[SG_CURSOR_MAX]; /* where the next chunk starts */
    size_t want = q.limit, chunk = FIRST_CHUNK;
    for (;;) {
        sg_list_query cq = q;
        cq.limit = want < chunk ? want : chunk;
        sg_saga_rec *recs = NULL; /* owned: freed below with each record */
        size_t n = 0;
        sg_status st = sg_store_list(r, &cq, &recs, &n, next);
        for (size_t i = 0; i < n && st == SG_OK && !page->full; i++)
            st = sg_api_page_add(page, &recs[i]);
        for (size_t i = 0; i < n; i++)
            sg_saga_rec_free(&recs[i]);
        free(recs);
        if (st != SG_OK || page->full || n == 0 || !next[0] || n >= want) return st;
        want -= n;
        memcpy(cursor, next, sizeof cursor);
        q.after = cursor;
        size_t fit = CHUNK_BYTES / (page->biggest ? page->biggest : 1);
        chunk = fit < 1 ? 1 : fit > SG_API_LIMIT_MAX ? SG_API_LIMIT_MAX : fit;
    }
}

enum MHD_Result sg__serve_list(sg_api *a, struct MHD_Connection *c)
{
    int bad = 0;
    const char *status = query_arg(c, "status", &bad);
    const char *limit = query_arg(c, "limit", &bad);
    const char *after = query_arg(c, "after", &bad);
    const char *type = query_arg(c, "type", &bad);
    sg_list_query q;
    char err[256];
    if (bad) return sg__send_detail(c, MHD_HTTP_BAD_REQUEST, "NUL byte in a query argument", NULL);
    if (sg_api_parse_list_query(status, limit, after, type, &q, err, sizeof err) != SG_OK)
        return sg__send_detail(c, MHD_HTTP_BAD_REQUEST, err, NULL);
    sg_store_reader *r = sg__api_reader(a, err, sizeof err);
    if (!r) return sg__send_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, err, NULL);

    sg_api_page page;
    sg_api_page_init(&page, PAGE_BUDGET, OUT_MAX_ONE);
    char next[SG_CURSOR_MAX] = "";
    enum MHD_Result ret;
    sg_status st = fill_page(r, q, &page, next);
    if (st == SG_EINVAL) /* only the client's cursor can be malformed */
        ret = sg__send_detail(c, MHD_HTTP_BAD_REQUEST, "malformed cursor in after", NULL);
    else if (st == SG_ETOOBIG)
        ret =
            sg__send_detail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "record too large to render", NULL);
    else if (st != SG_OK)
        ret = sg__send_detailf(c, MHD_HTTP_SERVICE_UNAVAILABLE, "store error: %s",
                               sg_store_reader_error(r));
    else if (sg_api_page_finish(&page, next) != SG_OK)
        ret = sg__send_detail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "page too large to render", NULL);
    else
        return sg__send_buf(c, MHD_HTTP_OK, &page.out, NULL);
    sg_api_page_free(&page);
    return ret;
}

/* GET /events: outbox entries, newest first, paged like /sagas (entries
 * carry no payload, so a page of 1,000 stays small). */
enum MHD_Result sg__serve_events(sg_api *a, struct MHD_Connection *c)
{
    int bad = 0;
    const char *status = query_arg(c, "status", &bad);
    const char *limit = query_arg(c, "limit", &bad);
    const char *after = query_arg(c, "after", &bad);
    sg_list_query q;
    char err[256];
    if (bad) return sg__send_detail(c, MHD_HTTP_BAD_REQUEST, "NUL byte in a query argument", NULL);
    if (sg_api_parse_event_query(status, limit, after, &q, err, sizeof err) != SG_OK)
        return sg__send_detail(c, MHD_HTTP_BAD_REQUEST, err, NULL);
    sg_store_reader *r = sg__api_reader(a, err, sizeof err);
    if (!r) return sg__send_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, err, NULL);

    sg_event_rec *evs = NULL;
    size_t n = 0;
    char next[SG_CURSOR_MAX];
    sg_status st = sg_store_list_events(r, &q, &evs, &n, next);
    if (st == SG_EINVAL)
        return sg__send_detail(c, MHD_HTTP_BAD_REQUEST, "malformed cursor in after", NULL);
    if (st != SG_OK)
        return sg__send_detailf(c, MHD_HTTP_SERVICE_UNAVAILABLE, "store error: %s",
                                sg_store_reader_error(r));
    sg_buf b;
    sg_buf_init(&b, OUT_MAX_ONE);
    st = sg_buf_adds(&b, "{\"events\":[");
    for (size_t i = 0; i < n; i++) {
        if (st == SG_OK && i) st = sg_buf_addc(&b, ',');
        if (st == SG_OK) st = sg_render_event(&b, &evs[i]);
        sg_event_rec_free(&evs[i]);
    }
    free(evs);
    if (st == SG_OK) st = sg_buf_adds(&b, "],\"next\":");
    if (st == SG_OK) st = sg_json_add_cstr(&b, next[0] ? next : NULL);
    if (st == SG_OK) st = sg_buf_addc(&b, '}');
    if (st != SG_OK) {
        sg_buf_free(&b);
        return sg__send_detail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "page too large to render", NULL);
    }
    return sg__send_buf(c, MHD_HTTP_OK, &b, NULL);
}

/* GET /definitions: every saga type with its version and steps. */
enum MHD_Result sg__serve_definitions(sg_api *a, struct MHD_Connection *c)
{
    (void)a;
    sg_buf b;
    sg_buf_init(&b, OUT_MAX_ONE);
    sg_status st;
    unsigned gen;
    do { /* one set: start over if a reload swapped it meanwhile */
        gen = sg_def_generation();
        sg_buf_reset(&b);
        st = sg_buf_adds(&b, "{\"definitions\":[");
        const sg_def *d;
        for (size_t i = 0; st == SG_OK && (d = sg_def_at(i)); i++) {
            int versions[64];
            size_t n = sg_def_versions(d->name, versions, 64);
            if (i) st = sg_buf_addc(&b, ',');
            if (st == SG_OK) st = sg_render_definition(&b, d, i == 0, versions, n < 64 ? n : 64);
        }
        if (st == SG_OK) st = sg_buf_adds(&b, "]}");
    } while (st == SG_OK && gen != sg_def_generation());
    if (st != SG_OK) {
        sg_buf_free(&b);
        return sg__send_detail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "definitions too large", NULL);
    }
    return sg__send_buf(c, MHD_HTTP_OK, &b, NULL);
}

enum MHD_Result sg__serve_ready(sg_api *a, struct MHD_Connection *c)
{
    char why[256] = "";
    if (atomic_load(&a->quiesced))
        return sg__send_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting down", NULL);
    if (a->store && sg_store_health(a->store, why, sizeof why) != SG_OK)
        return sg__send_detailf(c, MHD_HTTP_SERVICE_UNAVAILABLE, "store: %s",
                                why[0] ? why : "not healthy");
    why[0] = '\0';
    if (a->bus && sg_bus_is_broker(a->bus) && sg_bus_health(a->bus, why, sizeof why) != SG_OK)
        return sg__send_detailf(c, MHD_HTTP_SERVICE_UNAVAILABLE, "bus %s: %s", sg_bus_name(a->bus),
                                why[0] ? why : "not connected");
    return sg__send_literal(c, MHD_HTTP_OK, "{\"status\":\"ready\"}");
}
