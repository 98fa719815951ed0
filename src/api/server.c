/* The HTTP server on libmicrohttpd: routing of every request to reads.c or
 * start.c, the listener, and the server's lifecycle.
 *
 * Threads: MHD's pool threads run on_request. Reads (GET) are answered
 * there with a per-thread store reader; POST /saga is handed to the engine
 * and its connection suspended until the loop's outcome resumes it
 * (start.c). */
#include "sg/api.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api_int.h"
#include "server_int.h"
#include "sg/alloc.h"
#include "sg/util.h"

#define DESTROY_FLUSH_MS 200 /* sg_api_destroy waits this long at most for answers to go out */
#define CONN_MEMORY_LIMIT ((size_t)64 << 10)

/* ---- MHD callbacks ------------------------------------------------------ */

/* Marks a read request between MHD's first call (headers) and the call
 * that ends its body: answering on the first call would make MHD close
 * the connection ("early response"), losing keep-alive. */
static int read_marker;

/* A request whose path hides a NUL (%00). MHD decodes the path in place
 * and hands it over as a C string, so "/saga/<id>%00junk" would read as
 * "/saga/<id>" and serve that saga; MHD 0.9.75 does not say how long the
 * decoded path really is. The URI log callback sees the request target
 * before decoding and marks such requests (nul_marker, the first *req_cls;
 * nul_read_marker from the first call on); they are answered 404. */
static int nul_marker, nul_read_marker;

static int is_marker(const void *p)
{
    return p == &read_marker || p == &nul_marker || p == &nul_read_marker;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)cls;
    (void)c;
    if (!uri) return NULL;
    /* A '%' is either the start of a valid escape (two hex digits follow)
     * or literal, never inside another escape, so "%00" in the raw path is
     * exactly a NUL in the decoded one. The query is MHD's business: its
     * arguments come with their decoded lengths (query_arg). */
    size_t path_len = strcspn(uri, "?");
    return memmem(uri, path_len, "%00", 3) ? &nul_marker : NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls)
{
    sg_api *a = cls;
    (void)version;
    const char *id = NULL, *allow = NULL;
    sg_api_route_kind route = sg_api_route(method, url, &id, &allow);
    sg__metrics_route(route, url, id, allow); /* what this thread's answer counts under */

    /* The first call (headers in, body not read): nothing happens for a
     * request without the right token. */
    enum MHD_Result refused;
    if ((!*req_cls || *req_cls == &nul_marker) && sg__auth_gate(a, c, route, &refused))
        return refused;
    if (*req_cls == &nul_marker) {
        *req_cls = &nul_read_marker;
        return MHD_YES;
    }
    if (!*req_cls) {
        if (route == SG_ROUTE_START || route == SG_ROUTE_REDRIVE || route == SG_ROUTE_REDELIVER)
            return sg__start_begin(a, c, req_cls, route, id);
        *req_cls = &read_marker;
        return MHD_YES;
    }
    if (!is_marker(*req_cls)) return sg__start_continue(a, c, *req_cls, upload, upload_size);
    if (*upload_size) {
        *upload_size = 0; /* a body on a read request: ignored */
        return MHD_YES;
    }
    if (*req_cls == &nul_read_marker)
        return sg__send_detail(c, MHD_HTTP_NOT_FOUND,
                               route == SG_ROUTE_GET ? "Saga no encontrada" : "Not Found", NULL);

    switch (route) {
    case SG_ROUTE_GET:
        return sg__serve_get(a, c, id);
    case SG_ROUTE_LIST:
        return sg__serve_list(a, c);
    case SG_ROUTE_EVENTS:
        return sg__serve_events(a, c);
    case SG_ROUTE_DEFINITIONS:
        return sg__serve_definitions(a, c);
    case SG_ROUTE_HEALTH:
        return sg__send_literal(c, MHD_HTTP_OK, "{\"status\":\"ok\"}");
    case SG_ROUTE_READY:
        return sg__serve_ready(a, c);
    case SG_ROUTE_METRICS:
        return sg__serve_metrics(a, c);
    case SG_ROUTE_ASSET:
        return sg__send_asset(c, sg_asset_find(url));
    case SG_ROUTE_REDIRECT:
        return sg__send_redirect(c, allow);
    case SG_ROUTE_BAD_METHOD:
        return sg__send_detail(c, MHD_HTTP_METHOD_NOT_ALLOWED, "Method Not Allowed", allow);
    case SG_ROUTE_START: /* not reached: these have a start_ctx */
    case SG_ROUTE_REDRIVE:
    case SG_ROUTE_REDELIVER:
    case SG_ROUTE_NOT_FOUND:
    default:
        return sg__send_detail(c, MHD_HTTP_NOT_FOUND, "Not Found", NULL);
    }
}

