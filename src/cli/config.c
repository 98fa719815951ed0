/* sagad's settings: flags and their SAGAD_* twins, validated into an
 * sg_config before anything starts, and the --help text. */
#include "sg/config.h"

#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sg/alloc.h"
#include "sg/auth.h"
#include "sg/util.h"

static const char usage[] =
    "usage: sagad [options]\n"
    "\n"
    "Saga orchestrator: runs the STA image saga (anonymizer -> tokenizer event ->\n"
    "AI model) for every POST /saga, or the saga types of a --definitions file;\n"
    "persists each step, compensates on failure.\n"
    "\n"
    "  --listen HOST:PORT     address to serve the API on        [SAGAD_LISTEN]\n"
    "                         default 0.0.0.0:5000 (port 0 = any free port)\n"
    "  --db URL|PATH          store: PATH or sqlite:PATH          [SAGAD_DB]\n"
    "                         default ./saga.db\n"
    "  --anonymizer-url URL   step 1 endpoint                     [SAGAD_ANONYMIZER_URL]\n"
    "                         default http://anonymizer-service/anonymize\n"
    "  --ai-model-url URL     step 3 endpoint                     [SAGAD_AI_MODEL_URL]\n"
    "                         default http://ai-model-service/process\n"
    "  --bus URL              event transport: log: | http://host:port/path |\n"
    "                         nats:// | tls:// (NATS) | pulsar:// | pulsar+ssl://\n"
    "                         default log: (events go nowhere)   [SAGAD_BUS]\n"
    "  --step-timeout-ms N    per step attempt, default 3000      [SAGAD_STEP_TIMEOUT_MS]\n"
    "  --max-body BYTES       POST /saga body cap, default 1048576 [SAGAD_MAX_BODY]\n"
    "  --max-response BYTES   downstream answer cap, default 8388608\n"
    "                                                             [SAGAD_MAX_RESPONSE]\n"
    "  --max-connections N    calls at once per downstream host, default 4096;\n"
    "                         more calls wait for a slot (their timeout has\n"
    "                         not started)                        [SAGAD_MAX_CONNECTIONS]\n"
    "  --max-inflight N       sagas running at once; beyond it POST /saga\n"
    "                         answers 503, default 100000          [SAGAD_MAX_INFLIGHT]\n"
    "  --max-inflight-bytes B request bytes those sagas may hold,\n"
    "                         default 1073741824            [SAGAD_MAX_INFLIGHT_BYTES]\n"
    "  --threads N            API threads, default 2              [SAGAD_THREADS]\n"
    "  --grace-ms N           shutdown grace period, default 5000 [SAGAD_GRACE_MS]\n"
    "  --conn-timeout-s N     idle/slow client timeout, default 30 [SAGAD_CONN_TIMEOUT_S]\n"
    "  --step-retries N       extra attempts of a step after a transient failure,\n"
    "                         default 0                           [SAGAD_STEP_RETRIES]\n"
    "  --retry-backoff-ms N   first wait between attempts (doubling, full jitter,\n"
    "                         capped at 10 s), default 100      [SAGAD_RETRY_BACKOFF_MS]\n"
    "  --park-after S         park a compensation still undelivered after S seconds,\n"
    "                         default 86400                        [SAGAD_PARK_AFTER]\n"
    "  --retention S          delete settled sagas (with their steps and events)\n"
    "                         S seconds after their last change; an\n"
    "                         Idempotency-Key is remembered that long; default 0\n"
    "                         keeps everything                     [SAGAD_RETENTION]\n"
    "  --lease-ms N           with a shared store (postgres://, redis://): how long\n"
    "                         this process owns its sagas without renewing,\n"
    "                         default 10000                        [SAGAD_LEASE_MS]\n"
    "  --definitions FILE     saga types from a JSON file (docs/definitions.md);\n"
    "                         SIGHUP reloads it; default: the STA saga of the URL\n"
    "                         flags above                         [SAGAD_DEFINITIONS]\n"
    "  --log-level LEVEL      debug|info|warn|error, default info [SAGAD_LOG_LEVEL]\n"
    "  --log-format FORMAT    text|json: json writes one JSON object a line, with\n"
    "                         each saga's id, type and trace id  [SAGAD_LOG_FORMAT]\n"
    "  --api-token TOKEN      every route but /healthz and /readyz asks for\n"
    "                         Authorization: Bearer TOKEN      [SAGAD_API_TOKEN]\n"
    "  --api-token-file FILE  tokens, one per line (# comments); SIGHUP re-reads\n"
    "                         it; with --api-token, both are good\n"
    "                                                       [SAGAD_API_TOKEN_FILE]\n"
    "  --tls-cert FILE        serve HTTPS with this PEM certificate (chain)\n"
    "                                                             [SAGAD_TLS_CERT]\n"
    "  --tls-key FILE         and this PEM private key          [SAGAD_TLS_KEY]\n"
    "  --ca-file FILE         CA certificates (PEM) that downstream HTTPS and\n"
    "                         pulsar+ssl servers are checked against, instead\n"
    "                         of the system's (tls:// NATS: besides them)\n"
    "                                                            [SAGAD_CA_FILE]\n"
    "  --help                 this text\n"
    "\n"
    "A flag wins over its environment variable. Exit status 2 on a bad flag or value.\n";

