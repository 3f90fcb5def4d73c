/* SPDX-License-Identifier: MIT */
/*
 * impls/redis/redis-conn.c: one Redis connection of the Redis backend.
 *
 * hiredis 0.14 (Debian 12) is used for its command formatter and its RESP2
 * reply parser only; the socket reads are ours.  Reading ourselves gives
 * three things hiredis 0.14 lacks: a poll() that can also watch a stop
 * descriptor (a scanner's close must not wait out an XREAD BLOCK), one
 * timeout per reply independent of SO_RCVTIMEO (a blocking read needs a
 * longer one), and a bound on the size of a reply (redis.max_reply_bytes):
 * every byte fed to the parser while the current reply is still incomplete
 * belongs to that reply, so counting them is an exact lower bound on its
 * size and a reply over the bound is refused before it is fully buffered.
 *
 * After any failure in the middle of a reply stream (timeout, reset, size,
 * protocol) the connection is closed: the pipeline can no longer be matched
 * to its commands.  Owners reconnect (redis.c does, with backoff).
 *
 * hiredis writes with write(2), so a peer that vanished raises SIGPIPE.  A
 * library must not change the process's signal disposition; rconn_flush()
 * blocks SIGPIPE in the calling thread around the write and consumes a
 * SIGPIPE it caused itself (the pattern OpenSSL users apply).
 *
 * The Lua scripts at the top are the server-side half of fencing: OPEN
 * records a term and raises the stream's ID floor above every ID an older
 * term can write (redis.c, "Fencing"); APPEND and TRUNCATE check the term
 * and act atomically, for the terms whose IDs cannot carry them.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include <wal/wal-config.h>
#include <wal/wal-error.h>
#include "utility/walu.h"
#include "impls/redis/redis-internal.h"

/* ---- Scripts ---- */

/*
 * Terms are compared as canonical decimal strings (length first, then
 * bytes): Lua numbers are doubles and would round int64 terms above 2^53.
 */
#define LUA_LOWER \
        "local function lower(a, b) if #a ~= #b then return #a < #b end " \
        "return a < b end\n"
#define LUA_CHECK_TERM \
        "local t = redis.call('GET', KEYS[2])\n" \
        "if not t then return redis.error_reply('WALNOTERM key ' .. KEYS[2] .. " \
        "' is missing: the channel was deleted or the server lost data') end\n" \
        "if not string.match(t, '^%d+$') then return redis.error_reply(" \
        "'WALBADTERM key ' .. KEYS[2] .. ' does not hold a term') end\n" \
        "if lower(ARGV[1], t) then return redis.error_reply('WALSTALE term ' .. t " \
        ".. ' owns ' .. KEYS[1]) end\n"
#define LUA_CHECK_STREAM \
        "local ty = redis.call('TYPE', KEYS[1])['ok']\n" \
        "if ty ~= 'none' and ty ~= 'stream' then return redis.error_reply(" \
        "'WRONGTYPE key ' .. KEYS[1] .. ' holds a ' .. ty .. ', not a stream') end\n"

