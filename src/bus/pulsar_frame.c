/* Pulsar frames: encoding and strict decoding of the binary protocol's
 * simple and payload commands, and the CRC32-C that guards payloads.
 *
 *   simple:  [total:4][cmd size:4][BaseCommand]
 *   payload: [total:4][cmd size:4][BaseCommand][0x0e01:2][crc32c:4]
 *            [meta size:4][MessageMetadata][payload]
 *
 * Sizes are big-endian; `total` counts everything after itself; the
 * checksum covers everything after it. Nothing here trusts a size before
 * checking it against the bytes at hand and the caller's cap. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pulsar_int.h"
#include "sg/alloc.h"

/* ---------------------------------------------------------------- CRC32-C */

/* Slicing-by-8 tables for the reflected Castagnoli polynomial, built once. */
static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
}

uint32_t sg__crc32c(uint32_t crc, const void *data, size_t n)
{
    const uint8_t *p = data;
    pthread_once(&crc_once, crc_init);
    crc = ~crc;
    while (n >= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        crc = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^ crc_tab[5][(lo >> 16) & 0xff] ^
              crc_tab[4][lo >> 24] ^ crc_tab[3][p[4]] ^ crc_tab[2][p[5]] ^ crc_tab[1][p[6]] ^
              crc_tab[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = (crc >> 8) ^ crc_tab[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

/* ------------------------------------------------------------ byte order */

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---------------------------------------------------------------- encode */

uint8_t *sg__pf_encode(const pcmd *cmd, size_t *len)
{
    size_t cs = pulsar__proto__base_command__get_packed_size(cmd);
    uint8_t *b = sg_xmalloc(8 + cs);
    put32(b, (uint32_t)(4 + cs));
    put32(b + 4, (uint32_t)cs);
    pulsar__proto__base_command__pack(cmd, b + 8);
    *len = 8 + cs;
    return b;
}

uint8_t *sg__pf_encode_payload(const pcmd *cmd, const pmeta *md, const void *payload, size_t n,
                               size_t *len)
{
    size_t cs = pulsar__proto__base_command__get_packed_size(cmd);
    size_t ms = pulsar__proto__message_metadata__get_packed_size(md);
    size_t total = 4 + cs + 2 + 4 + 4 + ms + n;
    uint8_t *b = sg_xmalloc(4 + total);
    put32(b, (uint32_t)total);
    put32(b + 4, (uint32_t)cs);
    pulsar__proto__base_command__pack(cmd, b + 8);
    uint8_t *q = b + 8 + cs;
    q[0] = (uint8_t)(PF_MAGIC >> 8);
    q[1] = (uint8_t)(PF_MAGIC & 0xff);
    put32(q + 6, (uint32_t)ms);
    pulsar__proto__message_metadata__pack(md, q + 10);
    if (n) memcpy(q + 10 + ms, payload, n);
    put32(q + 2, sg__crc32c(0, q + 6, 4 + ms + n));
    *len = 4 + total;
    return b;
}

/* ---------------------------------------------------------------- decode */

void sg__pf_clear(pframe *f)
{
    if (f->cmd) pulsar__proto__base_command__free_unpacked(f->cmd, NULL);
    if (f->meta) pulsar__proto__message_metadata__free_unpacked(f->meta, NULL);
    memset(f, 0, sizeof *f);
}

/* 1 if a command of a type we know carries its body. PING and PONG bodies
 * are empty messages that some peers leave out. */
static int has_body(const pcmd *c)
{
    switch (c->type) {
    case PULSAR__PROTO__BASE_COMMAND__TYPE__CONNECT:
        return c->connect != NULL;
    case PULSAR__PROTO__BASE_COMMAND__TYPE__CONNECTED:
        return c->connected != NULL;
    case PULSAR__PROTO__BASE_COMMAND__TYPE__PRODUCER:
        return c->producer != NULL;
    case PULSAR__PROTO__BASE_COMMAND__TYPE__SEND:
        return c->send != NULL;
    case PULSAR__PROTO__BASE_COMMAND__TYPE__SEND_RECEIPT:
        return c->send_receipt != NULL;
    case PULSAR__PROTO__BASE_COMMAND__TYPE__SEND_ERROR:
        return c->send_error != NULL;
    case PULSAR__PROTO__BASE_COMMAND__TYPE__SUCCESS:
        return c->success != NULL;
    case PULSAR__PROTO__BASE_COMMAND__TYPE__ERROR:
        return c->error != NULL;
    case PULSAR__PROTO__BASE_COMMAND__TYPE__CLOSE_PRODUCER:
        return c->close_producer != NULL;
    case PULSAR__PROTO__BASE_COMMAND__TYPE__PRODUCER_SUCCESS:
        return c->producer_success != NULL;
    case PULSAR__PROTO__BASE_COMMAND__TYPE__LOOKUP:
        return c->lookuptopic != NULL;
    case PULSAR__PROTO__BASE_COMMAND__TYPE__LOOKUP_RESPONSE:
        return c->lookuptopicresponse != NULL;
    default:
        return 1; /* PING, PONG, and types we skip */
    }
}

static long bad(pframe *f, char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static long bad(pframe *f, char *why, size_t whylen, const char *fmt, ...)
{
    sg__pf_clear(f);
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

long sg__pf_decode(const uint8_t *p, size_t n, size_t max, pframe *f, char *why, size_t whylen)
{
    pframe tmp = {0};
    memset(f, 0, sizeof *f); /* zeroed unless a frame is returned */
    if (n < 4) return 0;
    size_t total = get32(p);
    if (total > max)
        return bad(&tmp, why, whylen, "frame of %zu bytes over the limit of %zu", total, max);
    if (total < 4 + 2) return bad(&tmp, why, whylen, "frame of %zu bytes is too short", total);
    if (n - 4 < total) return 0;
    size_t cs = get32(p + 4);
    if (cs < 2 || cs > total - 4)
        return bad(&tmp, why, whylen, "command size %zu does not fit a frame of %zu", cs, total);
    tmp.cmd = pulsar__proto__base_command__unpack(NULL, cs, p + 8);
    if (!tmp.cmd) return bad(&tmp, why, whylen, "undecodable command (%zu bytes)", cs);
    if (!has_body(tmp.cmd))
        return bad(&tmp, why, whylen, "command of type %d without its body", (int)tmp.cmd->type);

    const uint8_t *q = p + 8 + cs;
    size_t rest = total - 4 - cs;
    if (rest > 0) {
        if (rest >= 2 && ((unsigned)q[0] << 8 | q[1]) == PF_MAGIC) {
            if (rest < 6)
                return bad(&tmp, why, whylen, "payload frame cut after its magic (%zu)", rest);
            uint32_t want = get32(q + 2);
            q += 6;
            rest -= 6;
            uint32_t got = sg__crc32c(0, q, rest);
            if (got != want)
                return bad(&tmp, why, whylen, "checksum mismatch: frame says %08x, data %08x",
                           (unsigned)want, (unsigned)got);
            tmp.has_checksum = 1;
        }
        if (rest < 4)
            return bad(&tmp, why, whylen, "payload frame without metadata size (%zu)", rest);
        size_t ms = get32(q);
        if (ms > rest - 4)
            return bad(&tmp, why, whylen, "metadata size %zu over the %zu bytes left", ms,
                       rest - 4);
        tmp.meta = pulsar__proto__message_metadata__unpack(NULL, ms, q + 4);
        if (!tmp.meta)
            return bad(&tmp, why, whylen, "undecodable message metadata (%zu bytes)", ms);
        tmp.payload = q + 4 + ms;
        tmp.payload_len = rest - 4 - ms;
    }
    *f = tmp;
    return (long)(4 + total);
}

/* ---------------------------------------------------------------- errors */

static const char *const error_names[] = {
    "UnknownError",
    "MetadataError",
    "PersistenceError",
    "AuthenticationError",
    "AuthorizationError",
    "ConsumerBusy",
    "ServiceNotReady",
    "ProducerBlockedQuotaExceededError",
    "ProducerBlockedQuotaExceededException",
    "ChecksumError",
    "UnsupportedVersionError",
    "TopicNotFound",
    "SubscriptionNotFound",
    "ConsumerNotFound",
    "TooManyRequests",
    "TopicTerminatedError",
    "ProducerBusy",
    "InvalidTopicName",
    "IncompatibleSchema",
    "ConsumerAssignError",
    "TransactionCoordinatorNotFound",
    "InvalidTxnStatus",
    "NotAllowedError",
    "TransactionConflict",
    "TransactionNotFound",
    "ProducerFenced",
};

const char *sg__pf_error_name(int err, char buf[32])
{
    if (err >= 0 && (size_t)err < sizeof error_names / sizeof *error_names) return error_names[err];
    snprintf(buf, 32, "error %d", err);
    return buf;
}

int sg__pf_error_permanent(int err)
{
    switch (err) {
    case PULSAR__PROTO__SERVER_ERROR__AuthenticationError:
    case PULSAR__PROTO__SERVER_ERROR__AuthorizationError:
    case PULSAR__PROTO__SERVER_ERROR__ProducerBlockedQuotaExceededException:
    case PULSAR__PROTO__SERVER_ERROR__ChecksumError:
    case PULSAR__PROTO__SERVER_ERROR__UnsupportedVersionError:
    case PULSAR__PROTO__SERVER_ERROR__TopicNotFound:
    case PULSAR__PROTO__SERVER_ERROR__TopicTerminatedError:
    case PULSAR__PROTO__SERVER_ERROR__InvalidTopicName:
    case PULSAR__PROTO__SERVER_ERROR__IncompatibleSchema:
    case PULSAR__PROTO__SERVER_ERROR__NotAllowedError:
    case PULSAR__PROTO__SERVER_ERROR__ProducerFenced:
        return 1;
    default:
        return 0;
    }
}
