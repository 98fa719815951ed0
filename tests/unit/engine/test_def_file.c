/* The definitions file (design §6) as it should load: the design's own
 * example (its STA saga equal to the built-in one), defaults, limits,
 * ${ENV} expansion against the canonical text, the order of types, and
 * sg_def_parse_one on a stored canonical text. Refusals are in
 * test_def_errors.c. */
#include "defs_helpers.h"

#include "engine/template.h"

/* Design §6's example, word for word. */
#define DESIGN_FILE                                                                                \
    "{'default': 'sta',"                                                                           \
    " 'sagas': {"                                                                                  \
    "   'sta': {'version': 1, 'steps': ["                                                          \
    "     {'name': 'anonymizer', 'http': {'url': '${SAGAD_ANONYMIZER_URL}'}, 'output': "           \
    "'anonymized',"                                                                                \
    "      'label': 'Anonymizer', 'timeout_ms': 3000, 'retry': {'attempts': 3, 'backoff_ms': "     \
    "100}},"                                                                                       \
    "     {'name': 'tokenizer', 'publish': {'topic': 'tokenizer_event'}, 'output': "               \
    "'tokenizer_event',"                                                                           \
    "      'label': 'Tokenizer',"                                                                  \
    "      'compensate': {'publish': {'topic': 'tokenizer_compensation'}}},"                       \
    "     {'name': 'ai_model', 'http': {'url': '${SAGAD_AI_MODEL_URL}'}, 'output': 'ai_result',"   \
    "      'label': 'AI Model Process'}]},"                                                        \
    "   'order': {'version': 3, 'steps': ["                                                        \
    "     {'name': 'reserve', 'http': {'url': 'http://stock/reserve'},"                            \
    "      'compensate': {'http': {'url': 'http://stock/release'}}},"                              \
    "     {'name': 'charge', 'http': {'url': 'http://pay/charge', 'body': {'amount': "             \
    "'${request.total}', 'ref': '${steps.reserve.response.id}'}},"                                 \
    "      'compensate': {'http': {'url': 'http://pay/refund'}}},"                                 \
    "     {'name': 'ship', 'http': {'url': 'http://ship/create'}}]}}}"

#define ANON_URL "http://anonymizer-service/anonymize"
#define AI_URL "http://ai-model-service/process"

/* A record every compared body template renders against. */
static char *render(const sg_template *t)
{
    sg_step_rec steps[3] = {{.name = "reserve", .response = "{\"id\":\"r-1\"}", .response_len = 12},
                            {.name = "charge", .response = "[1,2]", .response_len = 5},
                            {.name = "ship"}};
    sg_saga_rec rec = {
        .request = "{\"total\":42.5}", .request_len = 14, .nsteps = 3, .steps = steps};
    char *out = NULL, err[256];
    size_t len;
    assert_int_equal(sg_template_render(t, &rec, &out, &len, err, sizeof err), SG_OK);
    return out;
}

static void same_action(const sg_action *a, const sg_action *b)
{
    assert_int_equal(a->kind, b->kind);
    if (a->kind == SG_ACTION_PUBLISH) {
        assert_string_equal(a->topic, b->topic);
        assert_null(a->url);
        assert_null(b->url);
        assert_null(a->body);
        assert_true(!a->payload == !b->payload);
        if (a->payload) {
            assert_int_equal(sg_template_uses_steps(a->payload),
                             sg_template_uses_steps(b->payload));
            char *x = render(a->payload), *y = render(b->payload);
            assert_string_equal(x, y);
            free(x);
            free(y);
        }
        return;
    }
    assert_null(a->payload);
    assert_null(b->payload);
    assert_string_equal(a->url, b->url);
    /* sg_def_create_sta leaves method NULL, which the engine takes as POST. */
    assert_string_equal(a->method ? a->method : "POST", b->method ? b->method : "POST");
    assert_true(!a->headers == !b->headers);
    for (size_t i = 0; a->headers && (a->headers[i] || b->headers[i]); i++)
        assert_string_equal(a->headers[i], b->headers[i]);
    assert_true(!a->body == !b->body);
    if (a->body) {
        assert_int_equal(sg_template_uses_steps(a->body), sg_template_uses_steps(b->body));
        char *x = render(a->body), *y = render(b->body);
        assert_string_equal(x, y);
        free(x);
        free(y);
    }
    assert_null(a->topic);
    assert_null(b->topic);
}

