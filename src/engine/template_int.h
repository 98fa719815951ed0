/* Templates compiled (template.c) and rendered (template_render.c):
 * the tree both sides share, private to src/engine. */
#ifndef SG_TEMPLATE_INT_H
#define SG_TEMPLATE_INT_H

#include <jansson.h>
#include <stddef.h>

#include "sg/buf.h"
#include "template.h"

#define TPL_REQUEST (-1) /* tpl_ref.from: the saga's request */

/* One segment of a reference's path, "items" or "0". */
typedef struct tpl_seg {
    char *key; /* owned */
    size_t len;
    int is_index; /* all digits: an array index when the value is an array */
    size_t index; /* SIZE_MAX when it does not fit */
} tpl_seg;

/* ${request.<path>} or ${steps.<name>.response.<path>}. */
typedef struct tpl_ref {
    int from; /* TPL_REQUEST or a step's index */
    size_t nseg;
    tpl_seg *seg; /* owned */
} tpl_ref;

/* A piece of a spliced string: literal text or a reference. */
typedef struct tpl_piece {
    char *text; /* a literal (owned), or NULL for the reference r */
    size_t len;
    tpl_ref r;
} tpl_piece;

/* CONST: a part of the body that names nothing, kept as its JSON text;
 * REF: a string that is exactly one reference (the value, typed);
 * SPLICE: a string with references inside (a string);
 * ARRAY, OBJECT: containers with at least one non-CONST kid. */
typedef enum { T_CONST, T_REF, T_SPLICE, T_ARRAY, T_OBJECT } tpl_kind;

typedef struct tpl_node {
    tpl_kind kind;
    char *text; /* CONST: compact JSON (owned) of len bytes */
    size_t len;
    tpl_ref r; /* REF */
    size_t n;  /* SPLICE: pieces; ARRAY, OBJECT: kids */
    tpl_piece *pieces;
    struct tpl_node *kids;
    char **keys; /* OBJECT: kids[i] follows keys[i], its key written "\"key\":" */
    size_t *keylen;
} tpl_node;

struct sg_template {
    tpl_node root;
    int uses_steps;
    size_t nsteps; /* the steps it may name */
    char **names;  /* names[i] of the steps it names (others NULL), for messages */
};

/* Appends v as compact JSON, keys in their order, reals in the fewest
 * digits that read back the same (19.99, not 19.989999999999998).
 * SG_ETOOBIG when b would pass its cap. */
sg_status sg__tpl_write(sg_buf *b, const json_t *v);

#endif