const char *sg_config_usage(void)
{
    return usage;
}

static sg_status parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) return SG_EINVAL;
    *out = v;
    return SG_OK;
}

static sg_status parse_listen(sg_config *c, const char *s)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s) return SG_EINVAL;
    size_t hl = (size_t)(colon - s);
    /* [::1]:5000 style */
    const char *h = s;
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof c->host) return SG_EINVAL;
    long port;
    if (parse_long(colon + 1, 0, 65535, &port) != SG_OK) return SG_EINVAL;
    memcpy(c->host, h, hl);
    c->host[hl] = '\0';
    c->port = (uint16_t)port;
    return SG_OK;
}

static sg_status parse_level(const char *s, int *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return SG_OK;
        }
    return SG_EINVAL;
}

enum {
    O_LISTEN = 256,
    O_DB,
    O_ANON,
    O_AI,
    O_BUS,
    O_TIMEOUT,
    O_MAXBODY,
    O_MAXRESP,
    O_MAXCONN,
    O_MAXINFL,
    O_MAXINFLB,
    O_THREADS,
    O_GRACE,
    O_CONNTO,
    O_RETRIES,
    O_BACKOFF,
    O_PARK,
    O_RETENTION,
    O_LEASE,
    O_DEFS,
    O_LOGLEVEL,
    O_LOGFORMAT,
    O_APITOKEN,
    O_APITOKENFILE,
    O_TLSCERT,
    O_TLSKEY,
    O_CAFILE,
    O_HELP,
    O_COUNT
};

static const struct option longopts[] = {
    {"listen", required_argument, NULL, O_LISTEN},
    {"db", required_argument, NULL, O_DB},
    {"anonymizer-url", required_argument, NULL, O_ANON},
    {"ai-model-url", required_argument, NULL, O_AI},
    {"bus", required_argument, NULL, O_BUS},
    {"step-timeout-ms", required_argument, NULL, O_TIMEOUT},
    {"max-body", required_argument, NULL, O_MAXBODY},
    {"max-response", required_argument, NULL, O_MAXRESP},
    {"max-connections", required_argument, NULL, O_MAXCONN},
    {"max-inflight", required_argument, NULL, O_MAXINFL},
    {"max-inflight-bytes", required_argument, NULL, O_MAXINFLB},
    {"threads", required_argument, NULL, O_THREADS},
    {"grace-ms", required_argument, NULL, O_GRACE},
    {"conn-timeout-s", required_argument, NULL, O_CONNTO},
    {"step-retries", required_argument, NULL, O_RETRIES},
    {"retry-backoff-ms", required_argument, NULL, O_BACKOFF},
    {"park-after", required_argument, NULL, O_PARK},
    {"retention", required_argument, NULL, O_RETENTION},
    {"lease-ms", required_argument, NULL, O_LEASE},
    {"definitions", required_argument, NULL, O_DEFS},
    {"log-level", required_argument, NULL, O_LOGLEVEL},
    {"log-format", required_argument, NULL, O_LOGFORMAT},
    {"api-token", required_argument, NULL, O_APITOKEN},
    {"api-token-file", required_argument, NULL, O_APITOKENFILE},
    {"tls-cert", required_argument, NULL, O_TLSCERT},
    {"tls-key", required_argument, NULL, O_TLSKEY},
    {"ca-file", required_argument, NULL, O_CAFILE},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

/* Environment twins, indexed by option id - O_LISTEN. */
static const char *env_names[O_COUNT - O_LISTEN] = {
    "SAGAD_LISTEN",
    "SAGAD_DB",
    "SAGAD_ANONYMIZER_URL",
    "SAGAD_AI_MODEL_URL",
    "SAGAD_BUS",
    "SAGAD_STEP_TIMEOUT_MS",
    "SAGAD_MAX_BODY",
    "SAGAD_MAX_RESPONSE",
    "SAGAD_MAX_CONNECTIONS",
    "SAGAD_MAX_INFLIGHT",
    "SAGAD_MAX_INFLIGHT_BYTES",
    "SAGAD_THREADS",
    "SAGAD_GRACE_MS",
    "SAGAD_CONN_TIMEOUT_S",
    "SAGAD_STEP_RETRIES",
    "SAGAD_RETRY_BACKOFF_MS",
    "SAGAD_PARK_AFTER",
    "SAGAD_RETENTION",
    "SAGAD_LEASE_MS",
    "SAGAD_DEFINITIONS",
    "SAGAD_LOG_LEVEL",
    "SAGAD_LOG_FORMAT",
    "SAGAD_API_TOKEN",
    "SAGAD_API_TOKEN_FILE",
    "SAGAD_TLS_CERT",
    "SAGAD_TLS_KEY",
    "SAGAD_CA_FILE",
    NULL,
};

static void free_secret(char **s)
{
    if (*s) explicit_bzero(*s, strlen(*s));
    free(*s);
    *s = NULL;
}

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = sg_xstrdup(v);
}

