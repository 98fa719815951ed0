/* sta-stubs: fake anonymizer, tokenizer webhook, AI model and named services for
 * the demo, the integration tests and the benchmark. See docs/stubs.md.
 * This file: flags, limits, signals. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "stubs.h"

static void usage(FILE *f)
{
    fputs("usage: sta-stubs [--listen HOST:PORT] [--threads N] [--quiet] [--record FILE]\n"
          "                 [--anonymizer SPEC] [--tokenizer SPEC] [--ai-model SPEC]\n"
          "\n"
          "  --listen HOST:PORT   address to serve on (default 127.0.0.1:7001; port 0 = any\n"
          "                       free port, printed on the first stdout line)\n"
          "  --threads N          HTTP worker threads (default 2)\n"
          "  --quiet              do not print one line per received event\n"
          "  --record FILE        also append every request received to FILE, one JSON\n"
          "                       line each (as GET /_requests shows them)\n"
          "  --anonymizer SPEC    default behaviour of POST /anonymize\n"
          "  --tokenizer SPEC     default behaviour of POST /events (tokenizer webhook)\n"
          "  --ai-model SPEC      default behaviour of POST /process\n"
          "  --help               this text\n"
          "\n"
          "SPEC is comma-separated: status=N,delay=MS,mode=json|nonjson|drop|hang|big,\n"
          "fail_every=K (every K-th request answers 500). Requests may override it with\n"
          "a \"_stub\" object in the body or X-Stub-Status/X-Stub-Delay-Ms/X-Stub-Mode\n"
          "headers; POST /_config changes it at run time. Any method on /svc/NAME is\n"
          "a named service answering {\"id\",\"service\",\"method\"}, configured as\n"
          "\"svc/NAME\" in /_config. See docs/stubs.md.\n",
          f);
}

/* "HOST:PORT", "[v6]:PORT" or ":PORT" (= 127.0.0.1). host and port point
 * into buf. */
static int split_listen(char *buf, const char **host, const char **port)
{
    char *colon = strrchr(buf, ':');
    if (!colon || colon[1] == '\0') return 0;
    *colon = '\0';
    *port = colon + 1;
    for (const char *p = *port; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    if (atol(*port) > 65535) return 0;
    char *h = buf;
    if (h[0] == '[') {
        size_t n = strlen(h);
        if (n < 2 || h[n - 1] != ']') return 0;
        h[n - 1] = '\0';
        h++;
    }
    *host = *h ? h : "127.0.0.1";
    return 1;
}

/* Every connection (and every hanging one) is a descriptor; the soft limit
 * of 1024 would cap a wrk run long before the connection limit. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"threads", required_argument, NULL, 't'},
        {"quiet", no_argument, NULL, 'q'},
        {"record", required_argument, NULL, 'r'},
        {"anonymizer", required_argument, NULL, 'A'},
        {"tokenizer", required_argument, NULL, 'T'},
        {"ai-model", required_argument, NULL, 'M'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char listen_buf[256] = "127.0.0.1:7001", listen_arg[256], err[256];
    stub_server_opts o = {.threads = 2};
    stub_server *srv = NULL;
    int opt;

    opterr = 0; /* we print our own message, then the usage */
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'l':
            if (strlen(optarg) >= sizeof listen_buf) {
                fprintf(stderr, "sta-stubs: --listen value too long\n");
                return 2;
            }
            strcpy(listen_buf, optarg);
            break;
        case 't': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || n < 1 || n > 256) {
                fprintf(stderr, "sta-stubs: --threads wants 1..256, got '%s'\n", optarg);
                return 2;
            }
            o.threads = (int)n;
            break;
        }
        case 'q':
            o.quiet = 1;
            break;
        case 'r':
            o.record_file = optarg;
            break;
        case 'A':
        case 'T':
        case 'M': {
            stub_svc svc = opt == 'A'   ? STUB_SVC_ANONYMIZER
                           : opt == 'T' ? STUB_SVC_TOKENIZER
                                        : STUB_SVC_AI_MODEL;
            if (stub_spec_parse_flag(optarg, &o.defaults[svc], err, sizeof err) != SG_OK) {
                fprintf(stderr, "sta-stubs: --%s: %s\n",
                        opt == 'M' ? "ai-model" : stub_svc_name(svc), err);
                return 2;
            }
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            if (optopt)
                fprintf(stderr, "sta-stubs: bad or incomplete option '-%c'\n", optopt);
            else
                fprintf(stderr, "sta-stubs: bad option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sta-stubs: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    memcpy(listen_arg, listen_buf, sizeof listen_arg); /* split_listen cuts listen_buf */
    if (!split_listen(listen_buf, &o.host, &o.port)) {
        fprintf(stderr, "sta-stubs: --listen wants HOST:PORT, got '%s'\n", listen_arg);
        usage(stderr);
        return 2;
    }

    /* Signals are taken synchronously by main (sigwait), so block them
     * before any thread exists; every thread inherits the mask. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN); /* a reader of our stdout may go away */
    raise_nofile();

    if (stub_server_start(&srv, &o, err, sizeof err) != SG_OK) {
        fprintf(stderr, "sta-stubs: %s\n", err);
        return 1;
    }
    printf("sta-stubs listening on %s%s%s:%d\n", strchr(o.host, ':') ? "[" : "", o.host,
           strchr(o.host, ':') ? "]" : "", stub_server_port(srv));
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    stub_server_stop(srv);
    return 0;
}
