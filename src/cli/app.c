/* The sagad process: wires the components to one loop and runs it; shuts down
 * in order (stop accepting, drain, halt the engine, close the API, flush the store). */
#include "app.h"
#include "defs.h"
#include "pem.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "sg/alloc.h"
#include "sg/api.h"
#include "sg/auth.h"
#include "sg/bus.h"
#include "sg/def.h"
#include "sg/engine.h"
#include "sg/http_client.h"
#include "sg/store.h"
#include "sg/util.h"

typedef struct app {
    const sg_config *cfg;
    uv_loop_t *loop;
    sg_store *store;
    sg_http_client *http;
    sg_bus *bus;
    sg_engine *engine;
    sg_api *api;
    sg_auth *auth;            /* NULL without --api-token(-file) */
    char *tls_cert, *tls_key; /* PEM text for HTTPS; the key is wiped when freed */
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t drain;
    int nhandles; /* how many of sigterm, sigint, drain, sighup (in that order) are open */
    uint64_t stop_at;
    int stopping;
} app;

/* The store lease is lost: another sagad may own these sagas now, and this
 * process may write nothing more (the store refuses it) nor start any
 * call. Stop at once, without the graceful drain: nothing in flight here
 * can be finished by this process. A supervisor restarts it, as a new
 * owner. */
