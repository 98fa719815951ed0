/* The sagad process: builds every component from a config and runs it. */
#ifndef SG_CLI_APP_H
#define SG_CLI_APP_H

#include <stdlib.h>
#include <uv.h>

#include "sg/alloc.h"
#include "sg/config.h"

/* Returns the process exit status: 0 after a clean shutdown, 2 for a bad
 * value found at start (bus URL, port in use), 1 for other failures. */
int sg_app_run(const sg_config *cfg);

static inline uv_loop_t *sg_xloop_new(void)
{
    uv_loop_t *l = sg_xmalloc(sizeof *l);
    if (uv_loop_init(l) != 0) abort();
    return l;
}

#endif
