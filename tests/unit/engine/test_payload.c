/* Payload templates of publish steps and publish compensations (design
 * §6), through the engine to the webhook bus: the envelope carries the
 * rendered payload, the outbox stores those bytes, and a retry or a
 * restart sends them again under the same event id; a compensation's
 * payload names answers of steps that completed before the failure; a
 * payload over the 8 MiB cap fails its step with the reason
 * (fixture.h). */
#include "engine/fixture.h"
#include "sg/alloc.h"

/* "paid": an HTTP step (the fake anonymizer, answering
 * {"anonymized":true}), a publish with a payload template and a publish
 * compensation with its own, then an HTTP step (the fake AI model) that
 * tests make fail. "big" and "bigcomp": payloads of 9 copies of
 * request.s, over the cap when s is 1 MiB. */
#define NINE_S                                                                                     \
    "[\"${request.s}\",\"${request.s}\",\"${request.s}\",\"${request.s}\",\"${request.s}\","       \
    "\"${request.s}\",\"${request.s}\",\"${request.s}\",\"${request.s}\"]"
static const char DEFS[] =
    "{\"sagas\":{"
    "\"paid\":{\"version\":1,\"steps\":["
    "{\"name\":\"charge\",\"http\":{\"url\":\"${SG_T_BASE}/anonymize\"}},"
    "{\"name\":\"paid\",\"retry\":{\"attempts\":2,\"backoff_ms\":10},"
    "\"publish\":{\"topic\":\"order_paid\",\"payload\":{\"order\":\"${request.id}\","
    "\"charge\":\"${steps.charge.response}\",\"note\":\"order ${request.id}: "
    "${request.total} EUR\",\"missing\":\"${request.nope}\",\"fixed\":[1,\"x\"]}},"
    "\"compensate\":{\"publish\":{\"topic\":\"order_unpaid\",\"payload\":{"
    "\"order\":\"${request.id}\",\"was\":\"${steps.charge.response.anonymized}\","
    "\"own\":\"${steps.paid.response}\"}}}},"
    "{\"name\":\"ship\",\"label\":\"Ship\",\"http\":{\"url\":\"${SG_T_BASE}/process\"}}]},"
    "\"big\":{\"version\":1,\"steps\":["
    "{\"name\":\"big\",\"label\":\"Big\",\"publish\":{\"topic\":\"big\",\"payload\":" NINE_S "}}]},"
    "\"bigcomp\":{\"version\":1,\"steps\":["
    "{\"name\":\"a\",\"http\":{\"url\":\"${SG_T_BASE}/anonymize\"},"
    "\"compensate\":{\"publish\":{\"topic\":\"bigc\",\"payload\":" NINE_S "}}},"
    "{\"name\":\"b\",\"http\":{\"url\":\"${SG_T_BASE}/anonymize\"},"
    "\"compensate\":{\"publish\":{\"topic\":\"smallc\",\"payload\":"
    "{\"b\":\"${steps.b.response.anonymized}\"}}}},"
    "{\"name\":\"c\",\"http\":{\"url\":\"${SG_T_BASE}/process\"}}]}}}";

#define REQUEST "{\"id\":\"o-1\",\"total\":19.99,\"s\":\"x\"}"
#define PAID_PAYLOAD                                                                               \
    "{\"order\":\"o-1\",\"charge\":{\"anonymized\":true},\"note\":\"order o-1: 19.99 EUR\","       \
    "\"missing\":null,\"fixed\":[1,\"x\"]}"
#define UNPAID_PAYLOAD "{\"order\":\"o-1\",\"was\":true,\"own\":null}"

static int setup_defs(void **state)
{
    int rc = setup(state);
    fx *f = *state;
    close_engine(f);
    f->defs = DEFS;
    open_engine(f);
    return rc;
}

/* The bodies the fake bus got for topic, in order, into out[0..max). */
static int events_for(const char *topic, char out[][4096], int max)
{
    char want[128];
    int n = 0;
    snprintf(want, sizeof want, "\"topic\":\"%s\"", topic);
    pthread_mutex_lock(&fake_mu);
    for (int i = 0; i < fake_nevents && n < max; i++)
        if (strstr(fake_events[i], want)) memcpy(out[n++], fake_events[i], sizeof *out);
    pthread_mutex_unlock(&fake_mu);
    return n;
}

/* The envelope's "id" value (36 bytes) and what follows "payload": up to
 * ',"created_at"'. */
