/* SPDX-License-Identifier: MIT */
/*
 * tests/redis/test-redis.c: the Redis Streams backend, Redis-specific cases.
 *
 * Each test starts its own redis-server (tests/helpers/t-backend-redis.h)
 * on a free loopback port in a temporary directory, talks to the backend
 * through the SPI only (registry -> builder -> opener -> wal -> scanner), and
 * uses a plain hiredis connection to play "another client": writing foreign
 * or malformed entries, wrong-type keys, checking what landed where.  The
 * suite's .fini stops the server by PID even when an assertion fails.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>

#include <wal/wal-config.h>
#include <wal/wal-error.h>
#include <wal/wal-message.h>
#include <wal/wal-registry.h>
#include <walimpls/walimpls.h>
#include "impls/redis/redis-internal.h"
#include "utility/walu.h"
#include "t-backend-redis.h"
#include "t-helpers.h"

/* ---- Fixture ---- */

static struct t_redis *srv;
static struct walimpls_opener *opener;
static redisContext *rawc;

static void fini(void)
{
        if (opener)
                opener->ops->close(opener);
        opener = NULL;
        if (rawc)
                redisFree(rawc);
        rawc = NULL;
        t_redis_free(srv);
        srv = NULL;
}

TestSuite(redis, .fini = fini, .timeout = 60);

static void start_server(bool aof, const char *user, const char *password)
{
        struct t_redis_opts o = { .aof = aof, .acl_user = user, .acl_password = password };
        int r = t_redis_start(&o, &srv);
        cr_assert_eq(r, 0, "cannot start redis-server: %s", strerror(-r));
}

/* Build an opener; @kv is NULL-terminated key, value pairs.  The URL is the
 * server's unless "redis.url" is among them. */
static int build(const char *const *kv, struct walimpls_opener **ret, wal_error **err)
{
        const struct walimpls_builder *b = NULL;
        int r = wal_registry_find("redis", &b, err);
        if (r < 0)
                return r;
        wal_config *cfg = NULL;
        cr_assert_eq(wal_config_new(&cfg), 0);
        if (srv)
                cr_assert_eq(wal_config_set(cfg, "redis.url", srv->url, NULL), 0);
        cr_assert_eq(wal_config_set(cfg, "redis.block", "200ms", NULL), 0);
        for (size_t i = 0; kv && kv[i]; i += 2) {
                wal_error *e = NULL;
                r = wal_config_set(cfg, kv[i], kv[i + 1], &e);
                cr_assert_eq(r, 0, "%s=%s: %s", kv[i], kv[i + 1], wal_error_message(e));
        }
        r = b->build(cfg, ret, err);
        wal_config_free(cfg);
        return r;
}

static void build_ok(const char *const *kv)
{
        wal_error *e = NULL;
        int r = build(kv, &opener, &e);
        cr_assert_eq(r, 0, "build: %s", wal_error_message(e));
}

static int open_wal(const char *ch, int64_t term, enum wal_access a, struct walimpls_wal **ret,
                    wal_error **e)
{
        struct walimpls_open_opts o = { .channel = ch, .term = term, .access = a };
        return opener->ops->open(opener, &o, ret, e);
}

static struct walimpls_wal *open_ok(const char *ch, int64_t term, enum wal_access a)
{
        struct walimpls_wal *w = NULL;
        wal_error *e = NULL;
        int r = open_wal(ch, term, a, &w, &e);
        cr_assert_eq(r, 0, "open %s: %s", ch, wal_error_message(e));
        return w;
}

static redisReply *raw(const char *fmt, ...)
{
        if (!rawc) {
                rawc = redisConnect("127.0.0.1", srv->port);
                cr_assert(rawc && !rawc->err, "raw connection failed");
        }
        va_list ap;
        va_start(ap, fmt);
        redisReply *rep = redisvCommand(rawc, fmt, ap);
        va_end(ap);
        cr_assert_not_null(rep, "raw command '%s' failed: %s", fmt, rawc->errstr);
        return rep;
}

static void raw_ok(const char *fmt, ...)
{
        if (!rawc)
                freeReplyObject(raw("PING"));
        va_list ap;
        va_start(ap, fmt);
        redisReply *rep = redisvCommand(rawc, fmt, ap);
        va_end(ap);
        cr_assert(rep && rep->type != REDIS_REPLY_ERROR, "raw '%s' failed: %s", fmt,
                  rep ? rep->str : rawc->errstr);
        freeReplyObject(rep);
}

/* ---- Appends ---- */

struct done {
        pthread_mutex_t m;
        pthread_cond_t c;
        int calls;
        int status;
        bool retriable;
        struct wal_msgid id;
        char msg[512];
};

static struct done *done_new(void)
{
        struct done *d = calloc(1, sizeof(*d));
        cr_assert_not_null(d);
        pthread_mutex_init(&d->m, NULL);
        pthread_cond_init(&d->c, NULL);
        return d;
}

static void done_free(struct done *d)
{
        pthread_mutex_destroy(&d->m);
        pthread_cond_destroy(&d->c);
        free(d);
}

static void done_cb(void *arg, int status, struct wal_msgid id, const wal_error *err)
{
        struct done *d = arg;
        pthread_mutex_lock(&d->m);
        d->calls++;
        d->status = status;
        d->id = id;
        d->retriable = wal_error_is_retriable(err);
        snprintf(d->msg, sizeof(d->msg), "%s", err ? wal_error_message(err) : "");
        pthread_cond_broadcast(&d->c);
        pthread_mutex_unlock(&d->m);
}

/* Wait for the completion; false on timeout. */
static bool done_wait(struct done *d, int timeout_ms)
{
        uint64_t end = t_now_ms() + (uint64_t)timeout_ms;
        pthread_mutex_lock(&d->m);
        while (d->calls == 0 && t_now_ms() < end) {
                pthread_mutex_unlock(&d->m);
                t_sleep_ms(1);
                pthread_mutex_lock(&d->m);
        }
        bool ok = d->calls > 0;
        pthread_mutex_unlock(&d->m);
        return ok;
}

static wal_msg *msg_text(const char *text)
{
        wal_msg *m = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, text, strlen(text), &m), 0);
        return m;
}

/*
 * Append synchronously, without asserting (usable from any thread).
 * Returns the status; fills *id, *retriable and @why.  A completion that
 * does not come within 20 s is reported as -ENOLINK (its record is leaked
 * on purpose: the callback may still run).
 */
static int append_sync(struct walimpls_wal *w, const char *text, struct wal_msgid *id,
                       bool *retriable, char *why, size_t why_len)
{
        wal_msg *m = NULL;
        if (retriable)
                *retriable = false;
        int r = wal_msg_new(WAL_MSG_DATA, text, strlen(text), &m);
        if (r < 0)
                return r;
        struct done *d = calloc(1, sizeof(*d));
        if (!d) {
                wal_msg_unref(m);
                return -ENOMEM;
        }
        pthread_mutex_init(&d->m, NULL);
        pthread_cond_init(&d->c, NULL);
        r = w->ops->append(w, m, done_cb, d);
        wal_msg_unref(m);
        if (r < 0) {
                done_free(d);
                return r;
        }
        if (!done_wait(d, 20000)) {
                if (why)
                        snprintf(why, why_len, "append '%s' never completed", text);
                return -ENOLINK;
        }
        r = d->calls == 1 ? d->status : -EPROTO;
        if (id)
                *id = d->id;
        if (retriable)
                *retriable = d->retriable;
        if (why)
                snprintf(why, why_len, "%s", d->calls == 1 ? d->msg : "completion ran twice");
        done_free(d);
        return r;
}

static struct wal_msgid append_ok(struct walimpls_wal *w, const char *text)
{
        struct wal_msgid id;
        char why[512];
        int r = append_sync(w, text, &id, NULL, why, sizeof(why));
        cr_assert_eq(r, 0, "append '%s': %s (%s)", text, strerror(-r), why);
        return id;
}

static struct walimpls_scanner *scan(struct walimpls_wal *w, enum wal_deliver_policy p,
                                     struct wal_msgid id, uint32_t read_ahead, int *ret_r,
                                     char *why, size_t why_len)
{
        struct walimpls_read_opts o = { .name = "t", .deliver = { .policy = p, .id = id },
                                        .read_ahead = read_ahead };
        struct walimpls_scanner *s = NULL;
        wal_error *e = NULL;
        *ret_r = w->ops->read(w, &o, &s, &e);
        if (why)
                snprintf(why, why_len, "%s", wal_error_message(e));
        wal_error_free(e);
        return s;
}

static struct walimpls_scanner *scan_ok(struct walimpls_wal *w, enum wal_deliver_policy p,
                                        struct wal_msgid id)
{
        int r;
        char why[512];
        struct walimpls_scanner *s = scan(w, p, id, 0, &r, why, sizeof(why));
        cr_assert_eq(r, 0, "read: %s", why);
        return s;
}

static wal_msg *next_ok(struct walimpls_scanner *s, int timeout_ms)
{
        wal_msg *m = NULL;
        wal_error *e = NULL;
        int r = s->ops->next(s, timeout_ms, &m, &e);
        cr_assert_eq(r, 0, "next: %s (%s)", strerror(-r), wal_error_message(e));
        return m;
}

static bool payload_is(const wal_msg *m, const char *text)
{
        size_t len = 0;
        const void *p = wal_msg_payload(m, &len);
        return len == strlen(text) && (len == 0 || memcmp(p, text, len) == 0);
}

static struct wal_msgid parse_raw_id(const redisReply *rep)
{
        struct wal_msgid id;
        cr_assert(rep->type == REDIS_REPLY_STRING, "not an ID reply");
        cr_assert_eq(redis_id_parse(rep->str, rep->len, &id), 0);
        return id;
}

/* ---- Registration and configuration ---- */

