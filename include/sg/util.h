/* Small utilities: ids, clocks, timestamps, logging, URL checks. */
#ifndef SG_UTIL_H
#define SG_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "sg/status.h"

#define SG_ID_LEN 36   /* textual UUID, without the NUL */
#define SG_TIME_LEN 27 /* "2026-11-28T10:00:00.000000Z" */

/* Random (version 4) UUID into out[SG_ID_LEN + 1]. Thread-safe. */
void sg_uuid_v4(char out[SG_ID_LEN + 1]);
/* Time-ordered (version 7, RFC 9562) UUID into out[SG_ID_LEN + 1]: 48-bit
 * Unix milliseconds, then a 12-bit counter started at a random value
 * below 2048 each millisecond, then 62 random bits. The ids one thread
 * makes are strictly increasing (as bytes and as lowercase text), also if
 * the wall clock steps back; those of different threads differ by their
 * random bits. Inserted in that order they land at the end of a B-tree
 * instead of all over it. Thread-safe; randomness comes from a per-thread
 * pool refilled in 4 KiB reads. Sagas and events get these ids. */
void sg_uuid_v7(char out[SG_ID_LEN + 1]);
/* n random bytes (from the pool the ids use) into out. Thread-safe. */
void sg_random_bytes(void *out, size_t n);
/* 1 if s is a syntactically valid textual UUID (any version). */
int sg_uuid_valid(const char *s, size_t len);

/* Bytes of the valid UTF-8 sequence at p[0..n) (n >= 1): 1 for ASCII, 0
 * if it is not one (overlong forms, surrogates and code points past
 * U+10FFFF included). */
size_t sg_utf8_len(const unsigned char *p, size_t n);

/* Wall clock, microseconds since the Unix epoch: for the times records
 * hold (they outlive the process); timers use sg_mono_us. */
int64_t sg_now_us(void);
/* Monotonic clock (CLOCK_MONOTONIC), microseconds from an arbitrary start:
 * for timers and deadlines held in memory. Never goes back. */
int64_t sg_mono_us(void);
/* UTC ISO 8601 with microseconds and Z, into out[SG_TIME_LEN + 1]. */
void sg_time_iso(int64_t us, char out[SG_TIME_LEN + 1]);

typedef enum { SG_LOG_DEBUG, SG_LOG_INFO, SG_LOG_WARN, SG_LOG_ERROR } sg_log_level;
/* One line to stderr with a UTC timestamp. Thread-safe. */
void sg_log(sg_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sg_log_set_level(sg_log_level lvl);
/* --log-format: text (default) writes "<time> <level> <text>" lines;
 * json writes one JSON object a line, {"ts","level","msg"} plus, for a
 * saga's transition, its fields (sg_log_saga). Set before logging starts. */
typedef enum { SG_LOG_TEXT, SG_LOG_JSON } sg_log_format;
void sg_log_set_format(sg_log_format f);
/* "text" or "json" into *out; SG_EINVAL if neither. */
sg_status sg_log_format_parse(const char *s, sg_log_format *out);
/* A saga transition's fields; any may be NULL (then left out). All
 * borrowed for the call. */
typedef struct sg_log_fields {
    const char *saga_id;
    const char *type;     /* definition name */
    const char *trace_id; /* W3C trace id */
    const char *step;     /* step name */
    const char *status;   /* the step's or saga's new status, e.g. "COMPLETED" */
    const char *event;    /* what happened when it is not a status: "compensation_delivered" */
} sg_log_fields;
/* sg_log with a saga's fields: the text line is the same as sg_log's;
 * a json line carries the fields too. */
void sg_log_saga(sg_log_level lvl, const sg_log_fields *f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with the arguments as a va_list (for wrappers that add fields). */
void sg_log_saga_v(sg_log_level lvl, const sg_log_fields *f, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* Writes out the lines still gathered (info and debug lines go out within
 * about 10 ms on their own); also runs at exit. Any thread. */
void sg_log_flush(void);

/* 1 if url is an absolute http(s) URL with a host (libcurl's parser);
 * 0 for NULL. Thread-safe. */
int sg_http_url_ok(const char *url);

#endif