static void envelope_parts(const char *env, char id[SG_ID_LEN + 1], char *payload, size_t max)
{
    const char *p = strstr(env, "{\"id\":\"");
    assert_non_null(p);
    memcpy(id, p + 7, SG_ID_LEN);
    id[SG_ID_LEN] = '\0';
    const char *from = strstr(env, ",\"payload\":"), *to = strstr(env, ",\"created_at\":\"");
    assert_non_null(from);
    assert_non_null(to);
    from += strlen(",\"payload\":");
    assert_true((size_t)(to - from) < max);
    snprintf(payload, max, "%.*s", (int)(to - from), from);
}

/* The stored outbox entry of saga_id with topic (its payload included);
 * 0 if there is none. Caller frees with sg_event_rec_free. */
static int stored_event(fx *f, const char *saga_id, const char *topic, sg_event_rec *out)
{
    sg_store_reader *r;
    assert_int_equal(sg_store_reader_open(f->store, &r, NULL, 0), SG_OK);
    sg_list_query q = {.status = -1, .limit = 100};
    sg_event_rec *evs = NULL;
    size_t n = 0;
    char next[SG_CURSOR_MAX];
    int found = 0;
    assert_int_equal(sg_store_list_events(r, &q, &evs, &n, next), SG_OK);
    for (size_t i = 0; i < n; i++) {
        if (!found && strcmp(evs[i].saga_id, saga_id) == 0 && evs[i].topic &&
            strcmp(evs[i].topic, topic) == 0) {
            assert_int_equal(sg_store_get_event(r, evs[i].id, out), SG_OK);
            found = 1;
        }
        sg_event_rec_free(&evs[i]);
    }
    free(evs);
    sg_store_reader_close(r);
    return found;
}

static void start_type(fx *f, const char *type, const char *json, int async, answer *a)
{
    sg_start st = {.body = strdup(json), .body_len = strlen(json), .async = async};
    st.def = sg_def_find(type);
    assert_non_null(st.def);
    a->async = async;
    assert_int_equal(sg_engine_submit(f->eng, &st, on_done, a), SG_OK);
    while (!a->done)
        uv_run(&f->loop, UV_RUN_ONCE);
}

/* The step's event carries the template rendered (typed values, spliced
 * text, null for a missing value, constants as written); the outbox
 * holds the same bytes. */
static void publish_step_sends_its_payload(void **state)
{
    fx *f = *state;
    answer a = {0};
    start_type(f, "paid", REQUEST, 0, &a);
    assert_int_equal(a.r.status, 200);
    char sid[SG_ID_LEN + 1], got[4][4096], eid[SG_ID_LEN + 1], payload[4096];
    id_of(&a, sid);
    assert_int_equal(events_for("order_paid", got, 4), 1);
    envelope_parts(got[0], eid, payload, sizeof payload);
    assert_string_equal(payload, PAID_PAYLOAD);
    assert_non_null(strstr(got[0], "\"topic\":\"order_paid\",\"saga_id\":\""));
    sg_event_rec ev = {0};
    assert_true(stored_event(f, sid, "order_paid", &ev));
    assert_string_equal(ev.id, eid);
    assert_int_equal(ev.payload_len, strlen(PAID_PAYLOAD));
    assert_memory_equal(ev.payload, PAID_PAYLOAD, ev.payload_len);
    assert_int_equal(ev.status, SG_EVENT_DELIVERED);
    sg_event_rec_free(&ev);
    free(a.r.body);
}

/* A refused first attempt: the second sends the same id and the same
 * bytes (rendered once, when the event was made). */
static void a_retry_sends_the_same_payload(void **state)
{
    fx *f = *state;
    fake_fail_left[SVC_TOKEN] = 1;
    answer a = {0};
    start_type(f, "paid", REQUEST, 0, &a);
    assert_int_equal(a.r.status, 200);
    char got[4][4096], id0[SG_ID_LEN + 1], id1[SG_ID_LEN + 1], p0[4096], p1[4096];
    assert_int_equal(events_for("order_paid", got, 4), 2);
    envelope_parts(got[0], id0, p0, sizeof p0);
    envelope_parts(got[1], id1, p1, sizeof p1);
    assert_string_equal(id0, id1);
    assert_string_equal(p0, PAID_PAYLOAD);
    assert_string_equal(p1, PAID_PAYLOAD);
    assert_string_equal(got[0], got[1]); /* the whole envelope, created_at too */
    free(a.r.body);
}

