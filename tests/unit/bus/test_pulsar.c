/* The Pulsar frame codec: round trips, CRC32-C known vectors, truncated,
 * oversized and garbage frames, error names, broker URLs from lookups.
 * The bus's contract is test_pulsar_bus.c's; the protocol against an
 * independent implementation is tests/integration/test_pulsar.py's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/pulsar_int.h"

#define T(x) PULSAR__PROTO__BASE_COMMAND__TYPE__##x
#define MAXF (PF_MAX_MESSAGE + PF_PADDING)

/* ---------------------------------------------------------------- CRC32-C */

static void test_crc32c_vectors(void **state)
{
    (void)state;
    uint8_t b[32];
    assert_int_equal(sg__crc32c(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(sg__crc32c(0, "", 0), 0);
    /* RFC 3720, B.4 */
    memset(b, 0, sizeof b);
    assert_int_equal(sg__crc32c(0, b, 32), 0x8a9136aau);
    memset(b, 0xff, sizeof b);
    assert_int_equal(sg__crc32c(0, b, 32), 0x62a8ab43u);
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)i;
    assert_int_equal(sg__crc32c(0, b, 32), 0x46dd794eu);
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)(31 - i);
    assert_int_equal(sg__crc32c(0, b, 32), 0x113fdb5cu);
    /* In pieces of any size, from any alignment: the same value. */
    const char *s = "The quick brown fox jumps over the lazy dog, twice over.";
    uint32_t whole = sg__crc32c(0, s, strlen(s));
    for (size_t cut = 0; cut <= strlen(s); cut++)
        assert_int_equal(sg__crc32c(sg__crc32c(0, s, cut), s + cut, strlen(s) - cut), whole);
}

/* ------------------------------------------------------------------ codec */

static uint8_t *connect_frame(size_t *len)
{
    Pulsar__Proto__CommandConnect c = PULSAR__PROTO__COMMAND_CONNECT__INIT;
    c.client_version = "sagad";
    c.auth_method_name = "token";
    c.has_auth_data = 1;
    c.auth_data.data = (uint8_t *)"tok";
    c.auth_data.len = 3;
    c.has_protocol_version = 1;
    c.protocol_version = 15;
    pcmd cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    cmd.type = T(CONNECT);
    cmd.connect = &c;
    return sg__pf_encode(&cmd, len);
}

static uint8_t *send_frame(size_t *len, const char *payload)
{
    Pulsar__Proto__KeyValue kv = PULSAR__PROTO__KEY_VALUE__INIT, *props[] = {&kv};
    kv.key = "event_id";
    kv.value = "e-1";
    pmeta md = PULSAR__PROTO__MESSAGE_METADATA__INIT;
    md.producer_name = "p";
    md.sequence_id = 7;
    md.publish_time = 1234;
    md.n_properties = 1;
    md.properties = props;
    md.partition_key = "saga-1";
    Pulsar__Proto__CommandSend sd = PULSAR__PROTO__COMMAND_SEND__INIT;
    sd.producer_id = 3;
    sd.sequence_id = 7;
    pcmd cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    cmd.type = T(SEND);
    cmd.send = &sd;
    return sg__pf_encode_payload(&cmd, &md, payload, strlen(payload), len);
}

static void test_roundtrip_simple(void **state)
{
    (void)state;
    size_t len;
    uint8_t *b = connect_frame(&len);
    pframe f;
    char why[200];
    /* Every strict prefix asks for more; the whole decodes. */
    for (size_t n = 0; n < len; n++)
        assert_int_equal(sg__pf_decode(b, n, MAXF, &f, why, sizeof why), 0);
    assert_int_equal(sg__pf_decode(b, len, MAXF, &f, why, sizeof why), (long)len);
    assert_int_equal(f.cmd->type, T(CONNECT));
    assert_string_equal(f.cmd->connect->client_version, "sagad");
    assert_string_equal(f.cmd->connect->auth_method_name, "token");
    assert_memory_equal(f.cmd->connect->auth_data.data, "tok", 3);
    assert_int_equal(f.cmd->connect->protocol_version, 15);
    assert_null(f.meta);
    sg__pf_clear(&f);
    free(b);
}

