/* The definitions file's parser (def_file.c: the file and each saga;
 * def_step.c: steps and their actions) and what the template compiler
 * shares with it: private to src/engine. */
#ifndef SG_DEF_FILE_INT_H
#define SG_DEF_FILE_INT_H

#include <jansson.h>
#include <stddef.h>

#include "sg/def.h"
#include "sg/status.h"

#define SG__PLACE_MAX 384 /* a place in the file, "sagas.order.steps[1].http.url" */
#define SG__SHOW_MAX 72   /* a quoted piece of input, at most 64 bytes and "..." */

/* One parse: where the first error goes and what a step gets by default. */
typedef struct sg__dctx {
    char *err;
    size_t errlen;
    sg_retry retry;
} sg__dctx;

/* Writes "<place>: <why>" (just "<why>" for an empty place) into c->err
 * and returns SG_EINVAL. */
sg_status sg__def_fail(sg__dctx *c, const char *place, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* s[0..n) fit to quote in a message: control bytes become '?', and past
 * 64 bytes it is cut (on a character boundary) and ends in "...". */
const char *sg__def_show(const char *s, size_t n, char out[SG__SHOW_MAX]);
/* "<place>.<key>" (key shown as by sg__def_show) into out. */
const char *sg__def_at(char out[SG__PLACE_MAX], const char *place, const char *key);
/* Fails with "<place>.<key>: unknown key" for the first key of o that is
 * not in keys (NULL-terminated). */
sg_status sg__def_keys(sg__dctx *c, const char *place, const json_t *o, const char *const *keys);
/* 1 if s[0..n) is 1..max bytes of A-Z a-z 0-9 _ . - */
int sg__def_name_ok(const char *s, size_t n, size_t max);

/* Member key of o: an integer in [min, max] into *out, left alone when
 * absent (an error if required). */
sg_status sg__def_int(sg__dctx *c, const char *place, const json_t *o, const char *key,
                      long long min, long long max, int required, long long *out);
/* Member key of o as a string of at most max bytes; *out NULL when absent
 * (an error if required). Borrowed from o. */
sg_status sg__def_str(sg__dctx *c, const char *place, const json_t *o, const char *key, size_t max,
                      int required, const json_t **out);

/* Fills d->steps and d->nsteps from the array steps (1..SG_DEF_MAX_STEPS
 * entries, checked by the caller) of the saga at place. On failure d
 * holds what was made so far, for sg_def_destroy. */
sg_status sg__def_steps(sg__dctx *c, const char *place, const json_t *steps, sg_def *d);

#endif
