/* Store round trip: everything written comes back byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store/helpers.h"

/* Insert a 3-step saga, update every step and the saga, read it back and
 * compare every field, against a record updated the same way in memory. */
static void roundtrip_with(const char *request, size_t request_len)
{
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);

    sg_saga_rec want;
    make_saga(&want, request, request_len, "key-1", 1700000000000001);
    want.def_version = 7; /* the definition version it runs on */
    insert_sync(s, &want);

    sg_write *w = sg_write_create();
    for (size_t i = 0; i < 3; i++) {
        sg_step_rec *st = &want.steps[i];
        st->status = i == 2 ? SG_STEP_FAILED : SG_STEP_COMPLETED;
        st->attempts = (int)i + 1;
        st->started_us = 1700000000000100 + (int64_t)i;
        st->finished_us = 1700000000000200 + (int64_t)i;
        if (i == 2) st->error = sg_xstrdup("HTTP 500 from ai-model");
        if (i == 0) {
            st->response = sg_xstrdup("{\"anonymized\":true,\"n\":9007199254740993}");
            st->response_len = strlen(st->response);
        }
        sg_write_step_update(w, want.id, i, st);
    }
    want.status = SG_SAGA_FAILED;
    want.comp_status = SG_COMP_PENDING;
    want.error = sg_xstrdup("Error en Step 3 (AI Model Process): HTTP 500");
    want.updated_us = 1700000000000300;
    sg_write_saga_update(w, want.id, want.status, want.comp_status, want.error, want.updated_us);
    assert_int_equal(sg_write_count(w), 4);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);

    sg_store_reader *r = NULL;
    assert_int_equal(sg_store_reader_open(s, &r, NULL, 0), SG_OK);
    sg_saga_rec got;
    assert_int_equal(sg_store_get(r, want.id, &got), SG_OK);
    assert_saga_eq(&got, &want);
    sg_saga_rec_free(&got);

    assert_int_equal(sg_store_get_by_idem(r, "key-1", &got), SG_OK);
    assert_saga_eq(&got, &want);
    sg_saga_rec_free(&got);

    assert_int_equal(sg_store_get_by_idem(r, "key-2", &got), SG_ENOTFOUND);
    assert_null(got.request);
    char other[SG_ID_LEN + 1];
    sg_uuid_v4(other);
    assert_int_equal(sg_store_get(r, other, &got), SG_ENOTFOUND);

    sg_store_reader_close(r);
    sg_store_close(s);
    sg_saga_rec_free(&want);
    tmpdb_remove(&t);
}

static void test_roundtrip_small(void **state)
{
    (void)state;
    /* The JSON escape \u0000 is six ASCII characters and must survive. */
    const char *req =
        "{\"image_id\":\"img_123\",\"data\":\"a\\u0000b\",\"big\":9223372036854775807}";
    roundtrip_with(req, strlen(req));
}

static void test_roundtrip_raw_nul(void **state)
{
    (void)state;
    /* Not JSON any more, but the store keeps exact bytes with their length. */
    static const char req[] = "{\"a\":\"x\0y\"}";
    roundtrip_with(req, sizeof req - 1);
}

static void test_roundtrip_1mib(void **state)
{
    (void)state;
    size_t n = 1 << 20;
    char *req = sg_xmalloc(n);
    memset(req, 'x', n);
    memcpy(req, "{\"data\":\"", 9);
    memcpy(req + n - 2, "\"}", 2);
    roundtrip_with(req, n);
    free(req);
}

/* Writes deep-copy: the caller's record may be freed before the commit. */
static void test_write_deep_copy(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    sg_saga_rec rec, keep;
    make_saga(&rec, "{}", 2, NULL, 5);
    rec.def_version = 3;
    sg_saga_rec_copy(&keep, &rec);
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, &rec);
    sg_event_rec ev, ev_keep;
    make_event(&ev, rec.id, "tokenizer_event", 0, 6);
    ev.target = sg_xstrdup("http://127.0.0.1:1/hook");
    ev.deadline_us = 99;
    ev.attempts = 2;
    ev.last_error = sg_xstrdup("HTTP 503");
    ev.updated_us = 7;
    /* An HTTP compensation's own call. */
    ev.method = sg_xstrdup("PUT");
    ev.headers = sg_xstrdup("X-A: 1\nX-B: two words");
    ev.timeout_ms = 4500;
    sg_event_rec_copy(&ev_keep, &ev);
    sg_write_event_insert(w, &ev);
    sg_saga_rec_free(&rec);
    sg_event_rec_free(&ev);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);

    sg_store_reader *r = NULL;
    assert_int_equal(sg_store_reader_open(s, &r, NULL, 0), SG_OK);
    sg_saga_rec got;
    assert_int_equal(sg_store_get(r, keep.id, &got), SG_OK);
    assert_saga_eq(&got, &keep);
    sg_saga_rec_free(&got);
    sg_event_rec gev;
    assert_int_equal(sg_store_get_event(r, ev_keep.id, &gev), SG_OK);
    assert_event_eq(&gev, &ev_keep);
    sg_event_rec_free(&gev);
    assert_int_equal(sg_store_get_event(r, keep.id, &gev), SG_ENOTFOUND);

    sg_store_reader_close(r);
    sg_store_close(s);
    sg_saga_rec_free(&keep);
    sg_event_rec_free(&ev_keep);
    tmpdb_remove(&t);
}

