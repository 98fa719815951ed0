/* Logging: one line per event on stderr, as text or (--log-format json)
 * as one JSON object. Lines at info and debug are
 * gathered in a buffer that a background thread writes out every few
 * milliseconds, so a saga transition costs a format and a copy on the
 * loop thread, never a write(2) or a wait for one; a warning or an error
 * writes everything gathered so far, itself included, at once. Nothing
 * is dropped: a full buffer is written out by the thread that fills it. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sg/util.h"

#define LOG_BUF (256 * 1024)
#define LOG_FLUSH_MS 10

static atomic_int log_level = SG_LOG_INFO;
/* Two buffers: loggers append to `fill` under mu; a drain swaps it for the
 * other and writes the full one without mu, so a slow stderr holds up
 * only the thread writing (and a logger that finds `fill` full). wmu makes
 * drains one at a time, so lines go out in the order they were logged. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t wmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static char bufs[2][LOG_BUF];
static char *fill = bufs[0];
static size_t used;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int flusher_ok;

void sg_log_set_level(sg_log_level lvl)
{
    atomic_store(&log_level, (int)lvl);
}

/* Partial writes and EINTR are retried; a failing stderr loses the lines
 * rather than the process. */
static void write_all(const char *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(STDERR_FILENO, p + off, n - off);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && errno == EINTR)
            continue;
        else
            break;
    }
}

/* Writes out what is gathered. Neither lock held by the caller. */
static void drain(void)
{
    pthread_mutex_lock(&wmu);
    pthread_mutex_lock(&mu);
    char *out = fill;
    size_t n = used;
    fill = fill == bufs[0] ? bufs[1] : bufs[0]; /* written out by the last drain */
    used = 0;
    pthread_mutex_unlock(&mu);
    write_all(out, n);
    pthread_mutex_unlock(&wmu);
}

static void *flusher(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (used == 0)
            pthread_cond_wait(&wake, &mu);
        /* Let more lines gather: one write for many. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += LOG_FLUSH_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (used > 0 && used < LOG_BUF / 2 && pthread_cond_timedwait(&wake, &mu, &until) == 0)
            continue;
        pthread_mutex_unlock(&mu);
        drain();
    }
    return NULL;
}

static void start_flusher(void)
{
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    flusher_ok = pthread_create(&t, &a, flusher, NULL) == 0;
    pthread_attr_destroy(&a);
    if (flusher_ok) {
        pthread_setname_np(t, "sg-log");
        atexit(sg_log_flush);
    }
}

void sg_log_flush(void)
{
    drain();
}

/* sg_time_iso's text for now, its date and seconds formatted once per
 * second per thread: a busy loop logs thousands of lines a second. */
static void stamp(char out[SG_TIME_LEN + 1])
{
    static _Thread_local int64_t last_s = -1;
    static _Thread_local char last[SG_TIME_LEN + 1];
    int64_t us = sg_now_us(), s = us / 1000000;
    if (s != last_s) {
        sg_time_iso(s * 1000000, last);
        last_s = s;
    }
    memcpy(out, last, SG_TIME_LEN + 1);
    /* "YYYY-MM-DDTHH:MM:SS.ffffffZ": the six digits before the Z. */
    int64_t frac = us % 1000000;
    for (int i = SG_TIME_LEN - 2; i >= SG_TIME_LEN - 7; i--) {
        out[i] = (char)('0' + frac % 10);
        frac /= 10;
    }
}

static atomic_int log_format = SG_LOG_TEXT;

void sg_log_set_format(sg_log_format f)
{
    atomic_store(&log_format, (int)f);
}

sg_status sg_log_format_parse(const char *s, sg_log_format *out)
{
    if (s && strcmp(s, "text") == 0)
        *out = SG_LOG_TEXT;
    else if (s && strcmp(s, "json") == 0)
        *out = SG_LOG_JSON;
    else
        return SG_EINVAL;
    return SG_OK;
}

/* Appends the whole line to what the flusher writes out. */
static void put_line(sg_log_level lvl, const char *line, size_t len)
{
    pthread_once(&once, start_flusher);
    pthread_mutex_lock(&mu);
    while (used + len > LOG_BUF) { /* full: write it out here, then append */
        pthread_mutex_unlock(&mu);
        drain();
        pthread_mutex_lock(&mu);
    }
    memcpy(fill + used, line, len); /* whole lines: threads never interleave */
    used += len;
    int now = lvl >= SG_LOG_WARN || !flusher_ok;
    if (!now && used == len) pthread_cond_signal(&wake); /* the first line wakes the flusher */
    pthread_mutex_unlock(&mu);
    if (now) drain();
}

/* Appends "key":"<s escaped>" (a comma first unless it is the first
 * member) to out[cap] at *n, cutting s rather than the line: room for the
 * closing characters is kept by the caller's cap. */
static void json_member(char *out, size_t cap, size_t *n, const char *key, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = *n;
    int w = snprintf(out + o, cap - o, "%s\"%s\":\"", o > 1 ? "," : "", key);
    if (w < 0 || (size_t)w >= cap - o) return;
    o += (size_t)w;
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);
    while (left > 0 && o + 8 < cap) {
        unsigned char c = *p;
        size_t k = 1;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\n' || c == '\t' || c == '\r') {
            out[o++] = '\\';
            out[o++] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[c >> 4];
            out[o + 5] = hex[c & 15];
            o += 6;
        } else if (c < 0x80) {
            out[o++] = (char)c;
        } else if ((k = sg_utf8_len(p, left)) != 0) {
            memcpy(out + o, p, k);
            o += k;
        } else {
            memcpy(out + o, "\\ufffd", 6);
            o += 6;
            k = 1;
        }
        p += k;
        left -= k;
    }
    out[o++] = '"';
    *n = o;
}

