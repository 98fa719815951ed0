/* W3C Trace Context (https://www.w3.org/TR/trace-context/): the
 * traceparent a client sends is continued, or a trace is started; every
 * downstream call and event gets a traceparent of the saga's trace with a
 * span id of its own. sagad records no spans: it only passes the context
 * on, so that the services it calls join the caller's trace. */
#ifndef SG_TRACE_H
#define SG_TRACE_H

#include <stddef.h>
#include <stdint.h>

#define SG_TRACE_ID_HEX 32    /* trace-id: 16 bytes as lowercase hex */
#define SG_SPAN_ID_HEX 16     /* parent-id: 8 bytes as lowercase hex */
#define SG_TRACEPARENT_LEN 55 /* "00-<trace-id>-<parent-id>-<flags>" */
/* A tracestate longer than this is dropped, not cut (the spec allows 32
 * members; 512 is what it asks every vendor to pass on at least). */
#define SG_TRACESTATE_MAX 512
#define SG_TRACE_SAMPLED 0x01 /* the one flag of version 00 */

/* A saga's trace: what the store keeps and every downstream call carries. */
typedef struct sg_trace {
    char trace_id[SG_TRACE_ID_HEX + 1]; /* lowercase hex; "" = none (a saga
                                           stored before sagad traced) */
    uint8_t flags;                      /* trace-flags */
} sg_trace;

/* Parses a traceparent header value of len bytes (p need not end in NUL)
 * strictly as the spec says: version 00 is exactly
 * "00-<32 lowercase hex>-<16 lowercase hex>-<2 lowercase hex>" with
 * neither id all zeros; version ff is invalid; a higher version is read
 * forward-compatibly (its first 55 characters as version 00, then either
 * the end or a '-' and anything; of its flags only "sampled" is kept).
 * On success *out holds the trace and parent (the caller's span id, may be
 * NULL) its 16 hex digits and a NUL; returns 1. Otherwise 0, *out
 * untouched: the caller starts a new trace (never an error for the client). */
int sg_trace_parse(const char *p, size_t len, sg_trace *out, char parent[SG_SPAN_ID_HEX + 1]);
/* A new trace: a random trace id, flags SG_TRACE_SAMPLED. Thread-safe. */
void sg_trace_new(sg_trace *out);
/* The traceparent of one downstream call in t's trace, with a new random
 * span id: out gets SG_TRACEPARENT_LEN characters and a NUL. t->trace_id
 * must be set. Thread-safe. */
void sg_trace_child(const sg_trace *t, char out[SG_TRACEPARENT_LEN + 1]);
/* 1 if the len bytes at p are a tracestate sagad passes on: 1 to
 * SG_TRACESTATE_MAX printable ASCII characters (0x20-0x7e), not all
 * blank. Members are not parsed: the value goes on as it came. */
int sg_tracestate_ok(const char *p, size_t len);
/* 1 if s is a stored trace id: 32 lowercase hex digits, not all zero. */
int sg_trace_id_ok(const char *s);

#endif
