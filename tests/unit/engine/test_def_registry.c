/* The definitions registry: current set, known versions, the same-version
 * rule, and lookups that stay valid across a reload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sg/alloc.h"
#include "sg/def.h"

/* A one-step definition with a given canonical text. */
static sg_def *make(const char *name, int version, const char *canonical, int publish)
{
    sg_def *d = sg_xcalloc(1, sizeof *d);
    d->name = sg_xstrdup(name);
    d->version = version;
    d->success_text = sg_xstrdup("ok");
    d->canonical = canonical ? sg_xstrdup(canonical) : NULL;
    d->nsteps = 1;
    d->steps = sg_xcalloc(1, sizeof *d->steps);
    d->steps[0].name = sg_xstrdup("s");
    d->steps[0].action.kind = publish ? SG_ACTION_PUBLISH : SG_ACTION_HTTP;
    if (publish)
        d->steps[0].action.topic = sg_xstrdup("t");
    else
        d->steps[0].action.url = sg_xstrdup("http://x/");
    return d;
}

static void install2(sg_def *a, sg_def *b)
{
    sg_def **defs = sg_xmalloc(2 * sizeof *defs);
    defs[0] = a;
    defs[1] = b;
    sg_def_install(defs, 2);
}

static int teardown(void **state)
{
    (void)state;
    sg_def_clear();
    return 0;
}

static void install_makes_current_and_default(void **state)
{
    (void)state;
    assert_null(sg_def_default());
    install2(make("order", 3, "{\"v\":3}", 0), make("sta", 1, "{\"s\":1}", 1));
    assert_string_equal(sg_def_default()->name, "order");
    assert_string_equal(sg_def_at(1)->name, "sta");
    assert_null(sg_def_at(2));
    assert_int_equal(sg_def_find("order")->version, 3);
    assert_null(sg_def_find("nope"));
    assert_ptr_equal(sg_def_find_version("order", 3), sg_def_find("order"));
    assert_null(sg_def_find_version("order", 2));
    assert_true(sg_def_any_publish());
}

static void reload_keeps_old_versions_findable(void **state)
{
    (void)state;
    install2(make("order", 1, "{\"v\":1}", 0), make("pay", 1, "{\"p\":1}", 0));
    const sg_def *v1 = sg_def_find("order");
    unsigned g = sg_def_generation();
    install2(make("order", 2, "{\"v\":2}", 0), make("pay", 1, "{\"p\":1}", 0));
    assert_int_not_equal(g, sg_def_generation());
    assert_int_equal(sg_def_find("order")->version, 2);
    /* The running saga's pointer is the same object, still alive. */
    assert_ptr_equal(sg_def_find_version("order", 1), v1);
    assert_string_equal(v1->canonical, "{\"v\":1}");
    /* An equal version is not duplicated: the known one is reused. */
    int vs[8];
    assert_int_equal(sg_def_versions("pay", vs, 8), 1);
    assert_int_equal(sg_def_versions("order", vs, 8), 2);
    assert_int_equal(vs[0], 1);
    assert_int_equal(vs[1], 2);
    assert_false(sg_def_any_publish());
}

static void same_version_changed_is_refused(void **state)
{
    (void)state;
    sg_def_keep(make("order", 3, "{\"v\":3}", 0));
    char err[256];
    sg_def *same = make("order", 3, "{\"v\":3}", 0);
    sg_def *changed = make("order", 3, "{\"v\":\"changed\"}", 0);
    sg_def *next = make("order", 4, "{\"v\":\"changed\"}", 0);
    assert_int_equal(sg_def_check(same, err, sizeof err), SG_OK);
    assert_int_equal(sg_def_check(changed, err, sizeof err), SG_ECONFLICT);
    assert_non_null(strstr(err, "sagas.order.version: version 3 is already in use"));
    assert_int_equal(sg_def_check(next, err, sizeof err), SG_OK);
    sg_def_destroy(same);
    sg_def_destroy(changed);
    sg_def_destroy(next);
    /* Kept, not current. */
    assert_null(sg_def_find("order"));
    assert_non_null(sg_def_find_version("order", 3));
}

static void builtin_is_never_compared(void **state)
{
    (void)state;
    sg_def *sta = NULL;
    assert_int_equal(sg_def_create_sta(&sta, "http://a/x", "http://b/y"), SG_OK);
    sg_def_register(sta);
    char err[256];
    sg_def *file = make("sta", 1, "{\"steps\":[]}", 1);
    assert_int_equal(sg_def_check(file, err, sizeof err), SG_OK);
    sg_def_destroy(file);
    /* A stored sta v1 is not kept over the current built-in one. */
    assert_ptr_equal(sg_def_find_version("sta", 1), sta);
}

static void versions_sorted_and_capped(void **state)
{
    (void)state;
    sg_def_keep(make("t", 5, "5", 0));
    sg_def_keep(make("t", 2, "2", 0));
    sg_def_keep(make("t", 9, "9", 0));
    sg_def_keep(make("t", 1, "1", 0));
    int vs[2];
    assert_int_equal(sg_def_versions("t", vs, 2), 4);
    assert_int_equal(vs[0], 1);
    assert_int_equal(vs[1], 2);
    int all[4];
    assert_int_equal(sg_def_versions("t", all, 4), 4);
    assert_int_equal(all[2], 5);
    assert_int_equal(all[3], 9);
    /* Keeping a known version again is a no-op. */
    sg_def_keep(make("t", 5, "other", 0));
    assert_string_equal(sg_def_find_version("t", 5)->canonical, "5");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(install_makes_current_and_default, teardown),
        cmocka_unit_test_teardown(reload_keeps_old_versions_findable, teardown),
        cmocka_unit_test_teardown(same_version_changed_is_refused, teardown),
        cmocka_unit_test_teardown(builtin_is_never_compared, teardown),
        cmocka_unit_test_teardown(versions_sorted_and_capped, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
