/* libFuzzer target for the W3C trace context parser (src/util/trace.c).
 * The input is a traceparent, then optionally '\n' and a tracestate.
 * Nothing may crash, and an accepted traceparent must hold what the spec
 * allows: a version other than ff, lowercase hex ids that are not all
 * zero, and a child of it that parses back to the same trace. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sg/trace.h"

static int lower_hex(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    const char *nl = memchr(p, '\n', size);
    size_t n = nl ? (size_t)(nl - p) : size;
    sg_trace t;
    char parent[SG_SPAN_ID_HEX + 1];
    if (sg_trace_parse(p, n, &t, parent)) {
        if (n < SG_TRACEPARENT_LEN) abort();
        if (p[0] == 'f' && p[1] == 'f') abort();
        if (memcmp(p, "00", 2) == 0 && n != SG_TRACEPARENT_LEN) abort();
        if (!sg_trace_id_ok(t.trace_id)) abort();
        if (strlen(parent) != SG_SPAN_ID_HEX || !lower_hex(parent, SG_SPAN_ID_HEX)) abort();
        if (strspn(parent, "0") == SG_SPAN_ID_HEX) abort();
        if (memcmp(t.trace_id, p + 3, SG_TRACE_ID_HEX) != 0) abort();
        char child[SG_TRACEPARENT_LEN + 1];
        sg_trace_child(&t, child);
        sg_trace back;
        if (!sg_trace_parse(child, strlen(child), &back, NULL)) abort();
        if (strcmp(back.trace_id, t.trace_id) != 0 || back.flags != t.flags) abort();
    }
    if (nl) {
        const char *s = nl + 1;
        size_t sn = size - n - 1;
        if (sg_tracestate_ok(s, sn)) {
            if (sn == 0 || sn > SG_TRACESTATE_MAX) abort();
            for (size_t i = 0; i < sn; i++)
                if (s[i] < 0x20 || s[i] > 0x7e) abort();
        }
    }
    return 0;
}
