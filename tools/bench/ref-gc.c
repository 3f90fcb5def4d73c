/* SPDX-License-Identifier: MIT */
/*
 * tools/bench/ref-gc.c: REF-GC, the naive group-commit reference
 * (perf-anchors §9.2).
 *
 * N writer threads each append one record (default 100 B) at a time into a
 * shared 4 MiB buffer under ONE mutex, wake the flusher, and wait on a
 * condition variable until the durable LSN covers their record.  A single
 * flusher thread swaps the two buffers, pwrite()s the full one at the file
 * tail, fdatasync()s, publishes the durable LSN and broadcasts.  While the
 * flusher syncs, writers keep filling the other buffer: that is the whole
 * of group commit, done the obvious way.  bench-local's "writers16" and
 * "writers64" workloads are compared to it.
 *
 * The file is posix_fallocate()d (--prealloc 1, the default) to match the
 * local backend's preallocated segments; --prealloc 0 gives the growing-file
 * variant of perf-anchors §9.2.
 *
 * Usage: ref-gc --dir DIR --writers N [--seconds 3] [--record-bytes 100]
 *               [--file-bytes 1g] [--prealloc 1]
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench-common.h"

#define BUF_BYTES (4u << 20)

struct gc {
        pthread_mutex_t lock;
        pthread_cond_t work;       /* flusher waits: data to flush or stop */
        pthread_cond_t durable_cv; /* writers wait: durable moved */
        pthread_cond_t space;      /* writers wait: the active buffer has room */
        char *active, *flushing;
        size_t active_len;
        uint64_t appended;         /* LSN of the last record copied in */
        uint64_t durable;          /* LSN of the last durable record */
        bool stop;
        int fd;
        uint64_t file_off, file_bytes;
        uint64_t syncs;
        int err;
        /* per run */
        size_t rec;
        uint64_t end_ns;
};

struct writer {
        struct gc *g;
        pthread_t tid;
        uint64_t n;
        struct bench_lat lat;
};

static void *flusher_main(void *arg)
{
        struct gc *g = arg;
        pthread_mutex_lock(&g->lock);
        for (;;) {
                while (g->active_len == 0 && !g->stop)
                        pthread_cond_wait(&g->work, &g->lock);
                if (g->active_len == 0 && g->stop)
                        break;
                char *b = g->active;
                size_t len = g->active_len;
                uint64_t upto = g->appended;
                g->active = g->flushing;
                g->flushing = b;
                g->active_len = 0;
                pthread_cond_broadcast(&g->space);
                pthread_mutex_unlock(&g->lock);

                if (g->file_off + len > g->file_bytes)
                        g->file_off = 0;
                int err = 0;
                if (pwrite(g->fd, b, len, (off_t)g->file_off) != (ssize_t)len)
                        err = errno ? errno : EIO;
                else if (fdatasync(g->fd) < 0)
                        err = errno;
                g->file_off += len;

                pthread_mutex_lock(&g->lock);
                g->syncs++;
                if (err) {
                        g->err = err;
                        g->stop = true;
                }
                g->durable = upto;
                pthread_cond_broadcast(&g->durable_cv);
        }
        pthread_mutex_unlock(&g->lock);
        return NULL;
}

static void *writer_main(void *arg)
{
        struct writer *w = arg;
        struct gc *g = w->g;
        char rec[65536];
        size_t len = g->rec;
        memset(rec, 'g', len);
        for (;;) {
                uint64_t t0 = bench_now_ns();
                if (t0 >= g->end_ns)
                        break;
                pthread_mutex_lock(&g->lock);
                while (g->active_len + len > BUF_BYTES && !g->stop)
                        pthread_cond_wait(&g->space, &g->lock);
                if (g->stop) {
                        pthread_mutex_unlock(&g->lock);
                        break;
                }
                memcpy(g->active + g->active_len, rec, len);
                g->active_len += len;
                uint64_t my = ++g->appended;
                pthread_cond_signal(&g->work);
                while (g->durable < my && !g->err)
                        pthread_cond_wait(&g->durable_cv, &g->lock);
                pthread_mutex_unlock(&g->lock);
                bench_lat_add(&w->lat, bench_now_ns() - t0);
                w->n++;
        }
        return NULL;
}

int main(int argc, char **argv)
{
        const char *dir = bench_arg(argc, argv, "dir", ".");
        double seconds = bench_arg_double(argc, argv, "seconds", "3");
        int nw = atoi(bench_arg(argc, argv, "writers", "16"));
        size_t rec = bench_arg_size(argc, argv, "record-bytes", "100");
        uint64_t file_bytes = bench_arg_size(argc, argv, "file-bytes", "1g");
        bool prealloc = atoi(bench_arg(argc, argv, "prealloc", "1")) != 0;
        if (nw < 1 || rec < 1 || rec > 65536) {
                fprintf(stderr, "ref-gc: --writers >= 1, 1 <= --record-bytes <= 65536\n");
                return 2;
        }
        char path[4096];
        snprintf(path, sizeof(path), "%s/ref-gc.dat", dir);

        struct gc g = { .rec = rec, .file_bytes = file_bytes };
        pthread_mutex_init(&g.lock, NULL);
        pthread_cond_init(&g.work, NULL);
        pthread_cond_init(&g.durable_cv, NULL);
        pthread_cond_init(&g.space, NULL);
        g.active = malloc(BUF_BYTES);
        g.flushing = malloc(BUF_BYTES);
        if (!g.active || !g.flushing)
                bench_die("malloc", ENOMEM);
        g.fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (g.fd < 0)
                bench_die(path, errno);
        if (prealloc) {
                int r = posix_fallocate(g.fd, 0, (off_t)file_bytes);
                if (r)
                        bench_die("posix_fallocate", r);
        } else {
                g.file_bytes = UINT64_MAX;
        }
        if (fsync(g.fd) < 0)
                bench_die("fsync", errno);

        struct writer *ws = calloc((size_t)nw, sizeof(*ws));
        if (!ws)
                bench_die("calloc", ENOMEM);
        pthread_t ft;
        uint64_t start = bench_now_ns();
        g.end_ns = start + (uint64_t)(seconds * 1e9);
        pthread_create(&ft, NULL, flusher_main, &g);
        for (int i = 0; i < nw; i++) {
                ws[i].g = &g;
                pthread_create(&ws[i].tid, NULL, writer_main, &ws[i]);
        }
        struct bench_lat lat = { 0 };
        uint64_t n = 0;
        for (int i = 0; i < nw; i++) {
                pthread_join(ws[i].tid, NULL);
                n += ws[i].n;
                bench_lat_merge(&lat, &ws[i].lat);
        }
        uint64_t stop = bench_now_ns();
        pthread_mutex_lock(&g.lock);
        g.stop = true;
        pthread_cond_signal(&g.work);
        pthread_mutex_unlock(&g.lock);
        pthread_join(ft, NULL);
        if (g.err)
                bench_die("flusher", g.err);

        char wl[32];
        snprintf(wl, sizeof(wl), "writers%d", nw);
        struct bench_result res = {
                .program = "ref-gc", .workload = wl, .records = n, .bytes = n * rec,
                .seconds = (double)(stop - start) / 1e9, .syncs = g.syncs, .writers = nw,
                .record_bytes = rec, .lat = &lat,
        };
        bench_print(&res);
        close(g.fd);
        unlink(path);
        free(g.active);
        free(g.flushing);
        free(ws);
        free(lat.v);
        return 0;
}
