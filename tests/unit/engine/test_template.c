/* Body templates (src/engine/template.h): typed whole-string references,
 * splicing, missing values, array indexing, step answers, \u0000, the
 * size cap, and every compile error with its place. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/template.h"
#include "sg/alloc.h"

static const char *const NAMES[] = {"reserve", "charge", "ship"};

/* A template from single-quoted JSON; the steps before it are NAMES[0..nsteps). */
static sg_template *compile(const char *sq, size_t nsteps)
{
    char *text = sg_xstrdup(sq), err[256] = "";
    for (char *p = text; *p; p++)
        if (*p == '\'') *p = '"';
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    assert_non_null(v);
    sg_template *t = NULL;
    sg_status st = sg_template_compile(&t, v, NAMES, nsteps, err, sizeof err);
    if (st != SG_OK) fprintf(stderr, "%s: %s\n", text, err);
    assert_int_equal(st, SG_OK);
    assert_non_null(t);
    json_decref(v);
    free(text);
    return t;
}

static void compile_fails(const char *json, size_t nsteps, const char *message)
{
    json_error_t je;
    json_t *v = json_loads(json, JSON_DECODE_ANY, &je);
    assert_non_null(v);
    sg_template *t = (sg_template *)&t;
    char err[256] = "";
    assert_int_equal(sg_template_compile(&t, v, NAMES, nsteps, err, sizeof err), SG_EINVAL);
    assert_null(t);
    if (strcmp(err, message) != 0) fprintf(stderr, "%s\n  got: %s\n", json, err);
    assert_string_equal(err, message);
    json_decref(v);
}

typedef struct {
    const char *request;
    size_t request_len; /* 0 = strlen */
    const char *resp[3];
    size_t nsteps;
} world;

static sg_status render_in(const sg_template *t, const world *w, char **out, size_t *len, char *err,
                           size_t errlen)
{
    sg_step_rec steps[3] = {{.name = "reserve"}, {.name = "charge"}, {.name = "ship"}};
    for (size_t i = 0; i < 3; i++)
        if (w->resp[i]) {
            steps[i].response = (char *)w->resp[i];
            steps[i].response_len = strlen(w->resp[i]);
        }
    sg_saga_rec rec = {.request = (char *)w->request,
                       .request_len = w->request_len ? w->request_len : strlen(w->request),
                       .nsteps = w->nsteps,
                       .steps = steps};
    return sg_template_render(t, &rec, out, len, err, errlen);
}

/* Renders sq (after compile) in w and checks the exact output. */
static void renders(const char *sq, size_t nsteps, const world *w, const char *want, size_t wlen)
{
    sg_template *t = compile(sq, nsteps);
    char *out = NULL, err[256] = "";
    size_t len = 0;
    sg_status st = render_in(t, w, &out, &len, err, sizeof err);
    if (st != SG_OK) fprintf(stderr, "%s: %s\n", sq, err);
    assert_int_equal(st, SG_OK);
    if (!wlen) wlen = strlen(want);
    if (len != wlen || memcmp(out, want, wlen) != 0)
        fprintf(stderr, "%s\n  want %.*s\n  got  %.*s\n", sq, (int)wlen, want, (int)len, out);
    assert_int_equal(len, wlen);
    assert_memory_equal(out, want, wlen);
    assert_int_equal(out[len], '\0');
    free(out);
    sg_template_destroy(t);
}

static const world W = {
    .request = "{\"s\":\"text\",\"n\":5,\"r\":1.5,\"big\":9007199254740993,"
               "\"min\":-9223372036854775808,\"t\":true,\"f\":false,\"z\":null,"
               "\"o\":{\"b\":1,\"a\":[1,2]},\"items\":[{\"sku\":\"A\"},{\"sku\":\"B\"}],"
               "\"m\":{\"0\":\"key zero\"},\"q\":\"say \\\"hi\\\"\"}",
    .resp = {"{\"id\":\"r-1\",\"n\":7}", "[10,20]", NULL},
    .nsteps = 3,
};

static void whole_references_keep_their_type(void **state)
{
    (void)state;
    renders("'${request.s}'", 0, &W, "\"text\"", 0);
    renders("'${request.n}'", 0, &W, "5", 0);
    renders("'${request.r}'", 0, &W, "1.5", 0);
    renders("'${request.big}'", 0, &W, "9007199254740993", 0);
    renders("'${request.min}'", 0, &W, "-9223372036854775808", 0);
    renders("'${request.t}'", 0, &W, "true", 0);
    renders("'${request.f}'", 0, &W, "false", 0);
    renders("'${request.z}'", 0, &W, "null", 0);
    renders("'${request.o}'", 0, &W, "{\"b\":1,\"a\":[1,2]}", 0);
    renders("'${request.o.a}'", 0, &W, "[1,2]", 0);
    renders("{'a':'${request.big}','b':'${request.min}','c':'${request.t}','d':'${request.o}'}", 0,
            &W,
            "{\"a\":9007199254740993,\"b\":-9223372036854775808,\"c\":true,\"d\":{\"b\":1,\"a\":[1,"
            "2]}}",
            0);
    renders("'${request}'", 0, &(world){.request = "{\"z\":1,\"a\":[true,{\"y\":null}]}"},
            "{\"z\":1,\"a\":[true,{\"y\":null}]}", 0);
    renders("'${request}'", 0, &(world){.request = "\"just a string\""}, "\"just a string\"", 0);
}

