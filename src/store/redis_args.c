/* The Redis backend's command builder: binary-safe argument vectors
 * for hiredis, built from borrowed bytes and formatted numbers. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_int.h"
#include "sg/alloc.h"

static void args_grow(rd_args *a)
{
    if (a->n < a->cap) return;
    a->cap = a->cap ? a->cap * 2 : 64;
    a->v = sg_xrealloc(a->v, a->cap * sizeof *a->v);
    a->len = sg_xrealloc(a->len, a->cap * sizeof *a->len);
    a->off = sg_xrealloc(a->off, a->cap * sizeof *a->off);
}

void sg__rd_add_ref(rd_args *a, const char *p, size_t n)
{
    args_grow(a);
    a->v[a->n] = p ? p : "";
    a->len[a->n] = p ? n : 0;
    a->off[a->n++] = 0;
}

void sg__rd_add_str(rd_args *a, const char *s)
{
    sg__rd_add_ref(a, s, s ? strlen(s) : 0);
}

/* A copy into the arena. */
void sg__rd_add_copy(rd_args *a, const char *p, size_t n)
{
    if (a->alen + n + 1 > a->acap) {
        a->acap = (a->alen + n + 1) * 2;
        a->arena = sg_xrealloc(a->arena, a->acap);
    }
    memcpy(a->arena + a->alen, p, n);
    a->arena[a->alen + n] = '\0';
    args_grow(a);
    a->v[a->n] = NULL;
    a->len[a->n] = n;
    a->off[a->n++] = a->alen + 1;
    a->alen += n + 1;
}

void sg__rd_add_int(rd_args *a, int64_t v)
{
    char b[24];
    int n = snprintf(b, sizeof b, "%" PRId64, v);
    sg__rd_add_copy(a, b, (size_t)n);
}

void sg__rd_add_member(rd_args *a, int64_t created_us, const char *id)
{
    char m[SG_RD_KEY_LEN + 1];
    sg__rd_member(m, created_us, id);
    sg__rd_add_copy(a, m, strlen(m));
}

/* Points the arena arguments at their bytes (the arena is final). */
void sg__rd_args_fix(rd_args *a)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->off[i]) a->v[i] = a->arena + a->off[i] - 1;
}

void sg__rd_args_free(rd_args *a)
{
    free(a->v);
    free(a->len);
    free(a->off);
    free(a->arena);
    memset(a, 0, sizeof *a);
}
