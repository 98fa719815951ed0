/* The saga types sagad runs (design §6): the STA saga of the flags, or a
 * definitions file, loaded at start-up and again on SIGHUP; every version
 * a saga may run on is kept in the store and in the registry. */
#ifndef SG_CLI_DEFS_H
#define SG_CLI_DEFS_H

#include <stddef.h>
#include <uv.h>

#include "sg/config.h"
#include "sg/store.h"

/* Start-up, before the store is touched: 2 with err saying where, if the
 * file cannot be read or does not validate (nothing is kept). */
int sg_defs_validate(const sg_config *c, char *err, size_t errlen);

/* Start-up, after the store is open and before the engine starts: fills
 * the registry (include/sg/def.h). Returns 0, or the exit status with err
 * saying why: 2 for a file that does not validate or a changed definition
 * that kept its version number, 1 for a store failure. c and store are
 * borrowed. */
int sg_defs_load(const sg_config *c, sg_store *store, char *err, size_t errlen);

/* SIGHUP: reads the file again (loop thread). A file that validates and
 * whose new versions are durably stored becomes the current set; any
 * other outcome is logged and the old definitions stay. Nothing happens
 * without a --definitions file. */
void sg_defs_reload(const sg_config *c, sg_store *store);

#endif