/* Field by field; the canonical texts too when canonical is set. */
static void same_def(const sg_def *a, const sg_def *b, int canonical)
{
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->version, b->version);
    assert_string_equal(a->success_text, b->success_text);
    if (canonical) assert_string_equal(a->canonical, b->canonical);
    assert_int_equal(a->nsteps, b->nsteps);
    for (size_t i = 0; i < a->nsteps; i++) {
        const sg_step_def *s = &a->steps[i], *t = &b->steps[i];
        assert_string_equal(s->name, t->name);
        assert_string_equal(s->service, t->service);
        assert_string_equal(s->result_key, t->result_key);
        assert_true(!s->result_text == !t->result_text);
        if (s->result_text) assert_string_equal(s->result_text, t->result_text);
        same_action(&s->action, &t->action);
        assert_int_equal(s->has_compensation, t->has_compensation);
        if (s->has_compensation) same_action(&s->compensation, &t->compensation);
        assert_int_equal(s->retry.attempts, t->retry.attempts);
        assert_int_equal(s->retry.backoff_ms, t->retry.backoff_ms);
        assert_true(s->retry.multiplier == t->retry.multiplier);
        assert_int_equal(s->retry.max_backoff_ms, t->retry.max_backoff_ms);
        assert_int_equal(s->timeout_ms, t->timeout_ms);
    }
}

static int setup(void **state)
{
    (void)state;
    setenv("SAGAD_ANONYMIZER_URL", ANON_URL, 1);
    setenv("SAGAD_AI_MODEL_URL", AI_URL, 1);
    setenv("SG_T_HOST", "http://env-host:8080", 1);
    setenv("SG_T_TOKEN", "s3cret", 1);
    return 0;
}

/* The design's STA saga is the built-in one: with the flags' policy
 * {3, 100, 2, 10000}, the file's retry of step 1 is that policy too. */
static void design_sta_is_the_builtin(void **state)
{
    (void)state;
    sg_def_defaults dflt = {{3, 100, 2.0, 10000}};
    char *text = q(DESIGN_FILE), err[256] = "";
    sg_def **defs, *sta;
    size_t n;
    assert_int_equal(sg_defs_parse(text, strlen(text), &dflt, &defs, &n, err, sizeof err), SG_OK);
    assert_int_equal(n, 2);
    assert_string_equal(defs[0]->name, "sta");
    assert_string_equal(defs[1]->name, "order");
    assert_int_equal(sg_def_create_sta(&sta, ANON_URL, AI_URL), SG_OK);
    sg_def_set_retry(sta, &dflt.retry);
    assert_int_equal(defs[0]->steps[0].timeout_ms, 3000); /* the built-in one uses the flag */
    sta->steps[0].timeout_ms = 3000;
    same_def(defs[0], sta, 0);
    assert_null(sta->canonical);
    assert_non_null(strstr(defs[0]->canonical, "\"url\":\"${SAGAD_ANONYMIZER_URL}\""));
    sg_def_destroy(sta);
    defs_free(defs, n);
    free(text);
}

static void design_order_saga(void **state)
{
    (void)state;
    size_t n;
    sg_def **defs = parse_ok(DESIGN_FILE, &n);
    const sg_def *d = defs[1];
    assert_string_equal(d->name, "order");
    assert_int_equal(d->version, 3);
    assert_string_equal(d->success_text, "Saga completada exitosamente");
    assert_int_equal(d->nsteps, 3);
    const char *names[] = {"reserve", "charge", "ship"};
    const char *urls[] = {"http://stock/reserve", "http://pay/charge", "http://ship/create"};
    const char *comp[] = {"http://stock/release", "http://pay/refund", NULL};
    for (size_t i = 0; i < 3; i++) {
        const sg_step_def *s = &d->steps[i];
        assert_string_equal(s->name, names[i]);
        assert_string_equal(s->service, names[i]);
        assert_string_equal(s->result_key, names[i]);
        assert_null(s->result_text);
        assert_int_equal(s->action.kind, SG_ACTION_HTTP);
        assert_string_equal(s->action.url, urls[i]);
        assert_string_equal(s->action.method, "POST");
        assert_null(s->action.headers);
        assert_int_equal(s->timeout_ms, 0);
        assert_int_equal(s->retry.attempts, 1);
        assert_int_equal(s->retry.backoff_ms, 100);
        assert_int_equal(s->has_compensation, comp[i] != NULL);
        if (comp[i]) {
            assert_string_equal(s->compensation.url, comp[i]);
            assert_string_equal(s->compensation.method, "POST");
            assert_null(s->compensation.body);
        }
    }
    assert_null(d->steps[0].action.body);
    assert_true(sg_template_uses_steps(d->steps[1].action.body));
    char *body = render(d->steps[1].action.body);
    assert_string_equal(body, "{\"amount\":42.5,\"ref\":\"r-1\"}");
    free(body);
    /* The tokenizer publishes; its output is the text the engine stores. */
    assert_string_equal(defs[0]->steps[1].result_text, "event_published");
    assert_int_equal(defs[0]->steps[1].action.kind, SG_ACTION_PUBLISH);
    defs_free(defs, n);
}

