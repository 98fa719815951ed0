/* Small utilities: random ids, the wall and monotonic clocks, timestamps. */
#include "sg/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

void sg_uuid_v4(char out[SG_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[16];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = getrandom(r + got, sizeof r - got, 0);
        if (n > 0) {
            got += (size_t)n;
        } else if (n < 0 && errno != EINTR) {
            /* No entropy source (ENOSYS in an old sandbox): ids that could
             * repeat would merge sagas, so stop rather than go on. */
            fprintf(stderr, "sagad: getrandom failed: %s\n", strerror(errno));
            abort();
        }
    }
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) *p++ = '-';
        *p++ = hex[r[i] >> 4];
        *p++ = hex[r[i] & 15];
    }
    *p = '\0';
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
