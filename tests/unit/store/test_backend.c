/* Backend semantics that every store must share, run against the store
 * under test (SQLite by default; the one SG_TEST_STORE_URL names when set,
 * as the @redis CTest entries do):
 * - the same writes give the same records as SQLite, byte for byte, from
 *   every read (get, by key, listings and their cursors, recovery loads,
 *   the outbox, definitions), with the compensation rule and NULL versus
 *   empty values;
 * - a write that fails by itself (guards, missing rows, a taken key, a
 *   changed definition, a NULL request) applies nothing and the rest of
 *   its batch commits;
 * - failure injection: a failed batch applies nothing;
 * - orphan step events are found and withdrawn. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdatomic.h>

#include "store/helpers.h"
#include "store/store_int.h"

/* ---- the two stores ------------------------------------------------------------- */

typedef struct pair {
    tmpdb ref_db, db; /* SQLite reference; the store under test */
    sg_store *ref, *s;
    sg_store_reader *rr, *r;
} pair;

static void pair_open(pair *p)
{
    memset(p, 0, sizeof *p);
    tmpdb_make(&p->ref_db);
    /* The reference is always a file, whatever the test store is. */
    snprintf(p->ref_db.path, sizeof p->ref_db.path, "%s/ref.db", p->ref_db.dir);
    tmpdb_make(&p->db);
    p->ref = open_sync(p->ref_db.path);
    p->s = open_sync(p->db.path);
    char err[256];
    assert_int_equal(sg_store_reader_open(p->ref, &p->rr, err, sizeof err), SG_OK);
    assert_int_equal(sg_store_reader_open(p->s, &p->r, err, sizeof err), SG_OK);
}

static void pair_close(pair *p)
{
    sg_store_reader_close(p->rr);
    sg_store_reader_close(p->r);
    sg_store_close(p->ref);
    sg_store_close(p->s);
    tmpdb_remove(&p->ref_db);
    tmpdb_remove(&p->db);
}

/* Commits w (taken) to both; both must answer want. */
static void both(pair *p, sg_write *w, sg_status want)
{
    sg_write *copy = sg_write_create();
    for (size_t i = 0; i < w->nops; i++) {
        /* Rebuild through the public calls: a deep copy of each op. */
        const sg_write_op *op = &w->ops[i];
        switch (op->kind) {
        case SG_WOP_SAGA_INSERT:
            sg_write_saga_insert(copy, &op->u.saga_insert);
            break;
        case SG_WOP_SAGA_UPDATE:
            sg_write_saga_update(copy, op->u.saga_update.id, op->u.saga_update.status,
                                 op->u.saga_update.comp, op->u.saga_update.error,
                                 op->u.saga_update.updated_us);
            break;
        case SG_WOP_STEP_UPDATE:
            sg_write_step_update(copy, op->u.step_update.saga_id, op->u.step_update.index,
                                 &op->u.step_update.step);
            break;
        case SG_WOP_EVENT_INSERT:
            sg_write_event_insert(copy, &op->u.event_insert);
            break;
        case SG_WOP_EVENT_UPDATE:
            sg_write_event_update(copy, op->u.event_update.id, op->u.event_update.status,
                                  op->u.event_update.attempts, op->u.event_update.last_error,
                                  op->u.event_update.updated_us);
            break;
        case SG_WOP_SAGA_EXPECT:
            sg_write_saga_expect(copy, op->u.saga_expect.id, op->u.saga_expect.status,
                                 op->u.saga_expect.comp);
            break;
        case SG_WOP_EVENT_EXPECT:
            sg_write_event_expect(copy, op->u.event_expect.id, op->u.event_expect.status);
            break;
        case SG_WOP_DEF_INSERT:
            sg_write_def_insert(copy, op->u.def_insert.name, op->u.def_insert.version,
                                op->u.def_insert.canonical, op->u.def_insert.created_us);
            break;
        case SG_WOP_EVENT_TRIED:
            sg_write_event_tried(copy, op->u.event_tried.id, op->u.event_tried.us);
            break;
        case SG_WOP_WITHDRAW_ORPHANS:
            sg_write_withdraw_orphans(copy);
            break;
        case SG_WOP_SAGA_CLAIM:
            sg_write_saga_claim(copy, op->u.saga_claim);
            break;
        case SG_WOP_PURGE:
            sg_write_purge(copy, op->u.purge.before_us, op->u.purge.limit, op->u.purge.purged);
            break;
        }
    }
    assert_int_equal(sg_store_commit_sync(p->ref, copy), want);
    assert_int_equal(sg_store_commit_sync(p->s, w), want);
}

