/* Small utilities: ids (random v4, time-ordered v7), the wall and
 * monotonic clocks, timestamps. */
#include "sg/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ---- ids -------------------------------------------------------------------- */

/* Randomness comes from a per-thread pool refilled by one getrandom() per
 * 4 KiB (a v7 id takes 8 bytes, a v4 id 16): one system call per hundreds
 * of ids instead of one per id. A fork copies the pool, so the child
 * would repeat the parent's bytes: a fork bumps pool_gen and every pool
 * of the older generation is refilled before its next use. */
#define POOL_SIZE 4096
typedef struct rand_pool {
    unsigned char buf[POOL_SIZE];
    size_t used; /* bytes of buf handed out; POOL_SIZE = empty */
    unsigned gen;
} rand_pool;

static _Thread_local rand_pool pool = {.used = POOL_SIZE};
static atomic_uint pool_gen;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void after_fork_child(void)
{
    atomic_fetch_add(&pool_gen, 1);
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, after_fork_child);
}

static void fill_random(unsigned char *p, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom(p + got, len - got, 0);
        if (n > 0) {
            got += (size_t)n;
        } else if (n < 0 && errno != EINTR) {
            /* No entropy source (ENOSYS in an old sandbox): ids that could
             * repeat would merge sagas, so stop rather than go on. */
            fprintf(stderr, "sagad: getrandom failed: %s\n", strerror(errno));
            abort();
        }
    }
}

/* n (at most POOL_SIZE) random bytes from this thread's pool. */
static void take_random(unsigned char *out, size_t n)
{
    pthread_once(&atfork_once, register_atfork);
    unsigned gen = atomic_load_explicit(&pool_gen, memory_order_relaxed);
    if (pool.gen != gen || POOL_SIZE - pool.used < n) {
        fill_random(pool.buf, POOL_SIZE);
        pool.used = 0;
        pool.gen = gen;
    }
    memcpy(out, pool.buf + pool.used, n);
    /* Bytes handed out are not left behind in the pool. */
    memset(pool.buf + pool.used, 0, n);
    pool.used += n;
}

void sg_random_bytes(void *out, size_t n)
{
    unsigned char *p = out;
    while (n > 0) {
        size_t k = n < 256 ? n : 256;
        take_random(p, k);
        p += k;
        n -= k;
    }
}

static void uuid_text(const unsigned char r[16], char out[SG_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) *p++ = '-';
        *p++ = hex[r[i] >> 4];
        *p++ = hex[r[i] & 15];
    }
    *p = '\0';
}

void sg_uuid_v4(char out[SG_ID_LEN + 1])
{
    unsigned char r[16];
    take_random(r, sizeof r);
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    uuid_text(r, out);
}

/* This thread's last v7 id: its millisecond and its 12-bit counter. */
static _Thread_local struct {
    uint64_t ms;
    unsigned counter;
} v7_last;

void sg_uuid_v7(char out[SG_ID_LEN + 1])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    unsigned char r[16];
    take_random(r + 8, 8); /* rand_b, and two bytes to seed a counter */
    if (ms > v7_last.ms) {
        /* A new millisecond: the counter starts at a random value below
         * 2048, so at least 2048 more ids fit in this millisecond. */
        v7_last.ms = ms;
        v7_last.counter = ((unsigned)r[8] << 8 | r[9]) & 0x7ff;
    } else if (++v7_last.counter > 0xfff) {
        /* The clock went back, or this millisecond's counter is spent:
         * carry on from the next millisecond, ahead of the clock, rather
         * than repeat or go back (RFC 9562 §6.2). */
        v7_last.ms++;
        v7_last.counter = ((unsigned)r[8] << 8 | r[9]) & 0x7ff;
    }
    ms = v7_last.ms;
    for (int i = 0; i < 6; i++)
        r[i] = (unsigned char)(ms >> (40 - 8 * i));
    r[6] = (unsigned char)(0x70 | (v7_last.counter >> 8));
    r[7] = (unsigned char)(v7_last.counter & 0xff);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    uuid_text(r, out);
}

int sg_uuid_valid(const char *s, size_t len)
{
    if (len != SG_ID_LEN) return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return 1;
}

static int64_t clock_us(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t sg_now_us(void)
{
    return clock_us(CLOCK_REALTIME);
}

int64_t sg_mono_us(void)
{
    return clock_us(CLOCK_MONOTONIC);
}

void sg_time_iso(int64_t us, char out[SG_TIME_LEN + 1])
{
    time_t secs = (time_t)(us / 1000000);
    long frac = (long)(us % 1000000);
    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    char tmp[64]; /* roomy: the compiler cannot prove the fields' widths */
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
    memcpy(out, tmp, SG_TIME_LEN);
    out[SG_TIME_LEN] = '\0';
}

size_t sg_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}
