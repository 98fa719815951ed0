/* The API's JSON bodies (design §2): saga records, start outcomes and
 * {"detail": ...} errors. Only the API renders HTTP answers. */
#ifndef SG_API_RENDER_H
#define SG_API_RENDER_H

#include "sg/buf.h"
#include "sg/def.h"
#include "sg/outcome.h"
#include "sg/records.h"

/* The GET /saga/{id} record (design §2): seed fields (stepN_status derived
 * from steps, processed_data from completed steps' results), plus
 * updated_at, error, compensation_status, steps[]. d may be NULL (unknown
 * definition): processed_data is then built with step names as keys. */
sg_status sg_render_saga(sg_buf *out, const sg_saga_rec *r, const sg_def *d);

/* The answer to a POST /saga, from its outcome:
 *  - a saga, asked asynchronously or still IN_PROGRESS: 202
 *    {"id","overall_status"} (the caller adds Location: /saga/<id>);
 *  - COMPLETED: 200 {"id","result","data"};
 *  - FAILED: 400 {"detail":{"id","error"}};
 *  - SG_ECONFLICT: 422, the Idempotency-Key text below;
 *  - any other failure: 503 {"detail": o->detail}.
 * *http_status gets the status (0 if rendering failed: out unchanged). */
#define SG_RENDER_IDEM_CONFLICT "Idempotency-Key reused with a different request body"
sg_status sg_render_outcome(sg_buf *out, const sg_outcome *o, int async, int *http_status);

/* One GET /events entry: {"id","topic" (null for an HTTP call),"url" (null
 * for an event),"saga_id","status","attempts","last_error","created_at",
 * "updated_at"}. */
sg_status sg_render_event(sg_buf *out, const sg_event_rec *ev);

/* One GET /definitions entry: {"name","version" (current),"versions" (every
 * known one, ascending),"default","steps":[{"name","label","output",
 * "action":{"http":{"method","url"}}|{"publish":{"topic"}},
 * "compensate":<action>|null,"retry":{"attempts","backoff_ms",
 * "max_backoff_ms"},"timeout_ms":N|null}]}. versions is borrowed. */
sg_status sg_render_definition(sg_buf *out, const sg_def *d, int is_default, const int *versions,
                               size_t nversions);

/* {"detail": "<msg>"} */
sg_status sg_render_detail(sg_buf *out, const char *msg);

#endif
