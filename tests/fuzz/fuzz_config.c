/* libFuzzer target for sagad's command line and environment
 * (src/cli/config.c). The input is split on NUL bytes: the first part is
 * a list of NAME=VALUE lines set as the environment, the rest are argv.
 * Every accepted configuration must be within the documented bounds;
 * every refusal must say why and never quote an API token. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sg/config.h"

extern char **environ;

static void set_env(char *lines)
{
    clearenv();
    for (char *l = strtok(lines, "\n"); l; l = strtok(NULL, "\n")) {
        char *eq = strchr(l, '=');
        if (!eq || eq == l) continue;
        *eq = '\0';
        /* Only sagad's own variables, so the fuzzer spends its time there. */
        if (strncmp(l, "SAGAD_", 6) == 0) setenv(l, eq + 1, 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    memcpy(copy, data, size);
    copy[size] = '\0';
    char *argv[64];
    int argc = 0;
    argv[argc++] = "sagad";
    const char *end = copy + size;
    char *p = copy + strlen(copy) + 1;
    set_env(copy);
    while (p < end && argc < 63) {
        argv[argc++] = p;
        p += strlen(p) + 1;
    }
    argv[argc] = NULL;

    sg_config c;
    char err[512] = "";
    if (sg_config_parse(&c, argc, argv, err, sizeof err) == SG_OK) {
        if (!c.db || !c.anonymizer_url || !c.ai_model_url || !c.bus) abort();
        if (c.step_timeout_ms < 1 || c.max_body < 1024 || c.threads < 1 || c.threads > 64) abort();
        if (!c.help && !c.tls_cert != !c.tls_key) abort(); /* --help stops before that check */
        if (!memchr(c.host, '\0', sizeof c.host) || !c.host[0]) abort();
    } else {
        if (!err[0]) abort();
        /* A refused token is never shown: the reason after the label is
         * the fixed sentence (a token may be a piece of the label or of
         * the sentence, as "I_TOKEN:" is of "SAGAD_API_TOKEN:"). */
        static const char label[] = "SAGAD_API_TOKEN: ";
        static const char reason[] =
            "expected 1-256 characters of A-Z a-z 0-9 - . _ ~ + / (then any '=')";
        const char *tok = getenv("SAGAD_API_TOKEN");
        if (tok && strncmp(err, label, sizeof label - 1) == 0 &&
            strcmp(err + sizeof label - 1, reason) != 0)
            abort();
    }
    sg_config_free(&c);
    free(copy);
    return 0;
}