static const char *const scripts[REDIS_SCRIPT_COUNT] = {
        /*
         * OPEN: KEYS stream, term; ARGV term, ID floor (the ms part, decimal).
         * Returns the previous term or "".  Records the term, creates the
         * stream if missing (empty: writers XADD with NOMKSTREAM) and raises
         * its last-generated-id to <floor>-0 if below: every ID an older
         * term's writer can produce lies below the floor, so its next XADD
         * fails (redis.c, "Fencing").  XSETID may lower the ID of a stream
         * whose newest entries were deleted, hence the comparison first.
         */
        [REDIS_SCRIPT_OPEN] =
                LUA_LOWER LUA_CHECK_STREAM
                "local t = redis.call('GET', KEYS[2])\n"
                "if t then\n"
                "  if not string.match(t, '^%d+$') then return redis.error_reply("
                "'WALBADTERM key ' .. KEYS[2] .. ' does not hold a term') end\n"
                "  if lower(ARGV[1], t) then return redis.error_reply('WALSTALE term ' "
                ".. t .. ' owns ' .. KEYS[1]) end\n"
                "else t = '' end\n"
                "redis.call('SET', KEYS[2], ARGV[1])\n"
                "if ty == 'none' then\n"
                "  redis.call('XGROUP', 'CREATE', KEYS[1], 'wal-open', '$', 'MKSTREAM')\n"
                "  redis.call('XGROUP', 'DESTROY', KEYS[1], 'wal-open')\n"
                "end\n"
                "if ARGV[2] ~= '0' then\n"
                "  local info = redis.call('XINFO', 'STREAM', KEYS[1])\n"
                "  local lg = '0-0'\n"
                "  for i = 1, #info - 1, 2 do\n"
                "    if info[i] == 'last-generated-id' then lg = info[i + 1] end\n"
                "  end\n"
                "  if lower(string.match(lg, '^(%d+)'), ARGV[2]) then\n"
                "    redis.call('XSETID', KEYS[1], ARGV[2] .. '-0')\n"
                "  end\n"
                "end\n"
                "return t\n",
        /*
         * APPEND: KEYS stream, term; ARGV term, then envelope, payload per
         * record.  Checks the term once for the group; returns one entry ID or
         * one error per record (redis.pcall: a failed XADD cannot hide the IDs
         * of the records written before it).
         */
        [REDIS_SCRIPT_APPEND] =
                LUA_LOWER LUA_CHECK_TERM
                "local r = {}\n"
                "for i = 2, #ARGV - 1, 2 do\n"
                "  r[#r + 1] = redis.pcall('XADD', KEYS[1], '*', '_wal_env', ARGV[i], "
                "'payload', ARGV[i + 1])\n"
                "end\n"
                "return r\n",
        /*
         * TRUNCATE: KEYS stream, term; ARGV term, min ID kept, truncation ID.
         * Returns the count deleted.  Redis 7.0's XTRIM does not advance
         * max-deleted-entry-id, which readers use to notice trimmed positions,
         * so the last entry at or below the truncation ID is removed with XDEL
         * (which does) before XTRIM removes the rest.
         */
        [REDIS_SCRIPT_TRUNCATE] =
                LUA_LOWER LUA_CHECK_TERM LUA_CHECK_STREAM
                "if ty == 'none' then return 0 end\n"
                "local n = 0\n"
                "local last = redis.call('XREVRANGE', KEYS[1], ARGV[3], '-', 'COUNT', 1)\n"
                "if #last > 0 then n = redis.call('XDEL', KEYS[1], last[1][1]) end\n"
                "return n + redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2])\n",
        /*
         * READ: KEYS stream; ARGV after-ID (exclusive), count.  Returns
         * {type, max-deleted-entry-id, last-generated-id, length, first ID,
         * entries, last ID}, state and entries read atomically.  The backend calls it
         * with count 0, for the state alone: scanners read entries with a
         * plain XRANGE just before it (redis.c, scanner_round()), which
         * spares the Lua conversion of every entry.  A user that may not
         * run scripts reads the same state with XINFO STREAM (redis.c,
         * read_state()).
         */
        [REDIS_SCRIPT_READ] =
                LUA_CHECK_STREAM
                "if ty == 'none' then return {'none', '0-0', '0-0', 0, '', {}, ''} end\n"
                "local info = redis.call('XINFO', 'STREAM', KEYS[1])\n"
                "local maxdel, lastgen, len, first, last = '0-0', '0-0', 0, '', ''\n"
                "for i = 1, #info - 1, 2 do\n"
                "  local k, v = info[i], info[i + 1]\n"
                "  if k == 'max-deleted-entry-id' then maxdel = v\n"
                "  elseif k == 'last-generated-id' then lastgen = v\n"
                "  elseif k == 'length' then len = v\n"
                "  elseif k == 'first-entry' and type(v) == 'table' then first = v[1]\n"
                "  elseif k == 'last-entry' and type(v) == 'table' then last = v[1] end\n"
                "end\n"
                "local e = {}\n"
                "local n = tonumber(ARGV[2])\n"
                "if n > 0 then e = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', "
                "'COUNT', n) end\n"
                "return {ty, maxdel, lastgen, len, first, e, last}\n",
};

const char *redis_script_text(enum redis_script s)
{
        return (unsigned)s < REDIS_SCRIPT_COUNT ? scripts[s] : NULL;
}

/* ---- Parameters ---- */

static int hexval(int c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        c = tolower(c);
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

/* Copy @len bytes of @s, decoding %XX.  NULL on bad escapes or no memory. */
static char *pct_decode(const char *s, size_t len, int *err)
{
        char *out = malloc(len + 1);
        if (!out) {
                *err = -ENOMEM;
                return NULL;
        }
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
                if (s[i] == '%') {
                        int hi = i + 1 < len ? hexval((unsigned char)s[i + 1]) : -1;
                        int lo = i + 2 < len ? hexval((unsigned char)s[i + 2]) : -1;
                        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                                free(out);
                                *err = -EINVAL;
                                return NULL;
                        }
                        out[o++] = (char)(hi * 16 + lo);
                        i += 2;
                } else {
                        out[o++] = s[i];
                }
        }
        out[o] = '\0';
        return out;
}

