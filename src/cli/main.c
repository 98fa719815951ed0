/* sagad's entry point: parses the flags and the environment, then hands
 * the config to the app (app.c); exit status 2 for a bad flag or value. */
#include <stdio.h>

#include "app.h"
#include "sg/config.h"

int main(int argc, char **argv)
{
    sg_config cfg;
    char err[512];
    int rc;
    if (sg_config_parse(&cfg, argc, argv, err, sizeof err) != SG_OK) {
        fprintf(stderr, "sagad: %s\n(see sagad --help)\n", err);
        rc = 2;
    } else if (cfg.help) {
        fputs(sg_config_usage(), stdout);
        rc = 0;
    } else {
        rc = sg_app_run(&cfg);
    }
    sg_config_free(&cfg);
    return rc;
}
