/* Command line and environment (design §3). A flag wins over its SAGAD_*
 * twin; both are validated before anything starts. */
#ifndef SG_CONFIG_H
#define SG_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "sg/status.h"

typedef struct sg_config {
    char host[256];
    uint16_t port;
    char *db;             /* owned */
    char *anonymizer_url; /* owned */
    char *ai_model_url;   /* owned */
    char *bus;            /* owned */
    char *definitions;    /* saga types file (design §6), or NULL = the STA saga; owned */
    long step_timeout_ms;
    long step_retries;     /* extra attempts after a transient failure */
    long retry_backoff_ms; /* first backoff */
    long park_after_s;     /* compensations undelivered this long are parked */
    long retention_s;      /* settled sagas are deleted this long after; 0 = never */
    long lease_ms;         /* a shared store's lease (design §7) */
    size_t max_body;
    size_t max_response;
    long max_connections; /* calls at once per downstream host */
    size_t max_inflight;  /* sagas in memory */
    size_t max_inflight_bytes;
    unsigned threads;
    long grace_ms;
    unsigned conn_timeout_s;
    /* Security (design §7). api_token is a secret: wiped when freed, never
     * logged. tls_cert/tls_key: both or neither. All owned, NULL if unset. */
    char *api_token;
    char *api_token_file; /* tokens, one per line; re-read on SIGHUP */
    char *tls_cert;       /* PEM certificate (chain) to serve HTTPS with */
    char *tls_key;        /* its PEM private key */
    char *ca_file;        /* CA certificates for downstream HTTPS and pulsar+ssl */
    int log_level;        /* sg_log_level */
    int log_format;       /* sg_log_format */
    int help;             /* --help was given */
} sg_config;

/* Fills c from argv and the environment (envp-style lookup via getenv).
 * SG_EINVAL with a message in err for a bad flag or value. c must be freed
 * with sg_config_free either way. */
sg_status sg_config_parse(sg_config *c, int argc, char **argv, char *err, size_t errlen);
void sg_config_free(sg_config *c);
/* The --help text. */
const char *sg_config_usage(void);

#endif