static void test_roundtrip_payload(void **state)
{
    (void)state;
    size_t len, len2;
    uint8_t *b = send_frame(&len, "{\"x\":1}");
    uint8_t *two = malloc(2 * len);
    memcpy(two, b, len);
    memcpy(two + len, b, len);
    pframe f;
    char why[200];
    assert_int_equal(sg__pf_decode(two, 2 * len, MAXF, &f, why, sizeof why), (long)len);
    assert_int_equal(f.cmd->type, T(SEND));
    assert_int_equal(f.cmd->send->producer_id, 3);
    assert_int_equal(f.cmd->send->sequence_id, 7);
    assert_true(f.has_checksum);
    assert_string_equal(f.meta->producer_name, "p");
    assert_int_equal(f.meta->sequence_id, 7);
    assert_int_equal(f.meta->publish_time, 1234);
    assert_string_equal(f.meta->partition_key, "saga-1");
    assert_int_equal(f.meta->n_properties, 1);
    assert_string_equal(f.meta->properties[0]->value, "e-1");
    assert_int_equal(f.payload_len, 7);
    assert_memory_equal(f.payload, "{\"x\":1}", 7);
    sg__pf_clear(&f);
    /* The second frame right behind it. */
    assert_int_equal(sg__pf_decode(two + len, len, MAXF, &f, why, sizeof why), (long)len);
    sg__pf_clear(&f);
    /* Empty payload. */
    uint8_t *e = send_frame(&len2, "");
    assert_int_equal(sg__pf_decode(e, len2, MAXF, &f, why, sizeof why), (long)len2);
    assert_int_equal(f.payload_len, 0);
    sg__pf_clear(&f);
    /* Any flipped bit after the checksum is caught. */
    for (size_t i = len - 20; i < len; i++) {
        b[i] ^= 0x10;
        assert_int_equal(sg__pf_decode(b, len, MAXF, &f, why, sizeof why), -1);
        assert_non_null(strstr(why, "checksum mismatch"));
        assert_null(f.cmd);
        b[i] ^= 0x10;
    }
    free(e);
    free(two);
    free(b);
}

/* [total][cmd size] followed by `body`, as given. */
static size_t raw_frame(uint8_t *out, uint32_t total, uint32_t cs, const void *body, size_t n)
{
    uint8_t h[8] = {
        (uint8_t)(total >> 24), (uint8_t)(total >> 16), (uint8_t)(total >> 8), (uint8_t)total,
        (uint8_t)(cs >> 24),    (uint8_t)(cs >> 16),    (uint8_t)(cs >> 8),    (uint8_t)cs};
    memcpy(out, h, 8);
    memcpy(out + 8, body, n);
    return 8 + n;
}

static void expect_bad(const uint8_t *b, size_t n, size_t max, const char *msg)
{
    pframe f = {0};
    char why[200] = "";
    long k = sg__pf_decode(b, n, max, &f, why, sizeof why);
    if (k != -1) fail_msg("accepted (%ld), expected '%s'", k, msg);
    if (!strstr(why, msg)) fail_msg("got '%s', expected '%s'", why, msg);
    assert_null(f.cmd);
    assert_null(f.meta);
}

