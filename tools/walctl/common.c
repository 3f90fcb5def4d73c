/* SPDX-License-Identifier: MIT */
/*
 * tools/walctl/common.c: what the data commands share: opening the backend
 * and a channel, reporting a failed library call, signals, value parsing.
 *
 * Terms.  A read-write open takes ownership at a term and fences every lower
 * one, so walctl must not pick a term carelessly: without --term it first
 * opens the channel read-only and asks who owns it (wal_info's owner_term),
 * then opens read-write at that same term, which joins the current writer
 * rather than fencing it (1 for a channel that does not exist yet, or whose
 * backend does not know).  --term N forces N: lower than the owner's, the
 * open fails with -ESTALE (exit 75); higher, it fences the owner.
 *
 * Signals.  Commands that wait (read -f, append from a terminal, bench) block
 * SIGINT and SIGTERM before any library thread exists and poll a signalfd
 * next to their other descriptors, so an interrupt is an ordinary event in
 * the loop (no async-signal-safety puzzles, no EINTR paths) and every thread
 * libwal starts inherits the mask.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "walctl.h"

int walctl_fail(const char *what, int r, wal_error *err)
{
        walctl_error(what, "%s", err ? wal_error_message(err) : wal_strerror(r));
        wal_error_free(err);
        return walctl_exit_code(r);
}

/* ---- Backends and channels ---- */

/* @msg (borrowed) past its start when it starts with the text @fmt, @name
 * makes (one %s); else @msg itself. */
static const char *skip_prefix(const char *msg, const char *fmt, const char *name)
{
        char pfx[300];
        int n = snprintf(pfx, sizeof(pfx), fmt, name);
        if (n > 0 && (size_t)n < sizeof(pfx) && strncmp(msg, pfx, (size_t)n) == 0)
                return msg + n;
        return msg;
}

int walctl_opener(struct walctl *w, wal_opener **ret)
{
        const char *name = wal_config_get(w->cfg, "backend");
        wal_error *err = NULL;
        int r = wal_opener_new(name, w->cfg, ret, &err);
        if (r < 0) {
                char what[128];
                snprintf(what, sizeof(what), "backend %s", name ? name : "(none)");
                /* An unknown name is "unavailable" here, never "no such channel". */
                if (err && name) {
                        /* The library prefixes 'backend "NAME": ' and the backend
                         * often its own "NAME: ": both say what "backend NAME"
                         * already says. */
                        const char *msg = wal_error_message(err);
                        msg = skip_prefix(msg, "backend \"%s\": ", name);
                        msg = skip_prefix(msg, "%s: ", name);
                        walctl_error(what, "%s", msg);
                        wal_error_free(err);
                        return r == -ENOENT ? WALCTL_EXIT_UNAVAILABLE : walctl_exit_code(r);
                }
                return r == -ENOENT ? (walctl_fail(what, r, err), WALCTL_EXIT_UNAVAILABLE)
                                    : walctl_fail(what, r, err);
        }
        return 0;
}

/* The message of an open's @err without the library's 'opening "CHANNEL": '
 * prefix: walctl's own "walctl: CHANNEL: " already names the channel. */
static const char *open_message(const char *channel, const wal_error *err)
{
        const char *msg = err ? wal_error_message(err) : NULL;
        return msg ? skip_prefix(msg, "opening \"%s\": ", channel) : NULL;
}

/* "no such channel", with where the backend looked when it says so. */
static int no_such_channel(const char *channel, wal_error *err)
{
        const char *msg = open_message(channel, err);
        if (msg && *msg)
                walctl_error(channel, "no such channel (%s)", msg);
        else
                walctl_error(channel, "no such channel");
        wal_error_free(err);
        return WALCTL_EXIT_NOCHANNEL;
}

/* walctl_fail() for an open. */
static int open_failed(const char *channel, int r, wal_error *err)
{
        const char *msg = open_message(channel, err);
        walctl_error(channel, "%s", msg && *msg ? msg : wal_strerror(r));
        wal_error_free(err);
        return walctl_exit_code(r);
}

int walctl_open_ro(struct walctl *w, wal_opener *o, const char *channel, wal **ret)
{
        wal_error *err = NULL;
        int r = wal_open(o, channel, w->term >= 0 ? w->term : 0, WAL_ACCESS_RO, ret, &err);
        if (r == -ENOENT)
                return no_such_channel(channel, err);
        if (r < 0)
                return open_failed(channel, r, err);
        return 0;
}

int walctl_open_rw(struct walctl *w, wal_opener *o, const char *channel,
                   enum walctl_create create, wal **ret)
{
        int64_t term = w->term;
        *ret = NULL;
        if (term < 0 || create != WALCTL_CREATE) {
                wal *probe = NULL;
                wal_error *err = NULL;
                int r = wal_open(o, channel, 0, WAL_ACCESS_RO, &probe, &err);
                if (r == -ENOENT && create == WALCTL_CREATE_LATER) {
                        wal_error_free(err);
                        return 0;
                } else if (r == -ENOENT && create == WALCTL_CREATE) {
                        wal_error_free(err);
                        term = 1;
                } else if (r == -ENOENT) {
                        return no_such_channel(channel, err);
                } else if (r < 0) {
                        return open_failed(channel, r, err);
                } else {
                        struct wal_info info;
                        r = wal_info(probe, &info, &err);
                        if (r < 0) {
                                wal_close(probe);
                                return open_failed(channel, r, err);
                        }
                        if (term < 0)
                                term = info.owner_term > 0 ? info.owner_term : 1;
                        wal_close(probe);
                }
        }
        wal_error *err = NULL;
        int r = wal_open(o, channel, term, WAL_ACCESS_RW, ret, &err);
        if (r == -ENOENT && create != WALCTL_MUST_EXIST) {
                /* Creating failed on a missing path (a local.dir whose parent
                 * cannot be made): an I/O error, not "no such channel". */
                open_failed(channel, r, err);
                return WALCTL_EXIT_IOERR;
        }
        if (r < 0)
                return open_failed(channel, r, err);
        return 0;
}

/* ---- Signals ---- */

int walctl_signal_fd(void)
{
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
                return -errno;
        int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
        return fd < 0 ? -errno : fd;
}

bool walctl_signal_pending(int sigfd)
{
        struct signalfd_siginfo si;
        return sigfd >= 0 && read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si);
}

/* ---- Values ---- */

int walctl_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || *end || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

uint64_t walctl_now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