/* A later step fails: the compensation event's payload names the answer
 * of a step that completed before the failure (and its own step's, which
 * a publish does not have: null). */
static void compensation_sends_its_payload(void **state)
{
    fx *f = *state;
    fake_status[SVC_AI] = 500;
    answer a = {0};
    start_type(f, "paid", REQUEST, 0, &a);
    assert_int_equal(a.r.status, 400);
    assert_non_null(strstr(a.r.body, "Error en Step 3 (Ship): HTTP 500"));
    char sid[SG_ID_LEN + 1], got[4][4096], eid[SG_ID_LEN + 1], payload[4096];
    id_of(&a, sid);
    assert_int_equal(wait_comp(f, sid), SG_COMP_COMPLETED);
    assert_int_equal(events_for("order_unpaid", got, 4), 1);
    envelope_parts(got[0], eid, payload, sizeof payload);
    assert_string_equal(payload, UNPAID_PAYLOAD);
    sg_event_rec ev = {0};
    assert_true(stored_event(f, sid, "order_unpaid", &ev));
    assert_string_equal(ev.id, eid);
    assert_int_equal(ev.compensation, 1);
    assert_int_equal(ev.payload_len, strlen(UNPAID_PAYLOAD));
    assert_memory_equal(ev.payload, UNPAID_PAYLOAD, ev.payload_len);
    sg_event_rec_free(&ev);
    free(a.r.body);
}

static int token_hit(fx *f)
{
    (void)f;
    return atomic_load(&fake_hits[SVC_TOKEN]) > 0;
}

/* sagad stops while the event is out (no answer yet): after the restart
 * the same event, id and payload, goes out again (design §1, in doubt). */
