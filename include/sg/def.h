/* Saga definitions: an ordered list of steps, each an HTTP call or a
 * publish, each with an optional compensation. The engine and the store
 * run any definition; the STA image saga is one, built from the CLI, and
 * a definitions file (design §6) gives any number more. */
#ifndef SG_DEF_H
#define SG_DEF_H

#include <stddef.h>

#include "sg/status.h"

typedef enum { SG_ACTION_HTTP, SG_ACTION_PUBLISH } sg_action_kind;

typedef struct sg_template sg_template; /* a body template (src/engine/template.h) */

typedef struct sg_action {
    sg_action_kind kind;
    char *url;         /* HTTP: target, ${ENV} already expanded; owned */
    char *method;      /* HTTP: "POST" (default), "PUT", "PATCH", "DELETE" or "GET"; owned */
    char **headers;    /* HTTP: NULL-terminated "Name: value" lines, or NULL; owned */
    sg_template *body; /* HTTP: NULL = the request JSON as posted; owned */
    char *topic;       /* PUBLISH: topic; owned */
    /* PUBLISH: the event's payload, rendered once when the event is made
     * and stored with it; NULL = the request JSON as posted. Owned. */
    sg_template *payload;
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
    long timeout_ms; /* each attempt (and its compensation's); 0 = --step-timeout-ms */
} sg_step_def;

typedef struct sg_def {
    char *name;         /* stored with each saga: its type */
    char *success_text; /* "Saga completada exitosamente" */
    size_t nsteps;
    sg_step_def *steps; /* owned */
    int version;        /* 1 for the built-in STA saga */
    /* The saga's definition as written in the file (before ${ENV}
     * expansion), as compact JSON with sorted keys: what two versions are
     * compared by and what the store keeps. NULL for the built-in STA
     * saga, which is never stored. Owned. */
    char *canonical;
} sg_def;

/* The STA image saga of design §1 (anonymizer, tokenizer, ai_model). */
sg_status sg_def_create_sta(sg_def **out, const char *anonymizer_url, const char *ai_model_url);
void sg_def_destroy(sg_def *d); /* NULL-safe */
/* Gives every step of d the policy r (copied). */
void sg_def_set_retry(sg_def *d, const sg_retry *r);

/* ---- the definitions file (design §6) ---------------------------------- */

/* What a step gets when the file does not say: the retry policy of the
 * flags (--step-retries, --retry-backoff-ms). */
typedef struct sg_def_defaults {
    sg_retry retry;
} sg_def_defaults;

#define SG_DEF_MAX_STEPS 64
#define SG_DEF_MAX_HEADERS 32 /* a step's own headers */
#define SG_DEF_MAX_NAME 64    /* bytes of a saga type, step, output or label name */

/* Parses and validates the text of a definitions file. On success *out is
 * a malloc'd array of *n definitions (the caller's: sg_def_destroy each,
 * then free the array), the default type first. On failure nothing is
 * returned and err says where and why, "sagas.order.steps[1].http.url: not
 * an http(s) URL". Unset ${ENV} variables are errors; getenv is read. */
sg_status sg_defs_parse(const char *text, size_t len, const sg_def_defaults *dflt, sg_def ***out,
                        size_t *n, char *err, size_t errlen);
/* One saga type's definition from its canonical text (as sg_def.canonical
 * holds it, e.g. read back from the store): the same validation, errors
 * placed under "sagas.<name>". *out is the caller's. */
sg_status sg_def_parse_one(const char *name, const char *canonical, const sg_def_defaults *dflt,
                           sg_def **out, char *err, size_t errlen);

/* ---- the registry ------------------------------------------------------ */

/* Every definition version this process has loaded, and the current set
 * (what new sagas start on). Definitions are immutable and none is freed
 * before sg_def_clear, so a pointer from any lookup stays valid for the
 * process's life; lookups are safe from any thread while the loop thread
 * installs a new set (SIGHUP). */

/* Checks d against every version already known: SG_ECONFLICT (err says
 * which) if the same name and version is known with a different
 * canonical text. */
sg_status sg_def_check(const sg_def *d, char *err, size_t errlen);
/* Makes defs[0..n) the current set, defs[0] the default type. Takes the
 * definitions (and the array); one equal to a known version (same name,
 * version and canonical text) is dropped for the known one. */
void sg_def_install(sg_def **defs, size_t n);
/* Adds d (taken) as a known version that is not current: a version a
 * stored saga may still run on. Dropped if that name and version is
 * already known, whatever its text. */
void sg_def_keep(sg_def *d);
/* The registry takes d and makes it the only current definition: for the
 * built-in STA saga and tests. */
void sg_def_register(sg_def *d);
const sg_def *sg_def_find(const char *name); /* current version; NULL if unknown */
const sg_def *sg_def_find_version(const char *name, int version); /* any known; NULL if none */
const sg_def *sg_def_default(void);                               /* NULL before any install */
/* The current definitions in order (0 = the default type); NULL past the
 * end. A caller listing them all should take sg_def_generation() first
 * and start over if it changed meanwhile (a reload). */
const sg_def *sg_def_at(size_t i);
unsigned sg_def_generation(void);
/* Every known version of type name, ascending, into out[0..max); returns
 * how many there are. */
size_t sg_def_versions(const char *name, int *out, size_t max);
/* 1 if some current or known definition publishes (a step or a
 * compensation): whether sagad needs a bus at all. */
int sg_def_any_publish(void);
void sg_def_clear(void); /* destroys all, current and known */

#endif