#define EXIT_FENCED 3
static void on_fenced(void *arg)
{
    (void)arg;
    sg_log(SG_LOG_ERROR, "exiting (status %d): the store lease is lost", EXIT_FENCED);
    sg_log_flush();
    _exit(EXIT_FENCED);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Closes the app's own handles (closing the drain timer stops it); the
 * next uv_run runs their close callbacks. */
static void close_handles(app *a)
{
    uv_handle_t *h[] = {(uv_handle_t *)&a->sigterm, (uv_handle_t *)&a->sigint,
                        (uv_handle_t *)&a->drain, (uv_handle_t *)&a->sighup};
    for (int i = 0; i < a->nhandles; i++)
        uv_close(h[i], NULL);
    a->nhandles = 0;
}

static void finish(app *a)
{
    close_handles(a);
    sg_engine_halt(a->engine);
    sg_api_destroy(a->api);
    a->api = NULL;
    uv_stop(a->loop);
}

static void on_drain(uv_timer_t *t)
{
    app *a = t->data;
    int idle = sg_api_pending(a->api) == 0 && sg_engine_waiting(a->engine) == 0;
    if (idle || uv_now(a->loop) >= a->stop_at) finish(a);
}

static void on_signal(uv_signal_t *s, int signum)
{
    app *a = s->data;
    if (a->stopping) return;
    a->stopping = 1;
    sg_log(SG_LOG_INFO, "signal %d: no new requests; finishing in-flight ones for up to %ld ms",
           signum, a->cfg->grace_ms);
    sg_api_quiesce(a->api);
    sg_engine_stop_accepting(a->engine);
    a->stop_at = uv_now(a->loop) + (uint64_t)a->cfg->grace_ms;
    uv_timer_start(&a->drain, on_drain, 0, 20);
}

/* A token file that went bad keeps the tokens in use: a typo must not
 * lock every client out, nor let anyone in. */
static void reload_tokens(app *a)
{
    if (!sg_auth_file(a->auth)) return;
    char err[400] = "";
    size_t n = 0;
    if (sg_auth_reload(a->auth, &n, err, sizeof err) == SG_OK)
        sg_log(SG_LOG_INFO, "API tokens re-read from %s: %zu in use", sg_auth_file(a->auth), n);
    else
        sg_log(SG_LOG_WARN, "API tokens not re-read (%s); keeping the %zu in use", err, n);
}

static void on_sighup(uv_signal_t *s, int signum)
{
    (void)signum;
    app *a = s->data;
    if (a->stopping) return;
    reload_tokens(a);
    if (a->store) sg_defs_reload(a->cfg, a->store);
}

/* Counts s in nhandles as soon as it is initialised, started or not. */
static int catch_signal(app *a, uv_signal_t *s, int signum)
{
    int rc = uv_signal_init(a->loop, s);
    if (rc != 0) return rc;
    a->nhandles++;
    s->data = a;
    return uv_signal_start(s, signum == SIGHUP ? on_sighup : on_signal, signum);
}

/* The loop and the handles the app owns. Signals are caught from the
 * start: one during recovery still ends in an orderly shutdown once the
 * loop runs. On failure nothing of them is left and err says why. */
static int open_loop(app *a, char *err, size_t errlen)
{
    a->loop = sg_xmalloc(sizeof *a->loop);
    int rc = uv_loop_init(a->loop);
    if (rc != 0) {
        snprintf(err, errlen, "cannot create the event loop: %s", uv_strerror(rc));
        free(a->loop);
        a->loop = NULL;
        return 1;
    }
    const char *what = "catch SIGTERM";
    if ((rc = catch_signal(a, &a->sigterm, SIGTERM)) != 0) goto fail;
    what = "catch SIGINT";
    if ((rc = catch_signal(a, &a->sigint, SIGINT)) != 0) goto fail;
    what = "create the shutdown timer";
    if ((rc = uv_timer_init(a->loop, &a->drain)) != 0) goto fail;
    a->nhandles++;
    a->drain.data = a;
    what = "catch SIGHUP";
    if ((rc = catch_signal(a, &a->sighup, SIGHUP)) != 0) goto fail;
    return 0;
fail:
    snprintf(err, errlen, "cannot %s: %s", what, uv_strerror(rc));
    close_handles(a);
    uv_run(a->loop, UV_RUN_DEFAULT); /* close callbacks */
    uv_loop_close(a->loop);
    free(a->loop);
    a->loop = NULL;
    return 1;
}

/* "host:/absolute/store": names this sagad to brokers, the same across
 * restarts (a Pulsar producer name keeps its sequence ids). */
static void instance_name(char *out, size_t n, const char *db)
{
    char host[256] = "", cwd[4096] = "";
    gethostname(host, sizeof host - 1);
    if (db[0] != '/' && !strstr(db, "://") && getcwd(cwd, sizeof cwd))
        snprintf(out, n, "%s:%s/%s", host, cwd, db);
    else
        snprintf(out, n, "%s:%s", host, db);
}

/* Tokens, HTTPS files and the CA file: read and checked before anything
 * else starts, so that a bad one costs nothing (exit status 2). */
static int open_security(app *a, char *err, size_t errlen)
{
    const sg_config *c = a->cfg;
    char why[400] = "";
    if (sg_auth_create(&a->auth, c->api_token, c->api_token_file, why, sizeof why) != SG_OK) {
        snprintf(err, errlen, "%s: %s", c->api_token_file ? "--api-token-file" : "--api-token",
                 why);
        return 2;
    }
    if (c->tls_cert) {
        int rc = sg_pem_read(c->tls_cert, "--tls-cert", &a->tls_cert, err, errlen);
        if (rc == 0) rc = sg_pem_read(c->tls_key, "--tls-key", &a->tls_key, err, errlen);
        if (rc == 0)
            rc = sg_pem_check(a->tls_cert, c->tls_cert, a->tls_key, c->tls_key, err, errlen);
        if (rc != 0) return rc;
    }
    if (c->ca_file) {
        char *ca = NULL;
        int rc = sg_pem_read(c->ca_file, "--ca-file", &ca, err, errlen);
        if (rc == 0) rc = sg_pem_check(ca, c->ca_file, NULL, NULL, err, errlen);
        free(ca);
        if (rc != 0) return rc;
    }
    return 0;
}

/* Everything that can be refused for a bad value (bus URL, definition,
 * listen address) is checked before the store is touched, and the API is
 * bound before recovery: a start that fails changes nothing on disk. */
static int open_parts(app *a, char *err, size_t errlen)
{
    const sg_config *c = a->cfg;
    int src = open_security(a, err, errlen);
    if (src != 0) return src;
    sg_http_client_options ho = {.max_response = c->max_response,
                                 .max_connections = c->max_connections,
                                 .ca_file = c->ca_file};
    if (sg_http_client_create(&a->http, a->loop, &ho) != SG_OK) {
        snprintf(err, errlen, "cannot create the HTTP client");
        return 1;
    }
    char instance[4600];
    instance_name(instance, sizeof instance, c->db);
    sg_bus_env env = {
        .loop = a->loop, .http = a->http, .instance = instance, .ca_file = c->ca_file};
    char why[400] = "";
    if (sg_bus_create(&a->bus, c->bus, &env, why, sizeof why) != SG_OK) {
        snprintf(err, errlen, "--bus / SAGAD_BUS: %s", why);
        return 2;
    }
    sg_defs_file file;
    int rc = sg_defs_read(c, &file, err, errlen);
    if (rc != 0) return rc;
    /* A transient store failure (a lock held too long, an I/O hiccup) makes
     * the writer retry, never the engine drop a saga. */
    sg_store_options so = {.synchronous_full = 1, .retry_failed = 1, .lease_ms = c->lease_ms};
    sg_status st = sg_store_open(&a->store, c->db, a->loop, &so, err, errlen);
    if (st != SG_OK) {
        sg_defs_file_clear(&file);
        return st == SG_EINVAL ? 2 : 1;
    }
    rc = sg_defs_load(c, a->store, &file, err, errlen);
    if (rc != 0) return rc;
    sg_engine_options eo = {.step_timeout_ms = c->step_timeout_ms,
                            .max_inflight = c->max_inflight,
                            .max_inflight_bytes = c->max_inflight_bytes,
                            .park_after_s = c->park_after_s,
                            .retention_s = c->retention_s,
                            .on_fenced = on_fenced};
    if (sg_engine_create(&a->engine, a->loop, &eo, a->store, a->bus, a->http, sg_def_default()) !=
        SG_OK) {
        snprintf(err, errlen, "cannot create the engine");
        return 1;
    }
    sg_api_options ao = {.host = c->host,
                         .port = c->port,
                         .max_body = c->max_body,
                         .threads = c->threads,
                         .conn_timeout_s = c->conn_timeout_s,
                         .auth = a->auth,
                         .tls_cert = a->tls_cert,
                         .tls_key = a->tls_key};
    if (sg_api_create(&a->api, &ao, a->engine, a->store, a->bus, err, errlen) != SG_OK) return 2;
    /* Requests that arrive now wait in the engine's intake until the loop
     * runs, i.e. until recovery is done. */
    why[0] = '\0';
    if (sg_engine_start(a->engine, why, sizeof why) != SG_OK) {
        snprintf(err, errlen, "cannot load unfinished sagas from the store: %s", why);
        return 1;
    }
    if (sg_bus_is_log(a->bus) && sg_def_any_publish())
        sg_log(SG_LOG_WARN, "bus is log: events are printed to stdout and go nowhere else");
    return 0;
}

static void close_parts(app *a)
{
    sg_engine_halt(a->engine);
    sg_api_destroy(a->api);
    sg_store_close(a->store); /* runs the last completions into the halted engine */
    sg_engine_destroy(a->engine);
    sg_bus_destroy(a->bus);
    sg_http_client_destroy(a->http);
    uv_run(a->loop, UV_RUN_DEFAULT); /* close callbacks */
    sg_def_clear();
    sg_auth_destroy(a->auth);
    free(a->tls_cert);
    if (a->tls_key) explicit_bzero(a->tls_key, strlen(a->tls_key));
    free(a->tls_key);
    a->auth = NULL;
    a->tls_cert = a->tls_key = NULL;
}

int sg_app_run(const sg_config *cfg)
{
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    sg_log_set_level((sg_log_level)cfg->log_level);
    sg_log_set_format((sg_log_format)cfg->log_format);
    app a = {.cfg = cfg};
    char err[512] = "";
    if (open_loop(&a, err, sizeof err) != 0) {
        fprintf(stderr, "sagad: %s\n", err);
        return 1;
    }
    int rc = open_parts(&a, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "sagad: %s\n", err[0] ? err : "start-up failed");
        close_handles(&a);
        close_parts(&a);
        uv_loop_close(a.loop);
        free(a.loop);
        return rc;
    }
    sg_log(SG_LOG_INFO, "sagad listening on %s:%u (store %s, bus %s, step timeout %ld ms)",
           cfg->host, (unsigned)sg_api_port(a.api), cfg->db, sg_bus_name(a.bus),
           cfg->step_timeout_ms);
    /* Never the tokens themselves: how many, and where they come from. */
    sg_log(SG_LOG_INFO, "API: %s, %s", a.tls_cert ? "HTTPS" : "plain HTTP",
           a.auth ? (cfg->api_token_file ? "bearer tokens required (token file, SIGHUP re-reads it)"
                                         : "bearer token required")
                  : "no token required");
    uv_run(a.loop, UV_RUN_DEFAULT);
    close_parts(&a);
    if (uv_loop_close(a.loop) != 0) sg_log(SG_LOG_WARN, "loop closed with handles still open");
    free(a.loop);
    sg_log(SG_LOG_INFO, "sagad stopped");
    return 0;
}
