/* LD_PRELOAD shim for bench/profile.sh: counts malloc, calloc, realloc
 * and free calls per thread name and writes them at exit to the file
 * named by COUNT_ALLOCS_OUT. It wraps glibc's own entry points
 * (__libc_malloc and friends), so it needs glibc and nothing else. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

#define SLOTS 64
static struct {
    _Atomic unsigned long tid; /* pthread_self, 0 = free slot */
    char name[16];
    atomic_ulong allocs, frees;
} slot[SLOTS];
static atomic_ulong other_allocs, other_frees;
static _Thread_local int mine = -1;

/* The slot of thread t, claimed if it has none. */
static int slot_of(unsigned long t)
{
    for (int i = 0; i < SLOTS; i++)
        if (atomic_load(&slot[i].tid) == t) return i;
    for (int i = 0; i < SLOTS; i++) {
        unsigned long want = 0;
        if (atomic_compare_exchange_strong(&slot[i].tid, &want, t)) return i;
    }
    return -1;
}

static int my_slot(void)
{
    if (mine < 0) mine = slot_of((unsigned long)pthread_self());
    return mine;
}

static void count(int alloc)
{
    int s = my_slot();
    if (s < 0)
        atomic_fetch_add(alloc ? &other_allocs : &other_frees, 1);
    else
        atomic_fetch_add(alloc ? &slot[s].allocs : &slot[s].frees, 1);
}

void *malloc(size_t n)
{
    count(1);
    return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
    count(1);
    return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
    count(1);
    return __libc_realloc(p, n);
}

void free(void *p)
{
    if (p) count(0);
    __libc_free(p);
}

/* One line per thread: id, name (as given to pthread_setname_np; "?" for
 * the main thread), allocations, frees. */
__attribute__((destructor)) static void report(void)
{
    const char *path = getenv("COUNT_ALLOCS_OUT");
    if (!path) return;
    FILE *f = fopen(path, "w");
    if (!f) return;
    for (int i = 0; i < SLOTS; i++) {
        if (!atomic_load(&slot[i].tid)) continue;
        fprintf(f, "%lu %s %lu %lu\n", atomic_load(&slot[i].tid),
                slot[i].name[0] ? slot[i].name : "?", atomic_load(&slot[i].allocs),
                atomic_load(&slot[i].frees));
    }
    fprintf(f, "0 other %lu %lu\n", atomic_load(&other_allocs), atomic_load(&other_frees));
    fclose(f);
}

/* Called through pthread_setname_np: remember the name for the report. */
int pthread_setname_np(pthread_t t, const char *name)
{
    static int (*real)(pthread_t, const char *);
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "pthread_setname_np");
    int i = slot_of((unsigned long)t);
    if (i >= 0) strncpy(slot[i].name, name, sizeof slot[i].name - 1);
    return real ? real(t, name) : 0;
}
