/* The stubs' HTTP server, libmicrohttpd side: the daemon's lifecycle, pooled
 * request structs, capped bodies, and delays by suspending the connection. */
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <utlist.h>

#include "sg/alloc.h"
#include "server_int.h"

#define MAX_BODY ((size_t)2 << 20)        /* bigger request bodies get 413 */
#define MAX_OUT ((size_t)16 << 20)        /* one answer we build (image_id copy) */
#define POOL_MAX 4096                     /* idle request structs kept */
#define POOL_KEEP_BUF ((size_t)256 << 10) /* bigger buffers are not kept idle */
#define RING_ENTRIES 10000
#define RING_BYTES ((size_t)64 << 20)
#define RING_BODY ((size_t)1 << 20)
#define CONN_LIMIT 20000
#define CONN_TIMEOUT_S 600 /* long enough for hang tests */

/* ---- request pool -------------------------------------------------------- */

static stub_req *req_get(stub_server *s)
{
    pthread_mutex_lock(&s->pool_lock);
    stub_req *r = s->pool;
    if (r) {
        LL_DELETE(s->pool, r); /* the head: O(1) */
        s->pool_n--;
    }
    pthread_mutex_unlock(&s->pool_lock);
    if (!r) {
        r = sg_xmalloc(sizeof *r);
        sg_buf_init(&r->body, MAX_BODY);
        sg_buf_init(&r->out, MAX_OUT);
    }
    r->next = NULL;
    r->conn = NULL;
    r->rt = R_NOTFOUND;
    r->name[0] = r->method[0] = '\0';
    r->received = r->too_big = r->fail = r->out_status = 0;
    memset(&r->spec, 0, sizeof r->spec);
    return r;
}

static void req_put(stub_server *s, stub_req *r)
{
    /* Keep small buffers for the next request on the pool; a one-off big
     * body should not pin megabytes per idle struct. */
    if (r->body.cap > POOL_KEEP_BUF)
        sg_buf_free(&r->body);
    else
        sg_buf_reset(&r->body);
    if (r->out.cap > POOL_KEEP_BUF)
        sg_buf_free(&r->out);
    else
        sg_buf_reset(&r->out);
    pthread_mutex_lock(&s->pool_lock);
    if (s->pool_n < POOL_MAX) {
        LL_PREPEND(s->pool, r);
        s->pool_n++;
        r = NULL;
    }
    pthread_mutex_unlock(&s->pool_lock);
    if (r) {
        sg_buf_free(&r->body);
        sg_buf_free(&r->out);
        free(r);
    }
}

/* ---- delays ------------------------------------------------------------ */

/* Timer callbacks, both under the timer lock (see stub_timer_add). */
static void arm_suspend(void *arg)
{
    MHD_suspend_connection(((stub_req *)arg)->conn);
}

static void fire_resume(void *arg)
{
    /* MHD calls the handler again, which answers (or gives up a hang). */
    MHD_resume_connection(((stub_req *)arg)->conn);
}

int stub__delay(stub_server *s, stub_req *r, int64_t ms)
{
    return stub_timer_add(s->timer, ms, arm_suspend, fire_resume, r) == SG_OK;
}

/* ---- MHD callbacks --------------------------------------------------------- */

/* The first *con_cls of a request whose path hides a NUL (%00): MHD
 * decodes the path in place and hands it over as a C string, so
 * "/svc/a%00b" would read as "/svc/a". The URI log callback sees the
 * target before decoding; such a request is answered 404. A '%' either
 * starts a valid escape or is literal, so "%00" is exactly a NUL. */