/* MHD is done with a request (answered, or the connection went away). */
static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    sg_api *a = cls;
    start_ctx *x = *req_cls;
    (void)c;
    (void)toe;
    if (!x || is_marker(x)) return;
    *req_cls = NULL;
    sg__start_completed(a, x);
}

/* MHD's accept policy: once quiesced, every new connection is closed as
 * soon as it is accepted, so a new client fails at once while the
 * connections already open drain. MHD_quiesce_daemon would take the
 * listening socket out of the workers' epoll sets instead, but in
 * libmicrohttpd 0.9.75 that races with a worker removing it too, and the
 * loser's epoll_ctl error aborts the process ("Failed to remove listen FD
 * from epoll set", seen in CI at shutdown). */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t len)
{
    sg_api *a = cls;
    (void)addr;
    (void)len;
    return atomic_load(&a->quiesced) ? MHD_NO : MHD_YES;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    (void)cls;
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    sg_log(SG_LOG_WARN, "http: %s", line);
}

/* ---- lifecycle ------------------------------------------------------------ */

/* Binds and listens on host:port ourselves (rather than letting MHD) so a
 * failure names its cause: unknown host, port in use, permission. */
static sg_status open_listener(const char *host, uint16_t port, int *out, char *err, size_t errlen)
{
    char hostbuf[256];
    char portstr[8];
    struct addrinfo hints, *res = NULL;
    int fd = -1, saved = 0;

    if (!host || !*host || strcmp(host, "*") == 0) {
        host = NULL;
    } else {
        /* Accept "[::1]" as well as "::1". */
        size_t hl = strlen(host);
        if (hl >= sizeof hostbuf) {
            snprintf(err, errlen, "listen host too long");
            goto fail;
        }
        if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
            memcpy(hostbuf, host + 1, hl - 2);
            hostbuf[hl - 2] = '\0';
        } else {
            memcpy(hostbuf, host, hl + 1);
        }
        host = hostbuf;
    }
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve listen address '%s': %s", host ? host : "*",
                 gai_strerror(rc));
        goto fail;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0) break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s:%u: %s", host ? host : "*", (unsigned)port,
                 strerror(saved ? saved : EADDRNOTAVAIL));
        goto fail;
    }
    freeaddrinfo(res);
    *out = fd;
    return SG_OK;
fail:
    if (res) freeaddrinfo(res);
    return SG_EIO;
}

