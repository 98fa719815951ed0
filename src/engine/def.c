/* Saga definitions: the STA image saga built from the flags, and the
 * registry that finds a definition by the name (and version) a saga
 * stores; a reload swaps the current set while other threads read. */
#include "sg/def.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sg/alloc.h"
#include "template.h"

static void action_free(sg_action *a)
{
    free(a->url);
    free(a->method);
    for (char **h = a->headers; h && *h; h++)
        free(*h);
    free(a->headers);
    sg_template_destroy(a->body);
    free(a->topic);
    sg_template_destroy(a->payload);
}

void sg_def_destroy(sg_def *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->nsteps; i++) {
        sg_step_def *s = &d->steps[i];
        free(s->name);
        free(s->service);
        free(s->result_key);
        free(s->result_text);
        action_free(&s->action);
        if (s->has_compensation) action_free(&s->compensation);
    }
    free(d->steps);
    free(d->name);
    free(d->success_text);
    free(d->canonical);
    free(d);
}

void sg_def_set_retry(sg_def *d, const sg_retry *r)
{
    for (size_t i = 0; i < d->nsteps; i++)
        d->steps[i].retry = *r;
}

static void http_step(sg_step_def *s, const char *name, const char *service, const char *key,
                      const char *url)
{
    s->name = sg_xstrdup(name);
    s->service = sg_xstrdup(service);
    s->result_key = sg_xstrdup(key);
    s->action.kind = SG_ACTION_HTTP;
    s->action.url = sg_xstrdup(url);
    s->action.method = sg_xstrdup("POST");
}

sg_status sg_def_create_sta(sg_def **out, const char *anonymizer_url, const char *ai_model_url)
{
    *out = NULL;
    if (!anonymizer_url || !ai_model_url) return SG_EINVAL;
    sg_def *d = sg_xcalloc(1, sizeof *d);
    d->name = sg_xstrdup("sta");
    d->version = 1;
    d->success_text = sg_xstrdup("Saga completada exitosamente");
    d->nsteps = 3;
    d->steps = sg_xcalloc(3, sizeof *d->steps);

    http_step(&d->steps[0], "anonymizer", "Anonymizer", "anonymized", anonymizer_url);

    sg_step_def *tok = &d->steps[1];
    tok->name = sg_xstrdup("tokenizer");
    tok->service = sg_xstrdup("Tokenizer");
    tok->result_key = sg_xstrdup("tokenizer_event");
    tok->result_text = sg_xstrdup("event_published");
    tok->action.kind = SG_ACTION_PUBLISH;
    tok->action.topic = sg_xstrdup("tokenizer_event");
    /* The seed compensates a step-3 failure by telling the tokenizer: that
     * is the compensation of the step that published to it. */
    tok->has_compensation = 1;
    tok->compensation.kind = SG_ACTION_PUBLISH;
    tok->compensation.topic = sg_xstrdup("tokenizer_compensation");

    http_step(&d->steps[2], "ai_model", "AI Model Process", "ai_result", ai_model_url);
    sg_retry r = SG_RETRY_DEFAULT;
    sg_def_set_retry(d, &r);
    *out = d;
    return SG_OK;
}

/* ---- the registry ------------------------------------------------------ */

/* An immutable current set; replaced whole by an install, kept until
 * sg_def_clear because another thread may still be reading it. */
typedef struct defset {
    const sg_def **defs;
    size_t n;
    struct defset *older;
} defset;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static sg_def **known; /* every version loaded, owned */
static size_t nknown, capknown;
static defset *current;
static unsigned generation;