/* ---- strict comparisons (helpers.h's, plus next_us and started_us) --------------- */

/* The compensation rule stamps updated_us with the clock of the moment,
 * which differs between the two stores: two clock readings (the test's
 * own times are small) count as equal. */
#define CLOCK_US 1000000000000000LL

static void same_saga(const sg_saga_rec *a, const sg_saga_rec *b0)
{
    sg_saga_rec bc = *b0; /* shallow: only updated_us may change */
    const sg_saga_rec *b = &bc;
    if (a->updated_us > CLOCK_US && bc.updated_us > CLOCK_US) bc.updated_us = a->updated_us;
    assert_saga_eq(a, b);
    for (size_t i = 0; i < a->nsteps; i++) {
        assert_int_equal(a->steps[i].next_us, b->steps[i].next_us);
        assert_int_equal(a->steps[i].comp.started_us, b->steps[i].comp.started_us);
    }
}

static void same_sagas(const sg_saga_rec *a, size_t na, const sg_saga_rec *b, size_t nb)
{
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++)
        same_saga(&a[i], &b[i]);
}

static void free_sagas(sg_saga_rec *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sg_saga_rec_free(&v[i]);
    free(v);
}

static void free_events(sg_event_rec *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sg_event_rec_free(&v[i]);
    free(v);
}

/* Every page of a saga listing, from both, compared page by page. */
static void same_listing(pair *p, int status, const char *type, size_t limit)
{
    char ca[SG_CURSOR_MAX] = "", cb[SG_CURSOR_MAX] = "";
    int pages = 0;
    do {
        sg_list_query q = {status, limit, ca[0] ? ca : NULL, type};
        sg_list_query q2 = {status, limit, cb[0] ? cb : NULL, type};
        sg_saga_rec *va = NULL, *vb = NULL;
        size_t na = 0, nb = 0;
        char na_next[SG_CURSOR_MAX] = "", nb_next[SG_CURSOR_MAX] = "";
        assert_int_equal(sg_store_list(p->rr, &q, &va, &na, na_next), SG_OK);
        assert_int_equal(sg_store_list(p->r, &q2, &vb, &nb, nb_next), SG_OK);
        same_sagas(va, na, vb, nb);
        assert_string_equal(na_next, nb_next);
        free_sagas(va, na);
        free_sagas(vb, nb);
        memcpy(ca, na_next, sizeof ca);
        memcpy(cb, nb_next, sizeof cb);
        assert_true(++pages < 100);
    } while (ca[0]);
}

static void same_event_listing(pair *p, int status, size_t limit)
{
    char ca[SG_CURSOR_MAX] = "", cb[SG_CURSOR_MAX] = "";
    int pages = 0;
    do {
        sg_list_query q = {status, limit, ca[0] ? ca : NULL, NULL};
        sg_list_query q2 = {status, limit, cb[0] ? cb : NULL, NULL};
        sg_event_rec *va = NULL, *vb = NULL;
        size_t na = 0, nb = 0;
        char an[SG_CURSOR_MAX] = "", bn[SG_CURSOR_MAX] = "";
        assert_int_equal(sg_store_list_events(p->rr, &q, &va, &na, an), SG_OK);
        assert_int_equal(sg_store_list_events(p->r, &q2, &vb, &nb, bn), SG_OK);
        assert_int_equal(na, nb);
        for (size_t i = 0; i < na; i++)
            assert_event_eq(&va[i], &vb[i]);
        assert_string_equal(an, bn);
        free_events(va, na);
        free_events(vb, nb);
        memcpy(ca, an, sizeof ca);
        memcpy(cb, bn, sizeof cb);
        assert_true(++pages < 100);
    } while (ca[0]);
}

/* What a callback-style load delivers, in order. */
typedef struct got {
    sg_saga_rec *s[64];
    sg_event_rec *e[64];
    size_t ns, ne;
    sg_event_rec *pe[64]; /* load_unfinished_page: each saga's events */
    size_t npe[64];
    char defs[4096];
} got;

