/* The API's pure helpers, shared by its files and its unit tests: request
 * parsing and GET /sagas pages (no MHD, no store), testable without a
 * server. */
#ifndef SG_API_INT_H
#define SG_API_INT_H

#include <stddef.h>
#include <stdint.h>

#include "sg/buf.h"
#include "sg/status.h"
#include "sg/store.h"

#define SG_API_IDEM_KEY_MAX 200
#define SG_API_LIMIT_DEFAULT 50
#define SG_API_LIMIT_MAX 1000

typedef enum sg_api_route_kind {
    SG_ROUTE_NOT_FOUND,   /* unknown path: 404 */
    SG_ROUTE_BAD_METHOD,  /* known path, wrong method: 405, *allow says which */
    SG_ROUTE_START,       /* POST /saga, or POST /sagas/{type} (*id: the type) */
    SG_ROUTE_GET,         /* GET /saga/{id}; *id points into url */
    SG_ROUTE_LIST,        /* GET /sagas */
    SG_ROUTE_HEALTH,      /* GET /healthz */
    SG_ROUTE_READY,       /* GET /readyz */
    SG_ROUTE_REDRIVE,     /* POST /saga/{id}/retry; *id points into url */
    SG_ROUTE_EVENTS,      /* GET /events */
    SG_ROUTE_REDELIVER,   /* POST /events/{id}/redeliver; *id points into url */
    SG_ROUTE_DEFINITIONS, /* GET /definitions */
    SG_ROUTE_ASSET,       /* a file compiled in (assets_int.h): /openapi.json, /docs, /ui/ */
    SG_ROUTE_REDIRECT,    /* GET /ui: 308 to /ui/ (*allow: the target) */
    SG_ROUTE_METRICS,     /* GET /metrics */
} sg_api_route_kind;

#define SG_API_TYPE_MAX 64

/* 1 if t is a usable saga type name: 1..SG_API_TYPE_MAX of A-Z a-z 0-9 _ - . */
int sg_api_type_valid(const char *t);

/* Match method and path (without the query string, as MHD hands it). HEAD
 * is served like GET. *id (borrowed from url: the raw tail after "/saga/",
 * or the 36 bytes of the id before "/retry" or "/redeliver") is set for
 * SG_ROUTE_GET, _REDRIVE and _REDELIVER; *allow (a static string) for
 * SG_ROUTE_BAD_METHOD. Either out-pointer may be NULL. */
sg_api_route_kind sg_api_route(const char *method, const char *url, const char **id,
                               const char **allow);

/* 1 if one Prefer header value asks for respond-async (RFC 7240: a
 * comma-separated list of preferences, each `token [= value] *(; param)`,
 * tokens case-insensitive). */
int sg_api_prefer_async(const char *value);

/* 1 if k is a usable Idempotency-Key: 1..SG_API_IDEM_KEY_MAX bytes of
 * printable ASCII (0x20..0x7e). */
int sg_api_idem_key_valid(const char *k);

/* Parses a Content-Length value (decimal digits only) into *out; SG_EINVAL
 * if malformed or over UINT64_MAX. */
sg_status sg_api_parse_content_length(const char *v, uint64_t *out);

/* Fills q from the GET /events query arguments (status: an outbox status,
 * PENDING|DELIVERED|PARKED|WITHDRAWN; limit and after as for /sagas). */
sg_status sg_api_parse_event_query(const char *status, const char *limit, const char *after,
                                   sg_list_query *q, char *err, size_t errlen);

/* Fills q from the GET /sagas query arguments (type: a saga type name,
 * borrowed into q->type) (each NULL or "" when absent:
 * status any, limit SG_API_LIMIT_DEFAULT, no cursor). q->after borrows
 * `after`. SG_EINVAL with a client-facing reason in err. */
sg_status sg_api_parse_list_query(const char *status, const char *limit, const char *after,
                                  const char *type, sg_list_query *q, char *err, size_t errlen);

/* Classifies a POST /saga body: SG_OK for a JSON object; SG_EINVAL for
 * bytes that are not JSON (malformed, bad UTF-8, too deep: 400); SG_ETYPE
 * for valid JSON that is not an object (422). err gets the reason. */
sg_status sg_api_check_body(const char *body, size_t len, char *err, size_t errlen);

/* ---- GET /sagas pages (page.c) ------------------------------------------ */

/* A page is {"sagas":[<record>,...],"next":<cursor>|null}. Records are
 * added while the page stays within a byte budget; the first record that
 * would take it past the budget is left out, and the page's next cursor
 * then continues right at that record (sg_store_cursor of the last one
 * in). A page always takes its first record if that one alone is at most
 * one_max bytes, so a listing always moves forward. */
typedef struct sg_api_page {
    sg_buf out;               /* the document so far; owned */
    size_t budget;            /* bytes a page of two or more records stays within */
    size_t one_max;           /* bytes one rendered record may take */
    size_t count;             /* records in the page */
    size_t biggest;           /* bytes of the largest record rendered */
    int full;                 /* a record was left out: the page ends here */
    char last[SG_CURSOR_MAX]; /* cursor after the last record in */
} sg_api_page;

void sg_api_page_init(sg_api_page *p, size_t budget, size_t one_max);
/* Appends r (rendered with its definition, if registered). SG_OK if it
 * was added or did not fit (then p->full is set: r is not in the page, nor
 * is any later record); SG_ETOOBIG if r is the page's first record and
 * alone takes more than one_max bytes (nothing to send: the caller answers
 * an error). */
sg_status sg_api_page_add(sg_api_page *p, const sg_saga_rec *r);
/* Closes the document. next is the store's cursor for the records that
 * follow the last one added ("" or NULL: none); a full page uses its own
 * instead. */
sg_status sg_api_page_finish(sg_api_page *p, const char *next);
void sg_api_page_free(sg_api_page *p);

#endif
