/* SPDX-License-Identifier: MIT */
/*
 * impls/redis/redis-internal.h: what the two halves of the Redis backend
 * share (not installed).
 *
 * redis-conn.c owns everything about one connection: parsing redis.* into
 * parameters, connecting (AUTH, SELECT, SCRIPT LOAD where scripts run), sending pipelined
 * commands, reading replies with a size bound and a timeout, and turning
 * Redis error replies into negative errno values.  redis.c builds the
 * backend (opener, wal, writer thread, scanners) on top of it.
 */
#ifndef WAL_REDIS_INTERNAL_H
#define WAL_REDIS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include <wal/wal-config.h>
#include <wal/wal-error.h>
#include <wal/wal-msgid.h>

/* Everything redis.* says, parsed once at build time (immutable after). */
struct redis_params {
        char *host;                  /* owned */
        int port;
        char *user;                  /* owned; NULL: AUTH without a user name */
        char *password;              /* owned; NULL: no AUTH */
        int db;
        char *prefix;                /* owned; key prefix of every channel */
        int connect_timeout_ms;
        int command_timeout_ms;
        int keepalive_s;             /* 0: TCP keepalive off */
        int wait_replicas;           /* 0: no WAIT after a batch */
        int wait_timeout_ms;
        bool require_aof;
        uint64_t max_reply_bytes;
        int read_count;              /* entries per read round */
        int batch_max;               /* appends the writer has in flight */
        int max_inflight;            /* queued appends before append blocks */
        int backoff_initial_ms;
        int backoff_max_ms;
        int block_ms;                /* XREAD BLOCK of a caught-up scanner */
        bool tail_direct;            /* parsed but ignored (redis.c, "Reading") */
};

/* The server-side scripts.  Only a read-write channel needs them; a reader
 * whose user may not run scripts (an ACL user with +@read alone) reads the
 * stream state with XINFO STREAM instead of READ (redis.c, read_state()). */
enum redis_script {
        REDIS_SCRIPT_OPEN = 0,       /* record the term, refuse a lower one */
        REDIS_SCRIPT_APPEND,         /* check the term, XADD */
        REDIS_SCRIPT_TRUNCATE,       /* check the term, XTRIM MINID */
        REDIS_SCRIPT_READ,           /* stream state + XRANGE, atomically */
        REDIS_SCRIPT_COUNT,
};

/* The Lua source of a script (static); benchmarks load it themselves. */
const char *redis_script_text(enum redis_script s);

/* One connection.  Not thread-safe: one owner at a time. */
struct rconn {
        redisContext *c;             /* NULL when disconnected */
        const struct redis_params *p;/* borrowed, outlives the connection */
        char sha[REDIS_SCRIPT_COUNT][41];  /* "" until loaded on this connection */
        /* rconn_reply_slot()'s reply, filled in place (redis-conn.c). */
        redisReply slot;
        char slot_buf[64];           /* a short string's copy */
        char *slot_big;              /* owned; a longer string's copy */
        bool slot_array;             /* the reply was an array: refused */
        bool scripts_refused;        /* SCRIPT LOAD was refused (ACL) on this connection */
};

/* When rconn_connect() loads the scripts. */
enum rconn_scripts {
        RCONN_SCRIPTS_LAZY,          /* at the first rconn_call() of a script */
        RCONN_SCRIPTS_TRY,           /* now; a refusal (-EACCES) only sets scripts_refused */
        RCONN_SCRIPTS_NEED,          /* now; a refusal fails the connect */
};

/**
 * Parse every redis.* property of @cfg (borrowed) into @ret.
 * @returns 0, -EINVAL (a bad URL: the error names it), -ENOMEM.
 */
int redis_params_parse(const wal_config *cfg, struct redis_params *ret,
                       wal_error **reterr);
void redis_params_free(struct redis_params *p);

/**
 * Parse redis://[user[:password]@]host[:port][/db] (percent-escapes
 * allowed in user and password) into the connection fields of @p.
 * @param url  borrowed.
 * @returns 0 or -EINVAL naming what is wrong; -ENOMEM.
 */
int redis_url_parse(const char *url, struct redis_params *p, wal_error **reterr);

/**
 * Connect @rc with @p (borrowed, must outlive @rc): TCP connect with the
 * connect timeout, keepalive, AUTH, SELECT, and SCRIPT LOAD as @when
 * says (a connection that pipelines EVALSHA with rconn_append() needs them
 * loaded, or scripts_refused set; rconn_call() loads them when first used).
 * @returns 0; -ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH (unreachable);
 *          -EACCES (AUTH or SCRIPT LOAD refused: the error names the
 *          command); -EAGAIN (server still loading); -EIO, -EPROTO.  The
 *          error names host and port.
 */
int rconn_connect(struct rconn *rc, const struct redis_params *p, enum rconn_scripts when,
                  wal_error **reterr);
/* Drop the connection (NULL-safe, idempotent). */
void rconn_close(struct rconn *rc);
static inline bool rconn_connected(const struct rconn *rc)
{
        return rc && rc->c;
}
/* true if the server closed an idle connection (checked without blocking). */
bool rconn_peer_closed(struct rconn *rc);

