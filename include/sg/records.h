/* Saga, step and event records: the shared vocabulary of the store, the
 * engine and the API. Every char * member is owned by the record and freed
 * by its *_free function; raw JSON members hold the exact bytes received. */
#ifndef SG_RECORDS_H
#define SG_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include "sg/status.h"
#include "sg/trace.h"
#include "sg/util.h"

typedef enum { SG_STEP_PENDING, SG_STEP_RUNNING, SG_STEP_COMPLETED, SG_STEP_FAILED } sg_step_status;
typedef enum { SG_SAGA_IN_PROGRESS, SG_SAGA_COMPLETED, SG_SAGA_FAILED } sg_saga_status;
/* PARKED: a compensation is parked (design §1); the later ones wait. */
typedef enum { SG_COMP_NONE, SG_COMP_PENDING, SG_COMP_COMPLETED, SG_COMP_PARKED } sg_comp_status;
/* PARKED: a compensation kept aside until an operator redelivers it. */
typedef enum {
    SG_EVENT_PENDING,
    SG_EVENT_DELIVERED,
    SG_EVENT_WITHDRAWN,
    SG_EVENT_PARKED
} sg_event_status;

/* Contract spellings ("PENDING", "IN_PROGRESS", ...); static strings. */
const char *sg_step_status_name(sg_step_status s);
const char *sg_saga_status_name(sg_saga_status s);
const char *sg_comp_status_name(sg_comp_status s);
const char *sg_event_status_name(sg_event_status s);
/* Parse a contract spelling into *out; SG_EINVAL if unknown. */
sg_status sg_saga_status_parse(const char *s, sg_saga_status *out);
sg_status sg_event_status_parse(const char *s, sg_event_status *out);

/* A step's compensation as the outbox has it (design §6 "compensation" in
 * steps[]): filled by the store's readers, not written through steps. */
typedef struct sg_comp_rec {
    int present;            /* 0 = none planned (the other fields are unset) */
    sg_event_status status; /* PENDING, DELIVERED or PARKED */
    int attempts;
    int64_t created_us; /* when it was planned */
    int64_t started_us; /* when its first attempt started; 0 = not tried yet */
    int64_t updated_us; /* last status change; 0 = never */
    char *error;        /* last_error, or NULL */
} sg_comp_rec;

typedef struct sg_step_rec {
    char *name; /* step name from the definition */
    sg_step_status status;
    int attempts;
    int64_t started_us;  /* 0 = not started */
    int64_t finished_us; /* 0 = not finished */
    char *error;         /* NULL = none; the last attempt's reason while retrying */
    char *response;      /* raw JSON of a successful answer, or NULL */
    size_t response_len;
    int64_t next_us;  /* RUNNING, waiting out a backoff: wall time of the next attempt; else 0 */
    sg_comp_rec comp; /* read-only view of its compensation; ignored by writes */
} sg_step_rec;

typedef struct sg_saga_rec {
    char id[SG_ID_LEN + 1];
    char *def_name;  /* definition that runs it, e.g. "sta" */
    int def_version; /* and its version (1 for sagas stored before versions) */
    char *request;   /* raw JSON object as posted */
    size_t request_len;
    char *idem_key; /* Idempotency-Key of the starting POST, or NULL */
    sg_saga_status status;
    sg_comp_status comp_status;
    char *error; /* "Error en Step N (...): ..." or NULL */
    int64_t created_us;
    int64_t updated_us; /* as stored; what changed last: sg_saga_rec_updated_us */
    size_t nsteps;
    sg_step_rec *steps; /* owned array of nsteps */
    sg_trace trace;     /* W3C trace it runs in; trace_id "" for sagas stored before */
    char *tracestate;   /* the starting request's tracestate, passed on; or NULL */
} sg_saga_rec;

typedef struct sg_event_rec {
    char id[SG_ID_LEN + 1];
    char saga_id[SG_ID_LEN + 1];
    char *topic;   /* e.g. "tokenizer_event" */
    char *target;  /* NULL = the bus; else an http(s) URL to POST the payload to */
    char *payload; /* raw JSON (the saga's request) */
    size_t payload_len;
    int64_t created_us;
    int64_t deadline_us; /* 0 = retried until delivered; else withdrawn after */
    int compensation;    /* 1 if it is a compensation of its saga */
    int step_index;      /* step that published it, or that a compensation undoes */
    sg_event_status status;
    int attempts;
    char *last_error;   /* why the last attempt failed, or NULL */
    int64_t updated_us; /* last status change; 0 = never */
    /* An HTTP compensation's call (target set): */
    char *method;    /* NULL = POST */
    char *headers;   /* extra "Name: value" lines joined by '\n', or NULL */
    long timeout_ms; /* each attempt; 0 = the engine's step timeout */
} sg_event_rec;

void sg_step_rec_free(sg_step_rec *s);   /* frees members, not s */
void sg_saga_rec_free(sg_saga_rec *r);   /* frees members and steps, not r */
void sg_event_rec_free(sg_event_rec *e); /* frees members, not e */
/* The value of header `name` (any case) among e->headers' "Name: value"
 * lines, blanks around it trimmed, into out[n]; 1 if found and it fits,
 * else 0 (out is ""). On a bus event the lines are its trace context
 * (traceparent, tracestate), which the transport carries as headers or
 * properties; on an HTTP compensation, the call's extra headers. */
int sg_event_header(const sg_event_rec *e, const char *name, char *out, size_t n);
/* When r last changed: its updated_us, or a step's start or end after
 * it. A step moving on writes only its step rows (the saga's row is
 * written when its status, compensation status or error changes), so the
 * saga's own updated_us may lag its steps. */
int64_t sg_saga_rec_updated_us(const sg_saga_rec *r);
/* Deep copies; dst is overwritten (not freed first). */
void sg_step_rec_copy(sg_step_rec *dst, const sg_step_rec *src);
void sg_saga_rec_copy(sg_saga_rec *dst, const sg_saga_rec *src);
void sg_event_rec_copy(sg_event_rec *dst, const sg_event_rec *src);

#endif