Test(redis, registered_with_caps_and_properties)
{
        const struct walimpls_builder *b = NULL;
        cr_assert_eq(wal_registry_find("redis", &b, NULL), 0);
        cr_assert_eq(b->caps, WALIMPLS_CAP_PERSISTENT | WALIMPLS_CAP_TRUNCATE |
                                      WALIMPLS_CAP_FENCING | WALIMPLS_CAP_LIST);
        const struct wal_property *p = wal_config_find_property("redis.url");
        cr_assert_not_null(p);
        cr_assert(p->flags & WAL_PROP_SECRET, "redis.url may hold a password: must be secret");
        cr_assert(wal_config_find_property("redis.password")->flags & WAL_PROP_SECRET);
        const char *keys[] = { "redis.prefix", "redis.require_aof", "redis.wait_replicas",
                               "redis.max_reply_bytes", "redis.connect_timeout",
                               "redis.command_timeout", "redis.keepalive" };
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
                cr_assert_not_null(wal_config_find_property(keys[i]), "%s missing", keys[i]);
}

Test(redis, url_parsing)
{
        struct redis_params p = { 0 };
        cr_assert_eq(redis_url_parse("redis://alice:s%40cret@db.example:6380/4", &p, NULL), 0);
        cr_assert_str_eq(p.host, "db.example");
        cr_assert_eq(p.port, 6380);
        cr_assert_str_eq(p.user, "alice");
        cr_assert_str_eq(p.password, "s@cret");
        cr_assert_eq(p.db, 4);
        cr_assert_eq(redis_url_parse("redis://localhost", &p, NULL), 0);
        cr_assert_eq(p.port, 6379);
        cr_assert_eq(p.db, 0);
        cr_assert_null(p.user);
        cr_assert_null(p.password);
        cr_assert_eq(redis_url_parse("redis://[::1]:7000/2", &p, NULL), 0);
        cr_assert_str_eq(p.host, "::1");
        cr_assert_eq(p.port, 7000);
        cr_assert_eq(p.db, 2);
        cr_assert_eq(redis_url_parse("redis://[fe80::1]", &p, NULL), 0);
        cr_assert_str_eq(p.host, "fe80::1");
        cr_assert_eq(p.port, 6379);
        cr_assert_eq(redis_url_parse("redis://:only@h:1/0", &p, NULL), 0);
        cr_assert_null(p.user);
        cr_assert_str_eq(p.password, "only");

        const char *bad[] = { "http://h", "redis://", "redis://h:0", "redis://h:99999",
                              "redis://h:12ab", "redis://h/x", "redis://u:%zz@h",
                              "rediss://h:6379", "redis://[::1", "redis://[]:1",
                              "redis://[::1]x" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                wal_error *e = NULL;
                cr_assert_eq(redis_url_parse(bad[i], &p, &e), -EINVAL, "%s accepted", bad[i]);
                cr_assert(strstr(wal_error_message(e), "redis.url"), "%s: message '%s'",
                          bad[i], wal_error_message(e));
                wal_error_free(e);
        }
        redis_params_free(&p);
}

/* ---- Connection, AUTH, SELECT, durability ---- */

Test(redis, server_not_running_is_econnrefused_quickly)
{
        int port = t_free_port();
        cr_assert_gt(port, 0);
        char url[64];
        snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", port);
        const char *kv[] = { "redis.url", url, NULL };
        struct walimpls_opener *o = NULL;
        wal_error *e = NULL;
        uint64_t t0 = t_now_ms();
        int r = build(kv, &o, &e);
        uint64_t took = t_now_ms() - t0;
        cr_assert_eq(r, -ECONNREFUSED, "got %d: %s", r, wal_error_message(e));
        cr_assert(strstr(wal_error_message(e), url + 8 /* host:port */) ||
                          strstr(wal_error_message(e), "127.0.0.1"),
                  "message does not name the server: %s", wal_error_message(e));
        cr_assert(wal_error_is_retriable(e));
        cr_assert_lt(took, 1500, "refusal took %" PRIu64 " ms", took);
        wal_error_free(e);
}

Test(redis, acl_user_wrong_password_is_clear_error)
{
        start_server(false, "alice", "right-pw");
        char url[160];
        snprintf(url, sizeof(url), "redis://alice:wrong-pw@127.0.0.1:%d/0", srv->port);
        const char *kv[] = { "redis.url", url, NULL };
        struct walimpls_opener *o = NULL;
        wal_error *e = NULL;
        int r = build(kv, &o, &e);
        cr_assert_eq(r, -EACCES, "got %d: %s", r, wal_error_message(e));
        cr_assert(strstr(wal_error_message(e), "alice"), "message: %s", wal_error_message(e));
        cr_assert(strstr(wal_error_message(e), "WRONGPASS"), "message: %s",
                  wal_error_message(e));
        cr_assert_not(strstr(wal_error_message(e), "wrong-pw"), "the password leaked: %s",
                      wal_error_message(e));
        wal_error_free(e);

        /* Credentials from redis.user / redis.password override the URL's. */
        const char *kv2[] = { "redis.url", url, "redis.user", "alice", "redis.password",
                              "right-pw", NULL };
        build_ok(kv2);
        struct walimpls_wal *w = open_ok("acl", 1, WAL_ACCESS_RW);
        append_ok(w, "hello");
        w->ops->close(w);
}

Test(redis, select_db_keeps_keys_in_that_db)
{
        start_server(false, NULL, NULL);
        char url[160];
        snprintf(url, sizeof(url), "redis://127.0.0.1:%d/3", srv->port);
        const char *kv[] = { "redis.url", url, "redis.prefix", "p/", NULL };
        build_ok(kv);
        struct walimpls_wal *w = open_ok("dbch", 1, WAL_ACCESS_RW);
        append_ok(w, "x");
        w->ops->close(w);
        redisReply *rep = raw("XLEN p/dbch");
        cr_assert_eq(rep->integer, 0, "written to db 0");
        freeReplyObject(rep);
        raw_ok("SELECT 3");
        rep = raw("XLEN p/dbch");
        cr_assert_eq(rep->integer, 1);
        freeReplyObject(rep);
        rep = raw("GET p/dbch:term");
        cr_assert(rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "1") == 0);
        freeReplyObject(rep);
}

Test(redis, durability_reported_and_require_aof)
{
        start_server(false, NULL, NULL);
        const char *kv[] = { "redis.require_aof", "true", NULL };
        struct walimpls_opener *o = NULL;
        wal_error *e = NULL;
        int r = build(kv, &o, &e);
        cr_assert_eq(r, -EOPNOTSUPP, "got %d: %s", r, wal_error_message(e));
        cr_assert(strstr(wal_error_message(e), "require_aof") &&
                          strstr(wal_error_message(e), "appendonly no"),
                  "message: %s", wal_error_message(e));
        wal_error_free(e);

        build_ok(NULL);
        struct walimpls_wal *w = open_ok("dur", 1, WAL_ACCESS_RW);
        struct walimpls_info info;
        cr_assert_eq(w->ops->info(w, &info, NULL), 0);
        cr_assert_str_eq(info.durability, "none");
        w->ops->close(w);
        opener->ops->close(opener);
        opener = NULL;

        raw_ok("CONFIG SET appendonly yes");
        raw_ok("CONFIG SET appendfsync everysec");
        build_ok(kv);
        w = open_ok("dur", 1, WAL_ACCESS_RW);
        cr_assert_eq(w->ops->info(w, &info, NULL), 0);
        cr_assert_str_eq(info.durability, "aof-everysec");
        w->ops->close(w);
}

Test(redis, require_aof_is_checked_again_at_open)
{
        start_server(true, NULL, NULL);
        const char *kv[] = { "redis.require_aof", "true", NULL };
        build_ok(kv);
        struct walimpls_wal *w = open_ok("aof", 1, WAL_ACCESS_RW);
        w->ops->close(w);
        raw_ok("CONFIG SET appendonly no");
        wal_error *e = NULL;
        int r = open_wal("aof", 2, WAL_ACCESS_RW, &w, &e);
        cr_assert_eq(r, -EOPNOTSUPP, "open without AOF: %d (%s)", r, wal_error_message(e));
        cr_assert(strstr(wal_error_message(e), "require_aof"), "message: %s",
                  wal_error_message(e));
        wal_error_free(e);
}

Test(redis, server_gone_at_open_is_econnrefused_quickly)
{
        start_server(false, NULL, NULL);
        build_ok(NULL);
        t_redis_kill(srv, SIGTERM);
        struct walimpls_wal *w = NULL;
        wal_error *e = NULL;
        uint64_t t0 = t_now_ms();
        int r = open_wal("gone", 1, WAL_ACCESS_RW, &w, &e);
        cr_assert_eq(r, -ECONNREFUSED, "got %d (%s)", r, wal_error_message(e));
        /* The library's open prefixes 'opening "gone": '; the backend names
         * the server it could not reach. */
        cr_assert(strstr(wal_error_message(e), "cannot connect to redis 127.0.0.1:"),
                  "message does not name the server: %s", wal_error_message(e));
        cr_assert_lt(t_now_ms() - t0, 1500);
        wal_error_free(e);
}

Test(redis, idle_connections_survive_a_restart)
{
        start_server(true, NULL, NULL);
        build_ok(NULL);
        struct walimpls_wal *w = open_ok("idle", 1, WAL_ACCESS_RW);
        struct wal_msgid a = append_ok(w, "one");
        struct walimpls_scanner *s = scan_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        wal_msg *m = next_ok(s, 5000);
        cr_assert(wal_msgid_eq(wal_msg_id(m), a));
        wal_msg_unref(m);
        cr_assert_eq(t_redis_restart(srv), 0);
        /* The writer notices its idle connection died and reconnects before
         * sending: the first append after the restart succeeds. */
        char why[512];
        struct wal_msgid b;
        int r = append_sync(w, "two", &b, NULL, why, sizeof(why));
        cr_assert_eq(r, 0, "first append after restart: %d (%s)", r, why);
        m = next_ok(s, 10000);
        cr_assert(wal_msgid_eq(wal_msg_id(m), b), "tail after restart delivered another ID");
        cr_assert(payload_is(m, "two"));
        wal_msg_unref(m);
        struct walimpls_info info;
        wal_error *e = NULL;
        cr_assert_eq(w->ops->info(w, &info, &e), 0, "info after restart: %s",
                     wal_error_message(e));
        cr_assert_eq(info.count, 2);
        s->ops->close(s);
        w->ops->close(w);
}

