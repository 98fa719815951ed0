/* A scripted HTTP/1.1 server for the native transport's unit tests: it
 * answers the Nth request it reads with the script's Nth step (the last
 * step repeats), byte for byte, so that tests can send what no real server
 * library would (malformed answers, a close instead of an answer, an answer
 * and then a close). One connection at a time, on its own thread, on
 * 127.0.0.1 at a port the kernel picks. Header-only, like mini_server.h. */
#ifndef SG_TEST_RAW_SERVER_H
#define SG_TEST_RAW_SERVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

typedef enum {
    RAW_ANSWER,       /* write the answer, keep the connection */
    RAW_ANSWER_CLOSE, /* write the answer, then close */
    RAW_CLOSE,        /* read the request, close without answering */
    RAW_HOLD,         /* read the request, never answer; wait for the client to close */
} raw_action;

typedef struct raw_step {
    raw_action action;
    const char *answer;
} raw_step;

typedef struct raw_server {
    int fd;
    unsigned short port;
    char base[64]; /* "http://127.0.0.1:<port>" */
    pthread_t th;
    const raw_step *script;
    size_t nsteps;
    atomic_int stop;
    atomic_int connections; /* accepted */
    atomic_int requests;    /* read in full */
    atomic_int client_eofs; /* connections the client closed */
    pthread_mutex_t mu;
    char last[16384]; /* the last request's first bytes, NUL-terminated */
    size_t last_len;  /* its full length */
} raw_server;

static void raw_write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

/* Reads one request (headers, then Content-Length bytes) into *buf, which
 * grows; leftovers stay for the next. Returns its length, 0 at EOF. */
static size_t raw_read_request(int fd, char **buf, size_t *len, size_t *cap)
{
    for (;;) {
        char *end = *len ? memmem(*buf, *len, "\r\n\r\n", 4) : NULL;
        if (end) {
            size_t head = (size_t)(end - *buf) + 4, body = 0;
            for (char *l = *buf; l < end; l = strstr(l, "\r\n") + 2)
                if (strncasecmp(l, "Content-Length:", 15) == 0) body = strtoul(l + 15, NULL, 10);
            if (*len >= head + body) return head + body;
        }
        if (*len == *cap) {
            *cap = *cap ? *cap * 2 : 65536;
            *buf = realloc(*buf, *cap);
        }
        ssize_t r = read(fd, *buf + *len, *cap - *len);
        if (r <= 0) return 0;
        *len += (size_t)r;
    }
}

static void *raw_main(void *arg)
{
    raw_server *s = arg;
    char *buf = NULL;
    size_t cap = 0;
    while (!atomic_load(&s->stop)) {
        int c = accept(s->fd, NULL, NULL);
        if (c < 0 || atomic_load(&s->stop)) {
            if (c >= 0) close(c);
            break;
        }
        atomic_fetch_add(&s->connections, 1);
        size_t len = 0;
        for (;;) {
            size_t n = raw_read_request(c, &buf, &len, &cap);
            if (!n) {
                atomic_fetch_add(&s->client_eofs, 1);
                break;
            }
            pthread_mutex_lock(&s->mu);
            size_t k = n < sizeof s->last - 1 ? n : sizeof s->last - 1;
            memcpy(s->last, buf, k);
            s->last[k] = '\0';
            s->last_len = n;
            pthread_mutex_unlock(&s->mu);
            memmove(buf, buf + n, len - n);
            len -= n;
            int i = atomic_fetch_add(&s->requests, 1);
            const raw_step *st = &s->script[(size_t)i < s->nsteps ? (size_t)i : s->nsteps - 1];
            if (st->action == RAW_HOLD) {
                char tmp[256];
                while (read(c, tmp, sizeof tmp) > 0) {
                }
                atomic_fetch_add(&s->client_eofs, 1);
                break;
            }
            if (st->action != RAW_CLOSE) raw_write_all(c, st->answer, strlen(st->answer));
            if (st->action != RAW_ANSWER) break;
        }
        close(c);
    }
    free(buf);
    return NULL;
}

/* Returns 0 on success. `script` borrowed until raw_stop. */
static int raw_start(raw_server *s, const raw_step *script, size_t nsteps)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->script = script;
    s->nsteps = nsteps;
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(s->fd, 16) != 0 || getsockname(s->fd, (struct sockaddr *)&sa, &sl) != 0)
        return -1;
    s->port = ntohs(sa.sin_port);
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%u", (unsigned)s->port);
    return pthread_create(&s->th, NULL, raw_main, s);
}

/* The client must have closed its connections (destroyed) first. */
static void raw_stop(raw_server *s)
{
    atomic_store(&s->stop, 1);
    shutdown(s->fd, SHUT_RDWR); /* wakes accept() */
    pthread_join(s->th, NULL);
    close(s->fd);
    pthread_mutex_destroy(&s->mu);
}

#endif