/* The default type comes first, the others in file order (jansson keeps
 * the order keys were written in). */
static void default_first_then_file_order(void **state)
{
    (void)state;
    size_t n;
    sg_def **defs = parse_ok("{'sagas':{'z':{'version':1,'steps':[" HTTP_STEP(
                                 "a") "]},"
                                      "'a':{'version':1,'steps':[" HTTP_STEP(
                                          "a") "]},"
                                               "'m':{'version':1,'steps':[" HTTP_STEP("a") "]}}}",
                             &n);
    assert_int_equal(n, 3);
    assert_string_equal(defs[0]->name, "z");
    assert_string_equal(defs[1]->name, "a");
    assert_string_equal(defs[2]->name, "m");
    defs_free(defs, n);
    defs =
        parse_ok("{'sagas':{'z':{'version':1,'steps':[" HTTP_STEP(
                     "a") "]},"
                          "'a':{'version':1,'steps':[" HTTP_STEP(
                              "a") "]},"
                                   "'m':{'version':1,'steps':[" HTTP_STEP("a") "]}},'default':'m'}",
                 &n);
    assert_string_equal(defs[0]->name, "m");
    assert_string_equal(defs[1]->name, "z");
    assert_string_equal(defs[2]->name, "a");
    defs_free(defs, n);
}

static void limits_are_accepted(void **state)
{
    (void)state;
    size_t n;
    char *t = repeat("{'sagas':{'order':{'version':2147483647,'steps':[", 64,
                     "{'name':'s%zu','http':{'url':'http://h/%zu'}}", "]}}}");
    sg_def **defs = parse_ok(t, &n);
    assert_int_equal(defs[0]->nsteps, 64);
    assert_int_equal(defs[0]->version, 2147483647);
    assert_string_equal(defs[0]->steps[63].name, "s63");
    defs_free(defs, n);
    free(t);
    t = repeat("{'sagas':{", 32,
               "'t%zu':{'version':1,'steps':[{'name':'a%zu','publish':{'topic':'t'}}]}", "}}");
    defs = parse_ok(t, &n);
    assert_int_equal(n, 32);
    assert_string_equal(defs[31]->name, "t31");
    defs_free(defs, n);
    free(t);
    t = repeat(
        "{'sagas':{'o':{'version':1,'steps':[{'name':'a','http':{'url':'http://h/','headers':{", 32,
        "'H%zu':'%zu'", "}}}]}}}");
    defs = parse_ok(t, &n);
    assert_string_equal(defs[0]->steps[0].action.headers[31], "H31: 31");
    assert_null(defs[0]->steps[0].action.headers[32]);
    defs_free(defs, n);
    free(t);

    /* 64-byte names, a 255-byte topic, a 2048-byte URL, a 1024-byte header
     * value, a 256-byte result, the largest numbers. */
    char n64[65], topic[256], url[2049], value[1025], result[257];
    memset(n64, 'n', 64);
    n64[64] = '\0';
    memset(topic, 't', 255);
    topic[255] = '\0';
    memset(url, 'u', 2048);
    memcpy(url, "http://h/", 9);
    url[2048] = '\0';
    memset(value, 'v', 1024);
    value[1024] = '\0';
    memset(result, 'r', 256);
    result[256] = '\0';
    char *f = sg_xmalloc(8192);
    snprintf(
        f, 8192,
        "{'sagas':{'%s':{'version':1,'result':'%s','steps':["
        "{'name':'%s','output':'%s','label':'%s','publish':{'topic':'%s'},'timeout_ms':600000,"
        "'retry':{'attempts':100,'backoff_ms':3600000,'multiplier':10,'max_backoff_ms':3600000}},"
        "{'name':'b','http':{'url':'%s','headers':{'%s':'%s'}},'timeout_ms':1,"
        "'retry':{'attempts':1,'backoff_ms':0,'multiplier':1,'max_backoff_ms':0}}]}}}",
        n64, result, n64, n64, n64, topic, url, n64, value);
    defs = parse_ok(f, &n);
    const sg_def *d = defs[0];
    assert_string_equal(d->name, n64);
    assert_string_equal(d->success_text, result);
    assert_string_equal(d->steps[0].name, n64);
    assert_string_equal(d->steps[0].result_key, n64);
    assert_string_equal(d->steps[0].service, n64);
    assert_string_equal(d->steps[0].action.topic, topic);
    assert_int_equal(d->steps[0].timeout_ms, 600000);
    assert_int_equal(d->steps[0].retry.attempts, 100);
    assert_int_equal(d->steps[0].retry.backoff_ms, 3600000);
    assert_true(d->steps[0].retry.multiplier == 10.0);
    assert_int_equal(d->steps[0].retry.max_backoff_ms, 3600000);
    assert_string_equal(d->steps[1].action.url, url);
    assert_int_equal(strlen(d->steps[1].action.headers[0]), 64 + 2 + 1024);
    assert_int_equal(d->steps[1].timeout_ms, 1);
    assert_int_equal(d->steps[1].retry.backoff_ms, 0);
    assert_int_equal(d->steps[1].retry.max_backoff_ms, 0);
    defs_free(defs, n);
    free(f);
}

