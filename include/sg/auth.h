/* API bearer tokens (design §7): the set of tokens a request may present
 * in `Authorization: Bearer <token>` (RFC 6750), from --api-token and/or a
 * file of tokens re-read on SIGHUP. Checked by the API's threads while the
 * loop thread may swap the file's tokens: the set is guarded inside.
 *
 * A token is never logged, never echoed in an answer and never part of an
 * error message: messages name a file's line number, not its content. */
#ifndef SG_AUTH_H
#define SG_AUTH_H

#include <stddef.h>

#include "sg/status.h"

/* Bounds on what is configured (a token file is operator input, but an
 * unbounded one would make every request's comparison unbounded too). */
#define SG_AUTH_TOKEN_MAX 256                /* bytes of one token */
#define SG_AUTH_TOKENS_MAX 1024              /* tokens in one set */
#define SG_AUTH_FILE_MAX ((size_t)256 << 10) /* bytes of a token file */

typedef struct sg_auth sg_auth;

/* 1 if t is a usable token: 1..SG_AUTH_TOKEN_MAX bytes of RFC 6750's
 * b64token (letters, digits, - . _ ~ + /, then any number of =). */
int sg_auth_token_ok(const char *t);

/* What a request's Authorization header amounts to. */
typedef enum sg_auth_verdict {
    SG_AUTH_ALLOW,     /* a configured token */
    SG_AUTH_MISSING,   /* no Authorization header */
    SG_AUTH_MALFORMED, /* not `Bearer <b64token>`, or more than one header */
    SG_AUTH_WRONG,     /* well-formed, but not a configured token */
} sg_auth_verdict;

/* token (borrowed, may be NULL) is one fixed token; file (borrowed, may be
 * NULL) a file of tokens, one per line, blank lines and lines starting
 * with '#' ignored. Both NULL: *out is NULL and SG_OK (no authentication).
 * SG_EINVAL with err saying why (never quoting a token) for a bad token,
 * an unreadable, oversized or malformed file, or a file with no token. */
sg_status sg_auth_create(sg_auth **out, const char *token, const char *file, char *err,
                         size_t errlen);
/* Re-reads the file (nothing to do without one). On failure the tokens in
 * use stay as they were and err says why. *count (may be NULL) gets the
 * number of tokens now in use. */
sg_status sg_auth_reload(sg_auth *a, size_t *count, char *err, size_t errlen);
/* Judges one request: header is the value of its Authorization header
 * (NULL when absent), nheaders how many Authorization headers it had. The
 * time taken does not depend on the presented token's content or length,
 * nor on which configured token (if any) it matches. */
sg_auth_verdict sg_auth_check(sg_auth *a, const char *header, size_t nheaders);
const char *sg_auth_file(const sg_auth *a); /* the file, or NULL */
void sg_auth_destroy(sg_auth *a);           /* NULL-safe */

#endif