Test(redis, restart_without_aof_reports_data_loss)
{
        start_server(false, NULL, NULL);
        build_ok(NULL);
        struct walimpls_wal *w = open_ok("lossy", 1, WAL_ACCESS_RW);
        append_ok(w, "one");
        struct walimpls_scanner *s = scan_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        wal_msg *m = next_ok(s, 5000);
        wal_msg_unref(m);
        /* No AOF, no snapshot: the restarted server is empty. */
        cr_assert_eq(t_redis_restart(srv), 0);
        char why[512];
        bool retriable = true;
        int r = append_sync(w, "two", NULL, &retriable, why, sizeof(why));
        cr_assert_eq(r, -EIO, "append after data loss: %d (%s)", r, why);
        cr_assert_not(retriable);
        cr_assert(strstr(why, "wal:lossy:term") && strstr(why, "missing"), "message: %s", why);
        wal_error *e = NULL;
        m = NULL;
        r = s->ops->next(s, 10000, &m, &e);
        cr_assert_eq(r, -ERANGE, "tailing reader after data loss: %d (%s)", r,
                     wal_error_message(e));
        cr_assert(strstr(wal_error_message(e), "wal:lossy"), "message: %s",
                  wal_error_message(e));
        wal_error_free(e);
        s->ops->close(s);
        w->ops->close(w);
}

Test(redis, info_counts_ids_and_term)
{
        start_server(true, NULL, NULL);
        build_ok(NULL);
        struct walimpls_wal *w = open_ok("info", 7, WAL_ACCESS_RW);
        struct walimpls_info info;
        cr_assert_eq(w->ops->info(w, &info, NULL), 0);
        cr_assert_eq(info.count, 0);
        cr_assert(wal_msgid_is_none(info.first_id));
        cr_assert_eq(info.term, 7);
        cr_assert_str_eq(info.durability, "aof-always");
        struct wal_msgid a = append_ok(w, "a");
        append_ok(w, "b");
        struct wal_msgid c = append_ok(w, "c");
        cr_assert_eq(w->ops->info(w, &info, NULL), 0);
        cr_assert_eq(info.count, 3);
        cr_assert(wal_msgid_eq(info.first_id, a));
        cr_assert(wal_msgid_eq(info.last_id, c));
        w->ops->close(w);
}

/* ---- Fencing ---- */

