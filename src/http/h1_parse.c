/* HTTP/1.x response parser (RFC 9112) for the native transport. Lines are
 * parsed in place when a read holds them whole, and gathered in a capped
 * buffer only when a read ends inside one. The body goes straight into the
 * caller's capped buffer. */
#include <string.h>
#include <strings.h>

#include "h1_parse.h"

#define CHUNK_LINE_MAX 4096 /* a chunk-size line with its extensions */

enum {
    S_STATUS,
    S_HEADER,
    S_BODY_LEN,
    S_BODY_CLOSE,
    S_CHUNK_SIZE,
    S_CHUNK_DATA,
    S_CHUNK_END,
    S_TRAILER,
    S_DONE,
    S_ERROR,
};

void sg__h1_init(h1_parser *p, sg_buf *body)
{
    memset(p, 0, sizeof *p);
    sg_buf_init(&p->line, H1_HEADERS_MAX);
    p->body = body;
}

void sg__h1_reset(h1_parser *p, sg_buf *body)
{
    sg_buf line = p->line;
    sg_buf_reset(&line);
    memset(p, 0, sizeof *p);
    p->line = line;
    p->body = body;
}

void sg__h1_free(h1_parser *p)
{
    sg_buf_free(&p->line);
}

int sg__h1_started(const h1_parser *p)
{
    return p->got_bytes;
}

static h1_rc fail(h1_parser *p, const char *why)
{
    p->state = S_ERROR;
    p->error = why;
    return H1_ERROR;
}

/* A line whose bytes in this read are at most `cap` (its terminator
 * included): 1 with *line and
 * *len (no CRLF) when complete, 0 when the bytes went into the line buffer
 * to wait for the rest, -1 when over cap, -2 for a bare CR. *adv gets the
 * bytes consumed. */
static int take_line(h1_parser *p, const char *d, size_t n, size_t cap, size_t *adv,
                     const char **line, size_t *len)
{
    const char *nl = memchr(d, '\n', n);
    size_t take = nl ? (size_t)(nl - d) + 1 : n;
    if (take > cap) return -1;
    *adv = take;
    if (!nl || p->line.len) {
        if (sg_buf_add(&p->line, d, take) != SG_OK) return -1;
        if (!nl) return 0;
        *line = p->line.ptr;
        *len = p->line.len;
    } else {
        *line = d;
        *len = take;
    }
    (*len)--;
    if (*len && (*line)[*len - 1] == '\r') (*len)--;
    /* A CR anywhere else could be read as a line end by someone else. */
    if (memchr(*line, '\r', *len)) return -2;
    return 1;
}

static int is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Visible text, spaces and obs-text: no control characters. */
static int is_text(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return 0;
    }
    return 1;
}

static int status_line(h1_parser *p, const char *l, size_t n)
{
    if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || (l[7] != '0' && l[7] != '1') || l[8] != ' ')
        return 0;
    long st = 0;
    for (int i = 9; i < 12; i++) {
        if (l[i] < '0' || l[i] > '9') return 0;
        st = st * 10 + (l[i] - '0');
    }
    if (st < 100 || (n > 12 && l[12] != ' ') || !is_text(l + 12, n - 12)) return 0;
    p->status = st;
    p->keep_alive = l[7] == '1'; /* HTTP/1.0: never reused */
    return 1;
}

/* Splits "Name: value" (value without surrounding whitespace); 0 if the
 * syntax is not a field line's. */
static int field(const char *l, size_t n, size_t *name_len, const char **v, size_t *vlen)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)l[i]))
        i++;
    if (i == 0 || i == n || l[i] != ':') return 0; /* also "Name :" */
    *name_len = i;
    const char *s = l + i + 1, *e = l + n;
    while (s < e && is_ows(*s))
        s++;
    while (e > s && is_ows(e[-1]))
        e--;
    if (!is_text(s, (size_t)(e - s))) return 0;
    *v = s;
    *vlen = (size_t)(e - s);
    return 1;
}

