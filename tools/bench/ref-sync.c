/* SPDX-License-Identifier: MIT */
/*
 * tools/bench/ref-sync.c: REF-SYNC, the one-writer durability reference
 * (perf-anchors §9.2, 1-writer case).
 *
 * One thread, one record at a time: pwrite() a record of --record-bytes
 * (default 100) at the next offset of a posix_fallocate()d file, then
 * fdatasync(); the record is durable when fdatasync returns.  This is the
 * fastest a blocking single writer can possibly go on this disk, so
 * bench-local's "sync1" workload is compared to it.  The file is
 * preallocated (--file-bytes, default 256 MiB) because the local backend
 * preallocates its segments; the offset wraps to 0 at the end (a rewrite of
 * already-written blocks), which does not happen in a 2-3 s run.
 *
 * Usage: ref-sync --dir DIR [--seconds 3] [--record-bytes 100]
 *                 [--file-bytes 256m]
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench-common.h"

int main(int argc, char **argv)
{
        const char *dir = bench_arg(argc, argv, "dir", ".");
        double seconds = bench_arg_double(argc, argv, "seconds", "3");
        size_t rec = bench_arg_size(argc, argv, "record-bytes", "100");
        uint64_t file_bytes = bench_arg_size(argc, argv, "file-bytes", "256m");
        char path[4096];
        snprintf(path, sizeof(path), "%s/ref-sync.dat", dir);

        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                bench_die(path, errno);
        int r = posix_fallocate(fd, 0, (off_t)file_bytes);
        if (r)
                bench_die("posix_fallocate", r);
        if (fsync(fd) < 0)
                bench_die("fsync", errno);

        char *buf = malloc(rec);
        if (!buf)
                bench_die("malloc", ENOMEM);
        memset(buf, 'r', rec);

        struct bench_lat lat = { 0 };
        uint64_t n = 0, off = 0, syncs = 0;
        uint64_t start = bench_now_ns();
        uint64_t end = start + (uint64_t)(seconds * 1e9);
        uint64_t now = start;
        while (now < end) {
                memcpy(buf, &n, rec < sizeof(n) ? rec : sizeof(n));
                if (off + rec > file_bytes)
                        off = 0;
                if (pwrite(fd, buf, rec, (off_t)off) != (ssize_t)rec)
                        bench_die("pwrite", errno ? errno : EIO);
                if (fdatasync(fd) < 0)
                        bench_die("fdatasync", errno);
                syncs++;
                uint64_t t = bench_now_ns();
                bench_lat_add(&lat, t - now);
                now = t;
                off += rec;
                n++;
        }
        struct bench_result res = {
                .program = "ref-sync", .workload = "sync1", .records = n,
                .bytes = n * rec, .seconds = (double)(now - start) / 1e9,
                .syncs = syncs, .writers = 1, .record_bytes = rec, .lat = &lat,
        };
        bench_print(&res);
        close(fd);
        unlink(path);
        free(buf);
        free(lat.v);
        return 0;
}
