/* SPDX-License-Identifier: MIT */
/*
 * tools/bench/ref-scan.c: REF-SCAN, the replay reference (perf-anchors §9.4).
 *
 * read() a file in 1 MiB chunks and run CRC-32C over every byte, with the
 * same walu_crc32c() the local backend uses (utility/crc32c.h), so the
 * comparison measures the log format and the decode path, not two CRC
 * implementations.  The file (--file-bytes, default 1 GiB) is created once
 * with pseudo-random bytes and kept (--keep 1) so alternating runs reuse it;
 * one untimed pass makes it hot in the page cache, then --passes timed
 * passes are measured, as bench-local does for its replay.
 *
 * Usage: ref-scan --dir DIR [--file-bytes 1g] [--passes 1] [--keep 0]
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench-common.h"
#include "utility/crc32c.h"

#define CHUNK (1u << 20)

static void make_file(const char *path, uint64_t bytes, char *buf)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                bench_die(path, errno);
        uint64_t x = 0x9E3779B97F4A7C15ull;
        for (uint64_t off = 0; off < bytes; off += CHUNK) {
                for (size_t i = 0; i < CHUNK; i += 8) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        memcpy(buf + i, &x, 8);
                }
                size_t n = bytes - off < CHUNK ? (size_t)(bytes - off) : CHUNK;
                if (write(fd, buf, n) != (ssize_t)n)
                        bench_die("write", errno ? errno : EIO);
        }
        close(fd);
}

/* One pass; returns the bytes read and leaves the CRC in *crc. */
static uint64_t scan(const char *path, char *buf, uint32_t *crc)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                bench_die(path, errno);
        uint64_t total = 0;
        uint32_t c = 0;
        for (;;) {
                ssize_t n = read(fd, buf, CHUNK);
                if (n < 0)
                        bench_die("read", errno);
                if (n == 0)
                        break;
                c = walu_crc32c(c, buf, (size_t)n);
                total += (uint64_t)n;
        }
        close(fd);
        *crc = c;
        return total;
}

int main(int argc, char **argv)
{
        const char *dir = bench_arg(argc, argv, "dir", ".");
        uint64_t bytes = bench_arg_size(argc, argv, "file-bytes", "1g");
        int passes = atoi(bench_arg(argc, argv, "passes", "1"));
        int keep = atoi(bench_arg(argc, argv, "keep", "0"));
        char path[4096];
        snprintf(path, sizeof(path), "%s/ref-scan.dat", dir);
        char *buf = aligned_alloc(4096, CHUNK);
        if (!buf)
                bench_die("aligned_alloc", ENOMEM);

        struct stat st;
        if (stat(path, &st) < 0 || (uint64_t)st.st_size != bytes)
                make_file(path, bytes, buf);
        uint32_t crc;
        scan(path, buf, &crc); /* warm the page cache */

        uint64_t total = 0;
        struct timespec c0, c1;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
        uint64_t t0 = bench_now_ns();
        for (int p = 0; p < passes; p++)
                total += scan(path, buf, &crc);
        uint64_t t1 = bench_now_ns();
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
        double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;

        fprintf(stderr, "ref-scan: crc32c of the file = %08x; %.1f ms, cpu %.1f ms\n", crc,
                (double)(t1 - t0) / 1e6, cpu * 1e3);
        struct bench_result res = {
                .program = "ref-scan", .workload = "replay", .records = total / CHUNK,
                .bytes = total, .stored_bytes = total,
                .seconds = (double)(t1 - t0) / 1e9, .writers = 1,
                .record_bytes = CHUNK, .cpu_seconds = cpu,
        };
        bench_print(&res);
        if (!keep)
                unlink(path);
        free(buf);
        return 0;
}