static void test_bad_frames(void **state)
{
    (void)state;
    uint8_t b[256];
    /* Oversized: refused from its first four bytes, before it arrives. */
    expect_bad((const uint8_t *)"\x00\x60\x00\x00", 4, MAXF, "over the limit");
    expect_bad((const uint8_t *)"\xff\xff\xff\xff", 4, MAXF, "over the limit");
    expect_bad((const uint8_t *)"\x00\x00\x01\x00", 4, 100, "over the limit");
    expect_bad((const uint8_t *)"\x00\x00\x00\x00", 4, MAXF, "too short");
    /* Command sizes that do not fit. */
    size_t n = raw_frame(b, 6, 0, "\x08\x12", 2);
    expect_bad(b, n, MAXF, "does not fit");
    n = raw_frame(b, 6, 3, "\x08\x12", 2);
    expect_bad(b, n, MAXF, "does not fit");
    /* Not protobuf; a BaseCommand without its required type. */
    n = raw_frame(b, 9, 5, "\xff\xff\xff\xff\xff", 5);
    expect_bad(b, n, MAXF, "undecodable command");
    n = raw_frame(b, 6, 2, "\x10\x01", 2);
    expect_bad(b, n, MAXF, "undecodable command");
    /* A known type without its body; a body missing a required field. */
    n = raw_frame(b, 6, 2, "\x08\x07", 2); /* SEND_RECEIPT */
    expect_bad(b, n, MAXF, "without its body");
    n = raw_frame(b, 10, 6, "\x08\x07\x3a\x02\x08\x01", 6); /* receipt without sequence_id */
    expect_bad(b, n, MAXF, "undecodable command");
    /* Payload parts: cut after the magic, no metadata size, sizes too big,
     * metadata that does not decode. */
    n = raw_frame(b, 9, 2, "\x08\x12\x0e\x01\x00", 5);
    expect_bad(b, n, MAXF, "cut after its magic");
    n = raw_frame(b, 8, 2, "\x08\x12\x00\x00", 4);
    expect_bad(b, n, MAXF, "without metadata size");
    n = raw_frame(b, 12, 2, "\x08\x12\x00\x00\x00\x09\x01\x02", 8);
    expect_bad(b, n, MAXF, "metadata size 9 over");
    n = raw_frame(b, 12, 2, "\x08\x12\x00\x00\x00\x02\x01\x02", 8);
    expect_bad(b, n, MAXF, "undecodable message metadata");
    /* PING without its (empty) body is fine, and unknown types pass. */
    pframe f;
    char why[200];
    n = raw_frame(b, 6, 2, "\x08\x12", 2);
    assert_int_equal(sg__pf_decode(b, n, MAXF, &f, why, sizeof why), 10);
    assert_int_equal(f.cmd->type, T(PING));
    sg__pf_clear(&f);
    n = raw_frame(b, 7, 3, "\x08\xa4\x01", 3); /* type 164 */
    assert_int_equal(sg__pf_decode(b, n, MAXF, &f, why, sizeof why), 11);
    sg__pf_clear(&f);
}

static void test_error_names(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(sg__pf_error_name(6, buf), "ServiceNotReady");
    assert_string_equal(sg__pf_error_name(25, buf), "ProducerFenced");
    assert_string_equal(sg__pf_error_name(99, buf), "error 99");
    assert_string_equal(sg__pf_error_name(-1, buf), "error -1");
    assert_true(sg__pf_error_permanent(PULSAR__PROTO__SERVER_ERROR__AuthorizationError));
    assert_true(sg__pf_error_permanent(PULSAR__PROTO__SERVER_ERROR__TopicTerminatedError));
    assert_false(sg__pf_error_permanent(PULSAR__PROTO__SERVER_ERROR__ServiceNotReady));
    assert_false(sg__pf_error_permanent(PULSAR__PROTO__SERVER_ERROR__PersistenceError));
    assert_false(sg__pf_error_permanent(PULSAR__PROTO__SERVER_ERROR__ProducerBusy));
}

static void test_parse_addr(void **state)
{
    (void)state;
    char *h;
    int port, tls;
    assert_int_equal(sg__pulsar_parse_addr("pulsar://b1:6650", &h, &port, &tls), 0);
    assert_string_equal(h, "b1");
    assert_int_equal(port, 6650);
    assert_int_equal(tls, 0);
    free(h);
    assert_int_equal(sg__pulsar_parse_addr("pulsar+ssl://[::1]/", &h, &port, &tls), 0);
    assert_string_equal(h, "::1");
    assert_int_equal(port, 6651);
    assert_int_equal(tls, 1);
    free(h);
    const char *bad[] = {"http://b1:80",     "pulsar://",    "pulsar://:1",   "pulsar://b:0",
                         "pulsar://b:70000", "pulsar://b/x", "pulsar://[::1", "pulsar://a@b"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (sg__pulsar_parse_addr(bad[i], &h, &port, &tls) == 0) fail_msg("accepted %s", bad[i]);
        assert_null(h);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_vectors),    cmocka_unit_test(test_roundtrip_simple),
        cmocka_unit_test(test_roundtrip_payload), cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_error_names),       cmocka_unit_test(test_parse_addr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
