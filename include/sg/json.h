/* JSON helpers. sagad keeps request and downstream JSON as the exact bytes
 * received and splices them into its answers: it only checks them, without
 * building a tree (json_check.c, which accepts what jansson does). */
#ifndef SG_JSON_H
#define SG_JSON_H

#include <stddef.h>

#include "sg/buf.h"
#include "sg/status.h"

#define SG_JSON_MAX_DEPTH 512

/* Validates text[0..len) as one JSON value: strict UTF-8, \u0000 allowed
 * in strings (not in object keys), numbers within a double's range,
 * nesting at most SG_JSON_MAX_DEPTH. Allocates nothing. On failure returns
 * SG_EINVAL and writes a human-readable reason into err (may be NULL). */
sg_status sg_json_validate(const char *text, size_t len, char *err, size_t errlen);

/* Appends s[0..n) as a JSON string literal (quotes included). Bytes are
 * copied as UTF-8; control characters are escaped. */
sg_status sg_json_add_str(sg_buf *b, const char *s, size_t n);
/* Same for a NUL-terminated string; NULL appends `null`. */
sg_status sg_json_add_cstr(sg_buf *b, const char *s);

#endif