static int name_is(const char *l, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(l, name, n) == 0;
}

/* Whether the comma-separated token list v holds tok. */
static int has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    const char *e = v + n;
    while (v < e) {
        while (v < e && (is_ows(*v) || *v == ','))
            v++;
        const char *s = v;
        while (v < e && *v != ',')
            v++;
        const char *t = v;
        while (t > s && is_ows(t[-1]))
            t--;
        if ((size_t)(t - s) == tl && strncasecmp(s, tok, tl) == 0) return 1;
    }
    return 0;
}

static h1_rc header_line(h1_parser *p, const char *l, size_t n)
{
    size_t nl, vl;
    const char *v;
    if (is_ows(l[0])) return fail(p, "obsolete line folding in response headers");
    if (!field(l, n, &nl, &v, &vl)) return fail(p, "malformed response header");
    if (name_is(l, nl, "Content-Length")) {
        uint64_t x = 0;
        if (vl == 0 || vl > 18) return fail(p, "bad Content-Length");
        for (size_t i = 0; i < vl; i++) {
            if (v[i] < '0' || v[i] > '9') return fail(p, "bad Content-Length");
            x = x * 10 + (uint64_t)(v[i] - '0');
        }
        if (p->have_length && p->length != x) return fail(p, "conflicting Content-Length");
        p->have_length = 1;
        p->length = x;
    } else if (name_is(l, nl, "Transfer-Encoding")) {
        /* We ask for no coding; chunked is the only one a server may add. */
        if (p->chunked || vl != 7 || strncasecmp(v, "chunked", 7) != 0)
            return fail(p, "unsupported Transfer-Encoding");
        p->chunked = 1;
    } else if (name_is(l, nl, "Connection")) {
        if (has_token(v, vl, "close")) p->keep_alive = 0;
    } else if (name_is(l, nl, "Retry-After") && !p->retry_after_seen) {
        p->retry_after_seen = 1; /* the first one counts, as with curl */
        if (vl <= H1_RETRY_AFTER_MAX) {
            memcpy(p->retry_after, v, vl);
            p->retry_after[vl] = '\0';
        }
    }
    return H1_MORE;
}

/* The empty line after the headers: what frames the body. */
static h1_rc headers_end(h1_parser *p)
{
    if (p->status < 200) {
        if (p->status == 101) return fail(p, "unexpected 101 Switching Protocols");
        /* Interim answer (100 Continue, 103 Early Hints): the real one follows. */
        int no_body = p->no_body, got = p->got_bytes;
        sg__h1_reset(p, p->body);
        p->no_body = no_body;
        p->got_bytes = got;
        return H1_MORE;
    }
    if (p->chunked && p->have_length) p->keep_alive = 0; /* framing disputed: do not reuse */
    if (p->no_body || p->status == 204 || p->status == 304) {
        p->state = S_DONE;
        return H1_DONE;
    }
    if (p->chunked) {
        p->state = S_CHUNK_SIZE;
    } else if (p->have_length) {
        if (p->length > p->body->max - p->body->len) return H1_TOO_BIG;
        p->left = p->length;
        p->state = p->left ? S_BODY_LEN : S_DONE;
    } else {
        p->keep_alive = 0; /* the close ends the body */
        p->state = S_BODY_CLOSE;
    }
    return p->state == S_DONE ? H1_DONE : H1_MORE;
}

static h1_rc chunk_size(h1_parser *p, const char *l, size_t n)
{
    size_t i = 0;
    uint64_t x = 0;
    for (; i < n; i++) {
        char ch = l[i];
        int d = ch >= '0' && ch <= '9'   ? ch - '0'
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                         : -1;
        if (d < 0) break;
        if (i >= 15) return fail(p, "bad chunk size");
        x = x * 16 + (uint64_t)d;
    }
    if (i == 0) return fail(p, "bad chunk size");
    while (i < n && is_ows(l[i]))
        i++;
    /* Chunk extensions are ignored, but must be text. */
    if (i < n && (l[i] != ';' || !is_text(l + i, n - i))) return fail(p, "bad chunk size");
    if (x == 0) {
        p->state = S_TRAILER;
        p->head_bytes = 0;
        return H1_MORE;
    }
    if (x > p->body->max - p->body->len) return H1_TOO_BIG;
    p->left = x;
    p->state = S_CHUNK_DATA;
    return H1_MORE;
}

