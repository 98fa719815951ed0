/* Crash points (include/sg/crash.h): reads SAGAD_CRASH_AT once, counts the
 * passes of the armed point and ends the process on the n-th. Built only
 * with -DSG_CRASH_POINTS=ON. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sg/crash.h"
#include "sg/util.h"

#define STR(name) #name,
static const char *const known[] = {SG_CRASH_POINT_LIST(STR)};
#undef STR

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char armed[64]; /* "" = nothing armed; written once, under `once` */
static long armed_n;
static atomic_long passes;

/* Writes line to stderr with write(2): no stdio lock or buffer, which a
 * thread that crashed elsewhere could hold. */
static void say(const char *line)
{
    size_t n = strlen(line), off = 0;
    while (off < n) {
        ssize_t w = write(STDERR_FILENO, line + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        off += (size_t)w;
    }
}

static void bad_value(const char *value, const char *why)
{
    char line[256];
    snprintf(line, sizeof line, "sagad: SAGAD_CRASH_AT='%.64s': %s\n", value, why);
    say(line);
    _exit(2);
}

static void read_env(void)
{
    const char *v = getenv("SAGAD_CRASH_AT");
    if (!v || !v[0]) return;
    const char *colon = strrchr(v, ':');
    if (!colon || colon == v || (size_t)(colon - v) >= sizeof armed)
        bad_value(v, "expected <point>:<n>");
    char *end = NULL;
    errno = 0;
    long n = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || n < 1) bad_value(v, "<n> must be an integer >= 1");
    size_t len = (size_t)(colon - v);
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strlen(known[i]) != len || memcmp(known[i], v, len) != 0) continue;
        memcpy(armed, v, len);
        armed[len] = '\0';
        armed_n = n;
        return;
    }
    bad_value(v, "no such crash point (see include/sg/crash.h)");
}

void sg_crash_pass(const char *name)
{
    pthread_once(&once, read_env);
    if (!armed[0] || strcmp(name, armed) != 0) return;
    if (atomic_fetch_add(&passes, 1) + 1 != armed_n) return;
    char line[128];
    snprintf(line, sizeof line, "sagad: crash point %s:%ld\n", armed, armed_n);
    sg_log_flush(); /* the lines before it, as an unbuffered log would have them */
    say(line);
    _exit(77);
}
