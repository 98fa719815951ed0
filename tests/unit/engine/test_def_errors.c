/* Every refusal of the definitions file (design §6), message by message:
 * the place as a dotted path, then why. Each one also runs under
 * AddressSanitizer, so every error path is checked for leaks. */
#include "defs_helpers.h"

#define STEP0 "sagas.order.steps[0]"

typedef struct {
    const char *text;    /* single-quoted JSON */
    const char *message; /* exact */
} bad_case;

static const bad_case top_cases[] = {
    {"[1]", "the file is not a JSON object"},
    {"'sagas'", "the file is not a JSON object"},
    {"{", "line 1, column 1: string or '}' expected near end of file"},
    {"{'sagas': }", "line 1, column 11: unexpected token near '}'"},
    {"{'sagas':{},'sagas':{}}", "line 1, column 19: duplicate object key near '\"sagas\"'"},
    {"{'sagas':{'order':{'version':1,'steps':[{'name':'x','name':'y'}]}}}",
     "line 1, column 58: duplicate object key near '\"name\"'"},
    {"{'foo':1,'sagas':{'order':{'version':1,'steps':[" HTTP_STEP("a") "]}}}", "foo: unknown key"},
    {"{}", "sagas: missing"},
    {"{'sagas':[]}", "sagas: expected an object"},
    {"{'sagas':{}}", "sagas: no saga types"},
    {"{'sagas':{'a b':{}}}", "sagas.a b: a type name must be 1 to 64 of A-Z a-z 0-9 _ . -"},
    {"{'sagas':{'':{}}}", "sagas.: a type name must be 1 to 64 of A-Z a-z 0-9 _ . -"},
    {"{'sagas':{'a/b':{}}}", "sagas.a/b: a type name must be 1 to 64 of A-Z a-z 0-9 _ . -"},
    {"{'default':1,'sagas':{'order':{'version':1,'steps':[" HTTP_STEP("a") "]}}}",
     "default: expected a string"},
    {"{'default':'x','sagas':{'order':{'version':1,'steps':[" HTTP_STEP("a") "]}}}",
     "default: \"x\" is not a saga in this file"},
    /* a later saga's error, after a good one */
    {"{'sagas':{'ok':{'version':1,'steps':[" HTTP_STEP("a") "]},'b c':{}}}",
     "sagas.b c: a type name must be 1 to 64 of A-Z a-z 0-9 _ . -"},
    {"{'sagas':{'ok':{'version':1,'steps':[" HTTP_STEP("a") "]},'x':{'version':0}}}",
     "sagas.x.version: must be 1 to 2147483647"},
    {"{'sagas':{'ok':{'version':1,'steps':[" HTTP_STEP("a") "]},'x':{'version':1,'steps':"
                                                            "[" HTTP_STEP("a") "," HTTP_STEP(
                                                                "b") ",{'name':'c','http':{'url':'"
                                                                     "http://h/','body':"
                                                                     "'${steps.d.response}'}}]}}}",
     "sagas.x.steps[2].http.body: ${steps.d.response} names a step that does not run before this "
     "one"},
    /* the saga */
    {"{'sagas':{'order':[]}}", "sagas.order: expected an object"},
    {"{'sagas':{'order':{'version':1,'steps':[" HTTP_STEP("a") "],'foo':1}}}",
     "sagas.order.foo: unknown key"},
    {"{'sagas':{'order':{'steps':[" HTTP_STEP("a") "]}}}", "sagas.order.version: missing"},
    {"{'sagas':{'order':{'version':'1','steps':[]}}}", "sagas.order.version: expected an integer"},
    {"{'sagas':{'order':{'version':1.0,'steps':[]}}}", "sagas.order.version: expected an integer"},
    {"{'sagas':{'order':{'version':0,'steps':[]}}}",
     "sagas.order.version: must be 1 to 2147483647"},
    {"{'sagas':{'order':{'version':-1,'steps':[]}}}",
     "sagas.order.version: must be 1 to 2147483647"},
    {"{'sagas':{'order':{'version':2147483648,'steps':[]}}}",
     "sagas.order.version: must be 1 to 2147483647"},
    {"{'sagas':{'order':{'version':1}}}", "sagas.order.steps: missing"},
    {"{'sagas':{'order':{'version':1,'steps':{}}}}", "sagas.order.steps: expected an array"},
    {"{'sagas':{'order':{'version':1,'steps':[]}}}", "sagas.order.steps: no steps"},
    {"{'sagas':{'order':{'version':1,'result':5,'steps':[]}}}",
     "sagas.order.result: expected a string"},
    /* steps */
    {ORDER("[1]"), STEP0 ": expected an object"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'foo':1}]"), STEP0 ".foo: unknown key"},
    {ORDER("[{'http':{'url':'http://h/'}}]"), STEP0 ".name: missing"},
    {ORDER("[{'name':1,'http':{'url':'http://h/'}}]"), STEP0 ".name: expected a string"},
    {ORDER("[{'name':'','http':{'url':'http://h/'}}]"),
     STEP0 ".name: must be 1 to 64 of A-Z a-z 0-9 _ . -"},
    {ORDER("[{'name':'a b','http':{'url':'http://h/'}}]"),
     STEP0 ".name: must be 1 to 64 of A-Z a-z 0-9 _ . -"},
    {ORDER("[" HTTP_STEP("charge") "," HTTP_STEP("charge") "]"),
     "sagas.order.steps[1].name: \"charge\" is used by steps[0]"},
    {ORDER("[" HTTP_STEP("a") "," HTTP_STEP("b") ",{'name':'c'}]"),
     "sagas.order.steps[2]: a step needs \"http\" or \"publish\""},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'publish':{'topic':'t'}}]"),
     STEP0 ": a step has both \"http\" and \"publish\""},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'output':7}]"),
     STEP0 ".output: expected a string"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'output':''}]"),
     STEP0 ".output: must be 1 to 64 bytes without control characters"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'output':'x\\ty'}]"),
     STEP0 ".output: must be 1 to 64 bytes without control characters"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'output':'x\\u0085y'}]"),
     STEP0 ".output: must be 1 to 64 bytes without control characters"},
    {ORDER("[" HTTP_STEP("a") ",{'name':'b','http':{'url':'http://h/'},'output':'a'}]"),
     "sagas.order.steps[1].output: \"a\" is used by steps[0]"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'label':['x']}]"),
     STEP0 ".label: expected a string"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'label':'a\\nb'}]"),
     STEP0 ".label: must be 1 to 64 bytes without control characters"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'timeout_ms':'5'}]"),
     STEP0 ".timeout_ms: expected an integer"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'timeout_ms':0}]"),
     STEP0 ".timeout_ms: must be 1 to 600000"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'timeout_ms':600001}]"),
     STEP0 ".timeout_ms: must be 1 to 600000"},
    /* retry */
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'retry':3}]"),
     STEP0 ".retry: expected an object"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'retry':{'tries':3}}]"),
     STEP0 ".retry.tries: unknown key"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'retry':{'attempts':0}}]"),
     STEP0 ".retry.attempts: must be 1 to 100"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'retry':{'attempts':101}}]"),
     STEP0 ".retry.attempts: must be 1 to 100"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'retry':{'attempts':true}}]"),
     STEP0 ".retry.attempts: expected an integer"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'retry':{'backoff_ms':-1}}]"),
     STEP0 ".retry.backoff_ms: must be 0 to 3600000"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'retry':{'backoff_ms':'1'}}]"),
     STEP0 ".retry.backoff_ms: expected an integer"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'retry':{'max_backoff_ms':1.5}}]"),
     STEP0 ".retry.max_backoff_ms: expected an integer"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'retry':{'multiplier':'2'}}]"),
     STEP0 ".retry.multiplier: expected a number"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'retry':{'multiplier':0.5}}]"),
     STEP0 ".retry.multiplier: must be 1 to 10"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'retry':{'multiplier':11}}]"),
     STEP0 ".retry.multiplier: must be 1 to 10"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'retry':{'max_backoff_ms':3600001}}]"),
     STEP0 ".retry.max_backoff_ms: must be 0 to 3600000"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'retry':{'max_backoff_ms':50}}]"),
     STEP0 ".retry.max_backoff_ms: less than backoff_ms"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'retry':{'backoff_ms':20000}}]"),
     STEP0 ".retry.backoff_ms: more than max_backoff_ms (10000)"},
    /* compensate */
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'compensate':[]}]"),
     STEP0 ".compensate: expected an object"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'compensate':{}}]"),
     STEP0 ".compensate: a compensation needs \"http\" or \"publish\""},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'compensate':{'http':{'url':'http://h/'},"
           "'publish':{'topic':'t'}}}]"),
     STEP0 ".compensate: a compensation has both \"http\" and \"publish\""},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'compensate':{'publish':{'topic':'t'},"
           "'retry':{}}}]"),
     STEP0 ".compensate.retry: unknown key"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'compensate':{'http':{'url':'x'}}}]"),
     STEP0 ".compensate.http.url: not an http(s) URL"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'compensate':{'publish':{}}}]"),
     STEP0 ".compensate.publish.topic: missing"},
    /* http */
    {ORDER("[{'name':'a','http':'http://h/'}]"), STEP0 ".http: expected an object"},
    {ORDER("[{'name':'a','http':{}}]"), STEP0 ".http.url: missing"},
    {ORDER("[{'name':'a','http':{'url':1}}]"), STEP0 ".http.url: expected a string"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','verb':'GET'}}]"),
     STEP0 ".http.verb: unknown key"},
    {ORDER("[" HTTP_STEP("a") ",{'name':'b','http':{'url':'ftp://h/x'}}]"),
     "sagas.order.steps[1].http.url: not an http(s) URL"},
    {ORDER("[{'name':'a','http':{'url':'h/x'}}]"), STEP0 ".http.url: not an http(s) URL"},
    {ORDER("[{'name':'a','http':{'url':'http://'}}]"), STEP0 ".http.url: not an http(s) URL"},
    {ORDER("[{'name':'a','http':{'url':'${SG_T_UNSET}/x'}}]"),
     STEP0 ".http.url: ${SG_T_UNSET} is not set"},
    {ORDER("[{'name':'a','http':{'url':'http://${1X}/x'}}]"),
     STEP0 ".http.url: ${1X} is not a variable name"},
    {ORDER("[{'name':'a','http':{'url':'http://${request.id}/x'}}]"),
     STEP0 ".http.url: ${request.id} is not a variable name"},
    {ORDER("[{'name':'a','http':{'url':'http://h/${SG_T_URL'}}]"),
     STEP0 ".http.url: ${SG_T_URL has no closing }"},
    {ORDER("[{'name':'a','http':{'url':'http://h/${SG_T_LONG}'}}]"),
     STEP0 ".http.url: longer than 2048 bytes"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','method':'TRACE'}}]"),
     STEP0 ".http.method: must be GET, POST, PUT, PATCH or DELETE"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','method':''}}]"),
     STEP0 ".http.method: must be GET, POST, PUT, PATCH or DELETE"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','method':1}}]"),
     STEP0 ".http.method: expected a string"},
    /* headers */
    {ORDER("[{'name':'a','http':{'url':'http://h/','headers':['A: b']}}]"),
     STEP0 ".http.headers: expected an object"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','headers':{'X-Saga-Id':'1'}}}]"),
     STEP0 ".http.headers.X-Saga-Id: set by sagad"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','headers':{'idempotency-key':'1'}}}]"),
     STEP0 ".http.headers.idempotency-key: set by sagad"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','headers':{'X-SAGA-COMPENSATION':'1'}}}]"),
     STEP0 ".http.headers.X-SAGA-COMPENSATION: set by sagad"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','headers':{'content-length':'1'}}}]"),
     STEP0 ".http.headers.content-length: set by sagad"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','headers':{'Host':'x'}}}]"),
     STEP0 ".http.headers.Host: set by sagad"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','headers':{'Transfer-Encoding':'x'}}}]"),
     STEP0 ".http.headers.Transfer-Encoding: set by sagad"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','headers':{'Bad Name':'x'}}}]"),
     STEP0 ".http.headers.Bad Name: not an HTTP header name"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','headers':{'':'x'}}}]"),
     STEP0 ".http.headers.: not an HTTP header name"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','headers':{'A:b':'x'}}}]"),
     STEP0 ".http.headers.A:b: not an HTTP header name"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','headers':{'A':1}}}]"),
     STEP0 ".http.headers.A: expected a string"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','headers':{'A':'x\\r\\nEvil: 1'}}}]"),
     STEP0 ".http.headers.A: contains CR or LF"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','headers':{'A':'x\\ny'}}}]"),
     STEP0 ".http.headers.A: contains CR or LF"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','headers':{'A':'${SG_T_CRLF}'}}}]"),
     STEP0 ".http.headers.A: contains CR or LF"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','headers':{'A':'Bearer ${SG_T_UNSET}'}}}]"),
     STEP0 ".http.headers.A: ${SG_T_UNSET} is not set"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','headers':{'A':'1','A':'2'}}}]"),
     "line 1, column 100: duplicate object key near '\"A\"'"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','headers':{'Accept':'x','accept':'y'}}}]"),
     STEP0 ".http.headers.accept: repeats header \"Accept\""},
    /* body templates */
    {ORDER("[" HTTP_STEP("reserve") ",{'name':'charge','http':{'url':'http://h/',"
                                    "'body':{'ref':'${steps.ship.response.id}'}}}," HTTP_STEP(
                                        "ship") "]"),
     "sagas.order.steps[1].http.body.ref: ${steps.ship.response.id} names a step that does not "
     "run before this one"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','body':{'me':'${steps.a.response}'}}}]"),
     STEP0 ".http.body.me: ${steps.a.response} names a step that does not run before this one"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','body':'${FOO}'}}]"),
     STEP0 ".http.body: ${FOO} is neither ${request...} nor ${steps.<name>.response...}"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','body':['x','${request.a']}}]"),
     STEP0 ".http.body[1]: ${request.a has no closing }"},
    {ORDER("[" HTTP_STEP("x") ",{'name':'a','http':{'url':'http://h/',"
                              "'body':{'items':[{'sku':'n=${steps.x.status}'}]}}}]"),
     "sagas.order.steps[1].http.body.items[0].sku: ${steps.x.status} is neither ${request...} "
     "nor ${steps.<name>.response...}"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','body':{'a':{'b':'${request..c}'}}}}]"),
     STEP0 ".http.body.a.b: ${request..c} has an empty path segment"},
    /* publish */
    {ORDER("[{'name':'a','publish':'t'}]"), STEP0 ".publish: expected an object"},
    {ORDER("[{'name':'a','publish':{}}]"), STEP0 ".publish.topic: missing"},
    {ORDER("[{'name':'a','publish':{'topic':5}}]"), STEP0 ".publish.topic: expected a string"},
    {ORDER("[{'name':'a','publish':{'topic':''}}]"),
     STEP0 ".publish.topic: must be 1 to 255 of A-Z a-z 0-9 _ . -"},
    {ORDER("[{'name':'a','publish':{'topic':'a b'}}]"),
     STEP0 ".publish.topic: must be 1 to 255 of A-Z a-z 0-9 _ . -"},
    {ORDER("[{'name':'a','publish':{'topic':'t','key':'k'}}]"), STEP0 ".publish.key: unknown key"},
    /* payload templates: as body templates, placed under publish.payload */
    {ORDER("[" HTTP_STEP("reserve") ",{'name':'paid','publish':{'topic':'t',"
                                    "'payload':{'ref':'${steps.ship.response.id}'}}}," HTTP_STEP(
                                        "ship") "]"),
     "sagas.order.steps[1].publish.payload.ref: ${steps.ship.response.id} names a step that does "
     "not run before this one"},
    {ORDER("[" HTTP_STEP("reserve") ",{'name':'paid','publish':{'topic':'t',"
                                    "'payload':{'order':{'by':'${steps.x.response}'}}}}]"),
     "sagas.order.steps[1].publish.payload.order.by: ${steps.x.response} names a step that does "
     "not run before this one"},
    {ORDER("[{'name':'a','publish':{'topic':'t','payload':{'me':'${steps.a.response}'}}}]"),
     STEP0 ".publish.payload.me: ${steps.a.response} names a step that does not run before this "
           "one"},
    {ORDER("[{'name':'a','publish':{'topic':'t','payload':'${FOO}'}}]"),
     STEP0 ".publish.payload: ${FOO} is neither ${request...} nor ${steps.<name>.response...}"},
    {ORDER("[{'name':'a','publish':{'topic':'t','payload':'id ${request.id'}}]"),
     STEP0 ".publish.payload: ${request.id has no closing }"},
    {ORDER("[{'name':'a','publish':{'topic':'t','payload':['x','${request.a']}}]"),
     STEP0 ".publish.payload[1]: ${request.a has no closing }"},
    {ORDER("[{'name':'a','publish':{'topic':'t','payload':{'a':{'b':'${request..c}'}}}}]"),
     STEP0 ".publish.payload.a.b: ${request..c} has an empty path segment"},
    {ORDER("[{'name':'a','publish':{'topic':'t','payload':{'k':'${ENV_NAME}'}}}]"),
     STEP0 ".publish.payload.k: ${ENV_NAME} is neither ${request...} nor "
           "${steps.<name>.response...}"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'compensate':{'publish':{'topic':'u',"
           "'payload':{'x':'${steps.b.response}'}}}}," HTTP_STEP("b") "]"),
     STEP0 ".compensate.publish.payload.x: ${steps.b.response} names a step that does not run "
           "before this one"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'compensate':{'publish':{'topic':'u',"
           "'payload':['${request.a}','${steps.a.status}']}}}]"),
     STEP0 ".compensate.publish.payload[1]: ${steps.a.status} is neither ${request...} nor "
           "${steps.<name>.response...}"},
    {ORDER("[{'name':'a','http':{'url':'http://h/'},'compensate':{'publish':{'topic':'u',"
           "'payload':{'k':1},'headers':{}}}}]"),
     STEP0 ".compensate.publish.headers: unknown key"},
    {ORDER("[{'name':'a','http':{'url':'http://h/','payload':{}}}]"),
     STEP0 ".http.payload: unknown key"},
    {ORDER("[{'name':'a','publish':{'topic':'t','body':{}}}]"), STEP0 ".publish.body: unknown key"},
};

static int setup(void **state)
{
    (void)state;
    static char long_value[3001];
    memset(long_value, 'a', sizeof long_value - 1);
    setenv("SG_T_URL", "http://env-host:8080", 1);
    setenv("SG_T_CRLF", "a\r\nb", 1);
    setenv("SG_T_LONG", long_value, 1);
    unsetenv("SG_T_UNSET");
    return 0;
}

static void every_message(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof top_cases / sizeof *top_cases; i++)
        fails(top_cases[i].text, top_cases[i].message);
}

static void empty_and_raw_input(void **state)
{
    (void)state;
    fails_raw("", 0, "the file is empty");
    fails_raw(" \n\t", 3, "the file is empty");
    fails_raw(NULL, 0, "the file is empty");
    fails_raw("{\"sagas\"\0:{}}", 13, "the file has a NUL byte at offset 8");
    fails_raw("{\"sagas\":{\"a\":{\"version\":1,\"result\":\"\\u0000\",\"steps\":[]}}}", 56,
              "line 1, column 44: \\u0000 is not allowed in the file");
    fails_raw("{\"sagas\":{\"a\":{\"version\":1,\"result\":\"\xff\",\"steps\":[]}}}", 51,
              "line 1, column 37: unable to decode byte 0xff near '\"'");
}

static void sizes(void **state)
{
    (void)state;
    /* 65 steps, 33 sagas, names of 65 bytes; the same at the limit pass
     * (test_def_file.c). */
    char *t = repeat("{'sagas':{'order':{'version':1,'steps':[", 65,
                     "{'name':'s%zu','http':{'url':'http://h/%zu'}}", "]}}}");
    fails_raw(t, strlen(t), "sagas.order.steps: more than 64 steps");
    free(t);
    t = repeat("{'sagas':{", 33,
               "'t%zu':{'version':1,'steps':[{'name':'a%zu','publish':{'topic':'t'}}]}", "}}");
    fails_raw(t, strlen(t), "sagas: more than 32 saga types");
    free(t);

    char n65[66], text[512], msg[256];
    memset(n65, 'n', 65);
    n65[65] = '\0';
    snprintf(text, sizeof text, "{\"sagas\":{\"%s\":{}}}", n65);
    snprintf(msg, sizeof msg, "sagas.%.64s...: a type name must be 1 to 64 of A-Z a-z 0-9 _ . -",
             n65);
    fails_raw(text, strlen(text), msg);
    const char *fmt[] = {
        "{\"sagas\":{\"o\":{\"version\":1,\"steps\":[{\"name\":\"%s\",\"publish\":{\"topic\":\"t\"}"
        "}]}}}",
        "{\"sagas\":{\"o\":{\"version\":1,\"steps\":[{\"name\":\"a\",\"output\":\"%s\","
        "\"publish\":{\"topic\":\"t\"}}]}}}",
        "{\"sagas\":{\"o\":{\"version\":1,\"steps\":[{\"name\":\"a\",\"label\":\"%s\","
        "\"publish\":{\"topic\":\"t\"}}]}}}",
    };
    const char *why[] = {
        "sagas.o.steps[0].name: must be 1 to 64 of A-Z a-z 0-9 _ . -",
        "sagas.o.steps[0].output: must be 1 to 64 bytes without control characters",
        "sagas.o.steps[0].label: must be 1 to 64 bytes without control characters",
    };
    for (int i = 0; i < 3; i++) {
        snprintf(text, sizeof text, fmt[i], n65);
        fails_raw(text, strlen(text), why[i]);
    }

    char big[3000];
    memset(big, 'u', sizeof big);
    memcpy(big, "http://h/", 9);
    big[2049] = '\0'; /* 2049 bytes */
    char *f = sg_xmalloc(4000);
    snprintf(f, 4000,
             "{\"sagas\":{\"o\":{\"version\":1,\"steps\":[{\"name\":\"a\",\"http\":{\"url\":\"%s\"}"
             "}]}}}",
             big);
    fails_raw(f, strlen(f), "sagas.o.steps[0].http.url: longer than 2048 bytes");
    big[1025] = '\0';
    snprintf(f, 4000,
             "{\"sagas\":{\"o\":{\"version\":1,\"steps\":[{\"name\":\"a\",\"http\":{\"url\":\"http:"
             "//h/\",\"headers\":{\"A\":\"%s\"}}}]}}}",
             big);
    fails_raw(f, strlen(f), "sagas.o.steps[0].http.headers.A: longer than 1024 bytes");
    memset(big, 'r', 257);
    big[257] = '\0';
    snprintf(f, 4000, "{\"sagas\":{\"o\":{\"version\":1,\"result\":\"%s\",\"steps\":[]}}}", big);
    fails_raw(f, strlen(f), "sagas.o.result: longer than 256 bytes");
    memset(big, 't', 256);
    big[256] = '\0';
    snprintf(f, 4000,
             "{\"sagas\":{\"o\":{\"version\":1,\"steps\":[{\"name\":\"a\",\"publish\":{\"topic\":"
             "\"%s\"}}]}}}",
             big);
    fails_raw(f, strlen(f),
              "sagas.o.steps[0].publish.topic: must be 1 to 255 of A-Z a-z 0-9 _ . -");
    free(f);

    t = repeat(
        "{'sagas':{'o':{'version':1,'steps':[{'name':'a','http':{'url':'http://h/','headers':{", 33,
        "'H%zu':'%zu'", "}}}]}}}");
    fails_raw(t, strlen(t), "sagas.o.steps[0].http.headers: more than 32 headers");
    free(t);
}

/* Control bytes and long keys are shown tamed in the place. */
static void places_quote_input_safely(void **state)
{
    (void)state;
    fails(ORDER("[{'name':'a','http':{'url':'http://h/'},'x\\u0001y':1}]"),
          STEP0 ".x?y: unknown key");
    fails("{'default':'a\\nb','sagas':{'order':{'version':1,'steps':[" HTTP_STEP("a") "]}}}",
          "default: \"a?b\" is not a saga in this file");
}

/* sg_def_parse_one places its errors under sagas.<name>. */
static void parse_one_errors(void **state)
{
    (void)state;
    char err[256];
    sg_def *d = (sg_def *)&d;
    assert_int_equal(sg_def_parse_one("order", "{\"version\":1,", &DFLT, &d, err, sizeof err),
                     SG_EINVAL);
    assert_null(d);
    assert_string_equal(err,
                        "sagas.order: line 1, column 13: string or '}' expected near end of file");
    assert_int_equal(sg_def_parse_one("order", "[]", &DFLT, &d, err, sizeof err), SG_EINVAL);
    assert_string_equal(err, "sagas.order: expected an object");
    assert_int_equal(sg_def_parse_one("order", "", &DFLT, &d, err, sizeof err), SG_EINVAL);
    assert_string_equal(err, "sagas.order: empty definition");
    assert_int_equal(sg_def_parse_one("a b", "{}", &DFLT, &d, err, sizeof err), SG_EINVAL);
    assert_string_equal(err, "sagas.a b: a type name must be 1 to 64 of A-Z a-z 0-9 _ . -");
    char *c = q("{'version':1,'steps':[{'name':'a','http':{'url':'gopher://x'}}]}");
    assert_int_equal(sg_def_parse_one("order", c, &DFLT, &d, err, sizeof err), SG_EINVAL);
    assert_null(d);
    assert_string_equal(err, "sagas.order.steps[0].http.url: not an http(s) URL");
    free(c);
}

/* A small err buffer truncates; a NULL one is allowed. */
static void short_error_buffers(void **state)
{
    (void)state;
    char err[8];
    sg_def **defs;
    size_t n;
    assert_int_equal(sg_defs_parse("{}", 2, &DFLT, &defs, &n, err, sizeof err), SG_EINVAL);
    assert_string_equal(err, "sagas: ");
    assert_int_equal(sg_defs_parse("{}", 2, &DFLT, &defs, &n, NULL, 0), SG_EINVAL);
    assert_null(defs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_message),
        cmocka_unit_test(empty_and_raw_input),
        cmocka_unit_test(sizes),
        cmocka_unit_test(places_quote_input_safely),
        cmocka_unit_test(parse_one_errors),
        cmocka_unit_test(short_error_buffers),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