static void on_saga(void *arg, sg_saga_rec *rec)
{
    got *g = arg;
    assert_true(g->ns < 64);
    g->s[g->ns++] = rec;
}

static void on_event(void *arg, sg_event_rec *ev)
{
    got *g = arg;
    assert_true(g->ne < 64);
    g->e[g->ne++] = ev;
}

static void on_page(void *arg, sg_saga_rec *rec, sg_event_rec *evs, size_t nevs)
{
    got *g = arg;
    assert_true(g->ns < 64);
    g->pe[g->ns] = evs;
    g->npe[g->ns] = nevs;
    g->s[g->ns++] = rec;
}

static void on_def(void *arg, const char *name, int version, const char *canonical)
{
    got *g = arg;
    size_t n = strlen(g->defs);
    snprintf(g->defs + n, sizeof g->defs - n, "%s/%d=%s;", name, version, canonical);
}

static void got_free(got *g)
{
    for (size_t i = 0; i < g->ns; i++) {
        sg_saga_rec_free(g->s[i]);
        free(g->s[i]);
        free_events(g->pe[i], g->npe[i]);
    }
    for (size_t i = 0; i < g->ne; i++) {
        sg_event_rec_free(g->e[i]);
        free(g->e[i]);
    }
    memset(g, 0, sizeof *g);
}

static void same_got(const got *a, const got *b)
{
    assert_int_equal(a->ns, b->ns);
    for (size_t i = 0; i < a->ns; i++) {
        same_saga(a->s[i], b->s[i]);
        assert_int_equal(a->npe[i], b->npe[i]);
        for (size_t k = 0; k < a->npe[i]; k++)
            assert_event_eq(&a->pe[i][k], &b->pe[i][k]);
    }
    assert_int_equal(a->ne, b->ne);
    for (size_t i = 0; i < a->ne; i++)
        assert_event_eq(a->e[i], b->e[i]);
    assert_string_equal(a->defs, b->defs);
}

/* Every read of both stores, compared. */
static void same_everything(pair *p, sg_saga_rec *sagas, size_t nsagas, sg_event_rec *evs,
                            size_t nevs)
{
    for (size_t i = 0; i < nsagas; i++) {
        sg_saga_rec a, b;
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        assert_int_equal(sg_store_get(p->rr, sagas[i].id, &a), SG_OK);
        assert_int_equal(sg_store_get(p->r, sagas[i].id, &b), SG_OK);
        same_saga(&a, &b);
        sg_saga_rec_free(&a);
        sg_saga_rec_free(&b);
        if (sagas[i].idem_key) {
            assert_int_equal(sg_store_get_by_idem(p->rr, sagas[i].idem_key, &a), SG_OK);
            assert_int_equal(sg_store_get_by_idem(p->r, sagas[i].idem_key, &b), SG_OK);
            same_saga(&a, &b);
            sg_saga_rec_free(&a);
            sg_saga_rec_free(&b);
        }
    }
    for (size_t i = 0; i < nevs; i++) {
        sg_event_rec a, b;
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        assert_int_equal(sg_store_get_event(p->rr, evs[i].id, &a), SG_OK);
        assert_int_equal(sg_store_get_event(p->r, evs[i].id, &b), SG_OK);
        assert_event_eq(&a, &b);
        sg_event_rec_free(&a);
        sg_event_rec_free(&b);
    }
    for (size_t limit = 1; limit <= 7; limit += 3) {
        for (int st = -1; st <= SG_SAGA_FAILED; st++) {
            same_listing(p, st, NULL, limit);
            same_listing(p, st, "sta", limit);
            same_listing(p, st, "other", limit);
            same_listing(p, st, "none", limit);
        }
        for (int st = -1; st <= SG_EVENT_PARKED; st++)
            same_event_listing(p, st, limit);
    }
    got a = {0}, b = {0};
    assert_int_equal(sg_store_load_unfinished(p->rr, on_saga, &a), SG_OK);
    assert_int_equal(sg_store_load_unfinished(p->r, on_saga, &b), SG_OK);
    same_got(&a, &b);
    got_free(&a);
    got_free(&b);
    char ca[SG_CURSOR_MAX] = "", cb[SG_CURSOR_MAX] = "";
    do {
        char an[SG_CURSOR_MAX] = "", bn[SG_CURSOR_MAX] = "";
        assert_int_equal(sg_store_load_unfinished_page(p->rr, ca, 2, on_page, &a, an), SG_OK);
        assert_int_equal(sg_store_load_unfinished_page(p->r, cb, 2, on_page, &b, bn), SG_OK);
        assert_string_equal(an, bn);
        same_got(&a, &b);
        got_free(&a);
        got_free(&b);
        memcpy(ca, an, sizeof ca);
        memcpy(cb, bn, sizeof cb);
    } while (ca[0]);
    assert_int_equal(sg_store_load_compensations(p->rr, on_event, &a), SG_OK);
    assert_int_equal(sg_store_load_compensations(p->r, on_event, &b), SG_OK);
    same_got(&a, &b);
    got_free(&a);
    got_free(&b);
    assert_int_equal(sg_store_load_pending_events(p->rr, on_event, &a), SG_OK);
    assert_int_equal(sg_store_load_pending_events(p->r, on_event, &b), SG_OK);
    same_got(&a, &b);
    got_free(&a);
    got_free(&b);
    assert_int_equal(sg_store_load_defs(p->rr, on_def, &a), SG_OK);
    assert_int_equal(sg_store_load_defs(p->r, on_def, &b), SG_OK);
    same_got(&a, &b);
    int ya = -1, yb = -2;
    assert_int_equal(sg_store_has_orphans(p->rr, &ya), SG_OK);
    assert_int_equal(sg_store_has_orphans(p->r, &yb), SG_OK);
    assert_int_equal(ya, yb);
}