sg_status sg_api_create(sg_api **out, const sg_api_options *opt, sg_engine *engine, sg_store *store,
                        sg_bus *bus, char *err, size_t errlen)
{
    sg_api *a = NULL;
    sg_status st = SG_EINVAL;
    char localerr[256];
    if (!err || !errlen) {
        err = localerr;
        errlen = sizeof localerr;
    }
    err[0] = '\0';
    *out = NULL;
    if (!opt) {
        snprintf(err, errlen, "no API options");
        goto fail;
    }

    a = sg_xcalloc(1, sizeof *a);
    a->engine = engine;
    a->store = store;
    a->bus = bus;
    a->max_body = opt->max_body ? opt->max_body : (size_t)1 << 20;
    atomic_init(&a->pending, 0);
    atomic_init(&a->quiesced, 0);
    pthread_mutex_init(&a->readers_mu, NULL);
    if (pthread_key_create(&a->reader_key, NULL) != 0) {
        snprintf(err, errlen, "pthread_key_create failed");
        goto fail;
    }
    a->have_key = 1;

    a->auth = opt->auth;
    if (opt->tls_cert || opt->tls_key) {
        if (!opt->tls_cert || !opt->tls_key) {
            snprintf(err, errlen, "HTTPS needs both a certificate and a key");
            st = SG_EINVAL;
            goto fail;
        }
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            snprintf(err, errlen, "this libmicrohttpd was built without TLS: cannot serve HTTPS");
            st = SG_EINVAL;
            goto fail;
        }
        a->tls_cert = sg_xstrdup(opt->tls_cert);
        a->tls_key = sg_xstrdup(opt->tls_key);
    }

    int fd = -1;
    st = open_listener(opt->host, opt->port, &fd, err, errlen);
    if (st != SG_OK) goto fail;
    st = SG_EIO;

    unsigned threads = opt->threads ? opt->threads : 2;
    unsigned timeout = opt->conn_timeout_s ? opt->conn_timeout_s : 30;
    unsigned maxconn = opt->max_connections ? opt->max_connections : 16384;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | MHD_USE_ITC;
    if (a->tls_cert) flags |= MHD_USE_TLS;
    flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL : MHD_USE_POLL;

    struct MHD_OptionItem ops[] = {
        {MHD_OPTION_LISTEN_SOCKET, fd, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)timeout, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)maxconn, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)CONN_MEMORY_LIMIT, NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, a},
        {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, NULL},
        /* Last so that a single-thread daemon can end the list here. */
        {threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (intptr_t)threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    /* HTTPS: MHD hands the PEM text to GnuTLS at start (an empty list
     * without it). */
    struct MHD_OptionItem tls_ops[] = {
        {a->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, a->tls_cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, a->tls_key},
        {MHD_OPTION_END, 0, NULL},
    };
    /* The logger goes first so that MHD uses it for every later message. */
    a->mhd = MHD_start_daemon(flags, 0, on_accept, a, on_request, a, MHD_OPTION_EXTERNAL_LOGGER,
                              on_mhd_log, NULL, MHD_OPTION_ARRAY, ops, MHD_OPTION_ARRAY, tls_ops,
                              MHD_OPTION_END);
    if (!a->mhd && a->tls_cert) {
        /* GnuTLS refused the pair (MHD logged its reason): a bad value. */
        snprintf(err, errlen,
                 "cannot serve HTTPS on %s:%u: the TLS certificate or key is not usable "
                 "(PEM, matching pair)",
                 opt->host ? opt->host : "*", (unsigned)opt->port);
        st = SG_EINVAL;
        goto fail;
    }
    if (!a->mhd) {
        /* MHD closes the listen socket on some failure paths and not on
         * others; closing it again could hit another thread's descriptor,
         * so at worst one descriptor leaks on a failed start. */
        snprintf(err, errlen, "cannot start the HTTP server on %s:%u", opt->host ? opt->host : "*",
                 (unsigned)opt->port);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_BIND_PORT);
    a->port = info && info->port ? info->port : opt->port;
    *out = a;
    return SG_OK;

fail:
    sg_api_destroy(a);
    return st;
}

uint16_t sg_api_port(const sg_api *a)
{
    return a ? a->port : 0;
}

void sg_api_quiesce(sg_api *a)
{
    /* on_accept refuses from now on; open connections are served. */
    if (a) atomic_store(&a->quiesced, 1);
}

size_t sg_api_pending(const sg_api *a)
{
    return a ? atomic_load(&((sg_api *)a)->pending) : 0;
}

void sg_api_destroy(sg_api *a)
{
    if (!a) return;
    sg__start_close(a);

    /* MHD_stop_daemon closes connections at once, answers still unsent:
     * give the ones just queued (and any other answer on its way out) a
     * short, bounded while to leave. pending drops as each is sent. */
    for (int ms = 0; a->mhd && ms < DESTROY_FLUSH_MS && atomic_load(&a->pending) > 0; ms++)
        usleep(1000);

    if (a->mhd) MHD_stop_daemon(a->mhd);

    /* The MHD threads are gone: nobody uses the readers any more. */
    sg__api_close_readers(a);
    if (a->have_key) pthread_key_delete(a->reader_key);
    pthread_mutex_destroy(&a->readers_mu);
    free(a->tls_cert);
    if (a->tls_key) explicit_bzero(a->tls_key, strlen(a->tls_key));
    free(a->tls_key);
    free(a);
}