Test(redis, second_writer_fences_the_first)
{
        start_server(false, NULL, NULL);
        build_ok(NULL);
        struct walimpls_wal *w1 = open_ok("fence", 1, WAL_ACCESS_RW);
        append_ok(w1, "from-1");
        struct walimpls_wal *w2 = open_ok("fence", 2, WAL_ACCESS_RW);

        char why[512];
        bool retriable = true;
        int r = append_sync(w1, "late-1", NULL, &retriable, why, sizeof(why));
        cr_assert_eq(r, -ESTALE, "old writer's append: %d (%s)", r, why);
        cr_assert_not(retriable, "fencing must be permanent");
        cr_assert(strstr(why, "term 2"), "message: %s", why);
        /* Refused at once from now on, without a round trip. */
        wal_msg *m = msg_text("later-1");
        struct done *d = done_new();
        cr_assert_eq(w1->ops->append(w1, m, done_cb, d), -ESTALE);
        done_free(d);
        wal_msg_unref(m);
        wal_error *e = NULL;
        cr_assert_eq(w1->ops->truncate(w1, WAL_MSGID(1, 0), &e), -ESTALE);
        wal_error_free(e);
        e = NULL;

        append_ok(w2, "from-2");
        struct walimpls_wal *w0 = NULL;
        r = open_wal("fence", 1, WAL_ACCESS_RW, &w0, &e);
        cr_assert_eq(r, -ESTALE, "reopen at a lower term: %d", r);
        cr_assert(strstr(wal_error_message(e), "fence"), "message: %s", wal_error_message(e));
        wal_error_free(e);

        /* The stream holds exactly the accepted appends. */
        struct walimpls_scanner *s = scan_ok(w2, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        m = next_ok(s, 5000);
        cr_assert(payload_is(m, "from-1"));
        wal_msg_unref(m);
        m = next_ok(s, 5000);
        cr_assert(payload_is(m, "from-2"));
        wal_msg_unref(m);
        cr_assert_eq(s->ops->next(s, 300, &m, NULL), -ETIMEDOUT);
        s->ops->close(s);
        w1->ops->close(w1);
        w2->ops->close(w2);
}

/* ---- Fencing by ID (redis.c, "Fencing") ---- */

/* The stream's last-generated-id, read raw. */
static struct wal_msgid raw_lastgen(const char *key)
{
        redisReply *rep = raw("XINFO STREAM %s", key);
        cr_assert(rep && rep->type == REDIS_REPLY_ARRAY, "XINFO STREAM %s", key);
        struct wal_msgid id = WAL_MSGID_NONE;
        for (size_t i = 0; i + 1 < rep->elements; i += 2)
                if (strcmp(rep->element[i]->str, "last-generated-id") == 0)
                        id = parse_raw_id(rep->element[i + 1]);
        freeReplyObject(rep);
        cr_assert_not(wal_msgid_is_none(id));
        return id;
}

Test(redis, open_raises_the_id_floor_so_an_old_writer_is_refused)
{
        start_server(false, NULL, NULL);
        build_ok(NULL);
        struct walimpls_wal *w1 = open_ok("floor", 1, WAL_ACCESS_RW);
        struct wal_msgid a = append_ok(w1, "from-1");
        cr_assert_eq(a.hi >> 42, 1, "term 1 wrote ID %" PRIu64 "-%" PRIu64, a.hi, a.lo);
        /* The new term writes nothing: its open alone fences. */
        struct walimpls_wal *w2 = open_ok("floor", 2, WAL_ACCESS_RW);
        struct wal_msgid floor = raw_lastgen("wal:floor");
        cr_assert(wal_msgid_eq(floor, WAL_MSGID(UINT64_C(2) << 42, 0)),
                  "floor %" PRIu64 "-%" PRIu64, floor.hi, floor.lo);
        struct walimpls_info info;
        cr_assert_eq(w2->ops->info(w2, &info, NULL), 0);
        cr_assert(wal_msgid_eq(info.last_id, a), "info.last_id is the floor, not an entry");
        char why[512];
        bool retriable = true;
        int r = append_sync(w1, "late-1", NULL, &retriable, why, sizeof(why));
        cr_assert_eq(r, -ESTALE, "old writer: %d (%s)", r, why);
        cr_assert_not(retriable);
        cr_assert(strstr(why, "term 2") && strstr(why, "wal:floor"), "message: %s", why);
        struct wal_msgid b = append_ok(w2, "from-2");
        cr_assert_eq(b.hi >> 42, 2);
        cr_assert_lt(wal_msgid_cmp(a, b), 0);

        /* A term too large for the ID carries its check in a script, and
         * its open raises the floor above every ID a smaller term makes. */
        int64_t big = (int64_t)1 << 40;
        struct walimpls_wal *w3 = open_ok("floor", big, WAL_ACCESS_RW);
        r = append_sync(w2, "late-2", NULL, &retriable, why, sizeof(why));
        cr_assert_eq(r, -ESTALE, "term 2 after term 2^40: %d (%s)", r, why);
        cr_assert(strstr(why, "1099511627776"), "message: %s", why);
        struct wal_msgid c = append_ok(w3, "from-big");
        cr_assert_lt(wal_msgid_cmp(b, c), 0);
        cr_assert_eq(c.hi, UINT64_C(1) << 63);
        struct wal_msgid d = append_ok(w3, "from-big-2");
        cr_assert_lt(wal_msgid_cmp(c, d), 0);
        /* Lower terms stay refused at open. */
        struct walimpls_wal *w0 = NULL;
        wal_error *e = NULL;
        cr_assert_eq(open_wal("floor", 2, WAL_ACCESS_RW, &w0, &e), -ESTALE);
        wal_error_free(e);

        struct walimpls_scanner *s = scan_ok(w3, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        const char *want[] = { "from-1", "from-2", "from-big", "from-big-2" };
        for (size_t i = 0; i < 4; i++) {
                wal_msg *m = next_ok(s, 5000);
                cr_assert(payload_is(m, want[i]), "entry %zu", i);
                wal_msg_unref(m);
        }
        wal_msg *m = NULL;
        cr_assert_eq(s->ops->next(s, 300, &m, NULL), -ETIMEDOUT);
        s->ops->close(s);
        w1->ops->close(w1);
        w2->ops->close(w2);
        w3->ops->close(w3);
}

/* Consecutive appends get consecutive IDs (a tailing scanner relies on it to
 * skip its trim check), and a trim of entries right after a parked
 * scanner's position is still -ERANGE. */
Test(redis, consecutive_appends_are_dense_and_trims_still_seen)
{
        start_server(false, NULL, NULL);
        build_ok(NULL);
        struct walimpls_wal *w = open_ok("dense", 4, WAL_ACCESS_RW);
        struct wal_msgid prev = append_ok(w, "d-0");
        int jumps = 0;
        for (int i = 1; i < 50; i++) {
                char text[16];
                snprintf(text, sizeof(text), "d-%d", i);
                struct wal_msgid id = append_ok(w, text);
                cr_assert_eq(id.hi >> 42, 4);
                if (!wal_msgid_eq(id, WAL_MSGID(prev.hi, prev.lo + 1)))
                        jumps++;
                prev = id;
        }
        cr_assert_leq(jumps, 1, "%d of 49 IDs were not the successor of the one before", jumps);
        /* A scanner whose read-ahead (2) is full does not read; meanwhile
         * entries are appended and trimmed behind its position, then one
         * more: after the two queued ones, -ERANGE, never a skip. */
        int r = 0;
        char why[512];
        struct walimpls_scanner *s = scan(w, WAL_DELIVER_START_AFTER, prev, 2, &r, why,
                                          sizeof(why));
        cr_assert_eq(r, 0, "read: %s", why);
        append_ok(w, "q-1");
        append_ok(w, "q-2");
        t_sleep_ms(300); /* the reader queues both and waits for room */
        struct wal_msgid a = append_ok(w, "gone-1");
        append_ok(w, "gone-2");
        wal_error *e = NULL;
        cr_assert_eq(w->ops->truncate(w, WAL_MSGID(a.hi, a.lo + 1), &e), 0,
                     "truncate: %s", wal_error_message(e));
        append_ok(w, "kept");
        wal_msg *m = next_ok(s, 5000);
        cr_assert(payload_is(m, "q-1"));
        wal_msg_unref(m);
        m = next_ok(s, 5000);
        cr_assert(payload_is(m, "q-2"));
        wal_msg_unref(m);
        m = NULL;
        r = s->ops->next(s, 5000, &m, &e);
        if (r == 0)
                cr_assert_fail("delivered %.*s past a trimmed position", 8,
                               (const char *)wal_msg_payload(m, NULL));
        cr_assert_eq(r, -ERANGE, "next: %d (%s)", r, wal_error_message(e));
        wal_error_free(e);
        s->ops->close(s);
        w->ops->close(w);
}

/* Foreign producers XADD with '*' (and explicit IDs) between our appends. */
static void foreign_interleave(const char *ch, int64_t term)
{
        struct walimpls_wal *w = open_ok(ch, term, WAL_ACCESS_RW);
        char key[64];
        snprintf(key, sizeof(key), "wal:%s", ch);
        enum { N = 30 };
        struct wal_msgid ours[N];
        for (int i = 0; i < N; i++) {
                char text[32];
                snprintf(text, sizeof(text), "ours-%d", i);
                ours[i] = append_ok(w, text);
                redisReply *rep = raw("XADD %s * payload foreign-%d", key, i);
                struct wal_msgid f = parse_raw_id(rep);
                freeReplyObject(rep);
                cr_assert_lt(wal_msgid_cmp(ours[i], f), 0);
                if (i % 10 == 5) {
                        /* Ahead of our next ID, inside our term's range. */
                        rep = raw("XADD %s %" PRIu64 "-7 payload ahead-%d", key, f.hi + 5000, i);
                        cr_assert(rep->type == REDIS_REPLY_STRING, "explicit XADD: %s",
                                  rep->str);
                        freeReplyObject(rep);
                }
        }
        struct walimpls_scanner *s = scan_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        int got = 0;
        struct wal_msgid prev = WAL_MSGID(0, 0);
        for (int i = 0; i < N; i++) {
                char text[32];
                snprintf(text, sizeof(text), "ours-%d", i);
                for (;;) {
                        wal_msg *m = next_ok(s, 5000);
                        cr_assert_lt(wal_msgid_cmp(prev, wal_msg_id(m)), 0);
                        prev = wal_msg_id(m);
                        got++;
                        bool mine = payload_is(m, text);
                        if (mine)
                                cr_assert(wal_msgid_eq(wal_msg_id(m), ours[i]),
                                          "%s read at another ID", text);
                        else
                                cr_assert_not(payload_is(m, "ours-0") && i > 0, "repeat");
                        wal_msg_unref(m);
                        if (mine)
                                break;
                }
        }
        wal_msg *m = next_ok(s, 5000); /* foreign-(N-1) */
        cr_assert(payload_is(m, "foreign-29"));
        wal_msg_unref(m);
        got++;
        cr_assert_eq(got, 2 * N + 3, "%d entries read", got);
        s->ops->close(s);

        /* An explicit ID above the term's range: refused, naming it. */
        redisReply *rep = raw("XADD %s %" PRIu64 "-1 payload above", key,
                              (uint64_t)(term + 1) << 42);
        cr_assert(rep->type == REDIS_REPLY_STRING);
        freeReplyObject(rep);
        char why[512];
        bool retriable = true;
        int r = append_sync(w, "after-above", NULL, &retriable, why, sizeof(why));
        cr_assert_eq(r, -EIO, "append below a foreign explicit ID: %d (%s)", r, why);
        cr_assert_not(retriable);
        cr_assert(strstr(why, "explicit ID") && strstr(why, key), "message: %s", why);
        w->ops->close(w);
}

Test(redis, foreign_star_producer_interleaves_with_the_writer)
{
        start_server(false, NULL, NULL);
        build_ok(NULL);
        foreign_interleave("foreign0", 0);
        foreign_interleave("foreign3", 3);
}

/* An append in flight when the connection breaks completes once, retriable;
 * retried by its caller it lands once more, above everything acknowledged. */
Test(redis, retry_after_a_connection_break_loses_and_repeats_nothing_acked)
{
        start_server(false, NULL, NULL);
        build_ok(NULL);
        struct walimpls_wal *w = open_ok("retry", 5, WAL_ACCESS_RW);
        enum { N = 3000 };
        struct done **d = calloc(N, sizeof(*d));
        cr_assert_not_null(d);
        static char text[N][16];
        for (int i = 0; i < N; i++) {
                snprintf(text[i], sizeof(text[i]), "r-%05d", i);
                wal_msg *m = msg_text(text[i]);
                d[i] = done_new();
                cr_assert_eq(w->ops->append(w, m, done_cb, d[i]), 0);
                wal_msg_unref(m);
                if (i == N / 3) {
                        /* Writes held at the server, then the writer's
                         * connection cut: what it sent is in flight. */
                        t_sleep_ms(200);
                        raw_ok("CLIENT PAUSE 5000 WRITE");
                }
        }
        t_sleep_ms(300);
        raw_ok("CLIENT KILL TYPE normal SKIPME yes");
        raw_ok("CLIENT UNPAUSE");
        int failed = 0;
        struct wal_msgid last_acked = WAL_MSGID(0, 0);
        struct wal_msgid *ids = calloc(N, sizeof(*ids));
        cr_assert_not_null(ids);
        for (int i = 0; i < N; i++) {
                cr_assert(done_wait(d[i], 20000), "append %d never completed", i);
                cr_assert_eq(d[i]->calls, 1);
                if (d[i]->status == 0) {
                        ids[i] = d[i]->id;
                        if (wal_msgid_cmp(ids[i], last_acked) > 0)
                                last_acked = ids[i];
                        continue;
                }
                cr_assert_eq(d[i]->status, -ECONNRESET, "append %d: %d (%s)", i,
                             d[i]->status, d[i]->msg);
                cr_assert(d[i]->retriable);
                failed++;
        }
        /* The caller's retries. */
        for (int i = 0; i < N; i++) {
                if (d[i]->status == 0)
                        continue;
                int r = -1;
                for (int k = 0; k < 50 && r != 0; k++) {
                        bool retriable = false;
                        char why[512];
                        r = append_sync(w, text[i], &ids[i], &retriable, why, sizeof(why));
                        cr_assert(r == 0 || retriable, "retry of %d: %s", i, why);
                }
                cr_assert_eq(r, 0);
                cr_assert_lt(wal_msgid_cmp(last_acked, ids[i]), 0, "retry not above the rest");
                last_acked = ids[i];
        }
        cr_log_info("connection break: %d of %d in flight failed and were retried", failed, N);
        cr_assert_gt(failed, 0, "nothing was in flight when the connection broke");
        /* Read back: strictly increasing; each acknowledged ID once, with its
         * payload; a record whose first outcome was unknown at most twice. */
        struct walimpls_scanner *s = scan_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        int *copies = calloc(N, sizeof(*copies));
        cr_assert_not_null(copies);
        int j = 0;
        struct wal_msgid prev = WAL_MSGID(0, 0);
        wal_msg *m = NULL;
        while (s->ops->next(s, 1000, &m, NULL) == 0) {
                cr_assert_lt(wal_msgid_cmp(prev, wal_msg_id(m)), 0);
                prev = wal_msg_id(m);
                size_t len = 0;
                const char *pl = wal_msg_payload(m, &len);
                int i = atoi(pl + 2);
                cr_assert(i >= 0 && i < N && len == 7);
                copies[i]++;
                if (wal_msgid_eq(ids[i], wal_msg_id(m)))
                        j++;
                wal_msg_unref(m);
        }
        cr_assert_eq(j, N, "%d of %d acknowledged IDs read back", j, N);
        for (int i = 0; i < N; i++) {
                cr_assert(copies[i] >= 1 && copies[i] <= (d[i]->status == 0 ? 1 : 2),
                          "record %d stored %d times (first outcome %d)", i, copies[i],
                          d[i]->status);
                done_free(d[i]);
        }
        free(copies);
        free(ids);
        free(d);
        s->ops->close(s);
        w->ops->close(w);
}

Test(redis, script_flush_is_survived)
{
        start_server(false, NULL, NULL);
        build_ok(NULL);
        struct walimpls_wal *w = open_ok("flush", 1, WAL_ACCESS_RW);
        struct wal_msgid a = append_ok(w, "before");
        raw_ok("SCRIPT FLUSH");
        struct wal_msgid b = append_ok(w, "after-flush");
        cr_assert_lt(wal_msgid_cmp(a, b), 0);
        struct walimpls_info info;
        raw_ok("SCRIPT FLUSH");
        cr_assert_eq(w->ops->info(w, &info, NULL), 0, "info after SCRIPT FLUSH");
        cr_assert_eq(info.count, 2);
        struct walimpls_scanner *s = scan_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        raw_ok("SCRIPT FLUSH");
        wal_msg *m = next_ok(s, 5000);
        cr_assert(payload_is(m, "before"));
        wal_msg_unref(m);
        m = next_ok(s, 5000);
        cr_assert(payload_is(m, "after-flush"));
        wal_msg_unref(m);
        s->ops->close(s);
        w->ops->close(w);
}

/*
 * A user with read rights only (no scripting, no write, no CONFIG) reads
 * and tails; its read-write open is refused naming what it lacks.  Until
 * the scripts were loaded only where used, every connection ran SCRIPT
 * LOAD and such a user could not even build an opener.
 */
Test(redis, read_only_acl_user_reads_tails_and_is_refused_writing)
{
        start_server(false, NULL, NULL);
        build_ok(NULL);   /* the default user: every right */
        struct walimpls_wal *w = open_ok("rc1", 1, WAL_ACCESS_RW);
        append_ok(w, "one");
        append_ok(w, "two");
        raw_ok("ACL SETUSER ro on >ropw ~* +@read -@write");
        raw_ok("ACL SETUSER rs on >rspw ~* +@read +@scripting -@write");

        const char *kv[] = { "redis.user", "ro", "redis.password", "ropw", NULL };
        struct walimpls_opener *ro = NULL;
        wal_error *e = NULL;
        int r = build(kv, &ro, &e);
        cr_assert_eq(r, 0, "build as a read-only user: %s", wal_error_message(e));
        struct walimpls_open_opts oo = { .channel = "rc1", .access = WAL_ACCESS_RO };
        struct walimpls_wal *rw = NULL;
        r = ro->ops->open(ro, &oo, &rw, &e);
        cr_assert_eq(r, 0, "read-only open: %s", wal_error_message(e));
        struct walimpls_info info;
        r = rw->ops->info(rw, &info, &e);
        cr_assert_eq(r, 0, "info: %s", wal_error_message(e));
        cr_assert_eq(info.count, 2);
        cr_assert_eq(info.term, 1);
        cr_assert_str_eq(info.durability, "unknown", "CONFIG GET is not permitted");
        struct walimpls_scanner *s = scan_ok(rw, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        wal_msg *m = next_ok(s, 5000);
        cr_assert(payload_is(m, "one"));
        wal_msg_unref(m);
        m = next_ok(s, 5000);
        cr_assert(payload_is(m, "two"));
        wal_msg_unref(m);
        append_ok(w, "three");   /* tailed */
        m = next_ok(s, 5000);
        cr_assert(payload_is(m, "three"));
        wal_msg_unref(m);
        /* A restarted server has no scripts: the full user's writer loads
         * them again (NOSCRIPT), the reader needs none. */
        raw_ok("SCRIPT FLUSH");
        append_ok(w, "four");
        m = next_ok(s, 5000);
        cr_assert(payload_is(m, "four"));
        wal_msg_unref(m);
        s->ops->close(s);

        /* Read-write: refused, naming the permission. */
        struct walimpls_open_opts wo = { .channel = "rc1", .term = 2, .access = WAL_ACCESS_RW };
        struct walimpls_wal *bad = NULL;
        r = ro->ops->open(ro, &wo, &bad, &e);
        cr_assert_eq(r, -EACCES, "got %d: %s", r, wal_error_message(e));
        cr_assert(strstr(wal_error_message(e), "NOPERM") &&
                          strstr(wal_error_message(e), "script|load"),
                  "message: %s", wal_error_message(e));
        wal_error_free(e);
        e = NULL;
        rw->ops->close(rw);
        ro->ops->close(ro);

        /* Scripting without write rights: the script's SET is refused. */
        const char *kv2[] = { "redis.user", "rs", "redis.password", "rspw", NULL };
        r = build(kv2, &ro, &e);
        cr_assert_eq(r, 0, "build: %s", wal_error_message(e));
        r = ro->ops->open(ro, &wo, &bad, &e);
        cr_assert_eq(r, -EACCES, "got %d: %s", r, wal_error_message(e));
        cr_assert(strstr(wal_error_message(e), "read-write") &&
                          strstr(wal_error_message(e), "write commands"),
                  "message: %s", wal_error_message(e));
        wal_error_free(e);
        ro->ops->close(ro);

        /* Nothing of the refused opens landed; the full user still writes
         * at term 1. */
        append_ok(w, "five");
        r = w->ops->info(w, &info, &e);
        cr_assert_eq(r, 0, "info: %s", wal_error_message(e));
        cr_assert_eq(info.count, 5);
        cr_assert_eq(info.term, 1);
        cr_assert_str_eq(info.durability, "none");
        w->ops->close(w);
}

/* ---- Bad input ---- */

Test(redis, wrongtype_key_is_named)
{
        start_server(false, NULL, NULL);
        build_ok(NULL);
        raw_ok("SET wal:bad just-a-string");
        struct walimpls_wal *w = NULL;
        wal_error *e = NULL;
        int r = open_wal("bad", 1, WAL_ACCESS_RW, &w, &e);
        cr_assert_eq(r, -EBADMSG, "RW open: %d (%s)", r, wal_error_message(e));
        cr_assert(strstr(wal_error_message(e), "wal:bad"), "message: %s", wal_error_message(e));
        wal_error_free(e);
        e = NULL;
        r = open_wal("bad", 1, WAL_ACCESS_RO, &w, &e);
        cr_assert_eq(r, -EBADMSG, "RO open: %d (%s)", r, wal_error_message(e));
        cr_assert(strstr(wal_error_message(e), "wal:bad"), "message: %s", wal_error_message(e));
        wal_error_free(e);

        /* A term key holding garbage, or of the wrong type, is named too. */
        raw_ok("SET wal:badterm:term not-a-number");
        e = NULL;
        r = open_wal("badterm", 1, WAL_ACCESS_RW, &w, &e);
        cr_assert_eq(r, -EBADMSG, "garbage term: %d (%s)", r, wal_error_message(e));
        cr_assert(strstr(wal_error_message(e), "wal:badterm:term"), "message: %s",
                  wal_error_message(e));
        wal_error_free(e);
        raw_ok("RPUSH wal:listterm:term 1");
        e = NULL;
        r = open_wal("listterm", 1, WAL_ACCESS_RW, &w, &e);
        cr_assert_eq(r, -EBADMSG, "list as term key: %d (%s)", r, wal_error_message(e));
        cr_assert(strstr(wal_error_message(e), "listterm"), "message: %s",
                  wal_error_message(e));
        wal_error_free(e);

        /* Turned into a string under an open writer: its appends name the key. */
        w = open_ok("flip", 1, WAL_ACCESS_RW);
        append_ok(w, "ok");
        raw_ok("DEL wal:flip");
        raw_ok("SET wal:flip now-a-string");
        char why[512];
        r = append_sync(w, "after", NULL, NULL, why, sizeof(why));
        cr_assert_eq(r, -EBADMSG, "append on a string key: %d (%s)", r, why);
        cr_assert(strstr(why, "wal:flip"), "message: %s", why);
        w->ops->close(w);
}

Test(redis, foreign_entries_read_as_plain_data)
{
        start_server(false, NULL, NULL);
        build_ok(NULL);
        redisReply *a = raw("XADD wal:foreign * payload hello source cli");
        redisReply *b = raw("XADD wal:foreign * only-field value2");
        struct wal_msgid ida = parse_raw_id(a), idb = parse_raw_id(b);
        freeReplyObject(a);
        freeReplyObject(b);
        struct walimpls_wal *w = open_ok("foreign", 0, WAL_ACCESS_RO);
        struct walimpls_scanner *s = scan_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        wal_msg *m = next_ok(s, 5000);
        cr_assert(wal_msgid_eq(wal_msg_id(m), ida));
        cr_assert_eq(wal_msg_type(m), WAL_MSG_DATA);
        cr_assert(payload_is(m, "hello"));
        cr_assert_str_eq(wal_msg_prop(m, "source"), "cli");
        cr_assert_null(wal_msg_prop(m, "payload"));
        wal_msg_unref(m);
        m = next_ok(s, 5000);
        cr_assert(wal_msgid_eq(wal_msg_id(m), idb));
        cr_assert(payload_is(m, "value2"));
        wal_msg_unref(m);
        s->ops->close(s);
        w->ops->close(w);

        /* And our own entries look sensible to other clients. */
        w = open_ok("ours", 1, WAL_ACCESS_RW);
        append_ok(w, "visible");
        w->ops->close(w);
        redisReply *rep = raw("XRANGE wal:ours - +");
        cr_assert_eq(rep->elements, 1);
        redisReply *f = rep->element[0]->element[1];
        cr_assert_eq(f->elements, 4);
        cr_assert_str_eq(f->element[0]->str, "_wal_env");
        cr_assert_str_eq(f->element[2]->str, "payload");
        cr_assert_str_eq(f->element[3]->str, "visible");
        freeReplyObject(rep);
}

Test(redis, garbage_envelope_fails_scanner_naming_entry)
{
        start_server(false, NULL, NULL);
        build_ok(NULL);
        redisReply *a = raw("XADD wal:garbage * payload fine");
        freeReplyObject(a);
        redisReply *b = raw("XADD wal:garbage * _wal_env %b payload x", "\xff\xff\xff\x01", (size_t)4);
        char id[48];
        snprintf(id, sizeof(id), "%s", b->str);
        freeReplyObject(b);
        struct walimpls_wal *w = open_ok("garbage", 0, WAL_ACCESS_RO);
        struct walimpls_scanner *s = scan_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        wal_msg *m = next_ok(s, 5000);
        cr_assert(payload_is(m, "fine"));
        wal_msg_unref(m);
        wal_error *e = NULL;
        m = NULL;
        int r = s->ops->next(s, 5000, &m, &e);
        cr_assert_eq(r, -EBADMSG, "got %d", r);
        cr_assert(strstr(wal_error_message(e), "wal:garbage") &&
                          strstr(wal_error_message(e), id),
                  "message does not name key and entry %s: %s", id, wal_error_message(e));
        wal_error_free(e);
        /* Sticky. */
        cr_assert_eq(s->ops->next(s, 0, &m, NULL), -EBADMSG);
        s->ops->close(s);
        w->ops->close(w);
}

Test(redis, oversized_reply_is_refused_naming_key)
{
        start_server(false, NULL, NULL);
        const char *kv[] = { "redis.max_reply_bytes", "16k", NULL };
        build_ok(kv);
        /* 100 entries of 1 KiB: many fit no single 16 KiB reply, each fits. */
        static char big[64 * 1024];
        memset(big, 'b', sizeof(big));
        for (int i = 0; i < 100; i++)
                freeReplyObject(raw("XADD wal:huge * payload %b", big, (size_t)1024));
        redisReply *rep = raw("XADD wal:huge * payload %b", big, sizeof(big));
        freeReplyObject(rep);
        struct walimpls_wal *w = open_ok("huge", 0, WAL_ACCESS_RO);
        struct walimpls_scanner *s = scan_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        wal_msg *m = NULL;
        char last[WAL_MSGID_STRLEN] = "";
        for (int i = 0; i < 100; i++) {
                m = next_ok(s, 5000);
                size_t len = 0;
                wal_msg_payload(m, &len);
                cr_assert_eq(len, 1024, "entry %d", i);
                wal_msgid_format(wal_msg_id(m), last, sizeof(last));
                wal_msg_unref(m);
        }
        wal_error *e = NULL;
        m = NULL;
        int r = s->ops->next(s, 5000, &m, &e);
        cr_assert_eq(r, -EMSGSIZE, "got %d (%s)", r, wal_error_message(e));
        cr_assert(strstr(wal_error_message(e), "wal:huge") &&
                          strstr(wal_error_message(e), "max_reply_bytes"),
                  "message: %s", wal_error_message(e));
        /* It names where the entry too large to read is, and the way out. */
        char after[WAL_MSGID_STRLEN + 64];
        snprintf(after, sizeof(after), "the entry after %s is larger than", last);
        cr_expect(strstr(wal_error_message(e), after) && strstr(wal_error_message(e), "raise it"),
                  "message does not say which entry (after %s) is too large and what "
                  "reads it: %s", last, wal_error_message(e));
        wal_error_free(e);
        s->ops->close(s);
        w->ops->close(w);
}

/* ---- Trimming ---- */

Test(redis, trimmed_position_is_erange_never_a_skip)
{
        start_server(false, NULL, NULL);
        build_ok(NULL);
        struct walimpls_wal *w = open_ok("trim", 1, WAL_ACCESS_RW);
        struct wal_msgid ids[20];
        char text[16];
        for (int i = 0; i < 20; i++) {
                snprintf(text, sizeof(text), "m%d", i);
                ids[i] = append_ok(w, text);
        }
        /* A slow reader parked at 5 with one message of read-ahead. */
        int r;
        struct walimpls_scanner *slow = scan(w, WAL_DELIVER_START_FROM, ids[5], 1, &r, NULL, 0);
        cr_assert_eq(r, 0);
        wal_msg *m = next_ok(slow, 5000);
        cr_assert(wal_msgid_eq(wal_msg_id(m), ids[5]));
        wal_msg_unref(m);

        wal_error *e = NULL;
        cr_assert_eq(w->ops->truncate(w, ids[9], &e), 0, "truncate: %s", wal_error_message(e));

        char why[512];
        struct walimpls_scanner *s = scan(w, WAL_DELIVER_START_FROM, ids[3], 0, &r, why,
                                          sizeof(why));
        cr_assert_eq(r, -ERANGE, "start-from a trimmed ID: %d", r);
        cr_assert_null(s);
        cr_assert(strstr(why, "wal:trim") && strstr(why, "trimmed"), "message: %s", why);
        s = scan(w, WAL_DELIVER_START_AFTER, ids[8], 0, &r, why, sizeof(why));
        cr_assert_eq(r, -ERANGE, "start-after a trimmed ID: %d", r);

        s = scan_ok(w, WAL_DELIVER_START_AFTER, ids[9]);
        m = next_ok(s, 5000);
        cr_assert(wal_msgid_eq(wal_msg_id(m), ids[10]));
        wal_msg_unref(m);
        s->ops->close(s);
        s = scan_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        m = next_ok(s, 5000);
        cr_assert(wal_msgid_eq(wal_msg_id(m), ids[10]), "ALL starts at the first retained");
        wal_msg_unref(m);
        s->ops->close(s);

        /* The slow reader delivers what it had prefetched in order, then
         * fails: it never jumps from 6 to 10. */
        int expect = 6;
        for (;;) {
                m = NULL;
                e = NULL;
                r = slow->ops->next(slow, 5000, &m, &e);
                if (r != 0)
                        break;
                cr_assert(wal_msgid_eq(wal_msg_id(m), ids[expect]),
                          "slow reader skipped to another message than index %d", expect);
                expect++;
                wal_msg_unref(m);
        }
        cr_assert_eq(r, -ERANGE, "slow reader: %d (%s)", r, wal_error_message(e));
        cr_assert_leq(expect, 9);
        wal_error_free(e);
        slow->ops->close(slow);

        /* Everything truncated: ALL waits (no error) and delivers what comes. */
        cr_assert_eq(w->ops->truncate(w, ids[19], NULL), 0);
        s = scan_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        m = NULL;
        cr_assert_eq(s->ops->next(s, 300, &m, NULL), -ETIMEDOUT);
        struct wal_msgid fresh = append_ok(w, "fresh");
        m = next_ok(s, 5000);
        cr_assert(wal_msgid_eq(wal_msg_id(m), fresh));
        wal_msg_unref(m);
        s->ops->close(s);
        w->ops->close(w);
}

/* ---- Writer behaviour ---- */

Test(redis, wait_without_replicas_fails_with_etimedout)
{
        start_server(false, NULL, NULL);
        const char *kv[] = { "redis.wait_replicas", "1", "redis.wait_timeout", "100ms", NULL };
        build_ok(kv);
        struct walimpls_wal *w = open_ok("wait", 1, WAL_ACCESS_RW);
        char why[512];
        int r = append_sync(w, "x", NULL, NULL, why, sizeof(why));
        cr_assert_eq(r, -ETIMEDOUT, "got %d (%s)", r, why);
        cr_assert(strstr(why, "0 of 1 replicas"), "message: %s", why);
        w->ops->close(w);
}

Test(redis, wait_with_a_replica_succeeds)
{
        start_server(false, NULL, NULL);
        struct t_redis_opts ro = { .replica_of = srv->port };
        struct t_redis *replica = NULL;
        cr_assert_eq(t_redis_start(&ro, &replica), 0);
        /* Wait until the primary reports its replica online. */
        bool online = false;
        for (int i = 0; i < 500 && !online; i++) {
                redisReply *rep = raw("INFO replication");
                online = rep->type == REDIS_REPLY_STRING && strstr(rep->str, "state=online");
                freeReplyObject(rep);
                if (!online)
                        t_sleep_ms(10);
        }
        if (!online)
                t_redis_free(replica);
        cr_assert(online, "the replica never came online");
        const char *kv[] = { "redis.wait_replicas", "1", "redis.wait_timeout", "5s", NULL };
        build_ok(kv);
        struct walimpls_wal *w = open_ok("replicated", 1, WAL_ACCESS_RW);
        struct wal_msgid id = append_ok(w, "on two servers");
        w->ops->close(w);
        /* The replica has it. */
        redisContext *c = redisConnect("127.0.0.1", replica->port);
        cr_assert(c && !c->err);
        redisReply *rep = redisCommand(c, "XLEN wal:replicated");
        long long n = rep ? rep->integer : -1;
        freeReplyObject(rep);
        redisFree(c);
        t_redis_free(replica);
        cr_assert_eq(n, 1, "replica holds %lld entries", n);
        cr_assert(!wal_msgid_is_none(id));
}

Test(redis, pipelined_appends_complete_in_order)
{
        start_server(false, NULL, NULL);
        build_ok(NULL);
        struct walimpls_wal *w = open_ok("pipe", 1, WAL_ACCESS_RW);
        enum { N = 5000 };
        struct done **d = calloc(N, sizeof(*d));
        cr_assert_not_null(d);
        for (int i = 0; i < N; i++) {
                char text[16];
                snprintf(text, sizeof(text), "p%d", i);
                wal_msg *m = msg_text(text);
                d[i] = done_new();
                cr_assert_eq(w->ops->append(w, m, done_cb, d[i]), 0);
                wal_msg_unref(m);
        }
        for (int i = 0; i < N; i++) {
                cr_assert(done_wait(d[i], 20000), "append %d never completed", i);
                cr_assert_eq(d[i]->status, 0, "append %d: %s", i, d[i]->msg);
                if (i > 0)
                        cr_assert_lt(wal_msgid_cmp(d[i - 1]->id, d[i]->id), 0,
                                     "IDs not increasing in call order at %d", i);
        }
        for (int i = 0; i < N; i++)
                done_free(d[i]);
        free(d);
        redisReply *rep = raw("XLEN wal:pipe");
        cr_assert_eq(rep->integer, N);
        freeReplyObject(rep);
        w->ops->close(w);
}

/*
 * An idle writer waits on its connection as well as for work, and a lone
 * append is sent by append() itself (redis.c, "Sending from append()").
 * Lone appends, bursts queued behind them, and a connection the server
 * dropped while the writer was idle (CLIENT KILL: the writer must drop it
 * rather than let append() send into it, which would fail that append with
 * -ECONNRESET) all keep every append landing once, in call order.
 */
Test(redis, lone_appends_and_bursts_stay_in_order_across_an_idle_kill)
{
        start_server(false, NULL, NULL);
        build_ok(NULL);
        struct walimpls_wal *w = open_ok("lone", 1, WAL_ACCESS_RW);
        enum { ROUNDS = 6, BURST = 40 };
        struct wal_msgid prev = WAL_MSGID_NONE;
        long total = 0;
        for (int round = 0; round < ROUNDS; round++) {
                if (round == 2 || round == 4) {
                        raw_ok("CLIENT KILL TYPE normal SKIPME yes");
                        usleep(20000); /* let the writer see the EOF */
                }
                struct wal_msgid id = append_ok(w, "lone");
                cr_assert(wal_msgid_is_none(prev) || wal_msgid_cmp(prev, id) < 0,
                          "round %d: lone append's ID not after the previous one", round);
                prev = id;
                total++;
                struct done *d[BURST];
                for (int i = 0; i < BURST; i++) {
                        wal_msg *m = msg_text("burst");
                        d[i] = done_new();
                        cr_assert_eq(w->ops->append(w, m, done_cb, d[i]), 0);
                        wal_msg_unref(m);
                }
                for (int i = 0; i < BURST; i++) {
                        cr_assert(done_wait(d[i], 20000), "round %d: append %d never completed",
                                  round, i);
                        cr_assert_eq(d[i]->calls, 1);
                        cr_assert_eq(d[i]->status, 0, "round %d append %d: %s", round, i,
                                     d[i]->msg);
                        cr_assert_lt(wal_msgid_cmp(prev, d[i]->id), 0,
                                     "round %d: IDs not increasing in call order at %d", round, i);
                        prev = d[i]->id;
                        done_free(d[i]);
                        total++;
                }
        }
        redisReply *rep = raw("XLEN wal:lone");
        cr_assert_eq(rep->integer, total);
        freeReplyObject(rep);
        w->ops->close(w);
}

/* The writer keeps many XADDs in flight (redis.c, "The sliding window").
 * A foreign entry ahead of the clock, inside the writer's term range, makes
 * the first XADDs in flight refused as below the stream's last ID: they and
 * every later reply are held, explained, and the refused ones sent again
 * above it, so every append still lands once, in call order. */
Test(redis, refusal_inside_a_full_window_is_resent_in_order)
{
        start_server(false, NULL, NULL);
        const char *kv[] = { "redis.batch_max", "64", NULL };
        build_ok(kv);
        struct walimpls_wal *w = open_ok("window", 3, WAL_ACCESS_RW);
        struct wal_msgid a = append_ok(w, "first");
        /* 5 s ahead of the clock, still term 3's band. */
        uint64_t ahead = (UINT64_C(3) << 42) | ((walu_realtime_ms() + 5000) & ((UINT64_C(1) << 42) - 1));
        redisReply *rep = raw("XADD wal:window %" PRIu64 "-7 payload ahead", ahead);
        cr_assert(rep->type == REDIS_REPLY_STRING, "explicit XADD: %s", rep->str);
        freeReplyObject(rep);
        cr_assert_lt(a.hi, ahead);
        enum { N = 3000 };
        struct done **d = calloc(N, sizeof(*d));
        cr_assert_not_null(d);
        for (int i = 0; i < N; i++) {
                char text[16];
                snprintf(text, sizeof(text), "w%d", i);
                wal_msg *m = msg_text(text);
                d[i] = done_new();
                cr_assert_eq(w->ops->append(w, m, done_cb, d[i]), 0);
                wal_msg_unref(m);
        }
        for (int i = 0; i < N; i++) {
                cr_assert(done_wait(d[i], 20000), "append %d never completed", i);
                cr_assert_eq(d[i]->status, 0, "append %d: %s", i, d[i]->msg);
                cr_assert_lt(wal_msgid_cmp(WAL_MSGID(ahead, 7), d[i]->id), 0,
                             "append %d landed below the foreign entry", i);
                if (i > 0)
                        cr_assert_lt(wal_msgid_cmp(d[i - 1]->id, d[i]->id), 0,
                                     "IDs not increasing in call order at %d", i);
        }
        struct walimpls_scanner *s = scan_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        wal_msg *m = next_ok(s, 5000);
        cr_assert(payload_is(m, "first"));
        wal_msg_unref(m);
        m = next_ok(s, 5000);
        cr_assert(payload_is(m, "ahead"));
        wal_msg_unref(m);
        for (int i = 0; i < N; i++) {
                char text[16];
                snprintf(text, sizeof(text), "w%d", i);
                m = next_ok(s, 5000);
                cr_assert(payload_is(m, text), "entry %d out of order", i);
                cr_assert(wal_msgid_eq(wal_msg_id(m), d[i]->id), "w%d read at another ID", i);
                wal_msg_unref(m);
        }
        cr_assert_eq(s->ops->next(s, 300, &m, NULL), -ETIMEDOUT, "nothing is stored twice");
        s->ops->close(s);
        for (int i = 0; i < N; i++)
                done_free(d[i]);
        free(d);
        w->ops->close(w);
}

Test(redis, large_records_round_trip)
{
        start_server(false, NULL, NULL);
        build_ok(NULL);
        struct walimpls_wal *w = open_ok("large", 1, WAL_ACCESS_RW);
        enum { N = 4, SIZE = 6 << 20 };   /* 24 MiB: more than one write batch */
        char *buf = malloc(SIZE);
        cr_assert_not_null(buf);
        struct done *d[N];
        for (int i = 0; i < N; i++) {
                memset(buf, 'a' + i, SIZE);
                wal_msg *m = NULL;
                cr_assert_eq(wal_msg_new(WAL_MSG_DATA, buf, SIZE, &m), 0);
                d[i] = done_new();
                cr_assert_eq(w->ops->append(w, m, done_cb, d[i]), 0);
                wal_msg_unref(m);
        }
        for (int i = 0; i < N; i++) {
                cr_assert(done_wait(d[i], 20000));
                cr_assert_eq(d[i]->status, 0, "record %d: %s", i, d[i]->msg);
                done_free(d[i]);
        }
        struct walimpls_scanner *s = scan_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        for (int i = 0; i < N; i++) {
                wal_msg *m = next_ok(s, 10000);
                size_t len = 0;
                const char *p = wal_msg_payload(m, &len);
                cr_assert_eq(len, (size_t)SIZE);
                cr_assert(p[0] == 'a' + i && p[SIZE - 1] == 'a' + i, "record %d garbled", i);
                wal_msg_unref(m);
        }
        free(buf);
        s->ops->close(s);
        w->ops->close(w);
}

/* ---- Scanner plumbing ---- */

Test(redis, scanner_fd_wakes_and_close_does_not_wait_out_block)
{
        start_server(false, NULL, NULL);
        const char *kv[] = { "redis.block", "20s", NULL };
        build_ok(kv);
        struct walimpls_wal *w = open_ok("fd", 1, WAL_ACCESS_RW);
        append_ok(w, "old");
        struct walimpls_scanner *s = scan_ok(w, WAL_DELIVER_LATEST, WAL_MSGID_NONE);
        wal_msg *m = NULL;
        cr_assert_eq(s->ops->next(s, 0, &m, NULL), -ETIMEDOUT);
        struct pollfd p = { .fd = s->ops->fd(s), .events = POLLIN };
        cr_assert_eq(poll(&p, 1, 0), 0, "fd readable with nothing to read");
        append_ok(w, "new");
        cr_assert_eq(poll(&p, 1, 5000), 1, "fd did not wake up");
        m = next_ok(s, 0);
        cr_assert(payload_is(m, "new"), "LATEST delivered an old message");
        wal_msg_unref(m);
        /* The reader thread now sits in XREAD BLOCK 20000. */
        t_sleep_ms(100);
        s->ops->interrupt(s);
        cr_assert_eq(s->ops->next(s, -1, &m, NULL), -ECANCELED);
        uint64_t t0 = t_now_ms();
        s->ops->close(s);
        cr_assert_lt(t_now_ms() - t0, 1000, "close waited for the XREAD BLOCK");
        w->ops->close(w);
}

struct got_list {
        char names[8][64];
        int n;
};

static int list_cb(void *arg, const char *ch)
{
        struct got_list *got = arg;
        if (got->n < 8)
                snprintf(got->names[got->n], 64, "%s", ch);
        got->n++;
        return 0;
}

Test(redis, list_channels_streams_and_term_keys_only)
{
        start_server(false, NULL, NULL);
        build_ok(NULL);
        struct walimpls_wal *a = open_ok("chan-a", 1, WAL_ACCESS_RW);      /* no entries yet */
        struct walimpls_wal *b = open_ok("chan-b", 1, WAL_ACCESS_RW);
        append_ok(b, "x");
        raw_ok("SET wal:chan-c a-string");
        freeReplyObject(raw("XADD wal:chan-d * payload foreign"));
        freeReplyObject(raw("XADD other:chan-e * payload elsewhere"));
        struct got_list got = { .n = 0 };
        int r = opener->ops->list_channels(opener, list_cb, &got, NULL);
        cr_assert_eq(r, 0);
        cr_assert_eq(got.n, 3, "listed %d channels", got.n);
        cr_assert_str_eq(got.names[0], "chan-a");
        cr_assert_str_eq(got.names[1], "chan-b");
        cr_assert_str_eq(got.names[2], "chan-d");
        a->ops->close(a);
        b->ops->close(b);

        struct walimpls_wal *w = NULL;
        wal_error *e = NULL;
        cr_assert_eq(open_wal("missing", 0, WAL_ACCESS_RO, &w, &e), -ENOENT);
        wal_error_free(e);
}

/* ---- Server failures ---- */

Test(redis, inflight_append_gets_retriable_econnreset)
{
        start_server(true, NULL, NULL);
        build_ok(NULL);
        struct walimpls_wal *w = open_ok("inflight", 1, WAL_ACCESS_RW);
        append_ok(w, "before");
        /* A stopped server accepts the bytes but never answers. */
        cr_assert_eq(kill(srv->pid, SIGSTOP), 0);
        wal_msg *m = msg_text("in-flight");
        struct done *d = done_new();
        cr_assert_eq(w->ops->append(w, m, done_cb, d), 0);
        wal_msg_unref(m);
        t_sleep_ms(200);
        cr_assert_eq(d->calls, 0, "completed while the server was stopped");
        t_redis_kill(srv, SIGKILL);
        cr_assert(done_wait(d, 5000), "no completion after the server died");
        cr_assert_eq(d->status, -ECONNRESET, "status %d (%s)", d->status, d->msg);
        cr_assert(d->retriable, "in-flight failure must be retriable");
        cr_assert(strstr(d->msg, "in flight"), "message: %s", d->msg);
        done_free(d);

        /* Server down: appends fail at once, retriable, naming the cause. */
        char why0[512];
        bool retriable0 = false;
        uint64_t t0 = t_now_ms();
        int r0 = append_sync(w, "while-down", NULL, &retriable0, why0, sizeof(why0));
        cr_assert_eq(r0, -ECONNREFUSED, "append while down: %d (%s)", r0, why0);
        cr_assert(retriable0);
        cr_assert(strstr(why0, "127.0.0.1"), "message: %s", why0);
        cr_assert_lt(t_now_ms() - t0, 3000);

        /* Server back: the writer reconnects and appends again. */
        cr_assert_eq(t_redis_restart(srv), 0);
        struct wal_msgid id;
        int r = -1;
        for (int i = 0; i < 50 && r != 0; i++) {
                bool retriable = false;
                char why[512];
                r = append_sync(w, "after", &id, &retriable, why, sizeof(why));
                if (r != 0) {
                        cr_assert(retriable, "non-retriable %d after restart: %s", r, why);
                        t_sleep_ms(50);
                }
        }
        cr_assert_eq(r, 0);
        redisReply *rep = raw("XLEN wal:inflight");
        cr_assert_eq(rep->integer, 2, "the stopped append reached the AOF after all?");
        freeReplyObject(rep);
        w->ops->close(w);
}

Test(redis, close_with_a_silent_server_completes_everything)
{
        start_server(false, NULL, NULL);
        const char *kv[] = { "redis.command_timeout", "300ms", "redis.connect_timeout", "300ms",
                             NULL };
        build_ok(kv);
        struct walimpls_wal *w = open_ok("silent", 1, WAL_ACCESS_RW);
        append_ok(w, "before");
        cr_assert_eq(kill(srv->pid, SIGSTOP), 0);
        enum { N = 50 };
        struct done *d[N];
        for (int i = 0; i < N; i++) {
                wal_msg *m = msg_text("stuck");
                d[i] = done_new();
                cr_assert_eq(w->ops->append(w, m, done_cb, d[i]), 0);
                wal_msg_unref(m);
        }
        uint64_t t0 = t_now_ms();
        w->ops->close(w);
        uint64_t took = t_now_ms() - t0;
        kill(srv->pid, SIGCONT);
        cr_assert_lt(took, 3000, "close took %" PRIu64 " ms", took);
        for (int i = 0; i < N; i++) {
                cr_assert_eq(d[i]->calls, 1, "append %d completed %d times by close", i,
                             d[i]->calls);
                cr_assert(d[i]->status == -ECONNRESET || d[i]->status == -ECANCELED,
                          "append %d: %d (%s)", i, d[i]->status, d[i]->msg);
                cr_assert(d[i]->status != -ECONNRESET || d[i]->retriable);
                done_free(d[i]);
        }
}

Test(redis, clients_wait_out_a_loading_server, .timeout = 60)
{
        start_server(true, NULL, NULL);
        build_ok(NULL);
        struct walimpls_wal *w = open_ok("loading", 1, WAL_ACCESS_RW);
        struct wal_msgid one = append_ok(w, "one");
        struct walimpls_scanner *s = scan_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        wal_msg *m = next_ok(s, 5000);
        cr_assert(wal_msgid_eq(wal_msg_id(m), one));
        wal_msg_unref(m);
        /* Keys in an RDB-preamble AOF, each loaded with a 50 ms delay (a
         * debug setting of redis-server), answering clients every KiB
         * loaded: about a second of -LOADING replies. */
        static char filler[4096];
        memset(filler, 'f', sizeof(filler));
        for (int i = 0; i < 20; i++)
                raw_ok("SET filler:%d %b", i, filler, sizeof(filler));
        raw_ok("BGREWRITEAOF");
        for (int i = 0; i < 500; i++) {
                redisReply *rep = raw("INFO persistence");
                bool busy = strstr(rep->str, "aof_rewrite_in_progress:1") ||
                            strstr(rep->str, "aof_rewrite_scheduled:1");
                freeReplyObject(rep);
                if (!busy)
                        break;
                t_sleep_ms(10);
        }
        redisFree(rawc);
        rawc = NULL;
        cr_assert_eq(t_redis_conf_append(srv, "key-load-delay 50000"), 0);
        cr_assert_eq(t_redis_conf_append(srv, "loading-process-events-interval-bytes 1024"), 0);
        cr_assert_eq(t_redis_restart_loading(srv), 0);

        int failures = 0;
        bool saw_loading = false;
        struct wal_msgid two;
        for (;;) {
                char why[512];
                bool retriable = false;
                int r = append_sync(w, "two", &two, &retriable, why, sizeof(why));
                if (r == 0)
                        break;
                cr_assert(retriable, "non-retriable %d while loading: %s", r, why);
                saw_loading |= strstr(why, "LOADING") != NULL;
                cr_assert_lt(++failures, 500, "still failing: %s", why);
                t_sleep_ms(20);
        }
        cr_assert(saw_loading, "no append met the loading server (%d failures)", failures);
        m = next_ok(s, 10000);
        cr_assert(wal_msgid_eq(wal_msg_id(m), two), "the tail after loading skipped or repeated");
        wal_msg_unref(m);
        s->ops->close(s);
        w->ops->close(w);
}

struct producer {
        struct walimpls_wal *w;
        int n;
        struct wal_msgid *acked;       /* acked[i]: ID of record i */
        atomic_int done_count;
        atomic_int retries;
        int fatal;
        char fatal_msg[640];
};

static void *produce(void *arg)
{
        struct producer *p = arg;
        for (int i = 0; i < p->n; i++) {
                char text[32];
                snprintf(text, sizeof(text), "rec-%06d", i);
                for (;;) {
                        bool retriable = false;
                        char why[512];
                        struct wal_msgid id;
                        int r = append_sync(p->w, text, &id, &retriable, why, sizeof(why));
                        if (r == 0) {
                                p->acked[i] = id;
                                break;
                        }
                        if (!retriable) {
                                p->fatal = r;
                                snprintf(p->fatal_msg, sizeof(p->fatal_msg), "record %d: %s", i,
                                         why);
                                return NULL;
                        }
                        atomic_fetch_add(&p->retries, 1);
                        t_sleep_ms(5);
                }
                atomic_store(&p->done_count, i + 1);
        }
        return NULL;
}

Test(redis, restarts_lose_and_repeat_no_acknowledged_record, .timeout = 90)
{
        start_server(true, NULL, NULL);
        build_ok(NULL);
        struct walimpls_wal *w = open_ok("restart", 1, WAL_ACCESS_RW);
        struct walimpls_wal *r_w = open_ok("restart", 0, WAL_ACCESS_RO);
        struct walimpls_scanner *s = scan_ok(r_w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        enum { N = 1500 };
        struct producer p = { .w = w, .n = N };
        p.acked = calloc(N, sizeof(*p.acked));
        cr_assert_not_null(p.acked);
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, produce, &p), 0);

        /* Read while producing, and restart twice: once a crash (SIGKILL),
         * once a clean shutdown. */
        struct wal_msgid *seen = calloc(4 * N, sizeof(*seen));
        char (*texts)[16] = calloc(4 * N, 16);
        cr_assert(seen && texts);
        int n_seen = 0;
        int restarts = 0;
        uint64_t end = t_now_ms() + 60000;
        for (;;) {
                int progress = atomic_load(&p.done_count);
                if (restarts == 0 && progress >= N / 3) {
                        t_redis_kill(srv, SIGKILL);
                        t_sleep_ms(100);
                        cr_assert_eq(t_redis_restart(srv), 0);
                        restarts++;
                } else if (restarts == 1 && progress >= 2 * N / 3) {
                        cr_assert_eq(t_redis_restart(srv), 0); /* SIGTERM, then start */
                        restarts++;
                }
                wal_msg *m = NULL;
                wal_error *e = NULL;
                int r = s->ops->next(s, 20, &m, &e);
                if (r == 0) {
                        cr_assert_lt(n_seen, 4 * N);
                        if (n_seen > 0)
                                cr_assert_lt(wal_msgid_cmp(seen[n_seen - 1], wal_msg_id(m)), 0,
                                             "scanner went backwards or repeated an ID");
                        seen[n_seen] = wal_msg_id(m);
                        size_t len = 0;
                        const char *pl = wal_msg_payload(m, &len);
                        snprintf(texts[n_seen], 16, "%.*s", (int)WALU_MIN(len, 15), pl);
                        n_seen++;
                        wal_msg_unref(m);
                        continue;
                }
                cr_assert_eq(r, -ETIMEDOUT, "scanner failed: %s", wal_error_message(e));
                if ((atomic_load(&p.done_count) == N || p.fatal) && restarts == 2) {
                        /* Drain: everything acknowledged must show up. */
                        bool all = true;
                        for (int i = 0; i < N && all; i++) {
                                bool found = false;
                                for (int j = n_seen - 1; j >= 0 && !found; j--)
                                        found = wal_msgid_eq(seen[j], p.acked[i]);
                                all = found;
                        }
                        if (all || t_now_ms() > end)
                                break;
                }
                cr_assert_lt(t_now_ms(), end, "test ran out of time (%d read, %d acked)",
                             n_seen, atomic_load(&p.done_count));
        }
        pthread_join(th, NULL);
        cr_assert_eq(p.fatal, 0, "producer failed: %s", p.fatal_msg);
        cr_assert_eq(restarts, 2);

        /* Every acknowledged record exactly once, at its ID, with its payload.
         * (IDs strictly increase, checked above, so none repeats.) */
        int j = 0;
        for (int i = 0; i < N; i++) {
                while (j < n_seen && wal_msgid_cmp(seen[j], p.acked[i]) < 0)
                        j++;
                cr_assert_lt(j, n_seen, "acknowledged record %d was never read", i);
                cr_assert(wal_msgid_eq(seen[j], p.acked[i]), "acknowledged record %d lost", i);
                char want[16];
                snprintf(want, sizeof(want), "rec-%06d", i);
                cr_assert_str_eq(texts[j], want, "record %d has another payload", i);
        }
        cr_log_info("restart test: %d acked, %d read, %d retried appends", N, n_seen,
                    atomic_load(&p.retries));
        free(seen);
        free(texts);
        free(p.acked);
        s->ops->close(s);
        r_w->ops->close(r_w);
        w->ops->close(w);
}