/* One line of a line-based state. */
static h1_rc on_line(h1_parser *p, const char *l, size_t n)
{
    switch (p->state) {
    case S_STATUS:
        if (!status_line(p, l, n)) return fail(p, "malformed status line");
        p->state = S_HEADER;
        return H1_MORE;
    case S_HEADER:
        return n ? header_line(p, l, n) : headers_end(p);
    case S_CHUNK_SIZE:
        return chunk_size(p, l, n);
    case S_CHUNK_END:
        if (n) return fail(p, "chunk not followed by CRLF");
        p->state = S_CHUNK_SIZE;
        return H1_MORE;
    default: /* S_TRAILER: fields we do not use, but they must be fields */
        if (!n) {
            p->state = S_DONE;
            return H1_DONE;
        }
        size_t nl, vl;
        const char *v;
        if (is_ows(l[0]) || !field(l, n, &nl, &v, &vl)) return fail(p, "malformed trailer");
        return H1_MORE;
    }
}

static h1_rc body_bytes(h1_parser *p, const char *d, size_t n)
{
    return sg_buf_add(p->body, d, n) == SG_OK ? H1_MORE : H1_TOO_BIG;
}

h1_rc sg__h1_feed(h1_parser *p, const char *d, size_t n, size_t *used)
{
    size_t off = 0;
    h1_rc rc = H1_MORE;
    if (n) p->got_bytes = 1;
    while (off < n && rc == H1_MORE) {
        size_t adv = 0, take;
        switch (p->state) {
        case S_BODY_LEN:
        case S_CHUNK_DATA:
            take = n - off < p->left ? n - off : (size_t)p->left;
            rc = body_bytes(p, d + off, take);
            adv = take;
            p->left -= take;
            if (rc == H1_MORE && !p->left) {
                p->state = p->state == S_CHUNK_DATA ? S_CHUNK_END : S_DONE;
                if (p->state == S_DONE) rc = H1_DONE;
            }
            break;
        case S_BODY_CLOSE:
            rc = body_bytes(p, d + off, n - off);
            adv = n - off;
            break;
        case S_DONE:
            rc = H1_DONE;
            break;
        case S_ERROR:
            rc = H1_ERROR;
            break;
        default: {
            int head = p->state == S_STATUS || p->state == S_HEADER || p->state == S_TRAILER;
            size_t cap = head ? H1_HEADERS_MAX - p->head_bytes : CHUNK_LINE_MAX - p->line.len;
            const char *line;
            size_t len;
            int got = take_line(p, d + off, n - off, cap, &adv, &line, &len);
            if (got < 0) {
                rc = fail(p, got == -2 ? "bare CR in response"
                             : head    ? "response headers too large"
                                       : "chunk size line too long");
                break;
            }
            if (head) p->head_bytes += adv;
            if (got) {
                rc = on_line(p, line, len);
                sg_buf_reset(&p->line);
            }
        }
        }
        off += adv;
    }
    *used = off;
    if (rc == H1_TOO_BIG) p->state = S_ERROR;
    return rc;
}

h1_rc sg__h1_eof(h1_parser *p)
{
    if (p->state == S_BODY_CLOSE || p->state == S_DONE) {
        p->state = S_DONE;
        return H1_DONE;
    }
    if (p->state == S_ERROR) return H1_ERROR;
    return fail(p, p->got_bytes ? "connection closed before the answer was complete"
                                : "Empty reply from server");
}