static void step_fields(void **state)
{
    (void)state;
    size_t n;
    sg_def **defs = parse_ok(
        ORDER("[{'name':'a','http':{'url':'${SG_T_HOST}/a','method':'put',"
              "'headers':{'Authorization':'Bearer ${SG_T_TOKEN}','X-Tenant':'t-1','Empty':''}},"
              "'retry':{'attempts':5},'output':'Résultat €','label':'Service A'},"
              "{'name':'b','http':{'url':'https://h/b','method':'DELETE','body':{'k':[1,'x']}},"
              "'retry':{'backoff_ms':7,'multiplier':1.5}},"
              "{'name':'c','publish':{'topic':'c.topic-1_x'},"
              "'compensate':{'http':{'url':'http://h/"
              "undo','method':'Patch','body':'${steps.c.response}'}}},"
              "{'name':'d','http':{'url':'http://h/d','method':'GET'},"
              "'compensate':{'http':{'url':'http://h/undo-d','headers':{'A':'b'}}}}]"),
        &n);
    const sg_def *d = defs[0];
    const sg_step_def *a = &d->steps[0], *b = &d->steps[1], *c = &d->steps[2], *e = &d->steps[3];
    assert_string_equal(a->action.url, "http://env-host:8080/a");
    assert_string_equal(a->action.method, "PUT");
    assert_string_equal(a->action.headers[0], "Authorization: Bearer s3cret");
    assert_string_equal(a->action.headers[1], "X-Tenant: t-1");
    assert_string_equal(a->action.headers[2], "Empty: ");
    assert_null(a->action.headers[3]);
    assert_null(a->action.body);
    assert_string_equal(a->result_key, "Résultat €");
    assert_string_equal(a->service, "Service A");
    assert_int_equal(a->retry.attempts, 5); /* the rest from the flags */
    assert_int_equal(a->retry.backoff_ms, 100);
    assert_true(a->retry.multiplier == 2.0);
    assert_int_equal(a->retry.max_backoff_ms, 10000);
    assert_null(a->result_text);
    assert_int_equal(a->has_compensation, 0);

    assert_string_equal(b->action.method, "DELETE");
    assert_null(b->action.headers);
    assert_false(sg_template_uses_steps(b->action.body));
    char *body = render(b->action.body);
    assert_string_equal(body, "{\"k\":[1,\"x\"]}");
    free(body);
    assert_int_equal(b->retry.attempts, 1);
    assert_int_equal(b->retry.backoff_ms, 7);
    assert_true(b->retry.multiplier == 1.5);

    assert_int_equal(c->action.kind, SG_ACTION_PUBLISH);
    assert_string_equal(c->action.topic, "c.topic-1_x");
    assert_null(c->action.url);
    assert_null(c->action.method);
    assert_string_equal(c->result_text, "event_published");
    assert_int_equal(c->has_compensation, 1);
    assert_int_equal(c->compensation.kind, SG_ACTION_HTTP);
    assert_string_equal(c->compensation.method, "PATCH");
    /* A compensation may name its own step's answer. */
    assert_true(sg_template_uses_steps(c->compensation.body));
    body = render(c->compensation.body);
    assert_string_equal(body, "null"); /* the record has no answer for step c */
    free(body);

    assert_string_equal(e->action.method, "GET");
    assert_string_equal(e->compensation.headers[0], "A: b");
    assert_null(e->compensation.headers[1]);
    defs_free(defs, n);

    /* The flags' pair is not the file's to check: backoff 20000 over a cap
     * of 10000 passes unless the file sets one of them. */
    sg_def_defaults odd = {{1, 20000, 2.0, 10000}};
    char *o = q(ORDER("[{'name':'a','http':{'url':'http://h/'},'retry':{'attempts':2}}]"));
    char oerr[128] = "";
    assert_int_equal(sg_defs_parse(o, strlen(o), &odd, &defs, &n, oerr, sizeof oerr), SG_OK);
    assert_int_equal(defs[0]->steps[0].retry.backoff_ms, 20000);
    defs_free(defs, n);
    free(o);

    /* No defaults: the built-in policy. */
    char *t = q(ORDER("[" HTTP_STEP("a") "]")), err[128];
    assert_int_equal(sg_defs_parse(t, strlen(t), NULL, &defs, &n, err, sizeof err), SG_OK);
    assert_int_equal(defs[0]->steps[0].retry.attempts, SG_RETRY_DEFAULT.attempts);
    assert_int_equal(defs[0]->steps[0].retry.max_backoff_ms, SG_RETRY_DEFAULT.max_backoff_ms);
    defs_free(defs, n);
    free(t);
}

