/* The disk alone (issue 9: where the machine is the limit): how long an
 * fdatasync takes after a WAL-sized write, as sagad's store writer does
 * one per commit, depending on how long the disk was left idle before it.
 *
 *   fsync-probe DIR [BYTES] [COUNT]
 *
 * Writes a 4 MiB file in DIR (like a WAL that checkpoints recycle), then
 * for each idle gap in GAPS_US: COUNT times, wait the gap (spinning, so
 * the gap is exact and the CPU stays busy as the writer's is between
 * commits), write BYTES at the next offset in one write, fdatasync, and
 * time the fdatasync. Prints a markdown table of percentiles per gap.
 * The file is removed at the end. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FILE_BYTES (4u << 20)

static const unsigned GAPS_US[] = {0, 20, 50, 100, 200, 500, 1000};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(const uint64_t *v, size_t n, double p)
{
    size_t i = (size_t)(p * (double)(n - 1));
    return (double)v[i] / 1e6;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: fsync-probe DIR [BYTES] [COUNT]\n");
        return 2;
    }
    size_t bytes = argc > 2 ? strtoul(argv[2], NULL, 10) : 82400; /* 20 frames */
    size_t count = argc > 3 ? strtoul(argv[3], NULL, 10) : 1000;
    if (bytes == 0 || bytes > FILE_BYTES / 4 || count < 10) {
        fprintf(stderr, "fsync-probe: BYTES must be 1..%u, COUNT at least 10\n", FILE_BYTES / 4);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/fsync-probe.%d", argv[1], (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    unsigned char *buf = calloc(1, FILE_BYTES);
    uint64_t *t = calloc(count, sizeof *t);
    int rc = 1;
    if (fd < 0 || !buf || !t) {
        fprintf(stderr, "fsync-probe: %s: %s\n", path, strerror(errno));
        goto fail;
    }
    if (write(fd, buf, FILE_BYTES) != (ssize_t)FILE_BYTES || fsync(fd) != 0) {
        fprintf(stderr, "fsync-probe: preparing %s: %s\n", path, strerror(errno));
        goto fail;
    }
    memset(buf, 'w', bytes);
    printf("| idle gap before the write | fdatasync p50 | p90 | p99 | mean |\n");
    printf("|---:|---:|---:|---:|---:|\n");
    off_t off = 0;
    for (size_t g = 0; g < sizeof GAPS_US / sizeof GAPS_US[0]; g++) {
        uint64_t sum = 0;
        for (size_t i = 0; i < count; i++) {
            uint64_t until = now_ns() + GAPS_US[g] * 1000u;
            while (now_ns() < until) {
            }
            if (off + (off_t)bytes > (off_t)FILE_BYTES) off = 0;
            if (pwrite(fd, buf, bytes, off) != (ssize_t)bytes) {
                fprintf(stderr, "fsync-probe: write: %s\n", strerror(errno));
                goto fail;
            }
            off += (off_t)bytes;
            uint64_t t0 = now_ns();
            if (fdatasync(fd) != 0) {
                fprintf(stderr, "fsync-probe: fdatasync: %s\n", strerror(errno));
                goto fail;
            }
            t[i] = now_ns() - t0;
            sum += t[i];
        }
        qsort(t, count, sizeof *t, cmp_u64);
        printf("| %u µs | %.3f ms | %.3f ms | %.3f ms | %.3f ms |\n", GAPS_US[g],
               pct_ms(t, count, 0.5), pct_ms(t, count, 0.9), pct_ms(t, count, 0.99),
               (double)sum / (double)count / 1e6);
    }
    rc = 0;
fail:
    if (fd >= 0) {
        close(fd);
        unlink(path);
    }
    free(buf);
    free(t);
    return rc;
}
