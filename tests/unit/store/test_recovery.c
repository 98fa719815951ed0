/* Durability across reopen: unfinished sagas and pending events come back
 * for recovery; the compensation completion rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store/helpers.h"

typedef struct collected {
    sg_saga_rec *sagas[16];
    size_t nsagas;
    sg_event_rec *events[16];
    size_t nevents;
} collected;

static void take_saga(void *arg, sg_saga_rec *rec)
{
    collected *c = arg;
    assert_true(c->nsagas < 16);
    c->sagas[c->nsagas++] = rec; /* ours now */
}

static void take_event(void *arg, sg_event_rec *ev)
{
    collected *c = arg;
    assert_true(c->nevents < 16);
    c->events[c->nevents++] = ev;
}

static void collected_free(collected *c)
{
    for (size_t i = 0; i < c->nsagas; i++) {
        sg_saga_rec_free(c->sagas[i]);
        free(c->sagas[i]);
    }
    for (size_t i = 0; i < c->nevents; i++) {
        sg_event_rec_free(c->events[i]);
        free(c->events[i]);
    }
}

static void test_reopen_recovery(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);

    /* Four sagas, created out of order: 0 and 2 stay IN_PROGRESS, 1
     * completes, 3 fails with a pending compensation. */
    sg_saga_rec r[4];
    int64_t created[4] = {300, 100, 200, 400};
    for (int i = 0; i < 4; i++) {
        make_saga(&r[i], "{\"x\":1}", 7, NULL, created[i]);
        insert_sync(s, &r[i]);
    }
    sg_event_rec ev_done, ev_pending, ev_withdrawn, ev_comp;
    make_event(&ev_done, r[1].id, "tokenizer_event", 0, 110);
    make_event(&ev_withdrawn, r[3].id, "tokenizer_event", 0, 410);
    make_event(&ev_pending, r[0].id, "tokenizer_event", 0, 310);
    make_event(&ev_comp, r[3].id, "tokenizer_compensation", 1, 420);

    sg_write *w = sg_write_create();
    r[1].status = SG_SAGA_COMPLETED;
    sg_write_saga_update(w, r[1].id, SG_SAGA_COMPLETED, SG_COMP_NONE, NULL, 150);
    sg_write_event_insert(w, &ev_done);
    sg_write_event_update(w, ev_done.id, SG_EVENT_DELIVERED, 1, NULL, 0);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);

    w = sg_write_create();
    sg_write_event_insert(w, &ev_withdrawn);
    sg_write_event_update(w, ev_withdrawn.id, SG_EVENT_WITHDRAWN, 3, NULL, 0);
    sg_write_saga_update(w, r[3].id, SG_SAGA_FAILED, SG_COMP_PENDING, "Error en Step 3", 450);
    sg_write_event_insert(w, &ev_comp);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);

    w = sg_write_create();
    sg_write_event_insert(w, &ev_pending);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);
    sg_store_close(s);

    /* A new process. */
    s = open_sync(t.path);
    sg_store_reader *rd = NULL;
    assert_int_equal(sg_store_reader_open(s, &rd, NULL, 0), SG_OK);
    collected c = {0};
    assert_int_equal(sg_store_load_unfinished(rd, take_saga, &c), SG_OK);
    assert_int_equal(c.nsagas, 2);
    assert_saga_eq(c.sagas[0], &r[2]); /* oldest first: created 200, then 300 */
    assert_saga_eq(c.sagas[1], &r[0]);

    assert_int_equal(sg_store_load_pending_events(rd, take_event, &c), SG_OK);
    assert_int_equal(c.nevents, 2);
    assert_event_eq(c.events[0], &ev_pending); /* created 310, then 420 */
    assert_event_eq(c.events[1], &ev_comp);

    sg_event_rec ev;
    assert_int_equal(sg_store_get_event(rd, ev_withdrawn.id, &ev), SG_OK);
    assert_int_equal(ev.status, SG_EVENT_WITHDRAWN);
    assert_int_equal(ev.attempts, 3);
    sg_event_rec_free(&ev);
    sg_saga_rec got;
    assert_int_equal(sg_store_get(rd, r[3].id, &got), SG_OK);
    assert_int_equal(got.status, SG_SAGA_FAILED);
    assert_int_equal(got.comp_status, SG_COMP_PENDING);
    assert_string_equal(got.error, "Error en Step 3");
    assert_int_equal(got.updated_us, 450);
    sg_saga_rec_free(&got);

    collected_free(&c);
    sg_store_reader_close(rd);
    sg_store_close(s);
    for (int i = 0; i < 4; i++)
        sg_saga_rec_free(&r[i]);
    sg_event_rec_free(&ev_done);
    sg_event_rec_free(&ev_pending);
    sg_event_rec_free(&ev_withdrawn);
    sg_event_rec_free(&ev_comp);
    tmpdb_remove(&t);
}