/* An HTTP compensation's call (method, headers, timeout) and a step
 * event's come back from every reader of the outbox. */
typedef struct seen_events {
    sg_event_rec *v[8];
    size_t n;
} seen_events;

static void keep_event(void *arg, sg_event_rec *ev)
{
    seen_events *s = arg;
    assert_true(s->n < 8);
    s->v[s->n++] = ev;
}

static void keep_unfinished(void *arg, sg_saga_rec *rec, sg_event_rec *evs, size_t nevs)
{
    seen_events *s = arg;
    for (size_t i = 0; i < nevs; i++) {
        sg_event_rec *ev = sg_xmalloc(sizeof *ev);
        *ev = evs[i];
        keep_event(s, ev);
    }
    free(evs);
    sg_saga_rec_free(rec);
    free(rec);
}

/* Checks that seen holds exactly the events of want[0..n) (any order),
 * every field equal, and empties it. */
static void check_seen(seen_events *seen, const sg_event_rec *want, size_t n)
{
    assert_int_equal(seen->n, n);
    for (size_t i = 0; i < seen->n; i++) {
        size_t k = 0;
        while (k < n && strcmp(want[k].id, seen->v[i]->id) != 0)
            k++;
        assert_true(k < n);
        assert_event_eq(seen->v[i], &want[k]);
        sg_event_rec_free(seen->v[i]);
        free(seen->v[i]);
    }
    seen->n = 0;
}

static void test_event_call_readers(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    sg_saga_rec rec;
    make_saga(&rec, "{}", 2, NULL, 10);
    sg_event_rec ev[2];
    make_event(&ev[0], rec.id, "reserve", 1, 11); /* an HTTP compensation */
    ev[0].step_index = 0;
    ev[0].target = sg_xstrdup("http://127.0.0.1:1/release");
    ev[0].method = sg_xstrdup("DELETE");
    ev[0].headers = sg_xstrdup("X-Tenant: a\nX-Trace: b c");
    ev[0].timeout_ms = 1234;
    make_event(&ev[1], rec.id, "tokenizer_event", 0, 12); /* a step event, bus: no call */
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, &rec);
    sg_write_event_insert(w, &ev[0]);
    sg_write_event_insert(w, &ev[1]);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);

    sg_store_reader *r = NULL;
    assert_int_equal(sg_store_reader_open(s, &r, NULL, 0), SG_OK);
    seen_events seen = {0};
    for (int i = 0; i < 2; i++) {
        sg_event_rec got;
        assert_int_equal(sg_store_get_event(r, ev[i].id, &got), SG_OK);
        assert_event_eq(&got, &ev[i]);
        sg_event_rec_free(&got);
    }
    sg_list_query q = {-1, 10, NULL, NULL};
    sg_event_rec *v = NULL;
    size_t n = 0;
    char next[SG_CURSOR_MAX];
    assert_int_equal(sg_store_list_events(r, &q, &v, &n, next), SG_OK);
    for (size_t i = 0; i < n; i++) {
        sg_event_rec *one = sg_xmalloc(sizeof *one);
        *one = v[i];
        keep_event(&seen, one);
    }
    free(v);
    check_seen(&seen, ev, 2);
    assert_int_equal(sg_store_load_pending_events(r, keep_event, &seen), SG_OK);
    check_seen(&seen, ev, 2);
    assert_int_equal(sg_store_load_compensations(r, keep_event, &seen), SG_OK);
    check_seen(&seen, ev, 1);
    assert_int_equal(sg_store_load_unfinished_page(r, NULL, 10, keep_unfinished, &seen, next),
                     SG_OK);
    check_seen(&seen, &ev[1], 1);

    sg_store_reader_close(r);
    sg_store_close(s);
    sg_saga_rec_free(&rec);
    sg_event_rec_free(&ev[0]);
    sg_event_rec_free(&ev[1]);
    tmpdb_remove(&t);
}

