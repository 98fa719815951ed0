/* JSON renderings of saga records shared by the API and the engine. */
#ifndef SG_RENDER_H
#define SG_RENDER_H

#include "sg/buf.h"
#include "sg/def.h"
#include "sg/records.h"

/* The GET /saga/{id} record (design §2): seed fields (stepN_status derived
 * from steps, processed_data from completed steps' results), plus
 * updated_at, error, compensation_status, steps[]. d may be NULL (unknown
 * definition): processed_data is then built with step names as keys. */
sg_status sg_render_saga(sg_buf *out, const sg_saga_rec *r, const sg_def *d);

/* The synchronous POST /saga answer for a finished saga: sets *http_status
 * to 200 with {"id","result","data"} or 400 with {"detail":{"id","error"}}.
 * For a saga still IN_PROGRESS: 202 with {"id","overall_status"}. */
sg_status sg_render_outcome(sg_buf *out, const sg_saga_rec *r, const sg_def *d, int *http_status);

/* {"detail": "<msg>"} */
sg_status sg_render_detail(sg_buf *out, const char *msg);

#endif