static void splicing_in_longer_strings(void **state)
{
    (void)state;
    renders("'id-${request.s}-x'", 0, &W, "\"id-text-x\"", 0);
    renders("'n=${request.n}, r=${request.r}, t=${request.t}, z=${request.z}'", 0, &W,
            "\"n=5, r=1.5, t=true, z=null\"", 0);
    renders("'o=${request.o}'", 0, &W, "\"o={\\\"b\\\":1,\\\"a\\\":[1,2]}\"", 0);
    renders("'${request.missing} and ${request.s}'", 0, &W, "\"null and text\"", 0);
    renders("'${request.s}${request.s}'", 0, &W, "\"texttext\"", 0);
    renders("'q: ${request.q}'", 0, &W, "\"q: say \\\"hi\\\"\"", 0);
    renders("'$ {request.s} $x ${request.big}$'", 0, &W, "\"$ {request.s} $x 9007199254740993$\"",
            0);
    renders("'min ${request.min}'", 0, &W, "\"min -9223372036854775808\"", 0);
}

static void missing_values_are_null(void **state)
{
    (void)state;
    renders("{'a':'${request.nope}','b':'${request.s.deeper}','c':'${request.items.9}',"
            "'d':'${request.o.a.x}','e':'${request.n.0}'}",
            0, &W, "{\"a\":null,\"b\":null,\"c\":null,\"d\":null,\"e\":null}", 0);
    /* No answer stored, or fewer steps in the record than the template knows. */
    renders("['${steps.ship.response}','${steps.ship.response.id}']", 3, &W, "[null,null]", 0);
    world few = W;
    few.nsteps = 1;
    renders("'${steps.charge.response}'", 2, &few, "null", 0);
}

static void array_indexing(void **state)
{
    (void)state;
    renders("'${request.items.1.sku}'", 0, &W, "\"B\"", 0);
    renders("'${request.items.0}'", 0, &W, "{\"sku\":\"A\"}", 0);
    renders("'${request.o.a.1}'", 0, &W, "2", 0);
    renders("'${request.o.a.2}'", 0, &W, "null", 0);
    renders("'${request.o.a.99999999999999999999999}'", 0, &W, "null", 0);
    renders("'${request.m.0}'", 0, &W, "\"key zero\"", 0); /* digits on an object: a key */
    renders("'${steps.charge.response.1}'", 2, &W, "20", 0);
}

static void step_references(void **state)
{
    (void)state;
    renders("{'ref':'${steps.reserve.response.id}','all':'${steps.reserve.response}',"
            "'text':'r=${steps.reserve.response.id}/${steps.charge.response}'}",
            2, &W, "{\"ref\":\"r-1\",\"all\":{\"id\":\"r-1\",\"n\":7},\"text\":\"r=r-1/[10,20]\"}",
            0);
    sg_template *t = compile("{'a':'${request.s}'}", 2);
    assert_false(sg_template_uses_steps(t));
    sg_template_destroy(t);
    t = compile("['x',{'a':'see ${steps.reserve.response.id}'}]", 1);
    assert_true(sg_template_uses_steps(t));
    sg_template_destroy(t);
    assert_false(sg_template_uses_steps(NULL));
}

static void nested_templates_keep_key_order(void **state)
{
    (void)state;
    renders("{'z':1,'order':{'total':'${request.n}','lines':[{'sku':'${request.items.0.sku}',"
            "'qty':2},'${request.t}',[[['${request.s}']]]],'note':'n-${request.n}'},'a':[]}",
            0, &W,
            "{\"z\":1,\"order\":{\"total\":5,\"lines\":[{\"sku\":\"A\",\"qty\":2},true,[[[\"text\"]"
            "]]],\"note\":\"n-5\"},\"a\":[]}",
            0);
    /* Nothing to substitute: the value as written. */
    renders("{'b':[1,2.5,'x',null,true],'a':{}}", 0, &W, "{\"b\":[1,2.5,\"x\",null,true],\"a\":{}}",
            0);
    renders("7", 0, &W, "7", 0);
    renders("{'':'${request.n}'}", 0, &W, "{\"\":5}", 0);
}