/* A publish's payload template (design §6, like an HTTP body): compiled
 * at load, rendered from the request and earlier answers; a compensation
 * may name its own step. Without one, the payload is the request. */
#define PAID_FILE                                                                                  \
    ORDER(                                                                                         \
        "[{'name':'reserve','http':{'url':'http://h/r'}},"                                         \
        "{'name':'charge','publish':{'topic':'order_paid','payload':{'order':'${request.total}',"  \
        "'ref':'${steps.reserve.response.id}','text':'r=${steps.reserve.response.id}','x':[1]}},"  \
        "'compensate':{'publish':{'topic':'order_unpaid','payload':["                              \
        "'${steps.charge.response}','${request}']}}},"                                             \
        "{'name':'ship','publish':{'topic':'t','payload':'${steps.charge.response.1}'}},"          \
        "{'name':'plain','publish':{'topic':'p'},'compensate':{'publish':{'topic':'q'}}}]")

static void publish_payload_templates(void **state)
{
    (void)state;
    size_t n;
    sg_def **defs = parse_ok(PAID_FILE, &n);
    const sg_step_def *charge = &defs[0]->steps[1], *ship = &defs[0]->steps[2],
                      *plain = &defs[0]->steps[3];
    assert_int_equal(charge->action.kind, SG_ACTION_PUBLISH);
    assert_string_equal(charge->action.topic, "order_paid");
    assert_null(charge->action.body);
    assert_true(sg_template_uses_steps(charge->action.payload));
    char *p = render(charge->action.payload);
    assert_string_equal(p, "{\"order\":42.5,\"ref\":\"r-1\",\"text\":\"r=r-1\",\"x\":[1]}");
    free(p);
    assert_int_equal(charge->compensation.kind, SG_ACTION_PUBLISH);
    assert_string_equal(charge->compensation.topic, "order_unpaid");
    assert_true(sg_template_uses_steps(charge->compensation.payload));
    p = render(charge->compensation.payload);
    assert_string_equal(p, "[[1,2],{\"total\":42.5}]"); /* its own step's answer, the request */
    free(p);
    p = render(ship->action.payload); /* one string that is one reference: the value */
    assert_string_equal(p, "2");
    free(p);
    assert_null(plain->action.payload);
    assert_null(plain->compensation.payload);
    /* The canonical text keeps the payload as written, and reloads into
     * the same definition. */
    assert_non_null(strstr(defs[0]->canonical,
                           "\"publish\":{\"payload\":{\"order\":\"${request.total}\",\"ref\":"));
    sg_def *again = NULL;
    char err[256] = "";
    assert_int_equal(sg_def_parse_one("order", defs[0]->canonical, &DFLT, &again, err, sizeof err),
                     SG_OK);
    same_def(again, defs[0], 1);
    sg_def_destroy(again);
    defs_free(defs, n);

    /* A changed payload is a changed definition: another canonical text,
     * refused under the same version. */
    sg_def **other =
        parse_ok(ORDER("[{'name':'a','publish':{'topic':'t','payload':{'x':1}}}]"), &n);
    sg_def **same = parse_ok(ORDER("[{'name':'a','publish':{'topic':'t','payload':{'x':2}}}]"), &n);
    sg_def **none = parse_ok(ORDER("[{'name':'a','publish':{'topic':'t'}}]"), &n);
    assert_string_not_equal(other[0]->canonical, same[0]->canonical);
    assert_string_not_equal(other[0]->canonical, none[0]->canonical);
    sg_def_install(other, n); /* takes them */
    assert_int_equal(sg_def_check(same[0], err, sizeof err), SG_ECONFLICT);
    assert_string_equal(err, "sagas.order.version: version 1 is already in use by a different "
                             "definition of 'order'; give the changed definition a new version "
                             "number");
    assert_int_equal(sg_def_check(none[0], err, sizeof err), SG_ECONFLICT);
    sg_def_clear();
    defs_free(same, n);
    defs_free(none, n);
}

