/* libFuzzer target for API authentication (src/api/auth.c): the input is
 * read as a token file, then as an Authorization header value. A file
 * either loads (1..SG_AUTH_TOKENS_MAX tokens, each valid) or is refused
 * with a reason that quotes none of it; a header either parses to a token
 * inside it or is refused; and the constant-time match must agree with a
 * plain comparison against every token the file gave. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/auth_int.h"

/* The plain answer the constant-time match must agree with. */
static int naive(const sg_auth_token *set, size_t n, const char *tok, size_t len)
{
    for (size_t k = 0; k < n; k++)
        if (set[k].len == len && memcmp(set[k].bytes, tok, len) == 0) return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    sg_auth_token *set = NULL;
    size_t n = 0;
    char err[512] = "";
    if (sg__auth_parse_file(text, size, "f", &set, &n, err, sizeof err) == SG_OK) {
        if (!set || n < 1 || n > SG_AUTH_TOKENS_MAX) abort();
        for (size_t k = 0; k < n; k++) {
            if (!sg__auth_token_syntax((const char *)set[k].bytes, set[k].len)) abort();
            for (size_t i = set[k].len; i < SG_AUTH_TOKEN_MAX; i++)
                if (set[k].bytes[i]) abort(); /* padding stays zero */
            if (!sg__auth_match(set, n, (const char *)set[k].bytes, set[k].len)) abort();
        }
    } else {
        if (set || n || strncmp(err, "f", 1) != 0) abort();
        /* A reason names a line, never shows one: no input byte run of 8
         * or more (the shortest token a test might use) is echoed. */
        static const char fixed[] =
            "f line : not a token (RFC 6750 b64token: letters, digits, - . _ ~ + /, "
            "then any '=')f: no token in it (only blank lines and # comments)"
            "a token longer than 256 bytes more than 1024 tokens";
        for (size_t i = 0; i + 8 <= size; i++)
            if (memchr(text + i, '\0', 8) == NULL && memmem(err, strlen(err), text + i, 8) &&
                !memmem(fixed, sizeof fixed - 1, text + i, 8))
                abort();
    }

    char *hdr = malloc(size + 1);
    memcpy(hdr, data, size);
    hdr[size] = '\0'; /* as MHD hands it: a C string, ending at any NUL */
    const char *tok = NULL;
    size_t len = 0;
    if (sg__auth_bearer(hdr, &tok, &len) == SG_OK) {
        if (!tok || len == 0 || tok < hdr || tok + len > hdr + strlen(hdr)) abort();
        if (len <= SG_AUTH_TOKEN_MAX && !sg__auth_token_syntax(tok, len)) abort();
        if (sg__auth_match(set, n, tok, len) != naive(set, n, tok, len)) abort();
    } else if (tok || len) {
        abort();
    }
    free(hdr);
    free(set);
    return 0;
}
