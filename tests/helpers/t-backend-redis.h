/* SPDX-License-Identifier: MIT */
/*
 * tests/helpers/t-backend-redis.h: a private redis-server for tests.
 *
 * t_redis_start() writes a config file into a fresh temporary directory,
 * starts `redis-server <that file>` on a free 127.0.0.1 port as a child
 * process and polls PING until the server answers PONG.  Everything is
 * stopped by PID (SIGTERM, or any signal for crash tests) and removed by
 * t_redis_free().  No test depends on a system service.
 *
 * Like the other t_ helpers these return 0 or a negative errno and never
 * call a criterion assertion.
 */
#ifndef T_BACKEND_REDIS_H
#define T_BACKEND_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct t_redis_opts {
        bool aof;                 /* appendonly yes + appendfsync always */
        const char *acl_user;     /* borrowed; non-NULL: add this ACL user... */
        const char *acl_password; /* ...with this password and every right */
        int replica_of;           /* > 0: replicate the server on this port */
};

struct t_redis {
        pid_t pid;                /* > 0 while running */
        int port;
        char *dir;                /* temporary directory, owned */
        char url[128];            /* redis://127.0.0.1:<port>/0 (no credentials) */
};

/**
 * Start a server.
 * @param opts  borrowed; NULL means no AOF, no ACL user.
 * @param ret   the running server (owned: t_redis_free), on success only.
 * @returns 0, -ENOENT (no redis-server), -ETIMEDOUT (never answered), -errno.
 */
int t_redis_start(const struct t_redis_opts *opts, struct t_redis **ret);

/** Send @sig to the server and reap it.  0, or -ESRCH if it is not running. */
int t_redis_kill(struct t_redis *r, int sig);

/** Start the server again in the same directory on the same port (its
 *  AOF, if any, is reloaded); waits for PONG.  0 or -errno. */
int t_redis_restart(struct t_redis *r);

/** Like t_redis_restart(), but ready as soon as the server answers at all,
 *  even -LOADING (to test clients against a server still loading). */
int t_redis_restart_loading(struct t_redis *r);

/** Append @line (borrowed; a newline is added) to the server's config file,
 *  for the next (re)start.  0 or -errno. */
int t_redis_conf_append(struct t_redis *r, const char *line);

/** Stop (SIGTERM) if running, remove the directory, free.  NULL-safe. */
void t_redis_free(struct t_redis *r);

#endif /* T_BACKEND_REDIS_H */
