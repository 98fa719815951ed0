/* libFuzzer target for the URLs and values sagad parses from its
 * configuration and from peers: downstream http(s) URLs (src/util/url.c),
 * NATS bus URLs, nats:// and tls:// (src/bus/nats_url.c), Pulsar bus URLs
 * and the broker addresses a lookup answers (src/bus/pulsar.c), and the
 * keyset cursors of GET /sagas (src/store/backend_util.c). Every accepted value must satisfy
 * what its users rely on; every refusal must say why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nats_int.h"
#include "pulsar_int.h"
#include "sg/util.h"
#include "store/store_int.h"

static void nats(const char *s)
{
    nats_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    char err[512] = "";
    if (sg__nats_cfg_parse(&cfg, s, err, sizeof err) == SG_OK) {
        if (!cfg.server || !cfg.host || cfg.port < 1 || cfg.port > 65535) abort();
        /* The server string goes to libnats and into logs: no credentials. */
        if (strchr(cfg.server, '@')) abort();
        if (cfg.nsubjects < 0 || (cfg.nsubjects && !cfg.subjects)) abort();
        /* TLS options only on tls://, a client certificate with its key. */
        if (!cfg.tls && (cfg.ca || cfg.cert || cfg.key || cfg.insecure)) abort();
        if (!cfg.cert != !cfg.key || (cfg.insecure && cfg.ca)) abort();
    } else if (!err[0]) {
        abort();
    }
    sg__nats_cfg_free(&cfg);
}

static void pulsar(const char *s)
{
    for (int tls = 0; tls < 2; tls++) {
        pulsar_opts o = {.keepalive_ms = 30000, .connect_timeout_ms = 10000, .max_pending = 10000};
        char err[512] = "";
        const char *scheme = tls ? "pulsar+ssl" : "pulsar";
        if (strncmp(s, scheme, strlen(scheme)) == 0) {
            if (sg__pulsar_parse_url(&o, scheme, s, err, sizeof err) == 0) {
                if (!o.host || o.port < 1 || o.port > 65535 || o.tls != tls) abort();
                if (!tls && (o.ca || o.insecure)) abort();
            } else if (!err[0]) {
                abort();
            }
        }
        sg__pulsar_opts_free(&o);
    }
    char *host = NULL;
    int port = 0, tls = 0;
    if (sg__pulsar_parse_addr(s, &host, &port, &tls) == 0) {
        if (!host || port < 1 || port > 65535) abort();
    } else if (host) {
        abort();
    }
    free(host);
}

static void cursor(const char *s)
{
    int64_t us;
    char id[SG_ID_LEN + 1];
    if (sg_store_cursor_parse(s, &us, id) != SG_OK) return;
    if (strlen(id) != SG_ID_LEN) abort();
    /* What parses formats back to a cursor that parses to the same. */
    char again[SG_CURSOR_MAX];
    sg_store_cursor_format(again, us, id);
    int64_t us2;
    char id2[SG_ID_LEN + 1];
    if (sg_store_cursor_parse(again, &us2, id2) != SG_OK || us2 != us || strcmp(id, id2) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    (void)sg_http_url_ok(s); /* libcurl's parser underneath: no crash, no leak */
    if (strncmp(s, "nats://", 7) == 0 || strncmp(s, "tls://", 6) == 0)
        nats(s); /* the bus picks the parser by scheme */
    pulsar(s);
    cursor(s);
    free(s);
    return 0;
}
