/* Saga definitions: an ordered list of steps, each an HTTP call or a
 * publish, each with an optional compensation. The engine and the store
 * run any definition; the STA image saga is one, built from the CLI. */
#ifndef SG_DEF_H
#define SG_DEF_H

#include <stddef.h>

#include "sg/status.h"

typedef enum { SG_ACTION_HTTP, SG_ACTION_PUBLISH } sg_action_kind;

typedef struct sg_action {
    sg_action_kind kind;
    char *url;   /* HTTP: POST target; owned */
    char *topic; /* PUBLISH: topic; owned */
} sg_action;

/* How often a step is tried (design §1): attempts in all (1 = no retry),
 * the first backoff, its growth and its cap; each wait is drawn uniformly
 * from [0, backoff] (full jitter). */
typedef struct sg_retry {
    int attempts;
    long backoff_ms;
    double multiplier;
    long max_backoff_ms;
} sg_retry;

#define SG_RETRY_DEFAULT ((sg_retry){1, 100, 2.0, 10000})

typedef struct sg_step_def {
    char *name;        /* "anonymizer": step name in records and Idempotency-Key */
    char *service;     /* "Anonymizer": label in error messages */
    char *result_key;  /* key in processed_data / data, e.g. "anonymized" */
    char *result_text; /* PUBLISH: string stored as its result ("event_published") */
    sg_action action;
    int has_compensation;
    sg_action compensation; /* run (through the outbox) if a later step fails */
    sg_retry retry;
} sg_step_def;

typedef struct sg_def {
    char *name;         /* stored with each saga: its type */
    char *success_text; /* "Saga completada exitosamente" */
    size_t nsteps;
    sg_step_def *steps; /* owned */
    int version;        /* 1 for the built-in STA saga */
} sg_def;

/* The STA image saga of design §1 (anonymizer, tokenizer, ai_model). */
sg_status sg_def_create_sta(sg_def **out, const char *anonymizer_url, const char *ai_model_url);
void sg_def_destroy(sg_def *d); /* NULL-safe */
/* Gives every step of d the policy r (copied). */
void sg_def_set_retry(sg_def *d, const sg_retry *r);

/* Registry of definitions, filled at start-up and read-only afterwards, so
 * any thread may look up. The registry takes d. */
void sg_def_register(sg_def *d);
const sg_def *sg_def_find(const char *name); /* NULL if unknown */
/* The registered definitions in order (0 = the default type); NULL past
 * the end. Borrowed, like sg_def_find's. */
const sg_def *sg_def_at(size_t i);
void sg_def_clear(void); /* destroys all registered */

#endif