/* The file options' fields, indexed by id - O_APITOKENFILE. */
static char **file_field(sg_config *c, int id)
{
    char **f[] = {&c->api_token_file, &c->tls_cert, &c->tls_key, &c->ca_file};
    return f[id - O_APITOKENFILE];
}

/* Numeric options: range, unit for the message, and the field they set.
 * The 16 MiB cap on bodies and answers keeps every record (request +
 * answers) renderable. */
typedef enum { AS_LONG, AS_SIZE, AS_UINT } numtype;
/* A field's offset and type, the type told by the compiler: a field of
 * any other type does not compile. */
#define NUMTYPE(x) _Generic((x), long : AS_LONG, size_t : AS_SIZE, unsigned : AS_UINT)
#define FIELD(f) offsetof(sg_config, f), NUMTYPE(((sg_config *)NULL)->f)

static const struct numopt {
    int id;
    long min, max;
    const char *unit;
    size_t offset;
    numtype type;
} numopts[] = {
    {O_TIMEOUT, 1, 3600000, "milliseconds ", FIELD(step_timeout_ms)},
    {O_MAXBODY, 1024, 16L << 20, "bytes ", FIELD(max_body)},
    {O_MAXRESP, 1024, 16L << 20, "bytes ", FIELD(max_response)},
    {O_MAXCONN, 1, 1000000, "", FIELD(max_connections)},
    {O_MAXINFL, 1, 10000000, "", FIELD(max_inflight)},
    {O_MAXINFLB, 1L << 20, 1L << 40, "bytes ", FIELD(max_inflight_bytes)},
    {O_THREADS, 1, 64, "", FIELD(threads)},
    {O_GRACE, 0, 600000, "milliseconds ", FIELD(grace_ms)},
    {O_CONNTO, 1, 3600, "seconds ", FIELD(conn_timeout_s)},
    {O_RETRIES, 0, 1000, "", FIELD(step_retries)},
    {O_BACKOFF, 1, 3600000, "milliseconds ", FIELD(retry_backoff_ms)},
    {O_PARK, 1, 31536000, "seconds ", FIELD(park_after_s)},
    /* Ten years at most: S microseconds still fit an int64 many times. */
    {O_RETENTION, 0, 315360000, "seconds ", FIELD(retention_s)},
    {O_LEASE, 200, 3600000, "milliseconds ", FIELD(lease_ms)},
};

static void set_num(sg_config *c, const struct numopt *o, long n)
{
    void *field = (char *)c + o->offset;
    switch (o->type) {
    case AS_LONG:
        *(long *)field = n;
        break;
    case AS_SIZE:
        *(size_t *)field = (size_t)n;
        break;
    case AS_UINT:
        *(unsigned *)field = (unsigned)n;
        break;
    }
}