static int parse_decimal(const char *s, size_t len, long max, long *ret)
{
        if (len == 0 || len > 10)
                return -EINVAL;
        long v = 0;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (s[i] - '0');
        }
        if (v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

int redis_url_parse(const char *url, struct redis_params *p, wal_error **reterr)
{
        static const char scheme[] = "redis://";
        if (!url || strncmp(url, scheme, sizeof(scheme) - 1) != 0) {
                if (url && strncmp(url, "rediss://", 9) == 0)
                        return wal_error_set(reterr, -EINVAL, 0,
                                             "redis.url: TLS (rediss://) is not supported "
                                             "by this build (hiredis 0.14 has no TLS)");
                return wal_error_set(reterr, -EINVAL, 0,
                                     "redis.url: expected redis://[user:password@]host[:port][/db]");
        }
        const char *s = url + sizeof(scheme) - 1;
        const char *end = s + strlen(s);
        const char *slash = memchr(s, '/', (size_t)(end - s));
        const char *auth_end = NULL;
        for (const char *q = s; q < (slash ? slash : end); q++)
                if (*q == '@')
                        auth_end = q; /* the last '@' before the path ends the credentials */
        char *user = NULL, *password = NULL, *host = NULL;
        long port = 6379, db = 0;
        int r = 0;
        if (auth_end) {
                const char *colon = memchr(s, ':', (size_t)(auth_end - s));
                if (colon) {
                        if (colon > s)
                                user = pct_decode(s, (size_t)(colon - s), &r);
                        if (r == 0)
                                password = pct_decode(colon + 1, (size_t)(auth_end - colon - 1), &r);
                } else {
                        /* redis://password@host: a password alone, as redis-cli reads it */
                        password = pct_decode(s, (size_t)(auth_end - s), &r);
                }
                if (r < 0)
                        goto bad_escape;
                s = auth_end + 1;
        }
        const char *host_end = slash ? slash : end;
        const char *host_start = s;
        const char *colon = memrchr(s, ':', (size_t)(host_end - s));
        if (*s == '[') {
                /* redis://[::1]:6379: an IPv6 address in brackets */
                const char *close = memchr(s, ']', (size_t)(host_end - s));
                if (!close || close == s + 1 || (close + 1 < host_end && close[1] != ':')) {
                        r = wal_error_set(reterr, -EINVAL, 0,
                                          "redis.url: bad bracketed IPv6 address");
                        goto fail;
                }
                host_start = s + 1;
                colon = close + 1 < host_end ? close + 1 : NULL;
                if (!colon)
                        host_end = close;
        }
        if (colon) {
                if (parse_decimal(colon + 1, (size_t)(host_end - colon - 1), 65535, &port) < 0 ||
                    port == 0) {
                        r = wal_error_set(reterr, -EINVAL, 0,
                                          "redis.url: bad port '%.*s' (1..65535)",
                                          (int)(host_end - colon - 1), colon + 1);
                        goto fail;
                }
                host_end = host_start != s ? colon - 1 : colon;
        }
        if (host_end == host_start) {
                r = wal_error_set(reterr, -EINVAL, 0, "redis.url: no host name");
                goto fail;
        }
        host = strndup(host_start, (size_t)(host_end - host_start));
        if (!host) {
                r = -ENOMEM;
                goto fail;
        }
        if (slash && slash + 1 < end &&
            parse_decimal(slash + 1, (size_t)(end - slash - 1), 1000000, &db) < 0) {
                r = wal_error_set(reterr, -EINVAL, 0,
                                  "redis.url: bad database number '%s'", slash + 1);
                goto fail;
        }
        free(p->host);
        free(p->user);
        free(p->password);
        p->host = host;
        p->user = user;
        p->password = password;
        p->port = (int)port;
        p->db = (int)db;
        return 0;

bad_escape:
        r = wal_error_set(reterr, r, 0, "redis.url: bad %%-escape in the credentials");
fail:
        free(user);
        free(password);
        free(host);
        return r;
}

static int get_ms(const wal_config *cfg, const char *key, int *ret)
{
        int64_t v = 0;
        int r = wal_config_get_duration_ms(cfg, key, &v);
        if (r < 0)
                return r;
        *ret = v > INT32_MAX ? INT32_MAX : (int)v;
        return 0;
}

static int get_int(const wal_config *cfg, const char *key, int *ret)
{
        int64_t v = 0;
        int r = wal_config_get_int(cfg, key, &v);
        if (r < 0)
                return r;
        *ret = v > INT32_MAX ? INT32_MAX : (v < INT32_MIN ? INT32_MIN : (int)v);
        return 0;
}

int redis_params_parse(const wal_config *cfg, struct redis_params *ret, wal_error **reterr)
{
        struct redis_params p = { .port = 6379 };
        int keepalive_ms = 0;
        int r;
        const char *url = wal_config_get(cfg, "redis.url");
        const char *prefix = wal_config_get(cfg, "redis.prefix");
        if (!url || !prefix) {
                r = wal_error_set(reterr, -EINVAL, 0,
                                  "redis.url and redis.prefix have no value "
                                  "(is the redis backend registered?)");
                goto fail;
        }
        r = redis_url_parse(url, &p, reterr);
        if (r < 0)
                goto fail;
        /* redis.user / redis.password, when set, override the URL's
         * credentials (so a password need not sit in a URL). */
        const char *keys[] = { "redis.user", "redis.password" };
        char **slots[] = { &p.user, &p.password };
        for (size_t i = 0; i < 2; i++) {
                if (!wal_config_is_set(cfg, keys[i]))
                        continue;
                const char *v = wal_config_get(cfg, keys[i]);
                free(*slots[i]);
                *slots[i] = v && *v ? strdup(v) : NULL;
                if (v && *v && !*slots[i]) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        p.prefix = strdup(prefix);
        if (!p.prefix) {
                r = -ENOMEM;
                goto fail;
        }
        if ((r = get_ms(cfg, "redis.connect_timeout", &p.connect_timeout_ms)) < 0 ||
            (r = get_ms(cfg, "redis.command_timeout", &p.command_timeout_ms)) < 0 ||
            (r = get_ms(cfg, "redis.keepalive", &keepalive_ms)) < 0 ||
            (r = get_int(cfg, "redis.wait_replicas", &p.wait_replicas)) < 0 ||
            (r = get_ms(cfg, "redis.wait_timeout", &p.wait_timeout_ms)) < 0 ||
            (r = wal_config_get_bool(cfg, "redis.require_aof", &p.require_aof)) < 0 ||
            (r = wal_config_get_size(cfg, "redis.max_reply_bytes", &p.max_reply_bytes)) < 0 ||
            (r = get_int(cfg, "redis.read_count", &p.read_count)) < 0 ||
            (r = get_int(cfg, "redis.batch_max", &p.batch_max)) < 0 ||
            (r = get_int(cfg, "redis.max_inflight", &p.max_inflight)) < 0 ||
            (r = get_ms(cfg, "redis.reconnect_backoff_initial", &p.backoff_initial_ms)) < 0 ||
            (r = get_ms(cfg, "redis.reconnect_backoff_max", &p.backoff_max_ms)) < 0 ||
            (r = get_ms(cfg, "redis.block", &p.block_ms)) < 0 ||
            (r = wal_config_get_bool(cfg, "redis.tail_direct", &p.tail_direct)) < 0) {
                r = wal_error_set(reterr, r, 0, "reading the redis.* properties failed (%s)",
                                  wal_strerror(r));
                goto fail;
        }
        p.keepalive_s = keepalive_ms > 0 ? WALU_MAX(keepalive_ms / 1000, 1) : 0;
        *ret = p;
        return 0;
fail:
        redis_params_free(&p);
        return r;
}

void redis_params_free(struct redis_params *p)
{
        if (!p)
                return;
        free(p->host);
        free(p->user);
        free(p->password);
        free(p->prefix);
        p->host = p->user = p->password = p->prefix = NULL;
}

/* ---- Errors ---- */

static bool starts(const char *text, size_t len, const char *word)
{
        size_t n = strlen(word);
        return len >= n && memcmp(text, word, n) == 0 &&
               (len == n || text[n] == ' ');
}

int redis_error_to_errno(const char *text, size_t len)
{
        static const struct {
                const char *word;
                int code;
        } map[] = {
                { "WALSTALE", -ESTALE },   { "WRONGTYPE", -EBADMSG },
                { "WRONGPASS", -EACCES },  { "NOAUTH", -EACCES },
                { "NOPERM", -EACCES },     { "NOSCRIPT", -EAGAIN },
                { "LOADING", -EAGAIN },    { "BUSY", -EAGAIN },
                { "MISCONF", -EIO },       { "OOM", -ENOSPC },
                { "READONLY", -EROFS },    { "WALNOTERM", -EIO },
                { "WALBADTERM", -EBADMSG },
        };
        if (!text)
                return -EIO;
        for (size_t i = 0; i < WALU_ARRAY_SIZE(map); i++)
                if (starts(text, len, map[i].word))
                        return map[i].code;
        /* A script error wraps the inner one: "ERR ... WRONGTYPE ..." is rare
         * in 7.0 (it forwards the inner code), but look for it anyway. */
        if (memmem(text, len, "WRONGTYPE", 9))
                return -EBADMSG;
        /* Redis 7.0's refusal of a command a script runs for a user without
         * the right: "ERR The user executing the script can't run this
         * command or subcommand ...". */
        if (memmem(text, len, "can't run this command", 22))
                return -EACCES;
        return -EIO;
}

bool redis_errno_retriable(int code)
{
        return code == -EAGAIN || code == -ECONNRESET || code == -ECONNREFUSED ||
               code == -ETIMEDOUT || code == -EPIPE || code == -EHOSTUNREACH ||
               code == -ECONNABORTED || code == -ENOTCONN;
}

/* ---- IDs ---- */

int redis_id_format(struct wal_msgid id, char *buf, size_t len)
{
        int n = snprintf(buf, len, "%" PRIu64 "-%" PRIu64, id.hi, id.lo);
        return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

static int parse_u64(const char *s, size_t len, uint64_t *ret)
{
        if (len == 0 || len > 20)
                return -EINVAL;
        uint64_t v = 0;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                if (__builtin_mul_overflow(v, 10, &v) ||
                    __builtin_add_overflow(v, (uint64_t)(s[i] - '0'), &v))
                        return -EINVAL;
        }
        *ret = v;
        return 0;
}

int redis_id_parse(const char *s, size_t len, struct wal_msgid *ret)
{
        if (!s)
                return -EINVAL;
        const char *dash = memchr(s, '-', len);
        uint64_t hi, lo = 0;
        if (dash) {
                if (parse_u64(s, (size_t)(dash - s), &hi) < 0 ||
                    parse_u64(dash + 1, len - (size_t)(dash - s) - 1, &lo) < 0)
                        return -EINVAL;
        } else if (parse_u64(s, len, &hi) < 0) {
                return -EINVAL;
        }
        *ret = WAL_MSGID(hi, lo);
        return 0;
}

bool redis_id_succ(struct wal_msgid id, struct wal_msgid *ret)
{
        if (id.lo != UINT64_MAX) {
                *ret = WAL_MSGID(id.hi, id.lo + 1);
                return true;
        }
        if (id.hi == UINT64_MAX)
                return false;
        *ret = WAL_MSGID(id.hi + 1, 0);
        return true;
}

bool redis_id_pred(struct wal_msgid id, struct wal_msgid *ret)
{
        if (id.lo > 0) {
                *ret = WAL_MSGID(id.hi, id.lo - 1);
                return true;
        }
        if (id.hi == 0)
                return false;
        *ret = WAL_MSGID(id.hi - 1, UINT64_MAX);
        return true;
}

/* ---- Connection ---- */

void rconn_close(struct rconn *rc)
{
        if (!rc)
                return;
        free(rc->slot_big);
        rc->slot_big = NULL;
        if (!rc->c)
                return;
        redisFree(rc->c);
        rc->c = NULL;
}

/*
 * ---- Replies without an allocation (rconn_reply_slot) ----
 *
 * hiredis's reader builds each reply through a table of functions; the
 * default one allocates a redisReply and a copy of its string, and
 * freeReplyObject() frees both: two allocations and two frees per reply,
 * for every XADD of the writer's pipeline.  For replies that are one
 * string, error, integer or nil, these functions fill the connection's
 * slot instead (a string is copied: the reader may move its buffer once
 * the reply is parsed).  The table is swapped in only around the one
 * redisReaderGetReply() call, on the thread that owns the connection; a
 * reply the slot cannot hold (an array) is refused, which the reader
 * reports as an error, and the connection is closed as for any reply that
 * does not parse.
 */
static _Thread_local struct rconn *slot_owner;

static void *slot_string(const redisReadTask *t, char *str, size_t len)
{
        struct rconn *rc = slot_owner;
        char *dst = rc->slot_buf;
        if (len >= sizeof(rc->slot_buf)) {
                free(rc->slot_big);
                rc->slot_big = malloc(len + 1);
                if (!rc->slot_big)
                        return NULL;
                dst = rc->slot_big;
        }
        memcpy(dst, str, len);
        dst[len] = '\0';
        rc->slot = (redisReply){ .type = t->type, .str = dst, .len = len };
        return &rc->slot;
}

static void *slot_array(const redisReadTask *t, int elements)
{
        (void)t;
        (void)elements;
        slot_owner->slot_array = true;
        return NULL;
}

static void *slot_integer(const redisReadTask *t, long long value)
{
        (void)t;
        slot_owner->slot = (redisReply){ .type = REDIS_REPLY_INTEGER, .integer = value };
        return &slot_owner->slot;
}

static void *slot_nil(const redisReadTask *t)
{
        (void)t;
        slot_owner->slot = (redisReply){ .type = REDIS_REPLY_NIL };
        return &slot_owner->slot;
}

static void slot_free(void *reply)
{
        (void)reply; /* the slot belongs to the connection */
}

static redisReplyObjectFunctions slot_functions = {
        .createString = slot_string,
        .createArray = slot_array,
        .createInteger = slot_integer,
        .createNil = slot_nil,
        .freeObject = slot_free,
};

/* redisReaderGetReply(), into the slot when @slot. */
static int get_reply(struct rconn *rc, bool slot, void **reply)
{
        if (!slot)
                return redisReaderGetReply(rc->c->reader, reply);
        redisReader *rd = rc->c->reader;
        redisReplyObjectFunctions *saved = rd->fn;
        rd->fn = &slot_functions;
        slot_owner = rc;
        rc->slot_array = false;
        int r = redisReaderGetReply(rd, reply);
        rd->fn = saved;
        slot_owner = NULL;
        return r;
}

/* The error of a reply that does not parse (or does not fit the slot). */
static int parse_error(struct rconn *rc, wal_error **reterr)
{
        if (rc->slot_array)
                return wal_error_set(reterr, -EPROTO, 0,
                                     "redis %s:%d sent an array where one value was due",
                                     rc->p->host, rc->p->port);
        return wal_error_set(reterr, -EPROTO, 0,
                             "redis %s:%d sent a reply that does not parse: %s",
                             rc->p->host, rc->p->port, rc->c->reader->errstr);
}

static int io_errno(int saved_errno, const char *errstr)
{
        if (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK)
                return -ETIMEDOUT;
        if (saved_errno > 0)
                return -saved_errno;
        if (strstr(errstr, "refused"))
                return -ECONNREFUSED;
        if (strstr(errstr, "timed out"))
                return -ETIMEDOUT;
        if (strstr(errstr, "reset") || strstr(errstr, "closed"))
                return -ECONNRESET;
        if (strstr(errstr, "Name or service") || strstr(errstr, "resolve"))
                return -EHOSTUNREACH;
        return -ECONNRESET;
}

bool rconn_peer_closed(struct rconn *rc)
{
        if (!rc->c)
                return true;
        struct pollfd pfd = { .fd = rc->c->fd, .events = POLLIN };
        if (poll(&pfd, 1, 0) <= 0)
                return false;
        char b;
        ssize_t n = recv(rc->c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        /* Nothing is outstanding on an idle connection: data, EOF or an
         * error all mean it cannot be used as it is. */
        return n != -1 || (errno != EAGAIN && errno != EWOULDBLOCK);
}

int rconn_append(struct rconn *rc, int script, int argc, const char **argv,
                 const size_t *lens)
{
        if (!rc->c)
                return -ENOTCONN;
        if (script < 0)
                return redisAppendCommandArgv(rc->c, argc, argv, lens) == REDIS_OK ? 0 : -ENOMEM;
        const char *a_small[16];
        size_t l_small[16];
        const char **a = a_small;
        size_t *l = l_small;
        if (argc + 2 > 16) {
                a = malloc((size_t)(argc + 2) * sizeof(*a));
                l = malloc((size_t)(argc + 2) * sizeof(*l));
                if (!a || !l) {
                        free(a);
                        free(l);
                        return -ENOMEM;
                }
        }
        a[0] = "EVALSHA";
        l[0] = 7;
        a[1] = rc->sha[script];
        l[1] = 40;
        for (int i = 0; i < argc; i++) {
                a[i + 2] = argv[i];
                l[i + 2] = lens ? lens[i] : strlen(argv[i]);
        }
        int r = redisAppendCommandArgv(rc->c, argc + 2, a, l) == REDIS_OK ? 0 : -ENOMEM;
        if (a != a_small) {
                free(a);
                free(l);
        }
        return r;
}

int rconn_append_raw(struct rconn *rc, const char *buf, size_t len)
{
        if (!rc->c)
                return -ENOTCONN;
        return redisAppendFormattedCommand(rc->c, buf, len) == REDIS_OK ? 0 : -ENOMEM;
}

int rconn_flush(struct rconn *rc, wal_error **reterr)
{
        if (!rc->c)
                return wal_error_set(reterr, -ENOTCONN, WAL_ERROR_RETRIABLE, "not connected");
        sigset_t pipe_set, old, pending;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        sigpending(&pending);
        bool was_pending = sigismember(&pending, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
        int done = 0, r = 0, saved = 0;
        while (!done) {
                errno = 0;
                if (redisBufferWrite(rc->c, &done) != REDIS_OK) {
                        saved = errno;
                        r = io_errno(saved, rc->c->errstr);
                        break;
                }
        }
        if (saved == EPIPE && !was_pending) {
                struct timespec zero = { 0, 0 };
                sigtimedwait(&pipe_set, NULL, &zero);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0) {
                r = wal_error_set(reterr, r, WAL_ERROR_RETRIABLE,
                                  "writing to redis %s:%d failed: %s", rc->p->host,
                                  rc->p->port, rc->c->errstr);
                rconn_close(rc);
        }
        return r;
}

int rconn_send(struct rconn *rc, const char *buf, size_t len, wal_error **reterr)
{
        if (!rc->c)
                return wal_error_set(reterr, -ENOTCONN, WAL_ERROR_RETRIABLE, "not connected");
        if (rc->c->obuf && rc->c->obuf[0]) {
                int r = rconn_flush(rc, reterr);
                if (r < 0)
                        return r;
        }
        while (len > 0) {
                /* MSG_NOSIGNAL: a vanished peer is EPIPE, never SIGPIPE. */
                ssize_t n = send(rc->c->fd, buf, len, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int saved = errno;
                        int r = wal_error_set(reterr, io_errno(saved, ""), WAL_ERROR_RETRIABLE,
                                              "writing to redis %s:%d failed: %s", rc->p->host,
                                              rc->p->port, strerror(saved));
                        rconn_close(rc);
                        return r;
                }
                buf += n;
                len -= (size_t)n;
        }
        return 0;
}

int rconn_send_borrowed(struct rconn *rc, const char *buf, size_t len)
{
        if (!rc->c || (rc->c->obuf && rc->c->obuf[0]))
                return -ENOTCONN;
        size_t done = 0;
        while (done < len) {
                ssize_t n = send(rc->c->fd, buf + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return done > 0 ? -EIO : -errno;
                done += (size_t)n;
        }
        return 0;
}

/* rconn_reply() and rconn_reply_slot(): the reply into the slot when @slot. */
static int reply_wait(struct rconn *rc, int timeout_ms, int stop_fd, bool slot, void **ret,
                      wal_error **reterr)
{
        if (!rc->c)
                return wal_error_set(reterr, -ENOTCONN, WAL_ERROR_RETRIABLE, "not connected");
        uint64_t deadline = timeout_ms >= 0 ? walu_monotonic_ns() / 1000000 + (uint64_t)timeout_ms
                                            : UINT64_MAX;
        uint64_t fed = 0;
        char buf[16384];
        int r;
        for (;;) {
                void *reply = NULL;
                if (get_reply(rc, slot, &reply) != REDIS_OK) {
                        r = parse_error(rc, reterr);
                        goto broken;
                }
                if (reply) {
                        *ret = reply;
                        return 0;
                }
                if (fed > rc->p->max_reply_bytes) {
                        r = wal_error_set(reterr, -EMSGSIZE, 0,
                                          "a reply from redis %s:%d exceeds redis.max_reply_bytes "
                                          "(%" PRIu64 " bytes)",
                                          rc->p->host, rc->p->port, rc->p->max_reply_bytes);
                        goto broken;
                }
                struct pollfd pfd[2] = {
                        { .fd = rc->c->fd, .events = POLLIN },
                        { .fd = stop_fd, .events = POLLIN },
                };
                int wait = -1;
                if (deadline != UINT64_MAX) {
                        uint64_t now = walu_monotonic_ns() / 1000000;
                        wait = now >= deadline ? 0 : (int)WALU_MIN(deadline - now, (uint64_t)INT32_MAX);
                }
                int n = poll(pfd, stop_fd >= 0 ? 2 : 1, wait);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = wal_error_set(reterr, -errno, 0, "poll: %s", strerror(errno));
                        goto broken;
                }
                if (stop_fd >= 0 && (pfd[1].revents & POLLIN))
                        return -ECANCELED;
                if (n == 0) {
                        r = wal_error_set(reterr, -ETIMEDOUT, WAL_ERROR_RETRIABLE,
                                          "redis %s:%d did not reply within %d ms",
                                          rc->p->host, rc->p->port, timeout_ms);
                        goto broken;
                }
                ssize_t got = read(rc->c->fd, buf, sizeof(buf));
                if (got < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        r = wal_error_set(reterr, io_errno(errno, ""), WAL_ERROR_RETRIABLE,
                                          "reading from redis %s:%d failed: %s",
                                          rc->p->host, rc->p->port, strerror(errno));
                        goto broken;
                }
                if (got == 0) {
                        r = wal_error_set(reterr, -ECONNRESET, WAL_ERROR_RETRIABLE,
                                          "redis %s:%d closed the connection",
                                          rc->p->host, rc->p->port);
                        goto broken;
                }
                if (redisReaderFeed(rc->c->reader, buf, (size_t)got) != REDIS_OK) {
                        r = -ENOMEM;
                        goto broken;
                }
                fed += (uint64_t)got;
        }
broken:
        rconn_close(rc);
        return r;
}

int rconn_reply(struct rconn *rc, int timeout_ms, int stop_fd, redisReply **ret,
                wal_error **reterr)
{
        void *reply = NULL;
        int r = reply_wait(rc, timeout_ms, stop_fd, false, &reply, reterr);
        if (r == 0)
                *ret = reply;
        return r;
}

/* rconn_reply_buffered() and rconn_reply_slot(buffered). */
static int reply_buffered(struct rconn *rc, bool slot, void **ret, wal_error **reterr)
{
        if (!rc->c)
                return wal_error_set(reterr, -ENOTCONN, WAL_ERROR_RETRIABLE, "not connected");
        void *reply = NULL;
        if (get_reply(rc, slot, &reply) != REDIS_OK) {
                int r = parse_error(rc, reterr);
                rconn_close(rc);
                return r;
        }
        if (!reply)
                return -EAGAIN;
        *ret = reply;
        return 0;
}

int rconn_reply_buffered(struct rconn *rc, redisReply **ret, wal_error **reterr)
{
        void *reply = NULL;
        int r = reply_buffered(rc, false, &reply, reterr);
        if (r == 0)
                *ret = reply;
        return r;
}

int rconn_reply_slot(struct rconn *rc, int timeout_ms, bool buffered,
                     const redisReply **ret, wal_error **reterr)
{
        void *reply = NULL;
        int r = buffered ? reply_buffered(rc, true, &reply, reterr)
                         : reply_wait(rc, timeout_ms, -1, true, &reply, reterr);
        if (r == 0)
                *ret = reply;
        return r;
}

/*
 * Load every script; NOSCRIPT later means someone ran SCRIPT FLUSH or the
 * server restarted.  Only connections that run scripts load them (a reader
 * may lack the rights: an ACL user with +@read alone has neither SCRIPT
 * nor EVALSHA), so a refusal here is worded for a read-write use.
 */
static int load_scripts(struct rconn *rc, wal_error **reterr)
{
        for (int i = 0; i < REDIS_SCRIPT_COUNT; i++) {
                const char *argv[] = { "SCRIPT", "LOAD", scripts[i] };
                redisReply *rep = NULL;
                int r = rconn_call(rc, -1, 3, argv, NULL, &rep, reterr);
                if (r < 0)
                        return r;
                if (rep->type != REDIS_REPLY_STRING || rep->len != 40) {
                        r = rep->type == REDIS_REPLY_ERROR
                                    ? redis_error_to_errno(rep->str, rep->len) : -EPROTO;
                        r = wal_error_set(reterr, r, redis_errno_retriable(r) ? WAL_ERROR_RETRIABLE : 0,
                                          "SCRIPT LOAD on redis %s:%d failed: %s%s",
                                          rc->p->host, rc->p->port,
                                          rep->type == REDIS_REPLY_ERROR ? rep->str
                                                                         : "unexpected reply",
                                          r == -EACCES ? " (writing needs the scripting "
                                                         "commands SCRIPT LOAD and EVALSHA "
                                                         "and the write commands; reading "
                                                         "needs only read commands)"
                                                       : "");
                        if (r == -EACCES)
                                rc->scripts_refused = true;
                        freeReplyObject(rep);
                        return r;
                }
                memcpy(rc->sha[i], rep->str, 40);
                rc->sha[i][40] = '\0';
                freeReplyObject(rep);
        }
        return 0;
}

int rconn_call(struct rconn *rc, int script, int argc, const char **argv,
               const size_t *lens, redisReply **ret, wal_error **reterr)
{
        if (script >= 0 && rc->sha[script][0] == '\0') {
                int r = load_scripts(rc, reterr);
                if (r < 0)
                        return r;
        }
        for (int attempt = 0;; attempt++) {
                int r = rconn_append(rc, script, argc, argv, lens);
                if (r < 0)
                        return wal_error_set(reterr, r, r == -ENOTCONN ? WAL_ERROR_RETRIABLE : 0,
                                             "redis: %s", wal_strerror(r));
                r = rconn_flush(rc, reterr);
                if (r < 0)
                        return r;
                redisReply *rep = NULL;
                r = rconn_reply(rc, rc->p->command_timeout_ms, -1, &rep, reterr);
                if (r < 0)
                        return r;
                if (script >= 0 && attempt == 0 && rep->type == REDIS_REPLY_ERROR &&
                    starts(rep->str, rep->len, "NOSCRIPT")) {
                        freeReplyObject(rep);
                        r = load_scripts(rc, reterr);
                        if (r < 0)
                                return r;
                        continue;
                }
                *ret = rep;
                return 0;
        }
}

static void set_keepalive(int fd, int seconds)
{
        int on = seconds > 0;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
        if (!on)
                return;
        int idle = seconds, intvl = WALU_MAX(seconds / 3, 1), cnt = 3;
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

static struct timeval ms_tv(int ms)
{
        return (struct timeval){ .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
}

/* Run a command whose reply must be +OK; error replies become errors. */
static int call_ok(struct rconn *rc, int argc, const char **argv, const char *what,
                   wal_error **reterr)
{
        redisReply *rep = NULL;
        int r = rconn_call(rc, -1, argc, argv, NULL, &rep, reterr);
        if (r < 0)
                return r;
        if (rep->type == REDIS_REPLY_ERROR) {
                r = redis_error_to_errno(rep->str, rep->len);
                r = wal_error_set(reterr, r, redis_errno_retriable(r) ? WAL_ERROR_RETRIABLE : 0,
                                  "%s on redis %s:%d refused: %s", what, rc->p->host,
                                  rc->p->port, rep->str);
        }
        freeReplyObject(rep);
        return r;
}

int rconn_connect(struct rconn *rc, const struct redis_params *p, enum rconn_scripts when,
                  wal_error **reterr)
{
        rconn_close(rc);
        rc->p = p;
        rc->scripts_refused = false;
        for (int i = 0; i < REDIS_SCRIPT_COUNT; i++)
                rc->sha[i][0] = '\0';
        errno = 0;
        redisContext *c = redisConnectWithTimeout(p->host, p->port, ms_tv(p->connect_timeout_ms));
        int saved = errno;
        if (!c)
                return wal_error_set(reterr, -ENOMEM, 0, "redis: out of memory");
        if (c->err) {
                int r = c->err == REDIS_ERR_IO ? io_errno(saved, c->errstr)
                                               : io_errno(0, c->errstr);
                if (c->err == REDIS_ERR_OTHER && r == -ECONNRESET)
                        r = -EHOSTUNREACH;
                r = wal_error_set(reterr, r, WAL_ERROR_RETRIABLE,
                                  "cannot connect to redis %s:%d: %s", p->host, p->port,
                                  c->errstr);
                redisFree(c);
                return r;
        }
        redisSetTimeout(c, ms_tv(p->command_timeout_ms));
        set_keepalive(c->fd, p->keepalive_s);
        rc->c = c;
        int r = 0;
        if (p->password) {
                const char *argv[] = { "AUTH", p->user ? p->user : p->password, p->password };
                r = call_ok(rc, p->user ? 3 : 2, argv, "AUTH", reterr);
                if (r < 0) {
                        wal_error_prefix(reterr, "authenticating as %s: ",
                                         p->user ? p->user : "the default user");
                        goto fail;
                }
        }
        if (p->db != 0) {
                char db[16];
                snprintf(db, sizeof(db), "%d", p->db);
                const char *argv[] = { "SELECT", db };
                redisReply *rep = NULL;
                r = rconn_call(rc, -1, 2, argv, NULL, &rep, reterr);
                if (r < 0)
                        goto fail;
                if (rep->type == REDIS_REPLY_ERROR) {
                        /* "ERR DB index is out of range" is a bad redis.url, not
                         * an I/O error; NOPERM and the like keep their code. */
                        r = redis_error_to_errno(rep->str, rep->len);
                        if (r == -EIO)
                                r = -EINVAL;
                        r = wal_error_set(reterr, r, 0,
                                          "redis.url names database %d, which redis %s:%d "
                                          "refuses: %s", p->db, p->host, p->port, rep->str);
                }
                freeReplyObject(rep);
                if (r < 0)
                        goto fail;
        }
        if (when != RCONN_SCRIPTS_LAZY) {
                wal_error *e = NULL;
                r = load_scripts(rc, &e);
                if (r == -EACCES && when == RCONN_SCRIPTS_TRY) {
                        wal_error_free(e);
                        r = 0;
                } else if (r < 0) {
                        if (reterr && !*reterr)
                                *reterr = e;
                        else
                                wal_error_free(e);
                        goto fail;
                }
        }
        return 0;
fail:
        rconn_close(rc);
        return r;
}
