/* The sagad process: builds every component from a config and runs it. */
#ifndef SG_CLI_APP_H
#define SG_CLI_APP_H

#include "sg/config.h"

/* Returns the process exit status: 0 after a clean shutdown, 2 for a bad
 * value found at start (bus URL, port in use), 1 for other failures. */
int sg_app_run(const sg_config *cfg);

#endif