/* Queue one command (argv borrowed, copied into the output buffer).
 * @script >= 0 prefixes EVALSHA <sha of that script>.  0 or -ENOMEM. */
int rconn_append(struct rconn *rc, int script, int argc, const char **argv,
                 const size_t *lens);
/* Queue commands already in RESP form (@buf borrowed, copied).  0 or -ENOMEM. */
int rconn_append_raw(struct rconn *rc, const char *buf, size_t len);
/* Write everything queued.  On failure the connection is closed. */
int rconn_flush(struct rconn *rc, wal_error **reterr);

/* Write @buf (@len bytes of commands in RESP form, borrowed) now, after
 * anything queued, with send(MSG_NOSIGNAL): no copy into hiredis's buffer
 * and no signal mask to change.  On failure the connection is closed. */
int rconn_send(struct rconn *rc, const char *buf, size_t len, wal_error **reterr);

/* The same write for a thread that does not own @rc while its owner may be
 * polling it (redis.c, "Sending from append()"): it never blocks
 * (MSG_DONTWAIT), nothing queued in hiredis is flushed, and a failure
 * leaves the connection open, for its owner to drop.  Returns 0 or -errno
 * (-ENOTCONN when not connected, -EIO when only part of @buf went out). */
int rconn_send_borrowed(struct rconn *rc, const char *buf, size_t len);

/* The socket of @rc, for poll(); -1 when disconnected. */
static inline int rconn_fd(const struct rconn *rc)
{
        return rc && rc->c ? rc->c->fd : -1;
}

/**
 * Read the next reply, at most @timeout_ms (-1: no limit), stopping early
 * if @stop_fd (>= 0) polls readable (-ECANCELED).  A reply over
 * redis.max_reply_bytes is -EMSGSIZE.  On any failure but -ECANCELED the
 * connection is closed, since the reply stream can no longer be followed.
 * @param ret  the reply (owned by the caller: freeReplyObject), on success.
 * @returns 0, -ETIMEDOUT, -ECONNRESET, -EMSGSIZE, -EPROTO, -ECANCELED.
 */
int rconn_reply(struct rconn *rc, int timeout_ms, int stop_fd, redisReply **ret,
                wal_error **reterr);

/**
 * rconn_reply() for a reply that is a string, an error, an integer or nil
 * (an XADD's), without allocating it: @ret points into @rc and is valid
 * until the next call on @rc.  An array is -EPROTO (connection closed).
 * @param ret  the reply (borrowed from @rc; never freeReplyObject it).
 * @param buffered  true: only what is already buffered, -EAGAIN when no
 *                  whole reply is (rconn_reply_buffered()); false: wait.
 */
int rconn_reply_slot(struct rconn *rc, int timeout_ms, bool buffered,
                     const redisReply **ret, wal_error **reterr);

/**
 * The next reply if it is already buffered (read from the socket by an
 * earlier rconn_reply()), without touching the socket.
 * @param ret  the reply (owned by the caller), on success.
 * @returns 0; -EAGAIN when no whole reply is buffered; -EPROTO (a reply
 *          that does not parse: the connection is closed); -ENOTCONN.
 */
int rconn_reply_buffered(struct rconn *rc, redisReply **ret, wal_error **reterr);

/**
 * Send one command and read its reply (command timeout).  @script >= 0:
 * EVALSHA of that script, loading the scripts first if this connection has
 * not; a script that the server forgot (NOSCRIPT) is loaded again and the
 * call retried once.  A refused SCRIPT LOAD is -EACCES, naming it, and sets
 * @rc->scripts_refused.
 * An error reply is returned as a reply, not as a failure.
 * @returns 0 with *ret set, or a connection-level error as rconn_reply().
 */
int rconn_call(struct rconn *rc, int script, int argc, const char **argv,
               const size_t *lens, redisReply **ret, wal_error **reterr);

/**
 * The one place Redis error replies become errno values:
 *   WALSTALE -ESTALE, WRONGTYPE -EBADMSG, WRONGPASS/NOAUTH/NOPERM -EACCES
 *   (and a script's "can't run this command" ACL refusal),
 *   NOSCRIPT/LOADING/BUSY -EAGAIN, MISCONF -EIO, OOM -ENOSPC,
 *   READONLY -EROFS, WALNOTERM -EIO, WALBADTERM -EBADMSG, else -EIO.
 * @param text  the error text (borrowed).
 */
int redis_error_to_errno(const char *text, size_t len);
/* true for the codes worth retrying (-EAGAIN, connection errors). */
bool redis_errno_retriable(int code);

/* Format @id as a Redis stream ID "ms-seq" (always both halves). */
int redis_id_format(struct wal_msgid id, char *buf, size_t len);
/* Parse "ms-seq" or "ms" (@len bytes, not NUL-terminated); 0 or -EINVAL. */
int redis_id_parse(const char *s, size_t len, struct wal_msgid *ret);
/* The next and the previous ID; false when there is none. */
bool redis_id_succ(struct wal_msgid id, struct wal_msgid *ret);
bool redis_id_pred(struct wal_msgid id, struct wal_msgid *ret);

#endif /* WAL_REDIS_INTERNAL_H */
