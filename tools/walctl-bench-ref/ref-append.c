/* SPDX-License-Identifier: MIT */
/*
 * tools/walctl-bench-ref/ref-append.c: the reference side of the
 * "walctl append" benchmark: the same workload as `walctl append CHANNEL`,
 * written directly against the library with nothing else around it.
 *
 *   ref-append DIR CHANNEL [WINDOW]  < lines
 *
 * Opens CHANNEL read-write at term 1 on the local backend in DIR, cuts
 * standard input at newlines (a last line without one is a record too) and
 * appends each line with wal_append(), at most WINDOW (default 4096) in
 * flight: a counter of free slots, a callback that gives its slot back, a
 * condition variable the reader thread waits on when the window is full.
 * Exits 0 once every record is durable, printing the count on stderr.  No
 * acks, no ordering work, no signals: the floor walctl is measured against.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <wal/wal.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static size_t in_flight, window = 4096;
static int first_error;
static bool waiting;

static void done(void *userdata, int status, const wal_msg *msg, const wal_error *err)
{
        (void)userdata;
        (void)msg;
        (void)err;
        pthread_mutex_lock(&lock);
        if (status < 0 && !first_error)
                first_error = status;
        in_flight--;
        if (waiting)
                pthread_cond_signal(&cond);
        pthread_mutex_unlock(&lock);
}

static int append_one(wal *w, const char *p, size_t len)
{
        pthread_mutex_lock(&lock);
        while (in_flight >= window) {
                waiting = true;
                pthread_cond_wait(&cond, &lock);
                waiting = false;
        }
        in_flight++;
        pthread_mutex_unlock(&lock);
        wal_msg *m = NULL;
        int r = wal_msg_new(WAL_MSG_DATA, p, len, &m);
        if (r == 0)
                r = wal_append(w, m, done, NULL, NULL);
        wal_msg_unref(m);
        if (r < 0) {
                pthread_mutex_lock(&lock);
                in_flight--;
                pthread_mutex_unlock(&lock);
        }
        return r;
}

int main(int argc, char **argv)
{
        if (argc < 3 || argc > 4) {
                fprintf(stderr, "usage: %s DIR CHANNEL [WINDOW] < lines\n", argv[0]);
                return 64;
        }
        if (argc == 4)
                window = strtoul(argv[3], NULL, 10);
        wal_config *cfg = NULL;
        wal_opener *o = NULL;
        wal *w = NULL;
        wal_error *err = NULL;
        int r = wal_config_new(&cfg);
        if (r == 0)
                r = wal_config_set(cfg, "local.dir", argv[1], &err);
        if (r == 0)
                r = wal_opener_new("local", cfg, &o, &err);
        if (r == 0)
                r = wal_open(o, argv[2], 1, WAL_ACCESS_RW, &w, &err);
        if (r < 0) {
                fprintf(stderr, "ref-append: %s\n", err ? wal_error_message(err) : strerror(-r));
                return 1;
        }

        size_t cap = 1 << 20, len = 0;
        char *buf = malloc(cap);
        unsigned long long n = 0;
        for (bool eof = false; !eof && r == 0;) {
                if (len == cap) {
                        cap *= 2;
                        buf = realloc(buf, cap);
                }
                ssize_t got = read(STDIN_FILENO, buf + len, cap - len);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0)
                        eof = true;
                else
                        len += (size_t)got;
                size_t start = 0;
                for (;;) {
                        char *nl = memchr(buf + start, '\n', len - start);
                        if (!nl)
                                break;
                        r = append_one(w, buf + start, (size_t)(nl - buf - start));
                        if (r < 0)
                                break;
                        n++;
                        start = (size_t)(nl - buf) + 1;
                }
                memmove(buf, buf + start, len - start);
                len -= start;
        }
        if (r == 0 && len > 0) {
                r = append_one(w, buf, len);
                n += r == 0;
        }
        pthread_mutex_lock(&lock);
        while (in_flight > 0) {
                waiting = true;
                pthread_cond_wait(&cond, &lock);
                waiting = false;
        }
        if (r == 0)
                r = first_error;
        pthread_mutex_unlock(&lock);
        free(buf);
        wal_close(w);
        wal_opener_close(o);
        wal_config_free(cfg);
        if (r < 0) {
                fprintf(stderr, "ref-append: %s\n", strerror(-r));
                return 1;
        }
        fprintf(stderr, "ref-append: %llu records\n", n);
        return 0;
}