/* Applies one option; `from` names its source for the error message. */
static sg_status apply(sg_config *c, int id, const char *v, const char *from, char *err,
                       size_t errlen)
{
    for (size_t i = 0; i < sizeof numopts / sizeof *numopts; i++) {
        const struct numopt *o = &numopts[i];
        if (o->id != id) continue;
        long n;
        if (parse_long(v, o->min, o->max, &n) == SG_OK) {
            set_num(c, o, n);
            return SG_OK;
        }
        snprintf(err, errlen, "%s: expected %s%ld-%ld, got '%s'", from, o->unit, o->min, o->max, v);
        return SG_EINVAL;
    }
    switch (id) {
    case O_LISTEN:
        if (parse_listen(c, v) == SG_OK) return SG_OK;
        snprintf(err, errlen, "%s: expected HOST:PORT with PORT 0-65535, got '%s'", from, v);
        return SG_EINVAL;
    case O_DB:
    case O_BUS:
    case O_DEFS:
        if (v[0]) {
            set_str(id == O_DB ? &c->db : id == O_BUS ? &c->bus : &c->definitions, v);
            return SG_OK;
        }
        snprintf(err, errlen, "%s: empty %s", from,
                 id == O_DB    ? "store path"
                 : id == O_BUS ? "bus URL"
                               : "file name");
        return SG_EINVAL;
    case O_ANON:
    case O_AI:
        if (sg_http_url_ok(v)) {
            set_str(id == O_ANON ? &c->anonymizer_url : &c->ai_model_url, v);
            return SG_OK;
        }
        snprintf(err, errlen, "%s: expected an http:// or https:// URL, got '%s'", from, v);
        return SG_EINVAL;
    case O_APITOKEN:
        /* The message never quotes the value: it is a secret. */
        if (sg_auth_token_ok(v)) {
            free_secret(&c->api_token);
            c->api_token = sg_xstrdup(v);
            return SG_OK;
        }
        snprintf(err, errlen,
                 "%s: expected 1-%d characters of A-Z a-z 0-9 - . _ ~ + / (then any '=')", from,
                 SG_AUTH_TOKEN_MAX);
        return SG_EINVAL;
    case O_APITOKENFILE:
    case O_TLSCERT:
    case O_TLSKEY:
    case O_CAFILE:
        if (v[0]) {
            set_str(file_field(c, id), v);
            return SG_OK;
        }
        snprintf(err, errlen, "%s: empty file name", from);
        return SG_EINVAL;
    case O_LOGLEVEL:
        if (parse_level(v, &c->log_level) == SG_OK) return SG_OK;
        snprintf(err, errlen, "%s: expected debug, info, warn or error, got '%s'", from, v);
        return SG_EINVAL;
    case O_LOGFORMAT: {
        sg_log_format f;
        if (sg_log_format_parse(v, &f) == SG_OK) {
            c->log_format = (int)f;
            return SG_OK;
        }
        snprintf(err, errlen, "%s: expected text or json, got '%s'", from, v);
        return SG_EINVAL;
    }
    }
    return SG_EINVAL;
}

sg_status sg_config_parse(sg_config *c, int argc, char **argv, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    snprintf(c->host, sizeof c->host, "0.0.0.0");
    c->port = 5000;
    c->db = sg_xstrdup("./saga.db");
    c->anonymizer_url = sg_xstrdup("http://anonymizer-service/anonymize");
    c->ai_model_url = sg_xstrdup("http://ai-model-service/process");
    c->bus = sg_xstrdup("log:");
    c->step_timeout_ms = 3000;
    c->step_retries = 0;
    c->retry_backoff_ms = 100;
    c->park_after_s = 86400;
    c->lease_ms = 10000;
    c->max_body = 1 << 20;
    c->max_response = (size_t)8 << 20;
    c->max_connections = 4096;
    c->max_inflight = 100000;
    c->max_inflight_bytes = (size_t)1 << 30;
    c->threads = 2;
    c->grace_ms = 5000;
    c->conn_timeout_s = 30;
    c->log_level = SG_LOG_INFO;

    /* Flags first, so that a variable whose flag is given is never even
     * looked at: the flag wins, and a bad variable it overrides is moot. */
    int given[O_COUNT - O_LISTEN] = {0};
    opterr = 0;
    optind = 1;
    int id;
    while ((id = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        if (id == O_HELP) {
            c->help = 1;
            continue;
        }
        if (id == '?' || id == ':') {
            const char *arg = argv[optind - 1];
            snprintf(err, errlen, id == ':' ? "option '%s' needs a value" : "unknown option '%s'",
                     arg);
            return SG_EINVAL;
        }
        char from[64];
        snprintf(from, sizeof from, "--%s", longopts[id - O_LISTEN].name);
        if (apply(c, id, optarg, from, err, errlen) != SG_OK) return SG_EINVAL;
        given[id - O_LISTEN] = 1;
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
        return SG_EINVAL;
    }
    if (c->help) return SG_OK;
    for (id = O_LISTEN; id < O_HELP; id++) {
        const char *name = env_names[id - O_LISTEN];
        const char *v = getenv(name);
        if (v && !given[id - O_LISTEN] && apply(c, id, v, name, err, errlen) != SG_OK)
            return SG_EINVAL;
    }
    if (!c->tls_cert != !c->tls_key) {
        snprintf(err, errlen, "--tls-cert and --tls-key go together: %s is missing",
                 c->tls_cert ? "--tls-key" : "--tls-cert");
        return SG_EINVAL;
    }
    return SG_OK;
}

void sg_config_free(sg_config *c)
{
    free(c->db);
    free(c->anonymizer_url);
    free(c->ai_model_url);
    free(c->bus);
    free(c->definitions);
    c->db = c->anonymizer_url = c->ai_model_url = c->bus = c->definitions = NULL;
    free_secret(&c->api_token);
    for (int id = O_APITOKENFILE; id <= O_CAFILE; id++) {
        char **f = file_field(c, id);
        free(*f);
        *f = NULL;
    }
}
