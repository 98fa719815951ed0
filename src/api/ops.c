/* The operators' POST routes (design §1): POST /saga/{id}/retry runs a
 * FAILED saga again, POST /events/{id}/redeliver re-queues a parked
 * compensation. Both ride start.c's suspend/resume protocol. */
#include <stdlib.h>

#include "server_int.h"
#include "start_int.h"

static sg_status submit_redrive(sg_api *a, start_ctx *x, void *rec)
{
    return sg_engine_redrive(a->engine, rec, sg__start_async(x), sg__start_on_outcome, x);
}

/* A redrive stays in the saga's trace; one stored before sagad traced
 * takes the request's, as a start would. */
static void redrive_trace(struct MHD_Connection *c, sg_saga_rec *rec)
{
    if (rec->trace.trace_id[0]) return;
    char *state = NULL;
    sg__api_trace(c, &rec->trace, &state);
    free(rec->tracestate);
    rec->tracestate = state;
}

/* POST /saga/{id}/retry (design §1): a FAILED saga whose failure published
 * no compensation runs its failed step again. */
enum MHD_Result sg__redrive_finish(sg_api *a, struct MHD_Connection *c, start_ctx *x)
{
    char err[256];
    sg_store_reader *r = sg__api_reader(a, err, sizeof err);
    if (!r) return sg__send_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, err, NULL);
    sg_saga_rec rec;
    sg_status st = sg_store_get(r, sg__start_id(x), &rec);
    enum MHD_Result ret;
    if (st == SG_ENOTFOUND)
        ret = sg__send_detail(c, MHD_HTTP_NOT_FOUND, "Saga no encontrada", NULL);
    else if (st != SG_OK)
        ret = sg__send_detailf(c, MHD_HTTP_SERVICE_UNAVAILABLE, "store error: %s",
                               sg_store_reader_error(r));
    else if (rec.status == SG_SAGA_IN_PROGRESS)
        /* Perhaps a concurrent retry's run: the engine joins it, or says no. */
        ret = sg__start_hand_over(a, c, x, submit_redrive, &rec);
    else if (rec.status != SG_SAGA_FAILED)
        ret = sg__send_detailf(c, MHD_HTTP_CONFLICT,
                               "the saga is %s: only a FAILED saga can be retried",
                               sg_saga_status_name(rec.status));
    else if (rec.comp_status != SG_COMP_NONE)
        ret = sg__send_detail(c, MHD_HTTP_CONFLICT,
                              "its compensation was already published: running the saga again "
                              "could redo what the compensation undid",
                              NULL);
    else {
        redrive_trace(c, &rec);
        ret = sg__start_hand_over(a, c, x, submit_redrive, &rec);
    }
    sg_saga_rec_free(&rec); /* empty if the engine took it */
    return ret;
}

static sg_status submit_redeliver(sg_api *a, start_ctx *x, void *ev)
{
    return sg_engine_redeliver(a->engine, ev, sg__start_on_requeued, x);
}

/* POST /events/{id}/redeliver: a parked compensation goes back to delivery. */
enum MHD_Result sg__redeliver_finish(sg_api *a, struct MHD_Connection *c, start_ctx *x)
{
    char err[256];
    sg_store_reader *r = sg__api_reader(a, err, sizeof err);
    if (!r) return sg__send_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, err, NULL);
    sg_event_rec ev;
    sg_status st = sg_store_get_event(r, sg__start_id(x), &ev);
    enum MHD_Result ret;
    if (st == SG_ENOTFOUND)
        ret = sg__send_detail(c, MHD_HTTP_NOT_FOUND, "Event not found", NULL);
    else if (st != SG_OK)
        ret = sg__send_detailf(c, MHD_HTTP_SERVICE_UNAVAILABLE, "store error: %s",
                               sg_store_reader_error(r));
    else if (ev.status != SG_EVENT_PARKED)
        ret = sg__send_detailf(c, MHD_HTTP_CONFLICT, "the event is %s, not PARKED",
                               sg_event_status_name(ev.status));
    else
        ret = sg__start_hand_over(a, c, x, submit_redeliver, &ev);
    sg_event_rec_free(&ev); /* empty if the engine took it */
    return ret;
}