/* ---- the scenario ------------------------------------------------------------------ */

static void test_same_records_as_sqlite(void **state)
{
    (void)state;
    pair p;
    pair_open(&p);
    enum { NS = 9 };
    sg_saga_rec s[NS];
    /* Ties on created_us (order by id), 0, a NUL in a request. */
    int64_t created[NS] = {500, 100, 100, 100, 0, 900, 300, 300, 700};
    for (int i = 0; i < NS; i++) {
        char key[16];
        snprintf(key, sizeof key, "key-%d", i);
        make_saga(&s[i], "{\"a\":\"x\0y\"}", 11, i % 3 ? key : NULL, created[i]);
        if (i % 4 == 1) {
            free(s[i].def_name);
            s[i].def_name = sg_xstrdup("other");
            s[i].def_version = 3;
        }
        if (i == 7) {
            free(s[i].def_name);
            s[i].def_name = NULL; /* no type */
        }
        if (i == 8) {
            s[i].error = sg_xstrdup(""); /* empty, not NULL */
            s[i].steps[0].response = sg_xstrdup("");
            s[i].steps[0].response_len = 0;
            s[i].steps[1].error = sg_xstrdup("");
        }
        sg_write *w = sg_write_create();
        sg_write_saga_insert(w, &s[i]);
        both(&p, w, SG_OK);
    }
    /* Steps move on; sagas finish or fail. */
    for (int i = 0; i < NS; i++) {
        sg_step_rec st = {0};
        st.status = SG_STEP_COMPLETED;
        st.attempts = i + 1;
        st.started_us = 1000 + i;
        st.finished_us = 2000 + i;
        st.next_us = i % 2 ? 0 : 5000 + i;
        st.response = i % 2 ? sg_xstrdup("{\"ok\":true}") : NULL;
        st.response_len = st.response ? strlen(st.response) : 0;
        st.error = i % 3 == 0 ? sg_xstrdup("retrying: 503") : NULL;
        sg_write *w = sg_write_create();
        sg_write_saga_expect(w, s[i].id, SG_SAGA_IN_PROGRESS, SG_COMP_NONE);
        sg_write_step_update(w, s[i].id, 0, &st);
        if (i % 3 == 1)
            sg_write_saga_update(w, s[i].id, SG_SAGA_COMPLETED, SG_COMP_NONE, NULL, 3000 + i);
        if (i % 3 == 2)
            sg_write_saga_update(w, s[i].id, SG_SAGA_FAILED, SG_COMP_PENDING, "Error en Step 2",
                                 3000 + i);
        both(&p, w, SG_OK);
        sg_step_rec_free(&st);
    }
    /* Events: a step event per saga, compensations for the failed ones
     * (an HTTP one with method, headers and a timeout). */
    enum { NE = 2 * NS };
    sg_event_rec e[NE];
    size_t ne = 0;
    for (int i = 0; i < NS; i++) {
        make_event(&e[ne], s[i].id, "tokenizer_event", 0, created[i] + 1);
        sg_write *w = sg_write_create();
        sg_write_event_insert(w, &e[ne++]);
        if (i % 3 == 2) {
            make_event(&e[ne], s[i].id, "anonymizer_compensation", 1, created[i] + 2);
            e[ne].step_index = 0;
            if (i == 5) {
                e[ne].target = sg_xstrdup("http://127.0.0.1:1/undo");
                e[ne].method = sg_xstrdup("DELETE");
                e[ne].headers = sg_xstrdup("X-A: 1\nX-B: 2");
                e[ne].timeout_ms = 1500;
                e[ne].deadline_us = 99999;
            }
            sg_write_event_insert(w, &e[ne++]);
        }
        both(&p, w, SG_OK);
    }
    /* Deliveries, a parked compensation, a tried one, the compensation
     * rule (saga 2's only compensation delivered: COMPLETED; saga 5's
     * parked: PARKED). */
    for (size_t i = 0; i < ne; i++) {
        sg_write *w = sg_write_create();
        if (!e[i].compensation && i % 2 == 0) {
            sg_write_event_expect(w, e[i].id, SG_EVENT_PENDING);
            sg_write_event_update(w, e[i].id, SG_EVENT_DELIVERED, 1, NULL, 4000 + (int64_t)i);
        } else if (e[i].compensation && !strcmp(e[i].saga_id, s[2].id)) {
            sg_write_event_tried(w, e[i].id, 4500);
            sg_write_event_tried(w, e[i].id, 4600); /* the first stays */
            sg_write_event_update(w, e[i].id, SG_EVENT_DELIVERED, 2, NULL, 4700);
        } else if (e[i].compensation && !strcmp(e[i].saga_id, s[5].id)) {
            sg_write_event_tried(w, e[i].id, 4800);
            sg_write_event_update(w, e[i].id, SG_EVENT_PARKED, 5, "503 from /undo", 4900);
        } else {
            sg_write_event_update(w, e[i].id, SG_EVENT_PENDING, 1, "", 4000 + (int64_t)i);
        }
        both(&p, w, SG_OK);
    }
    /* Definitions, out of order; the same text again; a changed one. */
    const char *names[] = {"sta", "order", "sta", "a"};
    int versions[] = {2, 1, 10, 1};
    for (int i = 0; i < 4; i++) {
        sg_write *w = sg_write_create();
        sg_write_def_insert(w, names[i], versions[i], "{\"v\":1}", 10 + i);
        both(&p, w, SG_OK);
    }
    sg_write *w = sg_write_create();
    sg_write_def_insert(w, "sta", 2, "{\"v\":1}", 99);
    both(&p, w, SG_OK);
    w = sg_write_create();
    sg_write_def_insert(w, "sta", 2, "{\"v\":2}", 99);
    both(&p, w, SG_ECONFLICT);
    same_everything(&p, s, NS, e, ne);
    /* The compensation rule ran (the comparison alone would pass if both
     * stores ignored it). */
    sg_saga_rec g;
    memset(&g, 0, sizeof g);
    assert_int_equal(sg_store_get(p.r, s[2].id, &g), SG_OK);
    assert_int_equal(g.comp_status, SG_COMP_COMPLETED);
    assert_int_equal(g.steps[0].comp.started_us, 4500);
    sg_saga_rec_free(&g);
    memset(&g, 0, sizeof g);
    assert_int_equal(sg_store_get(p.r, s[5].id, &g), SG_OK);
    assert_int_equal(g.comp_status, SG_COMP_PARKED);
    sg_saga_rec_free(&g);
    int orphans = 0;
    assert_int_equal(sg_store_has_orphans(p.r, &orphans), SG_OK);
    assert_int_equal(orphans, 1);

    /* Orphans: withdrawn at start-up; then everything is compared again. */
    w = sg_write_create();
    sg_write_withdraw_orphans(w);
    both(&p, w, SG_OK);
    same_everything(&p, s, NS, e, ne);
    assert_int_equal(sg_store_has_orphans(p.r, &orphans), SG_OK);
    assert_int_equal(orphans, 0);

    for (int i = 0; i < NS; i++)
        sg_saga_rec_free(&s[i]);
    for (size_t i = 0; i < ne; i++)
        sg_event_rec_free(&e[i]);
    pair_close(&p);
}