static void nul_in_the_request_survives(void **state)
{
    (void)state;
    /* (jansson refuses \u0000 in a key, and so does the API's check) */
    static const char req[] = "{\"s\":\"a\\u0000b\",\"k\":\"\\u0000\"}";
    world w = {.request = req};
    renders("'${request.s}'", 0, &w, "\"a\\u0000b\"", 0);
    renders("'x${request.s}y'", 0, &w, "\"xa\\u0000by\"", 0);
    renders("'${request}'", 0, &w, "{\"s\":\"a\\u0000b\",\"k\":\"\\u0000\"}", 0);
}

static void integers_past_64_bits(void **state)
{
    (void)state;
    world w = {.request = "{\"n\":123456789012345678901234567890,\"s\":\"x\"}"};
    renders("['${request.s}','${request.n}']", 0, &w, "[\"x\",1.2345678901234568e+29]", 0);
}

/* Reals in the fewest digits that read back the same: a price stays 19.99. */
static void reals_read_back_the_same(void **state)
{
    (void)state;
    world w = {.request = "{\"p\":19.99,\"q\":0.1,\"r\":0.30000000000000004,\"w\":3.0,"
                          "\"e\":1e300,\"m\":-2.5E-3}"};
    renders("['${request.p}','${request.q}','${request.r}','${request.w}','${request.e}',"
            "'${request.m}']",
            0, &w, "[19.99,0.1,0.30000000000000004,3.0,1e+300,-0.0025]", 0);
    renders("'p=${request.p} q=${request.q} w=${request.w}'", 0, &w, "\"p=19.99 q=0.1 w=3.0\"", 0);
    renders("{'rate':0.1,'total':'${request.p}','fixed':[1.1,2.0]}", 0, &w,
            "{\"rate\":0.1,\"total\":19.99,\"fixed\":[1.1,2.0]}", 0);
    renders("[0.1,0.2]", 0, &w, "[0.1,0.2]", 0);
}

static void render_errors(void **state)
{
    (void)state;
    char *out = (char *)1, err[256];
    size_t len = 9;
    sg_template *t = compile("{'a':'${steps.reserve.response.id}'}", 1);
    world bad = {.request = "{}", .resp = {"not json"}, .nsteps = 1};
    assert_int_equal(render_in(t, &bad, &out, &len, err, sizeof err), SG_EINVAL);
    assert_null(out);
    assert_int_equal(len, 0);
    assert_string_equal(err, "the response of step reserve is not JSON: invalid token near 'not'");
    /* An answer it does not name is not read. */
    bad.resp[0] = "{\"id\":1}";
    bad.resp[1] = "oops";
    bad.nsteps = 2;
    assert_int_equal(render_in(t, &bad, &out, &len, err, sizeof err), SG_OK);
    assert_string_equal(out, "{\"a\":1}");
    free(out);
    sg_template_destroy(t);

    t = compile("['${request.a}']", 0);
    world badreq = {.request = "{\"a\":"};
    assert_int_equal(render_in(t, &badreq, &out, &len, err, sizeof err), SG_EINVAL);
    assert_null(out);
    assert_string_equal(err, "the request is not JSON: unexpected token near end of file");
    sg_template_destroy(t);
    /* A template that names nothing does not read the request. */
    t = compile("{'k':1}", 0);
    assert_int_equal(render_in(t, &badreq, &out, &len, err, sizeof err), SG_OK);
    free(out);
    sg_template_destroy(t);
}

/* 9 copies of a 1 MiB string: over the 8 MiB cap, whole or spliced. */
static void the_cap(void **state)
{
    (void)state;
    size_t big = 1 << 20;
    char *req = sg_xmalloc(big + 16);
    memcpy(req, "{\"s\":\"", 6);
    memset(req + 6, 'x', big);
    memcpy(req + 6 + big, "\"}", 3);
    world w = {.request = req};
    const char *over[] = {
        "['${request.s}','${request.s}','${request.s}','${request.s}','${request.s}',"
        "'${request.s}','${request.s}','${request.s}','${request.s}']",
        "['${request.s}${request.s}${request.s}${request.s}${request.s}',"
        "'${request.s}${request.s}${request.s}${request.s}']",
        "'${request.s}${request.s}${request.s}${request.s}${request.s}${request.s}${request.s}"
        "${request.s}${request.s}'",
    };
    for (size_t i = 0; i < 3; i++) {
        sg_template *t = compile(over[i], 0);
        char *out = NULL, err[128];
        size_t len;
        assert_int_equal(render_in(t, &w, &out, &len, err, sizeof err), SG_ETOOBIG);
        assert_null(out);
        assert_string_equal(err, "the rendered template is over 8 MiB");
        sg_template_destroy(t);
    }
    /* 7 copies fit. */
    sg_template *t = compile("['${request.s}','${request.s}','${request.s}','${request.s}',"
                             "'${request.s}','${request.s}${request.s}']",
                             0);
    char *out = NULL, err[128];
    size_t len;
    assert_int_equal(render_in(t, &w, &out, &len, err, sizeof err), SG_OK);
    assert_int_equal(len, 7 * big + 19);
    free(out);
    sg_template_destroy(t);
    free(req);
}

