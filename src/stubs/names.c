/* Named fake services, /svc/<name>: a bounded table of the names seen, each
 * with its request count (which numbers its answer ids), its runtime spec
 * from /_config and its fail_every counter. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sg/alloc.h"
#include "stubs.h"

#define uthash_malloc(sz) sg_xmalloc(sz)
#include <uthash.h>

/* Names counted one by one; a request to yet another name (a test that
 * loops over random names) counts on the shared overflow counter. A name
 * that /_config gives a spec always gets an entry. */
#define NAMES_TRACKED 4096

typedef struct named {
    char name[STUB_NAME_MAX + 1];
    int configured;
    stub_spec spec;
    unsigned long long count; /* requests received: numbers the ids */
    unsigned long long seq;   /* fail_every counter */
    UT_hash_handle hh;
} named;

struct stub_names {
    pthread_mutex_t lock;
    named *by_name;
    size_t n;          /* entries */
    size_t configured; /* entries with a spec */
    unsigned long long overflow_count, overflow_seq;
};

int stub_name_ok(const char *s, size_t n)
{
    if (n < 1 || n > STUB_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

stub_names *stub_names_create(void)
{
    stub_names *t = sg_xcalloc(1, sizeof *t);
    pthread_mutex_init(&t->lock, NULL);
    return t;
}

void stub_names_destroy(stub_names *t)
{
    if (!t) return;
    named *e, *tmp;
    HASH_ITER(hh, t->by_name, e, tmp)
    {
        HASH_DEL(t->by_name, e);
        free(e);
    }
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* Caller holds the lock. */
static named *find(stub_names *t, const char *name)
{
    named *e = NULL;
    HASH_FIND_STR(t->by_name, name, e);
    return e;
}

/* Caller holds the lock; name is valid. */
static named *add(stub_names *t, const char *name)
{
    named *e = sg_xcalloc(1, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    HASH_ADD_STR(t->by_name, name, e);
    t->n++;
    return e;
}

void stub_names_arrive(stub_names *t, const char *name, stub_spec *spec, char *id, size_t idlen)
{
    memset(spec, 0, sizeof *spec);
    pthread_mutex_lock(&t->lock);
    named *e = find(t, name);
    if (!e && t->n < NAMES_TRACKED) e = add(t, name);
    if (e) {
        if (e->configured) *spec = e->spec;
        snprintf(id, idlen, "%s-%llu", name, ++e->count);
    } else {
        snprintf(id, idlen, "%s-o%llu", name, ++t->overflow_count);
    }
    pthread_mutex_unlock(&t->lock);
}

unsigned long long stub_names_tick(stub_names *t, const char *name)
{
    pthread_mutex_lock(&t->lock);
    named *e = find(t, name);
    unsigned long long k = e ? ++e->seq : ++t->overflow_seq;
    pthread_mutex_unlock(&t->lock);
    return k;
}

typedef struct change {
    const char *name; /* into the config object */
    int reset;
    stub_spec spec;
} change;

sg_status stub_names_configure(stub_names *t, const json_t *config, char *err, size_t errlen)
{
    /* Room to reset every configured name and set as many new ones. */
    change want[2 * STUB_NAMES_CONFIGURED];
    size_t nw = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)config, key, v)
    {
        if (strncmp(key, "svc/", 4) != 0) continue;
        const char *name = key + 4;
        if (!stub_name_ok(name, strlen(name))) {
            snprintf(err, errlen,
                     "bad service name '%.80s' (want svc/NAME, NAME [A-Za-z0-9_.-]{1,%d})", key,
                     STUB_NAME_MAX);
            return SG_EINVAL;
        }
        if (nw == sizeof want / sizeof *want) {
            snprintf(err, errlen, "more than %d svc/ keys", 2 * STUB_NAMES_CONFIGURED);
            return SG_EINVAL;
        }
        change *c = &want[nw++];
        memset(c, 0, sizeof *c);
        c->name = name;
        c->reset = json_is_null(v);
        if (!c->reset && stub_spec_apply_json(&c->spec, v, err, errlen) != SG_OK) return SG_EINVAL;
    }

    pthread_mutex_lock(&t->lock);
    size_t configured = t->configured;
    for (size_t i = 0; i < nw; i++) {
        named *e = find(t, want[i].name);
        int was = e && e->configured;
        if (!was && !want[i].reset)
            configured++;
        else if (was && want[i].reset)
            configured--;
    }
    if (configured > STUB_NAMES_CONFIGURED) {
        pthread_mutex_unlock(&t->lock);
        snprintf(err, errlen, "at most %d services may have a spec (reset some with null)",
                 STUB_NAMES_CONFIGURED);
        return SG_EINVAL;
    }
    for (size_t i = 0; i < nw; i++) {
        named *e = find(t, want[i].name);
        if (!e && want[i].reset) continue;
        if (!e) e = add(t, want[i].name);
        e->configured = !want[i].reset;
        e->spec = want[i].spec;
        e->seq = 0; /* fail_every counts from the new config */
    }
    t->configured = configured;
    pthread_mutex_unlock(&t->lock);
    return SG_OK;
}

void stub_names_config_json(stub_names *t, json_t *obj)
{
    char key[STUB_NAME_MAX + 8];
    pthread_mutex_lock(&t->lock);
    for (named *e = t->by_name; e; e = e->hh.next) {
        if (!e->configured) continue;
        snprintf(key, sizeof key, "svc/%s", e->name);
        json_object_set_new(obj, key, stub_spec_to_json(&e->spec));
    }
    pthread_mutex_unlock(&t->lock);
}
