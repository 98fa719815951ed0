/* Saga definitions: the STA image saga built from the flags, and the
 * read-only registry that finds a definition by the name a saga stores. */
#include "sg/def.h"

#include <stdlib.h>
#include <string.h>

#include "sg/alloc.h"

static void action_free(sg_action *a)
{
    free(a->url);
    free(a->method);
    for (char **h = a->headers; h && *h; h++)
        free(*h);
    free(a->headers);
    free(a->topic);
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

/* Filled before any thread starts and read-only afterwards. */
#define MAX_DEFS 16
static sg_def *registry[MAX_DEFS];
static size_t registry_len;

void sg_def_register(sg_def *d)
{
    if (registry_len == MAX_DEFS) abort(); /* a programming error, not input */
    registry[registry_len++] = d;
}

const sg_def *sg_def_find(const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; i < registry_len; i++)
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    return NULL;
}

const sg_def *sg_def_at(size_t i)
{
    return i < registry_len ? registry[i] : NULL;
}

void sg_def_clear(void)
{
    for (size_t i = 0; i < registry_len; i++)
        sg_def_destroy(registry[i]);
    registry_len = 0;
}
