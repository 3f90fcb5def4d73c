/* SPDX-License-Identifier: MIT */
/*
 * tests/helpers/t-backend-redis.c: a private redis-server for tests, and the
 * Redis backend's conformance fixture.
 *
 * The server runs as our child with a config file in a temporary
 * directory: loopback only, a port found free a moment earlier (if another
 * process takes it first the server exits and we try another), no RDB
 * snapshots.  Readiness is a PING answered with PONG (a server loading its
 * AOF answers -LOADING, which is not ready).  Stopping is by PID only.
 * The readiness probe talks RESP by hand over a socket so the helper needs
 * no client library.
 *
 * The fixture sets redis.tail_direct=true when WAL_TEST_REDIS_TAIL_DIRECT
 * is in the environment, so the conformance suite covers both ways a
 * tailing scanner delivers.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <wal/wal-config.h>
#include "t-helpers.h"
#include "t-backend-redis.h"
#include "wal-build-config.h"

/* One PING over a fresh connection: true if the answer is +PONG (or, with
 * @loading_ok, -LOADING). */
static bool ping(int port, bool loading_ok)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return false;
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bool ok = false;
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
            write(fd, "PING\r\n", 6) == 6) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                char buf[64] = { 0 };
                if (poll(&p, 1, 500) == 1 && read(fd, buf, sizeof(buf) - 1) > 0)
                        ok = strncmp(buf, "+PONG", 5) == 0 ||
                             (loading_ok && strncmp(buf, "-LOADING", 8) == 0);
        }
        close(fd);
        return ok;
}

static int write_conf(const struct t_redis *r, const struct t_redis_opts *o)
{
        char path[512];
        snprintf(path, sizeof(path), "%s/redis.conf", r->dir);
        FILE *f = fopen(path, "w");
        if (!f)
                return -errno;
        fprintf(f, "port %d\nbind 127.0.0.1\ndir %s\nsave \"\"\ndaemonize no\n"
                   "logfile %s/redis.log\nappendonly %s\nappendfsync always\n"
                   "repl-diskless-sync-delay 0\n",
                r->port, r->dir, r->dir, o && o->aof ? "yes" : "no");
        if (o && o->replica_of > 0)
                fprintf(f, "replicaof 127.0.0.1 %d\n", o->replica_of);
        if (o && o->acl_user)
                fprintf(f, "user %s on >%s ~* &* +@all\n", o->acl_user,
                        o->acl_password ? o->acl_password : "");
        return fclose(f) == 0 ? 0 : -errno;
}

/* Fork and exec the server on r->port; wait for PONG (or LOADING). */
static int spawn(struct t_redis *r, bool loading_ok)
{
        char conf[512];
        snprintf(conf, sizeof(conf), "%s/redis.conf", r->dir);
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                /* A crashed test worker must not leave its server behind. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                int null = open("/dev/null", O_RDWR);
                if (null >= 0) {
                        dup2(null, 0);
                        dup2(null, 1);
                        dup2(null, 2);
                }
                execlp("redis-server", "redis-server", conf, (char *)NULL);
                _exit(127);
        }
        r->pid = pid;
        uint64_t deadline = t_now_ms() + 10000;
        while (t_now_ms() < deadline) {
                int st;
                if (waitpid(pid, &st, WNOHANG) == pid) {
                        r->pid = 0;
                        return WIFEXITED(st) && WEXITSTATUS(st) == 127 ? -ENOENT : -EADDRINUSE;
                }
                if (ping(r->port, loading_ok))
                        return 0;
                t_sleep_ms(10);
        }
        t_redis_kill(r, SIGKILL);
        return -ETIMEDOUT;
}

int t_redis_start(const struct t_redis_opts *opts, struct t_redis **ret)
{
        struct t_redis *r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        int rc = t_tmpdir_new("libwal-redis", &r->dir);
        if (rc < 0) {
                free(r);
                return rc;
        }
        for (int attempt = 0; attempt < 5; attempt++) {
                rc = t_free_port();
                if (rc < 0)
                        break;
                r->port = rc;
                rc = write_conf(r, opts);
                if (rc < 0)
                        break;
                rc = spawn(r, false);
                if (rc != -EADDRINUSE)
                        break;
        }
        if (rc < 0) {
                t_redis_free(r);
                return rc;
        }
        snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d/0", r->port);
        *ret = r;
        return 0;
}

int t_redis_kill(struct t_redis *r, int sig)
{
        if (!r || r->pid <= 0)
                return -ESRCH;
        kill(r->pid, sig);
        if (sig != SIGKILL && sig != SIGSTOP)
                kill(r->pid, SIGCONT); /* a stopped server handles it only when continued */
        uint64_t deadline = t_now_ms() + 10000;
        for (;;) {
                int st;
                pid_t w = waitpid(r->pid, &st, WNOHANG);
                if (w == r->pid || (w < 0 && errno == ECHILD))
                        break;
                if (t_now_ms() > deadline) {
                        kill(r->pid, SIGKILL);
                        waitpid(r->pid, &st, 0);
                        break;
                }
                t_sleep_ms(5);
        }
        r->pid = 0;
        return 0;
}

static int restart(struct t_redis *r, bool loading_ok)
{
        if (!r)
                return -EINVAL;
        if (r->pid > 0)
                t_redis_kill(r, SIGTERM);
        /* The old socket may linger briefly; redis binds with SO_REUSEADDR. */
        int rc = -EADDRINUSE;
        for (int attempt = 0; attempt < 20 && rc == -EADDRINUSE; attempt++) {
                rc = spawn(r, loading_ok);
                if (rc == -EADDRINUSE)
                        t_sleep_ms(50);
        }
        return rc;
}

int t_redis_restart(struct t_redis *r)
{
        return restart(r, false);
}

int t_redis_restart_loading(struct t_redis *r)
{
        return restart(r, true);
}

int t_redis_conf_append(struct t_redis *r, const char *line)
{
        if (!r || !line)
                return -EINVAL;
        char path[512];
        snprintf(path, sizeof(path), "%s/redis.conf", r->dir);
        FILE *f = fopen(path, "a");
        if (!f)
                return -errno;
        fprintf(f, "%s\n", line);
        return fclose(f) == 0 ? 0 : -errno;
}

void t_redis_free(struct t_redis *r)
{
        if (!r)
                return;
        if (r->pid > 0)
                t_redis_kill(r, SIGTERM);
        if (r->dir)
                t_rm_rf(r->dir);
        free(r->dir);
        free(r);
}

/* ---- Conformance fixture ---- */

#if HAVE_REDIS

int t_fixture_redis_setup(wal_config *cfg, void **state);
void t_fixture_redis_teardown(void *state);

int t_fixture_redis_setup(wal_config *cfg, void **state)
{
        struct t_redis *r = NULL;
        int rc = t_redis_start(NULL, &r);
        if (rc < 0)
                return rc;
        if ((rc = wal_config_set(cfg, "backend", "redis", NULL)) < 0 ||
            (rc = wal_config_set(cfg, "redis.url", r->url, NULL)) < 0 ||
            (rc = wal_config_set(cfg, "redis.block", "200ms", NULL)) < 0 ||
            (getenv("WAL_TEST_REDIS_TAIL_DIRECT") &&
             (rc = wal_config_set(cfg, "redis.tail_direct", "true", NULL)) < 0)) {
                t_redis_free(r);
                return rc;
        }
        *state = r;
        return 0;
}

void t_fixture_redis_teardown(void *state)
{
        t_redis_free(state);
}

#endif /* HAVE_REDIS */
