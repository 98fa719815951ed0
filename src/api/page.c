/* GET /sagas pages within a byte budget (see api_int.h).
 *
 * Records are rendered straight into the page; one that breaks the
 * budget is cut off again (the buffer is truncated back to where it
 * began), so the page never holds more than the budget plus one record. */
#include "api_int.h"

#include <stdint.h>
#include <string.h>

#include "sg/def.h"
#include "sg/json.h"
#include "render.h"

/* The most the closing part can take: ],"next":"<cursor>"} */
#define PAGE_TAIL_MAX (sizeof "],\"next\":\"\"}" + SG_CURSOR_MAX)

void sg_api_page_init(sg_api_page *p, size_t budget, size_t one_max)
{
    memset(p, 0, sizeof *p);
    p->budget = budget;
    p->one_max = one_max;
    sg_buf_init(&p->out, SIZE_MAX);
    sg_buf_adds(&p->out, "{\"sagas\":["); /* no cap to hit */
}

static void truncate_to(sg_buf *b, size_t len)
{
    b->len = len;
    if (b->ptr) b->ptr[len] = '\0';
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

sg_status sg_api_page_add(sg_api_page *p, const sg_saga_rec *r)
{
    if (p->full) return SG_OK;
    sg_buf *b = &p->out;
    size_t mark = b->len;
    sg_status st = p->count ? sg_buf_addc(b, ',') : SG_OK;
    /* The buffer's hard cap stops a record that does not fit before it is
     * rendered in full: one_max bytes for any record, and for all but the
     * first, what is left of the budget once the tail is counted in. */
    size_t start = b->len;
    size_t cap = start + min_size(p->one_max, SIZE_MAX - 1 - start);
    if (p->count) cap = min_size(cap, p->budget > PAGE_TAIL_MAX ? p->budget - PAGE_TAIL_MAX : 0);
    if (st == SG_OK && cap < start) st = SG_ETOOBIG;
    if (st == SG_OK) {
        b->max = cap;
        st = sg_render_saga(b, r, sg_def_find_version(r->def_name, r->def_version));
        b->max = SIZE_MAX;
    }
    if (st != SG_OK) {
        truncate_to(b, mark);
        if (!p->count) return SG_ETOOBIG;
        p->full = 1;
        return SG_OK;
    }
    p->count++;
    p->biggest = b->len - start > p->biggest ? b->len - start : p->biggest;
    sg_store_cursor(r, p->last);
    return SG_OK;
}

sg_status sg_api_page_finish(sg_api_page *p, const char *next)
{
    sg_buf *b = &p->out;
    if (p->full)
        next = p->last;
    else if (next && !next[0])
        next = NULL;
    sg_status st = sg_buf_adds(b, "],\"next\":");
    if (st == SG_OK) st = sg_json_add_cstr(b, next);
    if (st == SG_OK) st = sg_buf_addc(b, '}');
    return st;
}

void sg_api_page_free(sg_api_page *p)
{
    sg_buf_free(&p->out);
}