static sg_comp_status comp_of(sg_store_reader *rd, const char *id, int64_t *updated)
{
    sg_saga_rec got;
    assert_int_equal(sg_store_get(rd, id, &got), SG_OK);
    sg_comp_status c = got.comp_status;
    if (updated) *updated = got.updated_us;
    sg_saga_rec_free(&got);
    return c;
}

static void deliver(sg_store *s, const char *event_id, sg_event_status st)
{
    sg_write *w = sg_write_create();
    sg_write_event_update(w, event_id, st, 1, NULL, 0);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);
}

/* comp_status becomes COMPLETED when the last PENDING compensation event of
 * the saga is delivered, and not before; other events do not count. */
static void test_comp_completion(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    sg_saga_rec a, other;
    make_saga(&a, "{}", 2, NULL, 10);
    make_saga(&other, "{}", 2, NULL, 11);
    sg_event_rec plain, c1, c2, oc;
    make_event(&plain, a.id, "tokenizer_event", 0, 20);
    make_event(&c1, a.id, "tokenizer_compensation", 1, 21);
    make_event(&c2, a.id, "tokenizer_compensation", 1, 22);
    make_event(&oc, other.id, "tokenizer_compensation", 1, 23);

    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, &a);
    sg_write_saga_insert(w, &other);
    sg_write_saga_update(w, a.id, SG_SAGA_FAILED, SG_COMP_PENDING, "boom", 30);
    sg_write_saga_update(w, other.id, SG_SAGA_FAILED, SG_COMP_PENDING, "boom", 30);
    sg_write_event_insert(w, &plain);
    sg_write_event_insert(w, &c1);
    sg_write_event_insert(w, &c2);
    sg_write_event_insert(w, &oc);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);

    sg_store_reader *rd = NULL;
    assert_int_equal(sg_store_reader_open(s, &rd, NULL, 0), SG_OK);
    int64_t upd = 0;
    deliver(s, plain.id, SG_EVENT_DELIVERED);
    assert_int_equal(comp_of(rd, a.id, &upd), SG_COMP_PENDING);
    assert_int_equal(upd, 30);
    deliver(s, c1.id, SG_EVENT_PENDING); /* a retry bookkeeping update */
    assert_int_equal(comp_of(rd, a.id, NULL), SG_COMP_PENDING);
    deliver(s, c1.id, SG_EVENT_DELIVERED);
    assert_int_equal(comp_of(rd, a.id, &upd), SG_COMP_PENDING); /* c2 still pending */
    assert_int_equal(upd, 30);
    deliver(s, c2.id, SG_EVENT_DELIVERED);
    assert_int_equal(comp_of(rd, a.id, &upd), SG_COMP_COMPLETED);
    assert_true(upd > 30);
    assert_int_equal(comp_of(rd, other.id, NULL), SG_COMP_PENDING); /* untouched */
    deliver(s, oc.id, SG_EVENT_DELIVERED);
    assert_int_equal(comp_of(rd, other.id, NULL), SG_COMP_COMPLETED);

    sg_store_reader_close(rd);
    sg_store_close(s);
    sg_saga_rec_free(&a);
    sg_saga_rec_free(&other);
    sg_event_rec_free(&plain);
    sg_event_rec_free(&c1);
    sg_event_rec_free(&c2);
    sg_event_rec_free(&oc);
    tmpdb_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reopen_recovery),
        cmocka_unit_test(test_comp_completion),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
