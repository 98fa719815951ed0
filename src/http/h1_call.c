/* The native transport's calls: a plain http:// URL taken apart once per
 * host (name, port, and the address itself when it is numeric), and the
 * request's line and headers built into one buffer that h1_conn.c writes
 * together with the body. URLs it does not handle (user info, odd hosts)
 * it leaves to libcurl, which parses and reports them as before. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_int.h"
#include "sg/alloc.h"

/* Host characters we pass to the resolver: letters, digits, '-', '.', '_'
 * (and ':' inside brackets). */
static int host_ok(const char *s, size_t n, int v6)
{
    if (!n) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        int ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                 ch == '-' || ch == '.' || ch == '_' || (v6 && (ch == ':' || ch == '%'));
        if (!ok) return 0;
    }
    return 1;
}

/* Fills h->name, h->port (and h->addrs for a numeric address) from its key,
 * "http://authority". SG_ETYPE when the native transport leaves it to curl. */
static sg_status host_parse(host_slots *h)
{
    const char *a = h->key + 7, *e = h->key + strlen(h->key), *hs, *he, *p;
    int v6 = 0;
    if (memchr(a, '@', (size_t)(e - a))) return SG_ETYPE;
    if (*a == '[') {
        hs = a + 1;
        he = memchr(hs, ']', (size_t)(e - hs));
        if (!he) return SG_ETYPE;
        p = he + 1;
        v6 = 1;
    } else {
        hs = a;
        he = memchr(a, ':', (size_t)(e - a));
        if (!he) he = e;
        p = he;
    }
    long port = 80;
    if (p < e) {
        if (*p != ':') return SG_ETYPE;
        p++;
        if (p < e) {
            if (e - p > 5 || strspn(p, "0123456789") != (size_t)(e - p)) return SG_ETYPE;
            port = strtol(p, NULL, 10);
        }
    }
    if (port < 1 || port > 65535 || !host_ok(hs, (size_t)(he - hs), v6)) return SG_ETYPE;
    h->name = sg_xmemdup(hs, (size_t)(he - hs));
    h->port = (int)port;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&h->addrs[0];
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&h->addrs[0];
    if ((!v6 && uv_ip4_addr(h->name, h->port, s4) == 0) ||
        (v6 && uv_ip6_addr(h->name, h->port, s6) == 0)) {
        h->naddrs = 1;
        h->addrs_until = UINT64_MAX; /* an address never needs resolving */
    }
    return SG_OK;
}

static int is_token(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (*s <= ' ' || *s >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", *s)) return 0;
    return 1;
}

static void add(sg_buf *b, const char *s, size_t n)
{
    (void)sg_buf_add(b, s, n); /* unbounded: cannot fail */
}

static void adds(sg_buf *b, const char *s)
{
    add(b, s, strlen(s));
}

static sg_status h1_prepare(sg_http_client *c, sg_http_call *call, const sg_http_request *req)
{
    (void)c;
    host_slots *h = call->host;
    if (!h->port) {
        sg_status st = host_parse(h);
        if (st != SG_OK) return st;
    }
    /* The target: the path and query; a bare authority asks for "/". */
    const char *t = req->url + strlen(h->key);
    size_t tn = strcspn(t, "#");
    for (size_t i = 0; i < tn; i++)
        if ((unsigned char)t[i] <= ' ' || t[i] == 0x7f) return SG_ETYPE;

    const char *method = req->method ? req->method : "POST";
    if (!is_token(method)) return SG_EINVAL;
    int get = strcmp(method, "GET") == 0;
    int has_ct = 0, has_host = 0, has_accept = 0;
    for (const char *const *hd = req->headers; hd && *hd; hd++) {
        if (strpbrk(*hd, "\r\n")) return SG_EINVAL; /* would inject a header */
        has_ct |= sg__http_header_is(*hd, "Content-Type");
        has_host |= sg__http_header_is(*hd, "Host");
        has_accept |= sg__http_header_is(*hd, "Accept");
    }
    call->h1.body = get ? NULL : req->body;
    call->h1.body_len = get || !req->body ? 0 : req->body_len;
    call->h1.no_body = strcmp(method, "HEAD") == 0;
    call->h1.sent = call->h1.retried = call->h1.addr = 0;
    call->h1.conn = NULL;

    sg_buf *b = &call->h1.head;
    sg_buf_reset(b);
    adds(b, method);
    add(b, " ", 1);
    if (*t != '/') add(b, "/", 1);
    add(b, t, tn);
    adds(b, " HTTP/1.1\r\n");
    if (!has_host) {
        adds(b, "Host: ");
        adds(b, h->key + 7);
        add(b, "\r\n", 2);
    }
    if (!has_accept) adds(b, "Accept: */*\r\n");
    if (!has_ct) adds(b, "Content-Type: application/json\r\n");
    if (!get) {
        char len[48];
        int n = snprintf(len, sizeof len, "Content-Length: %zu\r\n", call->h1.body_len);
        add(b, len, (size_t)n);
    }
    for (const char *const *hd = req->headers; hd && *hd; hd++) {
        /* As with curl, "Name:" with nothing after it sends no such header. */
        const char *colon = strchr(*hd, ':');
        if (colon && colon[1 + strspn(colon + 1, " \t")] == '\0') continue;
        adds(b, *hd);
        add(b, "\r\n", 2);
    }
    add(b, "\r\n", 2);
    return SG_OK;
}

static void h1_release(sg_http_call *call)
{
    sg_buf_reset(&call->h1.head);
    call->h1.body = NULL;
    call->h1.conn = NULL;
}

const http_ops sg__http_h1_ops = {
    .prepare = h1_prepare,
    .start = sg__h1_start,
    .abort = sg__h1_abort,
    .release = h1_release,
};
