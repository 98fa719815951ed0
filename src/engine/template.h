/* Templates (design §6) of HTTP bodies and event payloads: a JSON value
 * whose strings may name values of the running saga, ${request.<path>}
 * and ${steps.<name>.response.<path>}. A string that is exactly one ${…}
 * becomes that value with its JSON type; one inside a longer string is
 * spliced in as text (a string without its quotes, any other value as
 * compact JSON); a missing value is null. */
#ifndef SG_TEMPLATE_H
#define SG_TEMPLATE_H

#include <jansson.h>
#include <stddef.h>

#include "sg/def.h"
#include "sg/records.h"
#include "sg/status.h"

/* Compiles v (borrowed). `steps` names the steps that run before this one
 * (index i of steps is step i of the saga); a reference to any other name
 * is refused. On failure *out is NULL and err gets the place inside v and
 * why, e.g. "ref: ${steps.ship.response.id} names a step that does not run
 * before this one" (the caller prefixes its own place). */
sg_status sg_template_compile(sg_template **out, const json_t *v, const char *const *steps,
                              size_t nsteps, char *err, size_t errlen);
void sg_template_destroy(sg_template *t); /* NULL-safe */
/* 1 if t names a step's response (and so depends on earlier answers). */
int sg_template_uses_steps(const sg_template *t);
/* Renders t for the saga rec (borrowed): rec->request and, for step i,
 * rec->steps[i].response (raw JSON; NULL = missing). *out is a malloc'd
 * JSON text of *len bytes, the caller's. SG_EINVAL if the request or an
 * answer it needs is not JSON (err says which); SG_ETOOBIG past 8 MiB, the
 * cap of every rendered body and payload; SG_ENOMEM. */
sg_status sg_template_render(const sg_template *t, const sg_saga_rec *rec, char **out, size_t *len,
                             char *err, size_t errlen);

#endif