static void a_restart_sends_the_same_payload(void **state)
{
    fx *f = *state;
    fake_delay_ms[SVC_TOKEN] = 400; /* under the 500 ms step timeout */
    answer a = {0};
    start_type(f, "paid", REQUEST, 1, &a);
    assert_int_equal(a.r.status, 202);
    for (int i = 0; i < 400 && !token_hit(f); i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    assert_true(token_hit(f));
    close_engine(f);
    fake_delay_ms[SVC_TOKEN] = 0;
    open_engine(f);
    for (int i = 0; i < 1000 && sg_engine_active(f->eng); i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    char sid[SG_ID_LEN + 1], got[4][4096], id0[SG_ID_LEN + 1], id1[SG_ID_LEN + 1], p0[4096],
        p1[4096];
    id_of(&a, sid);
    sg_saga_rec rec = {0};
    get(f, sid, &rec);
    assert_int_equal(rec.status, SG_SAGA_COMPLETED);
    assert_int_equal(rec.steps[1].attempts, 2);
    sg_saga_rec_free(&rec);
    assert_int_equal(events_for("order_paid", got, 4), 2);
    envelope_parts(got[0], id0, p0, sizeof p0);
    envelope_parts(got[1], id1, p1, sizeof p1);
    assert_string_equal(id0, id1);
    assert_string_equal(p0, PAID_PAYLOAD);
    assert_string_equal(got[0], got[1]);
    free(a.r.body);
}

/* A saga stored mid-publish by an earlier process: its event goes out
 * with the payload stored then, never rendered again; the compensation
 * planned after the restart renders from the answers read back. */
static void stored_payloads_are_not_rendered_again(void **state)
{
    fx *f = *state;
    sg_saga_rec rec = {0};
    strcpy(rec.id, "41111111-2222-4333-8444-555555555555");
    rec.def_name = "paid";
    rec.def_version = 1;
    rec.request = REQUEST;
    rec.request_len = strlen(REQUEST);
    rec.status = SG_SAGA_IN_PROGRESS;
    rec.created_us = rec.updated_us = 1;
    sg_step_rec steps[3] = {{.name = "charge",
                             .status = SG_STEP_COMPLETED,
                             .attempts = 1,
                             .response = "{\"anonymized\":\"then\"}",
                             .response_len = 21},
                            {.name = "paid", .status = SG_STEP_RUNNING, .attempts = 1},
                            {.name = "ship"}};
    rec.nsteps = 3;
    rec.steps = steps;
    sg_event_rec ev = {.id = "51111111-2222-4333-8444-555555555555",
                       .topic = "order_paid",
                       .payload = "{\"as\":\"stored\"}",
                       .payload_len = 15,
                       .created_us = 1,
                       .deadline_us = INT64_MAX,
                       .step_index = 1};
    strcpy(ev.saga_id, rec.id);
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, &rec);
    sg_write_event_insert(w, &ev);
    assert_int_equal(sg_store_commit_sync(f->store, w), SG_OK);
    fake_status[SVC_AI] = 500;
    close_engine(f);
    open_engine(f);
    for (int i = 0; i < 1000 && sg_engine_active(f->eng); i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(wait_comp(f, rec.id), SG_COMP_COMPLETED);
    char got[4][4096], eid[SG_ID_LEN + 1], payload[4096];
    assert_int_equal(events_for("order_paid", got, 4), 1);
    envelope_parts(got[0], eid, payload, sizeof payload);
    assert_string_equal(eid, ev.id);
    assert_string_equal(payload, "{\"as\":\"stored\"}");
    assert_int_equal(events_for("order_unpaid", got, 4), 1);
    envelope_parts(got[0], eid, payload, sizeof payload);
    assert_string_equal(payload, "{\"order\":\"o-1\",\"was\":\"then\",\"own\":null}");
}

/* A 1 MiB string, as request.s. */
static char *big_request(void)
{
    size_t big = (size_t)1 << 20;
    char *req = sg_xmalloc(big + 16);
    memcpy(req, "{\"s\":\"", 6);
    memset(req + 6, 'x', big);
    memcpy(req + 6 + big, "\"}", 3);
    return req;
}

/* Over the cap the step fails at once, with the reason, and nothing is
 * published or left in the outbox. */
static void a_payload_over_the_cap_fails_the_step(void **state)
{
    fx *f = *state;
    char *req = big_request();
    answer a = {0};
    start_type(f, "big", req, 0, &a);
    assert_int_equal(a.r.status, 400);
    assert_non_null(strstr(a.r.body, "Error en Step 1 (Big): cannot build the event payload: the "
                                     "rendered template is over 8 MiB"));
    char sid[SG_ID_LEN + 1];
    id_of(&a, sid);
    sg_saga_rec rec = {0};
    get(f, sid, &rec);
    assert_int_equal(rec.status, SG_SAGA_FAILED);
    assert_int_equal(rec.steps[0].status, SG_STEP_FAILED);
    assert_int_equal(rec.steps[0].attempts, 1);
    sg_saga_rec_free(&rec);
    assert_int_equal(fake_hits[SVC_TOKEN], 0);
    sg_event_rec ev = {0};
    assert_false(stored_event(f, sid, "big", &ev));
    assert_int_equal(pending_events(f), 0);
    free(a.r.body);
    free(req);
}

/* A compensation must go out whatever happens: over the cap it carries
 * the request, as an HTTP compensation's body does; the others of the
 * saga keep their rendered payloads. */
static void a_compensation_over_the_cap_sends_the_request(void **state)
{
    fx *f = *state;
    fake_status[SVC_AI] = 500;
    char *req = big_request();
    answer a = {0};
    start_type(f, "bigcomp", req, 0, &a);
    assert_int_equal(a.r.status, 400);
    char sid[SG_ID_LEN + 1];
    id_of(&a, sid);
    assert_int_equal(wait_comp(f, sid), SG_COMP_COMPLETED);
    sg_event_rec ev = {0};
    assert_true(stored_event(f, sid, "bigc", &ev));
    assert_int_equal(ev.payload_len, strlen(req));
    assert_memory_equal(ev.payload, req, ev.payload_len);
    sg_event_rec_free(&ev);
    char got[4][4096], eid[SG_ID_LEN + 1], payload[4096];
    assert_int_equal(events_for("smallc", got, 4), 1);
    envelope_parts(got[0], eid, payload, sizeof payload);
    assert_string_equal(payload, "{\"b\":true}");
    free(a.r.body);
    free(req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(publish_step_sends_its_payload, setup_defs, teardown),
        cmocka_unit_test_setup_teardown(a_retry_sends_the_same_payload, setup_defs, teardown),
        cmocka_unit_test_setup_teardown(compensation_sends_its_payload, setup_defs, teardown),
        cmocka_unit_test_setup_teardown(a_restart_sends_the_same_payload, setup_defs, teardown),
        cmocka_unit_test_setup_teardown(stored_payloads_are_not_rendered_again, setup_defs,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_payload_over_the_cap_fails_the_step, setup_defs,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_compensation_over_the_cap_sends_the_request, setup_defs,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
