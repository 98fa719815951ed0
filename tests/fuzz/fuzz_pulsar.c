/* libFuzzer target: the Pulsar frame decoder on whatever a broker might
 * send. Every prefix of the input is either "need more", a frame, or a
 * refusal with a reason (and nothing left allocated); never a crash, a leak
 * or a read past the bytes. A frame that decodes without unknown fields is
 * encoded again and must decode to the same command, metadata and payload
 * (protobuf-c keeps unknown fields as it read them, even a non-canonical
 * tag 0 that it would refuse once re-encoded, so those are left out). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pulsar_int.h"

/* 1 if m or any message inside it kept fields it did not know. */
static int has_unknown(const ProtobufCMessage *m)
{
    if (!m) return 0;
    if (m->n_unknown_fields) return 1;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        if (fd->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        const char *base = (const char *)m + fd->offset;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + fd->quantifier_offset);
            ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)base;
            for (size_t k = 0; k < n; k++)
                if (has_unknown(arr[k])) return 1;
        } else if (has_unknown(*(ProtobufCMessage *const *)base)) {
            return 1;
        }
    }
    return 0;
}

static void roundtrip(const pframe *f)
{
    if (has_unknown(&f->cmd->base) || (f->meta && has_unknown(&f->meta->base))) return;
    size_t len;
    uint8_t *b = f->meta ? sg__pf_encode_payload(f->cmd, f->meta, f->payload, f->payload_len, &len)
                         : sg__pf_encode(f->cmd, &len);
    pframe g;
    char why[256];
    if (sg__pf_decode(b, len, len, &g, why, sizeof why) != (long)len) abort();
    if (g.cmd->type != f->cmd->type || !g.meta != !f->meta) abort();
    if (f->meta) {
        if (g.payload_len != f->payload_len || !g.has_checksum) abort();
        if (f->payload_len && memcmp(g.payload, f->payload, f->payload_len) != 0) abort();
        if (g.meta->sequence_id != f->meta->sequence_id) abort();
    }
    sg__pf_clear(&g);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first byte picks the cap, as CONNECTED's max_message_size would. */
    size_t max = size ? 16 + (size_t)data[0] * 64 : 16;
    size_t off = size ? 1 : 0;
    while (off < size) {
        pframe f;
        char why[256] = "";
        long k = sg__pf_decode(data + off, size - off, max, &f, why, sizeof why);
        if (k == 0) break;
        if (k < 0) {
            if (!why[0] || f.cmd || f.meta) abort(); /* a refusal says why, leaves nothing */
            break;
        }
        if ((size_t)k > size - off || !f.cmd) abort();
        roundtrip(&f);
        sg__pf_clear(&f);
        off += (size_t)k;
    }
    return 0;
}
