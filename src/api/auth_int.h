/* The pure parts of API authentication (auth.c), shared with their unit
 * tests and fuzz target: token syntax, the token file, the Authorization
 * header, and the constant-time match. No MHD, no locks. */
#ifndef SG_API_AUTH_INT_H
#define SG_API_AUTH_INT_H

#include <stddef.h>

#include "sg/auth.h"

/* One configured token, zero-padded to the full width so that every
 * comparison reads the same number of bytes. */
typedef struct sg_auth_token {
    unsigned char bytes[SG_AUTH_TOKEN_MAX];
    size_t len;
} sg_auth_token;

/* 1 if s[0..n) is an RFC 6750 b64token of 1..SG_AUTH_TOKEN_MAX bytes:
 * 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=". */
int sg__auth_token_syntax(const char *s, size_t n);

/* Parses a token file's text (len bytes, may hold NULs): one token per
 * line, surrounding blanks and a trailing CR ignored, blank lines and
 * lines starting with '#' skipped. On SG_OK *out (caller frees) holds *n
 * >= 1 tokens; on SG_EINVAL *out is NULL and err names the line, never
 * its content. what names the file in messages. */
sg_status sg__auth_parse_file(const char *text, size_t len, const char *what, sg_auth_token **out,
                              size_t *n, char *err, size_t errlen);

/* Parses an Authorization header value: optional blanks, the scheme
 * "Bearer" in any case, one or more blanks, a b64token of any length,
 * optional blanks. SG_OK with *tok and *len pointing into value, SG_EINVAL
 * for anything else (another scheme, no token, bad characters). */
sg_status sg__auth_bearer(const char *value, const char **tok, size_t *len);

/* 1 if tok[0..len) equals one of set[0..n). Reads every byte of every
 * configured token whatever tok is: no early exit on a length or a byte
 * that differs, nor on a match. */
int sg__auth_match(const sg_auth_token *set, size_t n, const char *tok, size_t len);

#endif