static void compile_errors(void **state)
{
    (void)state;
    compile_fails("\"${FOO}\"", 0,
                  "${FOO} is neither ${request...} nor ${steps.<name>.response...}");
    compile_fails("{\"ref\":\"${steps.ship.response.id}\"}", 2,
                  "ref: ${steps.ship.response.id} names a step that does not run before this one");
    compile_fails("{\"ref\":\"${steps.nope.response}\"}", 3,
                  "ref: ${steps.nope.response} names a step that does not run before this one");
    compile_fails("{\"items\":[{\"sku\":\"a ${steps.reserve.status}\"}]}", 1,
                  "items[0].sku: ${steps.reserve.status} is neither ${request...} nor "
                  "${steps.<name>.response...}");
    compile_fails("[1,[2,\"${request\"]]", 0, "[1][1]: ${request has no closing }");
    compile_fails("\"${request.}\"", 0, "${request.} has an empty path segment");
    compile_fails("\"${request..a}\"", 0, "${request..a} has an empty path segment");
    compile_fails("\"${request.a.}\"", 0, "${request.a.} has an empty path segment");
    compile_fails("\"${steps.reserve.response.}\"", 1,
                  "${steps.reserve.response.} has an empty path segment");
    const char *neither[] = {"${}",
                             "${requests}",
                             "${req}",
                             "${steps}",
                             "${steps.reserve}",
                             "${steps.reserve.responses}",
                             "${steps..response}",
                             "${ request}",
                             "${Request}"};
    for (size_t i = 0; i < sizeof neither / sizeof *neither; i++) {
        char json[64], msg[160];
        snprintf(json, sizeof json, "{\"a\":[\"x%s\"]}", neither[i]);
        snprintf(msg, sizeof msg,
                 "a[0]: %s is neither ${request...} nor ${steps.<name>.response...}", neither[i]);
        compile_fails(json, 1, msg);
    }
    /* A long reference is cut in the message. */
    compile_fails("\"${xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx}\"",
                  0,
                  "${xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... is neither "
                  "${request...} nor ${steps.<name>.response...}");
    /* Object keys are not templates. */
    sg_template *t = compile("{'${FOO}':1}", 0);
    sg_template_destroy(t);
}

/* Step names may hold dots: the longest name before ".response" wins. */
static void dotted_step_names(void **state)
{
    (void)state;
    const char *const names[] = {"a", "a.b", "a.b.response"};
    json_t *v = json_loads("{\"x\":\"${steps.a.b.response.id}\",\"y\":\"${steps.a.response.b}\","
                           "\"z\":\"${steps.a.b.response.response}\"}",
                           0, NULL);
    sg_template *t = NULL;
    char err[256] = "", *out = NULL;
    size_t len;
    assert_int_equal(sg_template_compile(&t, v, names, 3, err, sizeof err), SG_OK);
    sg_step_rec steps[3] = {{.response = "{\"b\":0}", .response_len = 7},
                            {.response = "{\"id\":1}", .response_len = 8},
                            {.response = "2", .response_len = 1}};
    sg_saga_rec rec = {.request = "{}", .request_len = 2, .nsteps = 3, .steps = steps};
    assert_int_equal(sg_template_render(t, &rec, &out, &len, err, sizeof err), SG_OK);
    assert_string_equal(out, "{\"x\":1,\"y\":0,\"z\":2}");
    free(out);
    sg_template_destroy(t);
    json_decref(v);
    compile_fails("\"${steps.a.c.response}\"", 1,
                  "${steps.a.c.response} names a step that does not run before this one");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(whole_references_keep_their_type),
        cmocka_unit_test(splicing_in_longer_strings),
        cmocka_unit_test(missing_values_are_null),
        cmocka_unit_test(array_indexing),
        cmocka_unit_test(step_references),
        cmocka_unit_test(nested_templates_keep_key_order),
        cmocka_unit_test(nul_in_the_request_survives),
        cmocka_unit_test(integers_past_64_bits),
        cmocka_unit_test(reals_read_back_the_same),
        cmocka_unit_test(render_errors),
        cmocka_unit_test(the_cap),
        cmocka_unit_test(compile_errors),
        cmocka_unit_test(dotted_step_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
