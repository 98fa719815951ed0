/* sg_outcome: what became of a start request, as the engine hands it to the
 * API. The engine decides; the API alone turns an outcome into HTTP. */
#ifndef SG_OUTCOME_H
#define SG_OUTCOME_H

#include <stddef.h>

#include "sg/def.h"
#include "sg/records.h"
#include "sg/status.h"

/* One completed step's result, as it appears under "data" and
 * "processed_data". Exactly one of json and text is set. */
typedef struct sg_step_output {
    const char *key;  /* result key, e.g. "anonymized"; borrowed */
    const char *json; /* raw JSON the step answered (exact bytes); borrowed */
    size_t json_len;
    const char *text; /* a fixed string result ("event_published"); borrowed */
} sg_step_output;

typedef struct sg_outcome {
    /* SG_OK: the saga described below.
     * SG_ECONFLICT: the Idempotency-Key belongs to a saga started with
     *   another body (sg_idem_check).
     * SG_EEXIST: the key belongs to a stored saga the engine does not hold;
     *   the caller looks that saga up itself (the loop never blocks on a
     *   store read).
     * Anything else (SG_EBUSY, SG_ECLOSED, SG_EIO): nothing was started or
     *   the saga cannot answer now; detail says why. */
    sg_status status;
    const char *detail; /* a sentence for the failures above; borrowed */
    char saga_id[SG_ID_LEN + 1];
    sg_saga_status saga_status; /* committed status; IN_PROGRESS until final */
    const char *result;         /* COMPLETED: the definition's success text */
    size_t failed_step;         /* FAILED: 1-based index of the failed step, else 0 */
    const char *error;          /* FAILED: "Error en Step N (<Service>): <reason>" */
    size_t noutputs;
    sg_step_output *outputs; /* owned array: one per COMPLETED step, in order */
    const char *request;     /* SG_EEXIST: the start's body, to compare; borrowed */
    size_t request_len;
} sg_outcome;

/* Describes the saga r as run by definition d (NULL: unknown, then step
 * names are the keys). Pointers inside o borrow from r and d, which must
 * outlive o; release with sg_outcome_clear. */
void sg_outcome_of(sg_outcome *o, const sg_saga_rec *r, const sg_def *d);
/* Only an id and IN_PROGRESS: a saga that is stored but not finished. */
void sg_outcome_running(sg_outcome *o, const char *saga_id);
/* A failure without a saga: status st, detail borrowed. */
void sg_outcome_fail(sg_outcome *o, sg_status st, const char *detail);
void sg_outcome_clear(sg_outcome *o); /* frees outputs; o may be reused */

/* The one Idempotency-Key decision. A start whose key is already held by
 * the saga `holder` is the same start when its body is byte for byte the
 * request that started holder: SG_OK (answer for holder, or wait for it).
 * Otherwise SG_ECONFLICT (the API answers 422). */
sg_status sg_idem_check(const sg_saga_rec *holder, const char *body, size_t len);

#endif
