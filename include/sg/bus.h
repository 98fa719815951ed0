/* Event transports ("bus"), chosen at run time by URL scheme:
 *   log:                  print the envelope to stdout, acknowledged at once
 *   http://host:port/path webhook: POST the envelope, 2xx = acknowledged
 *   (nats:// and pulsar:// are later backends: one file each)
 * Every function runs on the loop thread except sg_bus_ready. */
#ifndef SG_BUS_H
#define SG_BUS_H

#include <stddef.h>
#include <uv.h>

#include "sg/buf.h"
#include "sg/http_client.h"
#include "sg/records.h"
#include "sg/status.h"

typedef struct sg_bus sg_bus;
typedef struct sg_bus_pub sg_bus_pub;

/* What a backend may use; all borrowed, they outlive the bus. */
typedef struct sg_bus_env {
    uv_loop_t *loop;
    sg_http_client *http;
} sg_bus_env;

/* Runs once per successful sg_bus_publish (unless cancelled), on the loop
 * thread: SG_OK = acknowledged; anything else = not acknowledged, with a
 * reason in `why` (borrowed for the call). */
typedef void (*sg_bus_ack_cb)(void *arg, sg_status st, const char *why);

/* On failure *out is NULL and err explains (bad URL, unknown scheme). */
sg_status sg_bus_create(sg_bus **out, const char *url, const sg_bus_env *env, char *err,
                        size_t errlen);
void sg_bus_destroy(sg_bus *b); /* cancels outstanding publishes; NULL-safe */

/* Publish ev (borrowed: copied as needed) with the envelope of design §4;
 * the attempt gives up after timeout_ms. *pub (may be NULL) receives a handle
 * for sg_bus_cancel valid until cb runs. On failure cb never runs. */
sg_status sg_bus_publish(sg_bus *b, const sg_event_rec *ev, long timeout_ms, sg_bus_ack_cb cb,
                         void *arg, sg_bus_pub **pub);
/* Withdraw a publish in flight: its callback will not run. */
void sg_bus_cancel(sg_bus *b, sg_bus_pub *pub);

/* 1 if the transport can deliver now (brokers: connected). Any thread. */
sg_status sg_bus_health(sg_bus *b, char *why, size_t n);
/* 1 for real brokers (NATS, Pulsar): /readyz requires them connected. */
int sg_bus_is_broker(const sg_bus *b);
/* 1 for log: (events go nowhere; sagad warns at start). */
int sg_bus_is_log(const sg_bus *b);
const char *sg_bus_name(const sg_bus *b);

/* The design §4 envelope:
 * {"id","topic","saga_id","payload":<raw>,"created_at"} appended to out. */
sg_status sg_event_envelope(sg_buf *out, const sg_event_rec *ev);

#endif