/* A write that fails by itself applies nothing (its earlier operations
 * included) and the other writes of its batch commit. */
static void test_write_fails_alone(void **state)
{
    (void)state;
    pair p;
    pair_open(&p);
    sg_saga_rec a, b;
    sg_event_rec ea;
    make_saga(&a, "{}", 2, "k1", 10);
    make_saga(&b, "{}", 2, NULL, 20);
    make_event(&ea, a.id, "tokenizer_event", 0, 11);
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, &a);
    sg_write_event_insert(w, &ea);
    both(&p, w, SG_OK);

    sg_step_rec st = {0};
    st.status = SG_STEP_RUNNING;
    st.attempts = 1;
    struct {
        sg_status want;
        int kind;
    } cases[] = {{SG_ECONFLICT, 0}, {SG_ECONFLICT, 1}, {SG_ENOTFOUND, 2},
                 {SG_ENOTFOUND, 3}, {SG_ECONFLICT, 4}, {SG_ECONFLICT, 5},
                 {SG_EINVAL, 6},    {SG_ENOTFOUND, 7}, {SG_ECONFLICT, 8}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        w = sg_write_create();
        /* Applied first, then undone with the rest of the write. */
        sg_write_step_update(w, a.id, 1, &st);
        sg_write_saga_update(w, a.id, SG_SAGA_FAILED, SG_COMP_NONE, "x", 99);
        sg_saga_rec dup, nul;
        make_saga(&dup, "{}", 2, "k1", 30);
        make_saga(&nul, "{}", 2, NULL, 31);
        free(nul.request);
        nul.request = NULL;
        nul.request_len = 0;
        switch (cases[c].kind) {
        case 0:
            sg_write_saga_expect(w, a.id, SG_SAGA_COMPLETED, SG_COMP_NONE);
            break;
        case 1:
            sg_write_event_expect(w, ea.id, SG_EVENT_DELIVERED);
            break;
        case 2:
            sg_write_saga_update(w, b.id, SG_SAGA_FAILED, SG_COMP_NONE, NULL, 1);
            break;
        case 3:
            sg_write_step_update(w, a.id, 3, &st);
            break;
        case 4:
            sg_write_saga_insert(w, &dup);
            break;
        case 5:
            sg_write_event_insert(w, &ea);
            break;
        case 6:
            sg_write_saga_insert(w, &nul);
            break;
        case 7:
            sg_write_event_update(w, "00000000-0000-4000-8000-000000000000", 1, 1, NULL, 1);
            break;
        case 8:
            sg_write_def_insert(w, "d", 1, "{}", 1);
            sg_write_def_insert(w, "d", 1, "{ }", 1);
            break;
        }
        sg_saga_rec_free(&dup);
        sg_saga_rec_free(&nul);
        both(&p, w, cases[c].want);
    }
    /* A batch of three where the middle one fails: through the backend
     * of the store under test, one exact batch. */
    sg_store_reader_close(p.r);
    p.r = NULL;
    sg_store_close(p.s);
    p.s = NULL;
    const struct sg_store_ops *ops = test_store_url() ? &sg_store_redis_ops : &sg_store_sqlite_ops;
    const char *target = test_store_url() ? p.db.path + 8 : p.db.path;
    sg_store_backend *be = NULL;
    char err[256] = "";
    assert_int_equal(ops->open(&be, p.db.path, target, NULL, err, sizeof err), SG_OK);
    sg_saga_rec c1, c3;
    make_saga(&c1, "{}", 2, "k2", 40);
    make_saga(&c3, "{}", 2, "k3", 41);
    sg_write *ws[3] = {sg_write_create(), sg_write_create(), sg_write_create()};
    sg_write_saga_insert(ws[0], &c1);
    sg_write_saga_insert(ws[1], &b);                                 /* b is new here... */
    sg_write_saga_expect(ws[1], a.id, SG_SAGA_FAILED, SG_COMP_NONE); /* ...but this fails */
    sg_write_saga_insert(ws[2], &c3);
    sg_status res[3];
    assert_int_equal(ops->exec_batch(be, ws, 3, res, err, sizeof err), SG_OK);
    assert_int_equal(res[0], SG_OK);
    assert_int_equal(res[1], SG_ECONFLICT);
    assert_int_equal(res[2], SG_OK);
    sg_store_breader *br = NULL;
    assert_int_equal(ops->reader_open(be, &br, err, sizeof err), SG_OK);
    sg_saga_rec got;
    memset(&got, 0, sizeof got);
    assert_int_equal(ops->get(br, b.id, &got, err, sizeof err), SG_ENOTFOUND);
    assert_int_equal(ops->get(br, c3.id, &got, err, sizeof err), SG_OK);
    sg_saga_rec_free(&got);
    memset(&got, 0, sizeof got);
    assert_int_equal(ops->get(br, a.id, &got, err, sizeof err), SG_OK);
    assert_int_equal(got.status, SG_SAGA_IN_PROGRESS); /* nothing of the failed writes */
    assert_int_equal(got.steps[1].status, SG_STEP_PENDING);
    sg_saga_rec_free(&got);
    ops->reader_close(br);
    for (int i = 0; i < 3; i++)
        sg_write_destroy(ws[i]);
    ops->close(be);
    sg_saga_rec_free(&c1);
    sg_saga_rec_free(&c3);
    sg_saga_rec_free(&a);
    sg_saga_rec_free(&b);
    sg_event_rec_free(&ea);
    pair_close(&p);
}

