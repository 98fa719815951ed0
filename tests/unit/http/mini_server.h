/* A tiny HTTP server for unit tests: libmicrohttpd on 127.0.0.1, port 0
 * (the kernel picks a free one, read back after start), one thread per
 * connection so that slow answers do not block the others.
 *
 * Routes (any method):
 *   /echo            200, the request body back, Content-Type application/json
 *   /status/N        status N, body {"status":N}
 *   /delay/MS        sleeps MS (interruptible by stop), then 200 {}
 *   /big/N           200 with N bytes of 'x' and a Content-Length
 *   /chunked/N       200 with N bytes of 'x', chunked (no length known up front)
 *   /drop            closes the connection without answering
 *   /redirect        302 to /echo
 *   anything else    404
 * Every request's body and a few headers are remembered (last request wins);
 * accepted connections and requests are counted.
 *
 * Header-only (static functions) so that tests of other modules can include
 * it as "http/mini_server.h". */
#ifndef SG_TEST_MINI_SERVER_H
#define SG_TEST_MINI_SERVER_H

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct mini_server {
    struct MHD_Daemon *d;
    unsigned short port;
    char base[64];          /* "http://127.0.0.1:<port>" */
    atomic_int connections; /* TCP connections accepted */
    atomic_int requests;    /* requests answered (or dropped) */
    atomic_int stopping;
    pthread_mutex_t mu; /* guards the last_* fields */
    char *last_body;    /* malloc'd */
    size_t last_body_len;
    char last_saga[128], last_event[128], last_idem[128], last_ctype[128], last_expect[64];
} mini_server;

/* Per request: the body as it arrives. */
typedef struct mini_req {
    char *body;
    size_t len;
} mini_req;

static void mini_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void mini_copy_header(struct MHD_Connection *c, const char *name, char *dst, size_t n)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
    snprintf(dst, n, "%s", v ? v : "");
}

static enum MHD_Result mini_answer(struct MHD_Connection *c, unsigned status, const char *body,
                                   size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static ssize_t mini_chunk(void *cls, uint64_t pos, char *buf, size_t max)
{
    size_t total = (size_t)(uintptr_t)cls;
    if (pos >= total) return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = total - (size_t)pos;
    if (n > max) n = max;
    if (n > 1000) n = 1000; /* several chunks */
    memset(buf, 'x', n);
    return (ssize_t)n;
}

static enum MHD_Result mini_handler(void *cls, struct MHD_Connection *c, const char *url,
                                    const char *method, const char *version, const char *upload,
                                    size_t *upload_size, void **ctx)
{
    (void)method;
    (void)version;
    mini_server *s = cls;
    mini_req *rq = *ctx;
    if (!rq) {
        rq = calloc(1, sizeof *rq);
        *ctx = rq;
        if (strcmp(url, "/drop") == 0) {
            atomic_fetch_add(&s->requests, 1);
            return MHD_NO; /* MHD closes the connection */
        }
        return MHD_YES;
    }
    if (*upload_size) {
        rq->body = realloc(rq->body, rq->len + *upload_size + 1);
        memcpy(rq->body + rq->len, upload, *upload_size);
        rq->len += *upload_size;
        rq->body[rq->len] = '\0';
        *upload_size = 0;
        return MHD_YES;
    }

    pthread_mutex_lock(&s->mu);
    free(s->last_body);
    s->last_body = malloc(rq->len + 1);
    if (rq->len) memcpy(s->last_body, rq->body, rq->len);
    s->last_body[rq->len] = '\0';
    s->last_body_len = rq->len;
    mini_copy_header(c, "X-Saga-Id", s->last_saga, sizeof s->last_saga);
    mini_copy_header(c, "X-Event-Id", s->last_event, sizeof s->last_event);
    mini_copy_header(c, "Idempotency-Key", s->last_idem, sizeof s->last_idem);
    mini_copy_header(c, "Content-Type", s->last_ctype, sizeof s->last_ctype);
    mini_copy_header(c, "Expect", s->last_expect, sizeof s->last_expect);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->requests, 1);

    char tmp[64];
    long n;
    if (strcmp(url, "/echo") == 0) return mini_answer(c, 200, rq->body ? rq->body : "", rq->len);
    if (sscanf(url, "/status/%ld", &n) == 1) {
        int k = snprintf(tmp, sizeof tmp, "{\"status\":%ld}", n);
        return mini_answer(c, (unsigned)n, tmp, (size_t)k);
    }
    if (sscanf(url, "/delay/%ld", &n) == 1) {
        for (long waited = 0; waited < n && !atomic_load(&s->stopping); waited += 5)
            mini_sleep_ms(5);
        return mini_answer(c, 200, "{}", 2);
    }
    if (sscanf(url, "/big/%ld", &n) == 1) {
        char *big = malloc((size_t)n + 1);
        memset(big, 'x', (size_t)n);
        enum MHD_Result r = mini_answer(c, 200, big, (size_t)n);
        free(big);
        return r;
    }
    if (sscanf(url, "/chunked/%ld", &n) == 1) {
        struct MHD_Response *r = MHD_create_response_from_callback(
            MHD_SIZE_UNKNOWN, 1000, mini_chunk, (void *)(uintptr_t)n, NULL);
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (strcmp(url, "/redirect") == 0) {
        struct MHD_Response *r =
            MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Location", "/echo");
        enum MHD_Result ret = MHD_queue_response(c, 302, r);
        MHD_destroy_response(r);
        return ret;
    }
    return mini_answer(c, 404, "{\"detail\":\"not found\"}", 22);
}

static void mini_completed(void *cls, struct MHD_Connection *c, void **ctx,
                           enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    mini_req *rq = *ctx;
    if (rq) {
        free(rq->body);
        free(rq);
    }
    *ctx = NULL;
}

static void mini_notify(void *cls, struct MHD_Connection *c, void **socket_ctx,
                        enum MHD_ConnectionNotificationCode code)
{
    (void)c;
    (void)socket_ctx;
    mini_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) atomic_fetch_add(&s->connections, 1);
}

/* Returns 0 on success. */
static int mini_start(mini_server *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = 0;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                                MHD_USE_POLL | MHD_USE_ERROR_LOG,
                            0, NULL, NULL, mini_handler, s, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, mini_completed, s,
                            MHD_OPTION_NOTIFY_CONNECTION, mini_notify, s,
                            MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    if (!s->d) return -1;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : 0;
    if (!s->port) return -1;
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%u", (unsigned)s->port);
    return 0;
}

static void mini_stop(mini_server *s)
{
    atomic_store(&s->stopping, 1);
    if (s->d) MHD_stop_daemon(s->d);
    s->d = NULL;
    free(s->last_body);
    s->last_body = NULL;
    pthread_mutex_destroy(&s->mu);
}

/* A port on 127.0.0.1 where nothing listens: bound but not listening, so
 * connecting is refused and nobody else can take it meanwhile. Returns the
 * socket (close it afterwards) and writes the port. */
static int mini_refusing_port(unsigned short *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

#endif
