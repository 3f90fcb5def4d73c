/* SPDX-License-Identifier: MIT */
/*
 * tests/helpers/t-helpers.c: temporary directories, free ports, clocks and
 * unique names for the test suites (t-helpers.h).
 *
 * Nothing here asserts: failures come back as negative errno values so the
 * helpers work on worker threads and inside fixtures alike.  Removal walks
 * the tree with nftw() depth-first and never follows symlinks, so a test can
 * never delete outside its own directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "t-helpers.h"

int t_tmpdir_new(const char *prefix, char **ret)
{
        if (!ret)
                return -EINVAL;
        const char *base = getenv("TMPDIR");
        if (!base || !*base)
                base = "/tmp";
        char *path = NULL;
        if (asprintf(&path, "%s/%s-XXXXXX", base, prefix ? prefix : "libwal-test") < 0)
                return -ENOMEM;
        if (!mkdtemp(path)) {
                int r = -errno;
                free(path);
                return r;
        }
        *ret = path;
        return 0;
}

static int rm_first_error;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)ftw;
        int r = flag == FTW_DP ? rmdir(path) : unlink(path);
        if (r < 0 && errno != ENOENT && rm_first_error == 0)
                rm_first_error = -errno;
        return 0;
}

int t_rm_rf(const char *path)
{
        if (!path)
                return -EINVAL;
        struct stat st;
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        /* nftw keeps no per-call state we could pass: tests are single
         * threaded when they clean up, and the value is reset per call. */
        rm_first_error = 0;
        if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0)
                return -errno;
        return rm_first_error;
}

int t_free_port(void)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        struct sockaddr_in sa = {
                .sin_family = AF_INET,
                .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                .sin_port = 0,
        };
        socklen_t len = sizeof(sa);
        int r = 0;
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
                r = -errno;
        close(fd);
        return r < 0 ? r : ntohs(sa.sin_port);
}

uint64_t t_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void t_sleep_ms(unsigned ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

int t_unique_name(const char *prefix, char *buf, size_t len)
{
        if (!prefix || !buf)
                return -EINVAL;
        unsigned char rnd[8];
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
                /* Fall back to time and pid: unique enough for test names. */
                uint64_t v = t_now_ms() ^ ((uint64_t)getpid() << 32);
                memcpy(rnd, &v, sizeof(rnd));
        }
        char suffix[9];
        for (size_t i = 0; i < 8; i++)
                suffix[i] = (char)('a' + rnd[i] % 26);
        suffix[8] = '\0';
        int n = snprintf(buf, len, "%s_%s", prefix, suffix);
        if (n < 0 || (size_t)n >= len)
                return -ENOSPC;
        return 0;
}