/* Updates of rows that do not exist fail alone with SG_ENOTFOUND. */
static void check_trace(const sg_saga_rec *r, const char *id, int flags, const char *state)
{
    assert_string_equal(r->trace.trace_id, id);
    assert_int_equal(r->trace.flags, flags);
    if (state)
        assert_string_equal(r->tracestate, state);
    else
        assert_null(r->tracestate);
}

static void trace_page(void *arg, sg_saga_rec *rec, sg_event_rec *evs, size_t nevs)
{
    int *n = arg;
    if (rec->trace.trace_id[0])
        check_trace(rec, "4bf92f3577b34da6a3ce929d0e0e4736", 0x09, "rojo=1,congo=t61rcWkgMzE");
    else
        check_trace(rec, "", 0, NULL);
    (*n)++;
    for (size_t i = 0; i < nevs; i++)
        sg_event_rec_free(&evs[i]);
    free(evs);
    sg_saga_rec_free(rec);
    free(rec);
}

/* A saga's trace context (design §7) comes back from every reader,
 * recovery's included; a saga without one has none. */
static void test_trace_roundtrip(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    sg_saga_rec a, b;
    make_saga(&a, "{}", 2, "trace-key", 1700000000000001);
    memcpy(a.trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736", SG_TRACE_ID_HEX + 1);
    a.trace.flags = 0x09;
    a.tracestate = sg_xstrdup("rojo=1,congo=t61rcWkgMzE");
    make_saga(&b, "{}", 2, NULL, 1700000000000002);
    insert_sync(s, &a);
    insert_sync(s, &b);

    sg_store_reader *r = NULL;
    assert_int_equal(sg_store_reader_open(s, &r, NULL, 0), SG_OK);
    sg_saga_rec got;
    assert_int_equal(sg_store_get(r, a.id, &got), SG_OK);
    check_trace(&got, a.trace.trace_id, 0x09, a.tracestate);
    sg_saga_rec_free(&got);
    assert_int_equal(sg_store_get_by_idem(r, "trace-key", &got), SG_OK);
    check_trace(&got, a.trace.trace_id, 0x09, a.tracestate);
    sg_saga_rec_free(&got);
    assert_int_equal(sg_store_get(r, b.id, &got), SG_OK);
    check_trace(&got, "", 0, NULL);
    sg_saga_rec_free(&got);

    sg_list_query q = {.status = -1, .limit = 10};
    sg_saga_rec *v = NULL;
    size_t n = 0;
    char next[SG_CURSOR_MAX];
    assert_int_equal(sg_store_list(r, &q, &v, &n, next), SG_OK);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        const sg_saga_rec *x = &v[i];
        if (strcmp(x->id, a.id) == 0)
            check_trace(x, a.trace.trace_id, 0x09, a.tracestate);
        else
            check_trace(x, "", 0, NULL);
        sg_saga_rec_free(&v[i]);
    }
    free(v);
    int pages = 0;
    assert_int_equal(sg_store_load_unfinished_page(r, NULL, 10, trace_page, &pages, next), SG_OK);
    assert_int_equal(pages, 2);
    sg_store_reader_close(r);
    sg_store_close(s);
    sg_saga_rec_free(&a);
    sg_saga_rec_free(&b);
    tmpdb_remove(&t);
}

static void test_update_missing(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    char id[SG_ID_LEN + 1];
    sg_uuid_v4(id);
    sg_write *w = sg_write_create();
    sg_write_saga_update(w, id, SG_SAGA_COMPLETED, SG_COMP_NONE, NULL, 1);
    assert_int_equal(sg_store_commit_sync(s, w), SG_ENOTFOUND);
    sg_step_rec step = {0};
    w = sg_write_create();
    sg_write_step_update(w, id, 0, &step);
    assert_int_equal(sg_store_commit_sync(s, w), SG_ENOTFOUND);
    w = sg_write_create();
    sg_write_event_update(w, id, SG_EVENT_DELIVERED, 1, NULL, 0);
    assert_int_equal(sg_store_commit_sync(s, w), SG_ENOTFOUND);
    /* An empty write commits trivially. */
    assert_int_equal(sg_store_commit_sync(s, sg_write_create()), SG_OK);
    assert_int_equal(sg_store_health(s, NULL, 0), SG_OK);
    sg_store_close(s);
    tmpdb_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_small), cmocka_unit_test(test_roundtrip_raw_nul),
        cmocka_unit_test(test_roundtrip_1mib),  cmocka_unit_test(test_write_deep_copy),
        cmocka_unit_test(test_update_missing),  cmocka_unit_test(test_event_call_readers),
        cmocka_unit_test(test_trace_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
