/* start.c's protocol as ops.c uses it: hand a request to the engine with
 * the connection suspended, and the callbacks that answer it. */
#ifndef SG_API_START_INT_H
#define SG_API_START_INT_H

#include "server_int.h"

/* The engine call of one route; SG_OK once the engine holds the request
 * (it answers through sg__start_on_outcome or sg__start_on_requeued),
 * else nothing was taken. */
typedef sg_status (*sg__submit_fn)(sg_api *a, start_ctx *x, void *data);

/* Suspends x and runs fn; a 503 if the API is closing or fn fails. */
enum MHD_Result sg__start_hand_over(sg_api *a, struct MHD_Connection *c, start_ctx *x,
                                    sg__submit_fn fn, void *data);
/* Loop thread: the engine's outcome of a start or redrive (rendered while
 * o is alive), and the answer to a redelivery. */
void sg__start_on_outcome(void *arg, const sg_outcome *o);
void sg__start_on_requeued(void *arg, sg_status st, const char *detail);
const char *sg__start_id(const start_ctx *x); /* the URL's id; borrowed */
int sg__start_async(const start_ctx *x);      /* Prefer: respond-async */

/* trace.c: the request's traceparent, if valid, into *out (else out's
 * trace_id is "": start a new trace) and its tracestate (malloc'd, the
 * caller's) into *state, or NULL. */
void sg__api_trace(struct MHD_Connection *c, sg_trace *out, char **state);

/* ops.c: the whole request is in. */
enum MHD_Result sg__redrive_finish(sg_api *a, struct MHD_Connection *c, start_ctx *x);
enum MHD_Result sg__redeliver_finish(sg_api *a, struct MHD_Connection *c, start_ctx *x);

#endif
