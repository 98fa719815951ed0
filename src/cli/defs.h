/* The saga types sagad runs (design §6): the STA saga of the flags, or a
 * definitions file, loaded at start-up and again on SIGHUP; every version
 * a saga may run on is kept in the store and in the registry. */
#ifndef SG_CLI_DEFS_H
#define SG_CLI_DEFS_H

#include <stddef.h>
#include <uv.h>

#include "sg/config.h"
#include "sg/def.h"
#include "sg/store.h"

/* A definitions file read and validated, not yet in force; owns defs. */
typedef struct sg_defs_file {
    sg_def **defs;
    size_t n;
} sg_defs_file;

/* Start-up, before the store is touched: reads and validates the file
 * into f (empty without --definitions). 0, or 2 with err saying where
 * (f is then empty). */
int sg_defs_read(const sg_config *c, sg_defs_file *f, char *err, size_t errlen);

/* Start-up, after the store is open and before the engine starts: fills
 * the registry (include/sg/def.h) with the STA saga of the flags or with
 * f, which it takes whatever the outcome (f is left empty). Returns 0, or
 * the exit status with err saying why: 2 for a changed definition that
 * kept its version number, 1 for a store failure. c and store are
 * borrowed. */
int sg_defs_load(const sg_config *c, sg_store *store, sg_defs_file *f, char *err, size_t errlen);
void sg_defs_file_clear(sg_defs_file *f); /* destroys what f holds */

/* SIGHUP: reads the file again (loop thread). A file that validates and
 * whose new versions are durably stored becomes the current set; any
 * other outcome is logged and the old definitions stay. Nothing happens
 * without a --definitions file. */
void sg_defs_reload(const sg_config *c, sg_store *store);

#endif