static int same_text(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

/* Under reg_lock. */
static sg_def *known_find(const char *name, int version)
{
    for (size_t i = 0; i < nknown; i++)
        if (known[i]->version == version && strcmp(known[i]->name, name) == 0) return known[i];
    return NULL;
}

/* Under reg_lock: d itself, or the equal known version (d destroyed). */
static sg_def *known_add(sg_def *d)
{
    sg_def *k = known_find(d->name, d->version);
    if (k && same_text(k->canonical, d->canonical)) {
        sg_def_destroy(d);
        return k;
    }
    if (nknown == capknown) {
        capknown = capknown ? capknown * 2 : 8;
        known = sg_xrealloc(known, capknown * sizeof *known);
    }
    known[nknown++] = d;
    return d;
}

sg_status sg_def_check(const sg_def *d, char *err, size_t errlen)
{
    pthread_mutex_lock(&reg_lock);
    sg_def *k = known_find(d->name, d->version);
    /* The built-in saga (no text) is never compared: it is not stored. */
    int clash = k && k->canonical && d->canonical && strcmp(k->canonical, d->canonical) != 0;
    pthread_mutex_unlock(&reg_lock);
    if (!clash) return SG_OK;
    snprintf(err, errlen,
             "sagas.%s.version: version %d is already in use by a different definition of "
             "'%s'; give the changed definition a new version number",
             d->name, d->version, d->name);
    return SG_ECONFLICT;
}

void sg_def_install(sg_def **defs, size_t n)
{
    defset *set = sg_xcalloc(1, sizeof *set);
    set->defs = sg_xcalloc(n ? n : 1, sizeof *set->defs);
    set->n = n;
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < n; i++)
        set->defs[i] = known_add(defs[i]);
    set->older = current;
    current = set;
    generation++;
    pthread_mutex_unlock(&reg_lock);
    free(defs);
}

void sg_def_keep(sg_def *d)
{
    pthread_mutex_lock(&reg_lock);
    if (known_find(d->name, d->version))
        sg_def_destroy(d); /* the version in force (or kept) stays */
    else
        known_add(d);
    pthread_mutex_unlock(&reg_lock);
}

void sg_def_register(sg_def *d)
{
    sg_def **one = sg_xmalloc(sizeof *one);
    one[0] = d;
    sg_def_install(one, 1);
}

const sg_def *sg_def_find(const char *name)
{
    const sg_def *d = NULL;
    if (!name) return NULL;
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; current && i < current->n && !d; i++)
        if (strcmp(current->defs[i]->name, name) == 0) d = current->defs[i];
    pthread_mutex_unlock(&reg_lock);
    return d;
}

const sg_def *sg_def_find_version(const char *name, int version)
{
    if (!name) return NULL;
    pthread_mutex_lock(&reg_lock);
    const sg_def *d = known_find(name, version);
    pthread_mutex_unlock(&reg_lock);
    return d;
}

const sg_def *sg_def_default(void)
{
    return sg_def_at(0);
}

const sg_def *sg_def_at(size_t i)
{
    pthread_mutex_lock(&reg_lock);
    const sg_def *d = current && i < current->n ? current->defs[i] : NULL;
    pthread_mutex_unlock(&reg_lock);
    return d;
}

unsigned sg_def_generation(void)
{
    pthread_mutex_lock(&reg_lock);
    unsigned g = generation;
    pthread_mutex_unlock(&reg_lock);
    return g;
}

size_t sg_def_versions(const char *name, int *out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < nknown; i++) {
        if (strcmp(known[i]->name, name) != 0) continue;
        /* Insertion into the ascending prefix kept so far. */
        size_t at = n < max ? n : max;
        while (at > 0 && out[at - 1] > known[i]->version) {
            if (at < max) out[at] = out[at - 1];
            at--;
        }
        if (at < max) out[at] = known[i]->version;
        n++;
    }
    pthread_mutex_unlock(&reg_lock);
    return n;
}

static int action_publishes(const sg_action *a)
{
    return a->kind == SG_ACTION_PUBLISH;
}

int sg_def_any_publish(void)
{
    int any = 0;
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < nknown && !any; i++)
        for (size_t j = 0; j < known[i]->nsteps && !any; j++) {
            const sg_step_def *s = &known[i]->steps[j];
            any = action_publishes(&s->action) ||
                  (s->has_compensation && action_publishes(&s->compensation));
        }
    pthread_mutex_unlock(&reg_lock);
    return any;
}

void sg_def_clear(void)
{
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < nknown; i++)
        sg_def_destroy(known[i]);
    free(known);
    known = NULL;
    nknown = capknown = 0;
    while (current) {
        defset *older = current->older;
        free(current->defs);
        free(current);
        current = older;
    }
    generation++;
    pthread_mutex_unlock(&reg_lock);
}
