/* W3C Trace Context: parsing a client's traceparent and tracestate, and
 * making the traceparent of each downstream call. Everything here is a
 * pure function of its input and the random pool: the API thread parses,
 * the loop thread makes children. */
#include "sg/trace.h"

#include <string.h>

#include "sg/util.h"

/* 1 if the n bytes at p are lowercase hex digits ([0-9a-f], nothing else:
 * the spec refuses uppercase so that one id has one spelling). */
static int lower_hex(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) return 0;
    return 1;
}

static int all_zero(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != '0') return 0;
    return 1;
}

static unsigned hex_val(char c)
{
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)(c - 'a' + 10);
}

int sg_trace_parse(const char *p, size_t len, sg_trace *out, char parent[SG_SPAN_ID_HEX + 1])
{
    /* "vv-" 32 "-" 16 "-" ff: offsets 0, 3, 36, 53. */
    enum { TRACE_AT = 3, PARENT_AT = 36, FLAGS_AT = 53 };
    if (!p || len < SG_TRACEPARENT_LEN) return 0;
    if (!lower_hex(p, 2) || (p[0] == 'f' && p[1] == 'f')) return 0;
    int v00 = p[0] == '0' && p[1] == '0';
    /* Version 00 has exactly four fields; a later version may add more
     * after a '-', which this version cannot read and ignores. */
    if (v00 ? len != SG_TRACEPARENT_LEN : len > SG_TRACEPARENT_LEN && p[SG_TRACEPARENT_LEN] != '-')
        return 0;
    if (p[2] != '-' || p[PARENT_AT - 1] != '-' || p[FLAGS_AT - 1] != '-') return 0;
    if (!lower_hex(p + TRACE_AT, SG_TRACE_ID_HEX) || all_zero(p + TRACE_AT, SG_TRACE_ID_HEX))
        return 0;
    if (!lower_hex(p + PARENT_AT, SG_SPAN_ID_HEX) || all_zero(p + PARENT_AT, SG_SPAN_ID_HEX))
        return 0;
    if (!lower_hex(p + FLAGS_AT, 2)) return 0;
    unsigned flags = hex_val(p[FLAGS_AT]) << 4 | hex_val(p[FLAGS_AT + 1]);
    /* A later version's other flags may mean something else there. */
    if (!v00) flags &= SG_TRACE_SAMPLED;
    memcpy(out->trace_id, p + TRACE_AT, SG_TRACE_ID_HEX);
    out->trace_id[SG_TRACE_ID_HEX] = '\0';
    out->flags = (uint8_t)flags;
    if (parent) {
        memcpy(parent, p + PARENT_AT, SG_SPAN_ID_HEX);
        parent[SG_SPAN_ID_HEX] = '\0';
    }
    return 1;
}

/* n random bytes as 2n lowercase hex digits, never all zero (the spec's
 * invalid value; a 1 in 2^64 chance for a span id, but free to rule out). */
static void random_hex(char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    int zero;
    do {
        sg_random_bytes(b, n);
        zero = 1;
        for (size_t i = 0; i < n; i++)
            zero &= b[i] == 0;
    } while (zero);
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
}

void sg_trace_new(sg_trace *out)
{
    random_hex(out->trace_id, SG_TRACE_ID_HEX / 2);
    out->trace_id[SG_TRACE_ID_HEX] = '\0';
    out->flags = SG_TRACE_SAMPLED;
}

void sg_trace_child(const sg_trace *t, char out[SG_TRACEPARENT_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "00-", 3);
    memcpy(out + 3, t->trace_id, SG_TRACE_ID_HEX);
    out[35] = '-';
    random_hex(out + 36, SG_SPAN_ID_HEX / 2);
    out[52] = '-';
    out[53] = hex[t->flags >> 4];
    out[54] = hex[t->flags & 15];
    out[SG_TRACEPARENT_LEN] = '\0';
}

int sg_tracestate_ok(const char *p, size_t len)
{
    if (!p || len == 0 || len > SG_TRACESTATE_MAX) return 0;
    int blank = 1;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < 0x20 || p[i] > 0x7e) return 0;
        blank &= p[i] == ' ' || p[i] == ',';
    }
    return !blank;
}

int sg_trace_id_ok(const char *s)
{
    return s && strlen(s) == SG_TRACE_ID_HEX && lower_hex(s, SG_TRACE_ID_HEX) &&
           !all_zero(s, SG_TRACE_ID_HEX);
}