static int nul_marker;

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)cls;
    (void)c;
    return uri && memmem(uri, strcspn(uri, "?"), "%00", 3) ? &nul_marker : NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    (void)version;
    stub_server *s = cls;
    stub_req *r = *con_cls;
    int nul = r == (void *)&nul_marker;
    if (nul) r = NULL;
    if (!r) {
        /* Headers are in. Count here so /_stats includes every request a
         * service received, even those it then fails or rejects. */
        r = req_get(s);
        r->conn = c;
        r->rt = nul ? R_NOTFOUND : stub__route_of(url, r->name);
        *con_cls = r;
        if (stub__is_service(r->rt)) atomic_fetch_add(&s->count[stub__svc_of(r->rt)], 1);
        if (r->rt == R_SVC) atomic_fetch_add(&s->svc_count, 1);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > MAX_BODY) {
            r->received = r->too_big = 1;
            return MHD_queue_response(c, 413, s->r_413); /* MHD closes: the body stays unread */
        }
        return MHD_YES;
    }
    if (*size) {
        /* Past the cap (chunked uploads have no Content-Length) the rest is
         * read and thrown away, then answered 413. */
        if (!r->too_big && sg_buf_add(&r->body, data, *size) != SG_OK) {
            r->too_big = 1;
            sg_buf_free(&r->body);
        }
        *size = 0;
        return MHD_YES;
    }
    if (r->received) return stub__answer_service(s, r); /* resumed after a delay */
    r->received = 1;
    return stub__answer(s, r, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)c;
    (void)toe;
    if (*con_cls && *con_cls != (void *)&nul_marker) req_put(cls, *con_cls);
    *con_cls = NULL;
}

/* MHD reports every MHD_NO from the handler as an internal error, but
 * drop and hang return it on purpose: keep stderr for real problems. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    if (strncmp(line, "Application reported internal error", 35) == 0) return;
    fprintf(stderr, "sta-stubs: %s", line);
}

/* ---- lifecycle ------------------------------------------------------------- */

sg_status stub_server_start(stub_server **out, const stub_server_opts *o, char *err, size_t errlen)
{
    *out = NULL;
    struct addrinfo *ai = NULL;
    stub_server *s = sg_xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->cfg_lock, NULL);
    pthread_mutex_init(&s->pool_lock, NULL);
    s->quiet = o->quiet;
    memcpy(s->cfg, o->defaults, sizeof s->cfg);
    s->names = stub_names_create();

    if (stub__responses_create(s) != SG_OK) {
        snprintf(err, errlen, "cannot create responses");
        goto fail;
    }
    if (stub_ring_create(&s->ring, RING_ENTRIES, RING_BYTES, RING_BODY, o->record_file, err,
                         errlen) != SG_OK)
        goto fail;
    if (stub_timer_create(&s->timer) != SG_OK) {
        snprintf(err, errlen, "cannot start the timer thread");
        goto fail;
    }

    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    int gai = getaddrinfo(o->host, o->port, &hints, &ai);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", o->host, gai_strerror(gai));
        goto fail;
    }

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL : MHD_USE_POLL;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_SOCK_ADDR, 0, ai->ai_addr},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, s},
        {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, CONN_LIMIT, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, CONN_TIMEOUT_S, NULL},
        {MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096, NULL},
        /* Must stay last: dropped for a single thread, where MHD wants no pool. */
        {MHD_OPTION_THREAD_POOL_SIZE, o->threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    if (o->threads <= 1) {
        size_t last = sizeof opts / sizeof *opts - 2;
        opts[last] = opts[last + 1];
    }
    /* The logger goes first so that MHD never uses its own. */
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER,
                            mhd_log, NULL, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!s->d) {
        snprintf(err, errlen, "cannot listen on %s:%s", o->host, o->port);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : atoi(o->port);
    freeaddrinfo(ai);
    *out = s;
    return SG_OK;
fail:
    if (ai) freeaddrinfo(ai);
    stub_server_stop(s);
    return SG_EIO;
}

int stub_server_port(const stub_server *s)
{
    return s->port;
}

void stub_server_stop(stub_server *s)
{
    if (!s) return;
    /* Order matters: MHD refuses to stop with suspended connections, so the
     * timer resumes every delayed or hanging one (and refuses new ones)
     * before the daemon goes. */
    stub_timer_stop(s->timer);
    if (s->d) MHD_stop_daemon(s->d);
    stub_timer_destroy(s->timer);
    stub_ring_destroy(s->ring);
    stub_names_destroy(s->names);
    stub__responses_destroy(s);
    while (s->pool) {
        stub_req *r = s->pool;
        s->pool = r->next;
        sg_buf_free(&r->body);
        sg_buf_free(&r->out);
        free(r);
    }
    pthread_mutex_destroy(&s->cfg_lock);
    pthread_mutex_destroy(&s->pool_lock);
    free(s);
}