/* The canonical text is the saga as written: ${ENV} unexpanded, keys
 * sorted, compact; the same whatever the environment or the key order. */
static void canonical_text(void **state)
{
    (void)state;
    size_t n;
    const char *file = "{'sagas':{'o':{'steps':[{'http':{'url':'${SG_T_HOST}/x'},'name':'a',"
                       "'retry':{'multiplier':2.5}}],'version':2}}}";
    sg_def **one = parse_ok(file, &n);
    assert_string_equal(one[0]->steps[0].action.url, "http://env-host:8080/x");
    assert_string_equal(one[0]->canonical,
                        "{\"steps\":[{\"http\":{\"url\":\"${SG_T_HOST}/x\"},\"name\":\"a\","
                        "\"retry\":{\"multiplier\":2.5}}],\"version\":2}");
    setenv("SG_T_HOST", "https://elsewhere", 1);
    sg_def **two = parse_ok(file, &n);
    assert_string_equal(two[0]->steps[0].action.url, "https://elsewhere/x");
    assert_string_equal(one[0]->canonical, two[0]->canonical);
    setenv("SG_T_HOST", "http://env-host:8080", 1);
    sg_def **three = parse_ok("{'sagas':{'o':{'version':2,'steps':[{'name':'a',"
                              "'retry':{'multiplier':2.5},'http':{'url':'${SG_T_HOST}/x'}}]}}}",
                              &n);
    assert_string_equal(one[0]->canonical, three[0]->canonical);
    defs_free(one, 1);
    defs_free(two, 1);
    defs_free(three, 1);

    sg_def **x = parse_ok(DESIGN_FILE, &n), **y = parse_ok(DESIGN_FILE, &n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(x[i]->canonical, y[i]->canonical);
        same_def(x[i], y[i], 1);
    }
    defs_free(x, n);
    defs_free(y, n);
}

/* What the store keeps loads back into the same definition. */
static void parse_one_round_trip(void **state)
{
    (void)state;
    size_t n;
    sg_def **defs = parse_ok(DESIGN_FILE, &n);
    for (size_t i = 0; i < n; i++) {
        sg_def *d = NULL;
        char err[256] = "";
        assert_int_equal(
            sg_def_parse_one(defs[i]->name, defs[i]->canonical, &DFLT, &d, err, sizeof err), SG_OK);
        assert_string_equal(err, "");
        same_def(d, defs[i], 1);
        sg_def_destroy(d);
    }
    defs_free(defs, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(design_sta_is_the_builtin),
        cmocka_unit_test(design_order_saga),
        cmocka_unit_test(default_first_then_file_order),
        cmocka_unit_test(limits_are_accepted),
        cmocka_unit_test(step_fields),
        cmocka_unit_test(publish_payload_templates),
        cmocka_unit_test(canonical_text),
        cmocka_unit_test(parse_one_round_trip),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