static void emit(sg_log_level lvl, const sg_log_fields *f, const char *fmt, va_list ap)
{
    static const char *names[] = {"debug ", "info ", "warn ", "error "};
    static const char *jnames[] = {"debug", "info", "warn", "error"};
    char msg[1024];
    char ts[SG_TIME_LEN + 1];
    stamp(ts);
    if (atomic_load(&log_format) == SG_LOG_TEXT) {
        /* Formatted once, in place: "<ts> <level> <msg>\n". */
        char line[SG_TIME_LEN + 8 + sizeof msg];
        size_t n = SG_TIME_LEN, k = strlen(names[lvl]);
        memcpy(line, ts, n);
        line[n++] = ' ';
        memcpy(line + n, names[lvl], k);
        n += k;
        int m = vsnprintf(line + n, sizeof msg, fmt, ap);
        n += m < 0 ? 0 : (size_t)m < sizeof msg ? (size_t)m : sizeof msg - 1;
        line[n++] = '\n';
        put_line(lvl, line, n);
        return;
    }
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* 6 bytes per character at worst, and room to close the object. */
    char line[6 * sizeof msg + 1024];
    size_t cap = sizeof line - 4, n = 0;
    line[n++] = '{';
    json_member(line, cap, &n, "ts", ts);
    json_member(line, cap, &n, "level", jnames[lvl]);
    const char *keys[] = {"saga_id", "type", "trace_id", "step", "status", "event"};
    const char *vals[] = {f ? f->saga_id : NULL, f ? f->type : NULL,   f ? f->trace_id : NULL,
                          f ? f->step : NULL,    f ? f->status : NULL, f ? f->event : NULL};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (vals[i] && vals[i][0]) json_member(line, cap, &n, keys[i], vals[i]);
    json_member(line, cap, &n, "msg", msg);
    line[n++] = '}';
    line[n++] = '\n';
    put_line(lvl, line, n);
}

void sg_log(sg_log_level lvl, const char *fmt, ...)
{
    if ((int)lvl < atomic_load(&log_level)) return;
    va_list ap;
    va_start(ap, fmt);
    emit(lvl, NULL, fmt, ap);
    va_end(ap);
}

void sg_log_saga_v(sg_log_level lvl, const sg_log_fields *f, const char *fmt, va_list ap)
{
    if ((int)lvl < atomic_load(&log_level)) return;
    emit(lvl, f, fmt, ap);
}

void sg_log_saga(sg_log_level lvl, const sg_log_fields *f, const char *fmt, ...)
{
    if ((int)lvl < atomic_load(&log_level)) return;
    va_list ap;
    va_start(ap, fmt);
    emit(lvl, f, fmt, ap);
    va_end(ap);
}