/* Failure injection through the store under test: a failed batch applies
 * nothing and reports SG_EIO for every write; the next one commits. */
static void test_fault_countdown(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    const struct sg_store_ops *ops = test_store_url() ? &sg_store_redis_ops : &sg_store_sqlite_ops;
    const char *target = test_store_url() ? t.path + 8 : t.path;
    sg_store_backend *be = NULL;
    char err[256] = "";
    assert_int_equal(ops->open(&be, t.path, target, NULL, err, sizeof err), SG_OK);
    sg_store_breader *br = NULL;
    assert_int_equal(ops->reader_open(be, &br, err, sizeof err), SG_OK);
    int committed = 0, failures = 0;
    for (int n = 1; n < 100 && !committed; n++) {
        sg_saga_rec a, dup;
        sg_event_rec ea;
        make_saga(&a, "{}", 2, "k", 1);
        make_saga(&dup, "{}", 2, "k", 2);
        make_event(&ea, a.id, "tokenizer_compensation", 1, 1);
        sg_write *w[2] = {sg_write_create(), sg_write_create()};
        sg_write_saga_insert(w[0], &a);
        sg_write_event_insert(w[0], &ea);
        sg_write_def_insert(w[0], "order", 1, "{}", 3);
        sg_write_saga_insert(w[1], &dup);
        sg_status res[2];
        atomic_store(&sg_store_fail_countdown, n);
        sg_status st = ops->exec_batch(be, w, 2, res, err, sizeof err);
        sg_saga_rec got;
        sg_event_rec ev;
        memset(&got, 0, sizeof got);
        if (st == SG_OK) {
            committed = 1;
            assert_int_equal(res[0], SG_OK);
            assert_int_equal(res[1], SG_ECONFLICT);
            assert_int_equal(ops->get(br, a.id, &got, err, sizeof err), SG_OK);
            sg_saga_rec_free(&got);
        } else {
            failures++;
            assert_int_equal(st, SG_EIO);
            assert_int_equal(res[0], SG_EIO);
            assert_int_equal(res[1], SG_EIO);
            assert_non_null(strstr(err, "injected"));
            assert_int_equal(ops->get(br, a.id, &got, err, sizeof err), SG_ENOTFOUND);
            assert_int_equal(ops->get_event(br, ea.id, &ev, err, sizeof err), SG_ENOTFOUND);
        }
        atomic_store(&sg_store_fail_countdown, 0);
        sg_write_destroy(w[0]);
        sg_write_destroy(w[1]);
        sg_saga_rec_free(&a);
        sg_saga_rec_free(&dup);
        sg_event_rec_free(&ea);
    }
    assert_true(committed);
    assert_true(failures >= 2);
    sg_store_counters c = {0};
    ops->counts(be, &c);
    assert_true(c.statements > 0);
    ops->reader_close(br);
    ops->close(be);
    tmpdb_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_records_as_sqlite),
        cmocka_unit_test(test_write_fails_alone),
        cmocka_unit_test(test_fault_countdown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
