/* A real nats-server with JetStream for the NATS bus tests: a child process
 * on a free port of 127.0.0.1 with its own store directory, polled until it
 * accepts connections; stopped (and restarted on the same port and store)
 * by the test, killed at teardown. Header-only. A missing nats-server is a
 * failure, never a skip. */
#ifndef SG_TEST_NATS_SERVER_H
#define SG_TEST_NATS_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct nats_server {
    pid_t pid; /* 0 = not running */
    int port;
    char dir[64];         /* store directory (and log) */
    char url[64];         /* nats://127.0.0.1:port */
    const char *extra[8]; /* more arguments (auth, TLS), NULL-terminated */
} nats_server;

static const char *nats_server_bin(void)
{
    static const char *paths[] = {"/usr/sbin/nats-server", "/usr/bin/nats-server",
                                  "/usr/local/bin/nats-server"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
        if (access(paths[i], X_OK) == 0) return paths[i];
    return NULL;
}

static int nats_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int nats_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((unsigned short)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

static void nats_nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Starts it (again, on the same port and store when s->port is set);
 * 0 once it accepts connections, -1 on failure (with a message). */
static int nats_server_start(nats_server *s)
{
    const char *bin = nats_server_bin();
    if (!bin) {
        fprintf(stderr, "nats-server not found: install it (scripts/deps.sh)\n");
        return -1;
    }
    if (!s->port) {
        snprintf(s->dir, sizeof s->dir, "/tmp/sagad-nats-XXXXXX");
        if (!mkdtemp(s->dir)) return -1;
        if ((s->port = nats_free_port()) <= 0) return -1;
        snprintf(s->url, sizeof s->url, "nats://127.0.0.1:%d", s->port);
    }
    char port[16], log[96];
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(log, sizeof log, "%s/server.log", s->dir);
    const char *argv[20] = {bin, "-js", "-a", "127.0.0.1", "-p", port, "-sd", s->dir};
    int n = 8;
    for (int i = 0; i < 8 && s->extra[i]; i++)
        argv[n++] = s->extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    for (int i = 0; i < 500; i++) { /* up to 10 s */
        if (nats_accepts(s->port)) return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            s->pid = 0;
            fprintf(stderr, "nats-server exited at start; see %s\n", log);
            return -1;
        }
        nats_nap_ms(20);
    }
    fprintf(stderr, "nats-server did not accept connections within 10 s\n");
    return -1;
}

/* Stops it with sig (SIGKILL: a crash); the port and store stay. */
static void nats_server_stop(nats_server *s, int sig)
{
    if (s->pid <= 0) return;
    kill(s->pid, sig);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

/* Freezes it (connections stay open, nothing is answered) and returns once
 * it is stopped; nats_server_resume thaws it. (inline: not every test that
 * includes this freezes a server.) */
static inline void nats_server_pause(nats_server *s)
{
    int st;
    kill(s->pid, SIGSTOP);
    waitpid(s->pid, &st, WUNTRACED);
}

static inline void nats_server_resume(nats_server *s)
{
    kill(s->pid, SIGCONT);
}

/* Stops it for good and removes its store. */
static void nats_server_destroy(nats_server *s)
{
    nats_server_stop(s, SIGKILL);
    if (s->dir[0]) {
        char cmd[96];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", s->dir);
        s->dir[0] = '\0';
    }
    s->port = 0;
}

#endif
