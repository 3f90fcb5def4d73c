/* SPDX-License-Identifier: MIT */
/*
 * impls/redis/redis.c: the Redis Streams backend ("redis").
 *
 * ---- Mapping ----
 *
 *   channel C            stream key  <redis.prefix>C          (default "wal:C")
 *   owner term of C      string key  <redis.prefix>C:term     (decimal int64)
 *   message              one stream entry, two fields:
 *                          "_wal_env"  the envelope (utility/envelope.h)
 *                          "payload"   the payload bytes
 *   message ID           the entry ID ms-seq = WAL_MSGID(ms, seq); our writer's
 *                        ms = term << 42 | milliseconds (see Fencing)
 *
 * Channel names never contain ':' (walimpls_channel_name_valid), so the
 * term key can never be another channel's stream.  The scripts touch both
 * keys of a channel, so Redis Cluster is not supported (the two keys would
 * need one hash slot); a standalone server or a replicated primary is.
 *
 * Foreign entries (written by another client, e.g. `redis-cli XADD wal:C *
 * payload hello source cli`) have no "_wal_env" field and read back as
 * plain data messages: the payload is the value of the field "payload" if
 * there is one, else the value of the first field (an entry with no fields
 * has an empty payload); every other field whose name and value contain no
 * NUL byte becomes a string property.  An entry whose "_wal_env" does not
 * decode fails the scanner with -EBADMSG naming the key and the entry ID.
 *
 * ---- Writing ----
 *
 * append() encodes the envelope, queues the record and returns (or, when
 * the writer is idle, sends the XADD itself: see "Sending from append()");
 * one writer thread per read-write wal, on its own connection, pipelines one
 * plain
 * `XADD key NOMKSTREAM <ms>-* _wal_env <envelope> payload <payload>` per
 * record (no script: see Fencing) and reads the replies in order,
 * completing each append with its own entry ID or error.  It keeps up to
 * redis.batch_max XADDs in flight (a sliding window, see "The sliding
 * window" below): whatever is queued is sent while the window has room, and
 * each read of replies makes room again, so the pipeline depth follows the
 * load with no timer and the server never waits for the writer to finish a
 * batch.  With redis.wait_replicas (a WAIT after each batch) or a term too
 * large for the IDs (the APPEND script) the writer sends a batch of up to
 * redis.batch_max and reads all of its replies before the next.  Entry IDs
 * are assigned by the server in command order, which is queue order, which
 * is the order append() returned: IDs increase in call order.
 *
 * ---- Fencing ----
 *
 * The term lives in the IDs.  A writer of term N < 2^21 writes entry IDs
 * whose ms part is N << 42 | (wall-clock ms mod 2^42), never less than the
 * last one it wrote, and kept unchanged while it lags the clock by less
 * than DENSE_LAG_MS (1 s): `XADD ... <ms>-*` lets the server pick the
 * sequence, so consecutive appends get consecutive IDs (see Reading).  open(RW, term N) runs the OPEN script: it refuses with -ESTALE
 * if the recorded term (key <prefix>C:term) is higher, records N, creates
 * the stream if missing, and raises the stream's last ID (XSETID) to
 * (N << 42)-0 if it is lower.  Every ms part a writer of a lower term can
 * produce is below that floor, and Redis refuses an XADD whose ID is not
 * above the stream's last ID ("ERR The ID specified in XADD is equal or
 * smaller than the target stream top item"), so once a newer writer's open
 * returned, no append of an older one lands, with no script per append.
 *
 * A refused XADD is explained on the writer's connection (explain_refusals):
 * GET of the term key and the stream state.  A higher term is -ESTALE, and
 * the wal refuses further appends at once; a missing term key is -EIO
 * (WALNOTERM: the channel was deleted or the server lost its data), as is a
 * missing stream (NOMKSTREAM makes the XADD answer nil rather than create
 * one).  If the stream's last ID is still in this term's range, another
 * client went ahead: a foreign producer's `XADD key *` (Redis gives it
 * max(now, last ms) as ms, so after our entries it takes our ms and the next
 * sequence), an explicit ID inside our range, or a second writer of the
 * same term.  The writer then continues above it and sends the refused
 * records again (they were not written; they are a suffix of their batch,
 * since the last ID only grows), at most RESENDS_MAX times each.  A last ID
 * above our range that no higher term recorded (another client's explicit
 * ID) is -EIO, naming it.
 *
 * Terms from 2^21 on cannot be carried in the ID.  Their opens raise the
 * floor to 2^63-0, above every ID of the smaller terms, which are thereby
 * fenced as above, and their writers fall back to the APPEND script: one
 * EVALSHA per group of up to 128 records, which checks the recorded term
 * and XADDs each record with `*` (ms = 2^63, sequence counting up).  Such a
 * writer is fenced by the script's term check, as every writer was before
 * IDs carried terms.  truncate() always runs its script (a term check, then
 * the trim).
 *
 * Known difference from a per-append script: the term key is read at open
 * and when an XADD is refused, so editing or deleting it by hand does not
 * stop a running writer of a small term; only an open (of a higher term)
 * does, or the loss of the stream.
 *
 * ---- What an acknowledged append means ----
 *
 * The completion runs with status 0 when Redis replied to the XADD (and,
 * with redis.wait_replicas=N, WAIT confirmed N replicas got it).  What that
 * survives depends on the server, read with CONFIG GET when the opener is
 * built and again at every open, and reported by info() as `durability`:
 *
 *   "none"          appendonly no: the entry is in server memory (and in
 *                   the next RDB snapshot, if any).  A server restart or
 *                   crash loses every entry since the last snapshot.
 *   "aof-no"        appendonly yes, appendfsync no: written to the AOF
 *                   before the reply, flushed by the OS when it likes.
 *                   Survives a Redis crash, not a machine crash.
 *   "aof-everysec"  appendfsync everysec (Redis's default for AOF): survives
 *                   a Redis crash; a machine crash loses up to about one
 *                   second of acknowledged entries.
 *   "aof-always"    appendfsync always: fsynced before the reply (Redis
 *                   group-commits the event loop's writes).  Survives a
 *                   machine crash, given an honest disk.
 *   "unknown"       CONFIG GET was not permitted (ACL).
 *
 * redis.require_aof=true refuses to build, and to open, on "none" or
 * "unknown".
 *
 * ---- Rights (ACL) ----
 *
 * Reading needs read commands only (TYPE, EXISTS, GET, XINFO, XREAD): a
 * user made with +@read can build an opener, open read-only, read, tail
 * and call info(), whose durability is then "unknown" (no CONFIG).  The
 * scripts are loaded where they run: by the writer's connection when it
 * connects, by the control connection at the first script it runs (OPEN,
 * TRUNCATE), by a scanner's connection if permitted.  A connection whose
 * SCRIPT LOAD is refused reads the stream state with XINFO STREAM
 * (read_state()).  A read-write open needs SCRIPT LOAD, EVALSHA and the
 * write commands the scripts run; a refusal is -EACCES naming the command
 * Redis refused.  WAIT adds copies on replicas, but replication is
 * asynchronous: a failover can still lose acknowledged entries (Redis's
 * WAIT documentation says so).
 *
 * ---- Reconnecting ----
 *
 * When the writer's connection breaks, every append whose reply had not
 * arrived completes with -ECONNRESET flagged WAL_ERROR_RETRIABLE: its
 * outcome is unknown (Redis 7.0 has no idempotent XADD, and the server, not
 * the writer, picks the sequence of `<ms>-*`), so a caller's retry may
 * store it twice (a new entry above every acknowledged one); it never
 * reports success it did not see.  The writer then
 * reconnects with exponential backoff (redis.reconnect_backoff_*); appends
 * still queued are sent on the new connection, or, while the server stays
 * unreachable, fail with the connect error, retriable.  Acknowledged
 * entries are never resent, so none repeats, and none is lost if the
 * server's durability level covers the failure.
 *
 * ---- Reading ----
 *
 * Each scanner owns a connection and a reader thread that fills a bounded
 * queue (read_ahead messages, default redis.read_count, and about
 * redis.max_reply_bytes of them, refilled when half empty); next() takes
 * from the queue and blocks on a walimpls_notifier, whose eventfd is the
 * scanner's pollable fd.  (The socket itself is not pollable data: a reply
 * may hold many messages, or a wake-up that delivers nothing.)  A round is
 * one pipeline of two commands: XREAD COUNT n BLOCK redis.block STREAMS key
 * <last delivered ID>, which answers at once with the next entries when
 * there are some and otherwise as soon as an append lands, followed by the
 * stream state (the READ script: XINFO STREAM; plain XINFO STREAM for a
 * user that may not run scripts), which Redis runs right
 * after the XREAD was served; scanner_round() explains why a trim before
 * the XREAD cannot go unnoticed, so what it returns is delivered at once:
 * a tailing scanner pays one round trip per wake-up, a catching-up one per
 * n entries.  The state is skipped when the first entry XREAD returns is
 * the successor of the position (ms-(s+1) after ms-s): no entry can have
 * been deleted in between.  Our writer's IDs are dense (see Fencing), so a
 * tailing scanner usually sends XREAD alone; the checks for a stream that
 * vanished or went back then run at the next round that is not dense (a
 * new ms part, a foreign ID, a block that timed out).  (Until this change a round was XRANGE + state + XREAD BLOCK
 * COUNT 1, and the XREAD only woke the reader for another round; the
 * redis.tail_direct property, which delivered the XREAD's entry unchecked,
 * is now ignored.)  The reader's poll() also watches a stop eventfd, so
 * close never waits out the block.
 *
 * Start positions: ALL after pred(first retained at read()); LATEST after the
 * stream's last-generated-id at read() time; START_FROM F after pred(F);
 * START_AFTER A after A.  Trimming: Redis silently starts past deleted
 * entries, so every round compares max-deleted-entry-id with the position:
 * a deleted entry after the last delivered one, with nothing retained
 * before it, is -ERANGE naming the key, the position and the first
 * retained ID, never a silent skip.  Redis 7.0 advances
 * max-deleted-entry-id on XDEL but not on XTRIM, so truncate() deletes the
 * last truncated entry with XDEL before trimming the rest.  Known limits:
 * a trim by another client (XTRIM, XADD MAXLEN) that deletes nothing with
 * XDEL is not detected, nor is an XDEL hole inside the retained range (only
 * the largest deleted ID is recorded).  A stream whose last-generated-id
 * went backwards, or that vanished after being seen, lost data (server
 * restarted without persistence, key deleted): also -ERANGE, with that
 * explanation.
 *
 * Start positions of ALL: the first entry retained when read() runs; on an
 * empty or missing stream, whatever is retained when the first entry shows
 * up (a fully truncated channel just waits).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <poll.h>

#include <wal/wal-config.h>
#include <wal/wal-error.h>
#include <wal/wal-log.h>
#include <wal/wal-message.h>
#include <wal/wal-registry.h>
#include <walimpls/walimpls.h>
#include "utility/envelope.h"
#include "utility/walu.h"
#include "impls/redis/redis-internal.h"

#define KiB (1024LL)
#define MiB (1024LL * KiB)
#define GiB (1024LL * MiB)

#define ENV_FIELD "_wal_env"
#define PAYLOAD_FIELD "payload"

static const struct wal_property redis_properties[] = {
        { "redis.url", WAL_PROP_STRING, "redis://127.0.0.1:6379/0", 1, 0, NULL, WAL_PROP_SECRET,
          "Server: redis://[user:password@]host[:port][/db]; a user name means AUTH user password (ACL)." },
        { "redis.user", WAL_PROP_STRING, NULL, 1, 0, NULL, 0,
          "ACL user for AUTH; overrides the URL's (empty: the default user)." },
        { "redis.password", WAL_PROP_STRING, NULL, 1, 0, NULL, WAL_PROP_SECRET,
          "Password for AUTH; overrides the URL's, keeping it out of the URL (empty: none)." },
        { "redis.prefix", WAL_PROP_STRING, "wal:", 1, 0, NULL, 0,
          "Key prefix: channel C is the stream <prefix>C, its owner term the key <prefix>C:term." },
        { "redis.connect_timeout", WAL_PROP_DURATION, "2s", 1, 600000, NULL, 0,
          "Longest wait for a TCP connection to the server." },
        { "redis.command_timeout", WAL_PROP_DURATION, "5s", 1, 3600000, NULL, 0,
          "Longest wait for a reply; the connection is dropped and re-made after it." },
        { "redis.keepalive", WAL_PROP_DURATION, "15s", 0, 3600000, NULL, 0,
          "TCP keepalive idle time on every connection (0: keepalive off)." },
        { "redis.wait_replicas", WAL_PROP_INT, "0", 0, 64, NULL, 0,
          "Complete appends only after WAIT confirms this many replicas (0: no WAIT)." },
        { "redis.wait_timeout", WAL_PROP_DURATION, "1s", 1, 600000, NULL, 0,
          "Timeout of that WAIT; fewer replicas in time fails the appends with -ETIMEDOUT." },
        { "redis.require_aof", WAL_PROP_BOOL, "false", 1, 0, NULL, 0,
          "Refuse to open on a server whose append-only file is off (or cannot be checked)." },
        { "redis.max_reply_bytes", WAL_PROP_SIZE, "64m", 1 * KiB, 4 * GiB, NULL, 0,
          "Largest server reply accepted; a larger one fails the call, naming the key." },
        { "redis.read_count", WAL_PROP_INT, "512", 1, 100000, NULL, 0,
          "Entries a scanner asks for per round (and its default read-ahead)." },
        { "redis.batch_max", WAL_PROP_INT, "1024", 1, 100000, NULL, 0,
          "Most appends the writer thread has in flight (pipelined, replies not read yet)." },
        { "redis.max_inflight", WAL_PROP_INT, "65536", 1, 10000000, NULL, 0,
          "Queued appends per channel before append blocks (back-pressure)." },
        { "redis.reconnect_backoff_initial", WAL_PROP_DURATION, "20ms", 1, 60000, NULL, 0,
          "First wait before reconnecting after the connection broke." },
        { "redis.reconnect_backoff_max", WAL_PROP_DURATION, "1s", 1, 600000, NULL, 0,
          "Longest wait between reconnect attempts." },
        { "redis.block", WAL_PROP_DURATION, "2s", 1, 3600000, NULL, 0,
          "XREAD BLOCK time of a caught-up scanner (close interrupts it at once)." },
        { "redis.tail_direct", WAL_PROP_BOOL, "false", 1, 0, NULL, 0,
          "Ignored (kept so existing configurations still parse): tailing scanners always "
          "deliver what XREAD BLOCK returns, checked against the stream state read with it." },
        { NULL, 0, NULL, 0, 0, NULL, 0, NULL },
};

/* ---- Objects ---- */

struct redis_opener {
        struct walimpls_opener base;   /* must be first */
        struct redis_params p;
        pthread_mutex_t lock;          /* guards ctl */
        struct rconn ctl;              /* open, info, truncate, list */
        const char *durability;        /* static label at build time */
};

/* One queued append.  Those whose envelope fits in PEND_BUF_BYTES come from
 * and go back to their wal's pool (see "The append pool"); the others are
 * one allocation of the struct and its envelope.  A small record is built
 * at append time into its pooled buffer as the XADD's last four arguments
 * in RESP form (see "The record's fields in RESP form"), payload included:
 * the writer then copies it as it is, and @msg is not kept. */
struct rpend {
        struct rpend *next;
        struct redis_wal *pool;        /* the wal whose pool it returns to; NULL: free() */
        wal_msg *msg;                  /* a reference holding the payload; NULL when in @wire */
        uint8_t *env;                  /* encoded envelope, in the same allocation */
        size_t env_len;
        const void *payload;           /* the payload (never NULL), in msg or in @wire */
        size_t plen;
        const char *wire;              /* the fields in RESP form (in the same allocation), or NULL */
        size_t wire_len;
        walimpls_append_done_fn *done;
        void *arg;
        bool noscript;                 /* the server had forgotten the script */
        bool requeued;                 /* sent again once after NOSCRIPT */
        bool below;                    /* XADD refused: ID not above the stream's */
        bool vanished;                 /* XADD NOMKSTREAM found no stream */
        uint8_t resends;               /* times sent again after "below" */
        int status;                    /* outcome, filled by the writer */
        struct wal_msgid id;
        wal_error *err;                /* owned */
};

struct redis_wal {
        struct walimpls_wal base;      /* must be first */
        struct redis_opener *o;
        char *skey, *tkey;             /* stream and term keys, owned */
        char term[24];
        const char *durability;        /* static label, probed at open */
        bool id_fencing;               /* term < TERM_IDS_MAX: XADD <band|ms>-* */
        uint64_t next_ms;              /* writer: lowest ms part of the next ID */
        char *obuf;                    /* writer: a batch's commands in RESP form */
        size_t ocap;
        /* Writer (read-write only). */
        pthread_mutex_t lock;
        pthread_cond_t work;           /* queue non-empty, or closing */
        pthread_cond_t space;          /* queue below redis.max_inflight, or closing */
        struct rpend *head, *tail;
        size_t queued;
        bool closing;
        bool writer_idle;              /* waiting for work (needs a wake_fd write) */
        int wake_fd;                   /* eventfd: wakes an idle writer */
        struct rpend *direct;          /* sent by append() to an idle writer */
        uint64_t direct_ms;            /* its ID's ms part */
        bool conn_suspect;             /* such a send failed: drop the connection */
        int space_waiters;             /* appenders blocked on a full queue */
        bool writer_running;
        atomic_bool fenced;
        pthread_t writer;
        struct rconn conn;             /* the writer thread's */
        /* The append pool (see "The append pool"). */
        pthread_mutex_t pool_lock;     /* guards pool_mine */
        struct rpend *pool_mine;       /* appenders take from here */
        _Atomic(struct rpend *) pool_free; /* finishers push here (lock-free) */
        atomic_uint pool_n;            /* about how many pool_free holds */
};

struct redis_scanner {
        struct walimpls_scanner base;  /* must be first */
        struct redis_wal *w;
        struct rconn conn;             /* the reader thread's */
        struct walimpls_notifier note;
        int stop_fd;                   /* eventfd: close wakes the reader thread */
        pthread_t thread;
        bool thread_running;
        pthread_mutex_t lock;          /* guards q*, stop, err, errobj */
        pthread_cond_t space;
        wal_msg **q;                   /* ring of delivered-next messages */
        size_t cap, head, len;
        uint64_t q_bytes;              /* wal_msg_size() of the queued messages */
        bool stop;
        int err;                       /* sticky failure, 0 if none */
        wal_error *errobj;             /* its detail, owned */
        atomic_bool interrupted;
        /* Reader-thread state. */
        struct wal_msgid after;        /* last delivered (exclusive start) */
        bool accept_trimmed;           /* ALL, until an entry shows up: start at what is retained */
        int count_cap;                 /* entries per round; halved by oversized replies */
        bool seen_stream;
        struct wal_msgid seen_lastgen; /* largest last-generated-id seen */
};

static const struct walimpls_opener_ops redis_opener_ops;
static const struct walimpls_wal_ops redis_wal_ops;
static const struct walimpls_scanner_ops redis_scanner_ops;
const struct walimpls_builder walimpls_redis;

static struct redis_opener *opener_from_base(struct walimpls_opener *b)
{
        WAL_ASSERT(b->ops == &redis_opener_ops);
        return (struct redis_opener *)b;
}

static struct redis_wal *wal_from_base(struct walimpls_wal *b)
{
        WAL_ASSERT(b->ops == &redis_wal_ops);
        return (struct redis_wal *)b;
}

static struct redis_scanner *scanner_from_base(struct walimpls_scanner *b)
{
        WAL_ASSERT(b->ops == &redis_scanner_ops);
        return (struct redis_scanner *)b;
}

static void block_sigpipe(void)
{
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static bool reply_is(const redisReply *r, const char *s)
{
        size_t n = strlen(s);
        return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
               r->len == n && memcmp(r->str, s, n) == 0;
}

/* An error reply as an errno plus a message "<what>: <reply text>". */
static int reply_error(const redisReply *rep, wal_error **reterr, const char *what)
{
        if (rep->type != REDIS_REPLY_ERROR)
                return wal_error_set(reterr, -EPROTO, 0, "%s: unexpected reply type %d",
                                     what, rep->type);
        int r = redis_error_to_errno(rep->str, rep->len);
        return wal_error_set(reterr, r, redis_errno_retriable(r) ? WAL_ERROR_RETRIABLE : 0,
                             "%s: %s", what, rep->str);
}

/*
 * A control call on the opener's connection; the caller holds o->lock.
 * Control operations are idempotent, so one broken or stale connection
 * (the server restarted since the last call) is re-made and the call sent
 * once more.
 */
static int ctl_call(struct redis_opener *o, int script, int argc, const char **argv,
                    const size_t *lens, redisReply **ret, wal_error **reterr)
{
        int r = 0;
        for (int attempt = 0; attempt < 2; attempt++) {
                wal_error *e = NULL;
                if (!rconn_connected(&o->ctl) || rconn_peer_closed(&o->ctl)) {
                        r = rconn_connect(&o->ctl, &o->p, RCONN_SCRIPTS_LAZY, &e);
                        if (r < 0) {
                                if (reterr && !*reterr)
                                        *reterr = e;
                                else
                                        wal_error_free(e);
                                return r;
                        }
                }
                r = rconn_call(&o->ctl, script, argc, argv, lens, ret, &e);
                if (r == 0)
                        return 0;
                if (attempt == 0 && redis_errno_retriable(r)) {
                        wal_error_free(e);
                        continue;
                }
                if (reterr && !*reterr)
                        *reterr = e;
                else
                        wal_error_free(e);
                return r;
        }
        return r;
}

/* ---- Stream state (the READ script's reply, or XINFO STREAM's) ---- */

struct stream_state {
        bool exists;
        struct wal_msgid maxdel, lastgen, first;   /* first: NONE if empty */
        struct wal_msgid last;                     /* NONE if empty */
        long long length;
};

static int parse_id_reply(const redisReply *r, struct wal_msgid *ret)
{
        if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS))
                return -EBADMSG;
        return redis_id_parse(r->str, r->len, ret) < 0 ? -EBADMSG : 0;
}

/* The ID of XINFO STREAM's first-entry or last-entry ([ID, fields] or nil). */
static int parse_entry_id(const redisReply *v, struct wal_msgid *ret)
{
        if (v->type == REDIS_REPLY_NIL)
                return 0;
        if (v->type != REDIS_REPLY_ARRAY || v->elements < 1)
                return -EBADMSG;
        return parse_id_reply(v->element[0], ret);
}

/*
 * The READ script's reply: {type, max-deleted-entry-id, last-generated-id,
 * length, first ID, entries, last ID}, IDs only.
 */
static int parse_script_state(const char *key, const redisReply *rep, struct stream_state *st,
                              wal_error **reterr)
{
        if (rep->elements < 6 || rep->element[3]->type != REDIS_REPLY_INTEGER ||
            rep->element[5]->type != REDIS_REPLY_ARRAY)
                return wal_error_set(reterr, -EBADMSG, 0, "key %s: malformed stream state reply",
                                     key);
        *st = (struct stream_state){ .exists = !reply_is(rep->element[0], "none"),
                                     .first = WAL_MSGID_NONE,
                                     .last = WAL_MSGID_NONE,
                                     .length = rep->element[3]->integer };
        if (parse_id_reply(rep->element[1], &st->maxdel) < 0 ||
            parse_id_reply(rep->element[2], &st->lastgen) < 0)
                return wal_error_set(reterr, -EBADMSG, 0, "key %s: malformed stream IDs in XINFO",
                                     key);
        const redisReply *f = rep->element[4];
        if (f->type == REDIS_REPLY_STRING && f->len > 0 && parse_id_reply(f, &st->first) < 0)
                return wal_error_set(reterr, -EBADMSG, 0, "key %s: malformed first-entry ID", key);
        f = rep->elements > 6 ? rep->element[6] : NULL;
        if (f && f->type == REDIS_REPLY_STRING && f->len > 0 && parse_id_reply(f, &st->last) < 0)
                return wal_error_set(reterr, -EBADMSG, 0, "key %s: malformed last-entry ID", key);
        return 0;
}

/*
 * XINFO STREAM's reply, for a user that may not run scripts: the same
 * state, atomically, in one plain read command (ACL category @read): a
 * flat array of name, value pairs (length, last-generated-id,
 * max-deleted-entry-id from Redis 7.0 on, first-entry, last-entry, others
 * ignored).  Unlike the script's, it carries the first and the last entry
 * whole, payloads included, so a stream whose first or last record is
 * larger than redis.max_reply_bytes cannot be read this way (-EMSGSIZE).
 */
static int parse_xinfo_state(const char *key, const redisReply *rep, struct stream_state *st,
                             wal_error **reterr)
{
        *st = (struct stream_state){ .first = WAL_MSGID_NONE, .last = WAL_MSGID_NONE };
        if (rep->elements % 2 != 0)
                return wal_error_set(reterr, -EBADMSG, 0, "key %s: malformed XINFO STREAM reply",
                                     key);
        st->exists = true;
        bool have_len = false, have_lastgen = false;
        for (size_t i = 0; i + 1 < rep->elements; i += 2) {
                const redisReply *k = rep->element[i], *v = rep->element[i + 1];
                if (k->type != REDIS_REPLY_STRING && k->type != REDIS_REPLY_STATUS)
                        continue;
                int r = 0;
                if (reply_is(k, "length")) {
                        if (v->type != REDIS_REPLY_INTEGER)
                                r = -EBADMSG;
                        st->length = v->integer;
                        have_len = true;
                } else if (reply_is(k, "last-generated-id")) {
                        r = parse_id_reply(v, &st->lastgen);
                        have_lastgen = true;
                } else if (reply_is(k, "max-deleted-entry-id")) {
                        r = parse_id_reply(v, &st->maxdel);
                } else if (reply_is(k, "first-entry")) {
                        r = parse_entry_id(v, &st->first);
                } else if (reply_is(k, "last-entry")) {
                        r = parse_entry_id(v, &st->last);
                }
                if (r < 0)
                        return wal_error_set(reterr, -EBADMSG, 0,
                                             "key %s: malformed %.*s in XINFO STREAM", key,
                                             (int)k->len, k->str);
        }
        if (!have_len || !have_lastgen)
                return wal_error_set(reterr, -EBADMSG, 0,
                                     "key %s: XINFO STREAM lacks length or last-generated-id",
                                     key);
        return 0;
}

/* @rep, the READ script's reply or XINFO STREAM's (told apart by shape). */
static int parse_state(const char *key, const redisReply *rep, struct stream_state *st,
                       wal_error **reterr)
{
        if (rep->type == REDIS_REPLY_ERROR && rep->len >= 15 &&
            strncasecmp(rep->str, "ERR no such key", 15) == 0) {   /* XINFO: no stream */
                *st = (struct stream_state){ .first = WAL_MSGID_NONE, .last = WAL_MSGID_NONE };
                return 0;
        }
        if (rep->type == REDIS_REPLY_ERROR)
                return reply_error(rep, reterr, key);
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1)
                return wal_error_set(reterr, -EBADMSG, 0, "key %s: malformed stream state reply",
                                     key);
        if (reply_is(rep->element[0], "length"))
                return parse_xinfo_state(key, rep, st, reterr);
        return parse_script_state(key, rep, st, reterr);
}

/*
 * Read the stream state on @rc, or on the opener's control connection if
 * @ctl_owner (locked) is set: the READ script (count 0), or XINFO STREAM
 * on a connection whose user may not run scripts.
 */
static int read_state(struct rconn *rc, struct redis_opener *ctl_owner, const char *skey,
                      redisReply **ret, wal_error **reterr)
{
        struct rconn *c = ctl_owner ? &ctl_owner->ctl : rc;
        if (!c->scripts_refused) {
                const char *argv[] = { "1", skey, "0-0", "0" };
                wal_error *e = NULL;
                int r = ctl_owner ? ctl_call(ctl_owner, REDIS_SCRIPT_READ, 4, argv, NULL, ret, &e)
                                  : rconn_call(rc, REDIS_SCRIPT_READ, 4, argv, NULL, ret, &e);
                if (r != -EACCES || !c->scripts_refused) {
                        if (reterr && !*reterr)
                                *reterr = e;
                        else
                                wal_error_free(e);
                        return r;
                }
                wal_error_free(e);
        }
        const char *argv[] = { "XINFO", "STREAM", skey };
        if (ctl_owner)
                return ctl_call(ctl_owner, -1, 3, argv, NULL, ret, reterr);
        return rconn_call(rc, -1, 3, argv, NULL, ret, reterr);
}

/* ---- Builder and opener ---- */

static int read_config_value(struct redis_opener *o, const char *name, char *buf, size_t len)
{
        const char *argv[] = { "CONFIG", "GET", name };
        redisReply *rep = NULL;
        int r = ctl_call(o, -1, 3, argv, NULL, &rep, NULL);
        if (r < 0)
                return r;
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
            rep->element[1]->type == REDIS_REPLY_STRING) {
                snprintf(buf, len, "%s", rep->element[1]->str);
                r = 0;
        } else {
                r = rep->type == REDIS_REPLY_ERROR ? redis_error_to_errno(rep->str, rep->len)
                                                   : -ENOENT;
        }
        freeReplyObject(rep);
        return r;
}

static const char *probe_durability(struct redis_opener *o)
{
        char aof[16], fsync[16];
        if (read_config_value(o, "appendonly", aof, sizeof(aof)) < 0)
                return "unknown";
        if (strcmp(aof, "yes") != 0)
                return "none";
        if (read_config_value(o, "appendfsync", fsync, sizeof(fsync)) < 0)
                return "unknown";
        if (strcmp(fsync, "always") == 0)
                return "aof-always";
        if (strcmp(fsync, "everysec") == 0)
                return "aof-everysec";
        return "aof-no";
}

/* redis.require_aof against a probed level: 0, -EOPNOTSUPP or -EACCES. */
static int check_aof(const struct redis_opener *o, const char *durability, wal_error **reterr)
{
        if (!o->p.require_aof || strncmp(durability, "aof-", 4) == 0)
                return 0;
        if (strcmp(durability, "unknown") == 0)
                return wal_error_set(reterr, -EACCES, 0,
                                     "redis.require_aof is set but CONFIG GET appendonly is "
                                     "not permitted on redis %s:%d, so AOF cannot be checked",
                                     o->p.host, o->p.port);
        return wal_error_set(reterr, -EOPNOTSUPP, 0,
                             "redis.require_aof is set but redis %s:%d runs with appendonly "
                             "no: acknowledged appends would not survive a restart",
                             o->p.host, o->p.port);
}

static void opener_free(struct redis_opener *o)
{
        if (!o)
                return;
        rconn_close(&o->ctl);
        redis_params_free(&o->p);
        pthread_mutex_destroy(&o->lock);
        free(o);
}

static int redis_build(const wal_config *cfg, struct walimpls_opener **ret, wal_error **reterr)
{
        struct redis_opener *o = calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        pthread_mutex_init(&o->lock, NULL);
        o->base = (struct walimpls_opener){ .ops = &redis_opener_ops,
                                            .builder = &walimpls_redis };
        int r = redis_params_parse(cfg, &o->p, reterr);
        if (r < 0)
                goto fail;
        pthread_mutex_lock(&o->lock);
        r = rconn_connect(&o->ctl, &o->p, RCONN_SCRIPTS_LAZY, reterr);
        if (r == 0)
                o->durability = probe_durability(o);
        pthread_mutex_unlock(&o->lock);
        if (r < 0)
                goto fail;
        r = check_aof(o, o->durability, reterr);
        if (r < 0)
                goto fail;
        *ret = &o->base;
        return 0;
fail:
        opener_free(o);
        return r;
}

static void redis_opener_close(struct walimpls_opener *b)
{
        opener_free(opener_from_base(b));
}

/* Append @s to @pat with glob metacharacters escaped. */
static char *glob_escape(const char *prefix, const char *suffix)
{
        size_t n = strlen(prefix);
        char *out = malloc(2 * n + strlen(suffix) + 1);
        if (!out)
                return NULL;
        char *q = out;
        for (const char *p = prefix; *p; p++) {
                if (strchr("*?[]\\", *p))
                        *q++ = '\\';
                *q++ = *p;
        }
        strcpy(q, suffix);
        return out;
}

struct name_list {
        char **v;
        size_t n, cap;
};

static int name_list_add(struct name_list *l, const char *s, size_t len)
{
        if (l->n == l->cap) {
                size_t cap = l->cap ? 2 * l->cap : 32;
                char **nv = realloc(l->v, cap * sizeof(*nv));
                if (!nv)
                        return -ENOMEM;
                l->v = nv;
                l->cap = cap;
        }
        l->v[l->n] = strndup(s, len);
        if (!l->v[l->n])
                return -ENOMEM;
        l->n++;
        return 0;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* SCAN every key matching @pattern of @type; collect valid channel names. */
static int scan_keys(struct redis_opener *o, const char *pattern, const char *type,
                     const char *strip, struct name_list *out, wal_error **reterr)
{
        char cursor[32] = "0";
        size_t plen = strlen(o->p.prefix), slen = strlen(strip);
        do {
                const char *argv[] = { "SCAN", cursor, "MATCH", pattern, "COUNT", "1000",
                                       "TYPE", type };
                redisReply *rep = NULL;
                int r = ctl_call(o, -1, 8, argv, NULL, &rep, reterr);
                if (r < 0)
                        return r;
                if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
                    rep->element[0]->type != REDIS_REPLY_STRING ||
                    rep->element[0]->len >= sizeof(cursor) ||
                    rep->element[1]->type != REDIS_REPLY_ARRAY) {
                        r = rep->type == REDIS_REPLY_ERROR
                                    ? reply_error(rep, reterr, "SCAN")
                                    : wal_error_set(reterr, -EPROTO, 0, "SCAN: malformed reply");
                        freeReplyObject(rep);
                        return r;
                }
                memcpy(cursor, rep->element[0]->str, rep->element[0]->len + 1);
                for (size_t i = 0; i < rep->element[1]->elements; i++) {
                        const redisReply *k = rep->element[1]->element[i];
                        if (k->type != REDIS_REPLY_STRING || k->len <= plen + slen)
                                continue;
                        char name[256];
                        size_t nlen = k->len - plen - slen;
                        if (nlen >= sizeof(name) ||
                            memcmp(k->str + k->len - slen, strip, slen) != 0)
                                continue;
                        memcpy(name, k->str + plen, nlen);
                        name[nlen] = '\0';
                        if (!walimpls_channel_name_valid(name))
                                continue;
                        if (name_list_add(out, name, nlen) < 0) {
                                freeReplyObject(rep);
                                return -ENOMEM;
                        }
                }
                freeReplyObject(rep);
        } while (strcmp(cursor, "0") != 0);
        return 0;
}

static int redis_list_channels(struct walimpls_opener *b, walimpls_channel_fn *fn, void *arg,
                               wal_error **reterr)
{
        struct redis_opener *o = opener_from_base(b);
        struct name_list l = { 0 };
        char *streams = glob_escape(o->p.prefix, "*");
        char *terms = glob_escape(o->p.prefix, "*:term");
        int r = streams && terms ? 0 : -ENOMEM;
        pthread_mutex_lock(&o->lock);
        if (r == 0)
                r = scan_keys(o, streams, "stream", "", &l, reterr);
        if (r == 0)
                r = scan_keys(o, terms, "string", ":term", &l, reterr);
        pthread_mutex_unlock(&o->lock);
        if (r == 0) {
                qsort(l.v, l.n, sizeof(*l.v), cmp_str);
                for (size_t i = 0; i < l.n && r == 0; i++)
                        if (i == 0 || strcmp(l.v[i], l.v[i - 1]) != 0)
                                r = fn(arg, l.v[i]);
        }
        for (size_t i = 0; i < l.n; i++)
                free(l.v[i]);
        free(l.v);
        free(streams);
        free(terms);
        return r;
}

/* ---- Writer ---- */

/*
 * ---- The append pool ----
 *
 * An append's rpend is allocated on the appending thread and released on
 * the writer thread, once its reply came; with malloc() each of those
 * frees goes back to the appender's arena under its lock, against the
 * appender's own allocations, on every append.  So rpends with an envelope
 * of up to PEND_BUF_BYTES (every plain message) are recycled: the thread
 * that completes one pushes it onto pool_free, a lock-free stack (push
 * only, so no ABA); an appender takes from pool_mine under pool_lock and,
 * when that runs dry, takes the whole of pool_free at once.  pool_n caps
 * the pool at PEND_POOL_MAX entries (approximately: it is reset, not
 * counted down, when the stack is taken); the rest are freed.
 */
#define PEND_BUF_BYTES 512
#define PEND_POOL_MAX 4096

static struct rpend *pend_alloc(struct redis_wal *w, size_t env_bytes)
{
        struct rpend *e = NULL;
        if (env_bytes > PEND_BUF_BYTES) {
                e = malloc(sizeof(*e) + env_bytes);
                if (e)
                        *e = (struct rpend){ .env = (uint8_t *)(e + 1) };
                return e;
        }
        pthread_mutex_lock(&w->pool_lock);
        e = w->pool_mine;
        if (!e) {
                e = atomic_exchange_explicit(&w->pool_free, NULL, memory_order_acquire);
                atomic_store_explicit(&w->pool_n, 0, memory_order_relaxed);
        }
        if (e)
                w->pool_mine = e->next;
        pthread_mutex_unlock(&w->pool_lock);
        if (!e)
                e = malloc(sizeof(*e) + PEND_BUF_BYTES);
        if (e)
                *e = (struct rpend){ .pool = w, .env = (uint8_t *)(e + 1) };
        return e;
}

static void pend_free(struct rpend *e)
{
        wal_msg_unref(e->msg);
        wal_error_free(e->err);
        struct redis_wal *w = e->pool;
        if (!w || atomic_load_explicit(&w->pool_n, memory_order_relaxed) >= PEND_POOL_MAX) {
                free(e);
                return;
        }
        atomic_fetch_add_explicit(&w->pool_n, 1, memory_order_relaxed);
        struct rpend *head = atomic_load_explicit(&w->pool_free, memory_order_relaxed);
        do
                e->next = head;
        while (!atomic_compare_exchange_weak_explicit(&w->pool_free, &head, e,
                                                      memory_order_release,
                                                      memory_order_relaxed));
}

/* Free both pool lists (the wal is closing: nothing else uses them). */
static void pool_done(struct redis_wal *w)
{
        struct rpend *lists[2] = { w->pool_mine, atomic_load(&w->pool_free) };
        for (int i = 0; i < 2; i++)
                while (lists[i]) {
                        struct rpend *e = lists[i];
                        lists[i] = e->next;
                        free(e);
                }
        w->pool_mine = NULL;
        atomic_store(&w->pool_free, NULL);
}

static void pend_fail(struct rpend *e, int code, unsigned flags, const char *fmt, const char *why)
{
        e->status = code;
        e->id = WAL_MSGID_NONE;
        wal_error_free(e->err);
        e->err = NULL;
        wal_error_set(&e->err, code, flags, fmt, why);
}

/* Run the completions of a list, in order, and free it: one completion
 * batch (walimpls_done_batch_begin), so the adaptor publishes the run once. */
static void complete_list(struct rpend *e)
{
        if (!e)
                return;
        walimpls_done_batch_begin();
        while (e) {
                struct rpend *next = e->next;
                e->done(e->arg, e->status, e->status == 0 ? e->id : WAL_MSGID_NONE, e->err);
                pend_free(e);
                e = next;
        }
        walimpls_done_batch_end();
}

/* Detach everything queued (caller holds w->lock). */
static struct rpend *take_all_locked(struct redis_wal *w)
{
        struct rpend *all = w->head;
        w->head = w->tail = NULL;
        w->queued = 0;
        if (w->space_waiters)
                pthread_cond_broadcast(&w->space);
        return all;
}

static void fail_queued(struct redis_wal *w, int code, unsigned flags, const char *why)
{
        pthread_mutex_lock(&w->lock);
        struct rpend *all = take_all_locked(w);
        pthread_mutex_unlock(&w->lock);
        for (struct rpend *e = all; e; e = e->next)
                pend_fail(e, code, flags, "append not sent: %s", why);
        complete_list(all);
}

/*
 * Cut the suffix @first..@last (@n appends; @before is the append ahead of
 * it, NULL when the suffix is all of @batch) off @batch and put it back at
 * the head of the writer's queue, in order, to be sent again.  Returns what
 * is left of @batch to complete now.
 */
static struct rpend *requeue_suffix(struct redis_wal *w, struct rpend *batch,
                                    struct rpend *before, struct rpend *first,
                                    struct rpend *last, size_t n)
{
        if (before)
                before->next = NULL;
        else
                batch = NULL;
        pthread_mutex_lock(&w->lock);
        last->next = w->head;
        w->head = first;
        if (!w->tail)
                w->tail = last;
        w->queued += n;
        pthread_mutex_unlock(&w->lock);
        return batch;
}

/*
 * Someone ran SCRIPT FLUSH: the server refused our EVALSHAs with NOSCRIPT
 * and wrote nothing for them.  If the refused appends are exactly a suffix
 * of the batch (the usual case: every command after the flush failed), they
 * go back to the head of the queue and are sent again, once, on a fresh
 * connection that reloads the scripts, which keeps IDs in call order.  A
 * refusal in the middle (another client reloaded the script meanwhile, so
 * a later append succeeded) cannot be resent without reordering: those
 * keep their retriable -EAGAIN.  Returns the part of @batch to complete.
 */
static struct rpend *requeue_noscript(struct redis_wal *w, struct rpend *batch)
{
        struct rpend *before = NULL, *first = batch;
        while (first && !first->noscript) {
                before = first;
                first = first->next;
        }
        struct rpend *last = NULL;
        size_t n = 0;
        for (struct rpend *x = first; x; x = x->next) {
                if (!x->noscript || x->requeued)
                        return batch;
                last = x;
                n++;
        }
        if (!first)
                return batch;
        for (struct rpend *x = first; x; x = x->next) {
                x->requeued = true;
                x->noscript = false;
                x->status = 0;
                wal_error_free(x->err);
                x->err = NULL;
        }
        return requeue_suffix(w, batch, before, first, last, n);
}

/* Record one append's own reply: an entry ID or an error. */
static bool take_reply(struct redis_wal *w, struct rpend *e, const redisReply *rep)
{
        bool noscript = false;
        if (rep->type == REDIS_REPLY_STRING) {
                if (redis_id_parse(rep->str, rep->len, &e->id) == 0)
                        e->status = 0;
                else
                        pend_fail(e, -EPROTO, 0, "XADD on %s returned a bad ID", w->skey);
        } else if (rep->type == REDIS_REPLY_ERROR) {
                e->status = reply_error(rep, &e->err, w->skey);
                if (e->status == -ESTALE)
                        atomic_store(&w->fenced, true);
                if (rep->len >= 8 && memcmp(rep->str, "NOSCRIPT", 8) == 0)
                        noscript = e->noscript = true;
        } else {
                pend_fail(e, -EPROTO, 0, "XADD on %s: unexpected reply type", w->skey);
        }
        return noscript;
}

/*
 * Send one batch and complete it.  Never leaves an append without outcome.
 *
 * The batch goes out as groups of up to APPEND_GROUP records (and about
 * APPEND_GROUP_BYTES), one EVALSHA each: the script checks the term once and
 * XADDs every record of the group with redis.pcall, replying with one ID or
 * one error per record.  Invoking a script costs the server about three
 * XADDs (bench-redis: EVALSHA per record ran at a third of raw XADD), so one
 * invocation per group is what keeps fencing cheap.
 */
#define APPEND_GROUP 128
#define APPEND_GROUP_BYTES (1u << 20)

struct group {
        struct rpend *first;
        size_t n;
};

/*
 * The end every batch round shares.  Fail what was still in flight when the
 * connection broke (@from on: it may or may not have been written).  When
 * every reply came and redis.wait_replicas asks for it, read WAIT's reply
 * and fail each written append of @batch it does not cover (one refused as
 * below the floor or on a vanished stream is settled by the caller).  @err:
 * why the connection broke (borrowed).
 */
static void settle_in_flight(struct redis_wal *w, struct rpend *batch, struct rpend *from,
                             bool all_replied, const wal_error *err)
{
        const struct redis_params *p = &w->o->p;
        for (struct rpend *e = from; e; e = e->next)
                pend_fail(e, -ECONNRESET, WAL_ERROR_RETRIABLE,
                          "connection to redis lost with the append in flight (it may or may "
                          "not have been written): %s", wal_error_message(err));
        if (!all_replied || p->wait_replicas <= 0)
                return;
        redisReply *rep = NULL;
        long long got = -1;
        wal_error *werr = NULL;
        if (rconn_reply(&w->conn, p->command_timeout_ms, -1, &rep, &werr) == 0) {
                if (rep->type == REDIS_REPLY_INTEGER)
                        got = rep->integer;
                freeReplyObject(rep);
        }
        if (got < p->wait_replicas) {
                char why[160];
                snprintf(why, sizeof(why), "%lld of %d replicas confirmed it within %d ms%s%s",
                         got < 0 ? 0 : got, p->wait_replicas, p->wait_timeout_ms,
                         werr ? ": " : "", werr ? wal_error_message(werr) : "");
                for (struct rpend *x = batch; x; x = x->next)
                        if (x->status == 0 && !x->below && !x->vanished)
                                pend_fail(x, -ETIMEDOUT, 0, "written, but only %s", why);
        }
        wal_error_free(werr);
}

static void run_batch(struct redis_wal *w, struct rpend *batch)
{
        const struct redis_params *p = &w->o->p;
        struct rconn *rc = &w->conn;
        int r = 0;
        size_t n_batch = 0;
        for (struct rpend *e = batch; e; e = e->next)
                n_batch++;
        struct group *groups = calloc(n_batch, sizeof(*groups));
        const char **argv = calloc(4 + 2 * APPEND_GROUP, sizeof(*argv));
        size_t *lens = calloc(4 + 2 * APPEND_GROUP, sizeof(*lens));
        size_t n_groups = 0;
        if (!groups || !argv || !lens)
                r = -ENOMEM;
        struct rpend *e = batch;
        while (e && r == 0) {
                struct group *g = &groups[n_groups++];
                g->first = e;
                argv[0] = "2";
                lens[0] = 1;
                argv[1] = w->skey;
                lens[1] = strlen(w->skey);
                argv[2] = w->tkey;
                lens[2] = strlen(w->tkey);
                argv[3] = w->term;
                lens[3] = strlen(w->term);
                int argc = 4;
                size_t bytes = 0;
                for (; e && g->n < APPEND_GROUP && bytes < APPEND_GROUP_BYTES; e = e->next) {
                        argv[argc] = (const char *)e->env;
                        lens[argc++] = e->env_len;
                        argv[argc] = e->payload;
                        lens[argc++] = e->plen;
                        bytes += e->env_len + e->plen;
                        g->n++;
                }
                r = rconn_append(rc, REDIS_SCRIPT_APPEND, argc, argv, lens);
        }
        free(argv);
        free(lens);
        char nrep[16], tmo[16];
        if (r == 0 && p->wait_replicas > 0) {
                snprintf(nrep, sizeof(nrep), "%d", p->wait_replicas);
                snprintf(tmo, sizeof(tmo), "%d", p->wait_timeout_ms);
                const char *wait_argv[] = { "WAIT", nrep, tmo };
                r = rconn_append(rc, -1, 3, wait_argv, NULL);
        }
        wal_error *err = NULL;
        if (r == 0)
                r = rconn_flush(rc, &err);
        else {
                wal_error_set(&err, r, 0, "formatting the pipeline failed");
                rconn_close(rc); /* drop a partly formatted pipeline */
        }
        bool all_replied = r == 0;
        bool reload = false;
        e = batch;
        for (size_t gi = 0; gi < n_groups && r == 0; gi++) {
                struct group *g = &groups[gi];
                redisReply *rep = NULL;
                r = rconn_reply(rc, p->command_timeout_ms, -1, &rep, &err);
                if (r < 0) {
                        all_replied = false;
                        break;
                }
                bool per_record = rep->type == REDIS_REPLY_ARRAY && rep->elements == g->n;
                if (!per_record && rep->type == REDIS_REPLY_ARRAY) {
                        static char text[] = "ERR malformed append script reply";
                        redisReply bad = { .type = REDIS_REPLY_ERROR, .str = text,
                                           .len = sizeof(text) - 1 };
                        for (size_t i = 0; i < g->n; i++, e = e->next)
                                take_reply(w, e, &bad);
                } else {
                        for (size_t i = 0; i < g->n; i++, e = e->next)
                                reload |= take_reply(w, e, per_record ? rep->element[i] : rep);
                }
                freeReplyObject(rep);
        }
        free(groups);
        settle_in_flight(w, batch, e, all_replied, err);
        wal_error_free(err);
        if (reload) {
                rconn_close(rc); /* the next connection loads the scripts again */
                if (all_replied)
                        batch = requeue_noscript(w, batch);
        }
        complete_list(batch);
}

/*
 * ---- Appends of terms carried in their IDs (redis.c, "Fencing") ----
 *
 * The ID's ms part is TERM_SHIFT bits of milliseconds under the term: an
 * XADD <band | now>-* (NOMKSTREAM) per record, no script.  The ms part of a
 * batch is one value, at least the last one written, so the server numbers
 * the batch's records with consecutive sequences; if it is below the
 * stream's last ID, every record of the batch from the first refused one on
 * is refused alike, since the last ID only grows.
 */
#define TERM_SHIFT 42
#define TERM_IDS_MAX (UINT64_C(1) << 21)
#define MS_MASK ((UINT64_C(1) << TERM_SHIFT) - 1)
#define SCRIPT_FLOOR (UINT64_C(1) << 63)
#define RESENDS_MAX 3
#define DENSE_LAG_MS 1000

/* The ID floor an open of @term raises the stream to (its ms part). */
static uint64_t term_floor(int64_t term)
{
        return (uint64_t)term < TERM_IDS_MAX ? (uint64_t)term << TERM_SHIFT : SCRIPT_FLOOR;
}

static bool starts_with(const char *s, size_t len, const char *prefix)
{
        size_t n = strlen(prefix);
        return len >= n && memcmp(s, prefix, n) == 0;
}

/*
 * After XADDs refused as not above the stream's last ID, or answered nil
 * (NOMKSTREAM: no stream), find out why, on the writer's connection: the
 * recorded term, then the stream's state.  Fills every flagged append's
 * outcome, or marks it for sending again (returns true then).
 */
static bool explain_refusals(struct redis_wal *w, struct rpend *batch)
{
        struct rconn *rc = &w->conn;
        wal_error *err = NULL;
        redisReply *trep = NULL, *srep = NULL;
        int code = 0;
        unsigned flags = 0;
        char why[256] = "";
        const char *targv[] = { "GET", w->tkey };
        int r = rconn_call(rc, -1, 2, targv, NULL, &trep, &err);
        if (r == 0)
                r = read_state(rc, NULL, w->skey, &srep, &err);
        struct stream_state st = { 0 };
        if (r == 0)
                r = parse_state(w->skey, srep, &st, &err);
        bool resend = false;
        if (r < 0) {
                code = r;
                flags = redis_errno_retriable(r) ? WAL_ERROR_RETRIABLE : 0;
                snprintf(why, sizeof(why), "checking why redis refused it: %s",
                         wal_error_message(err));
        } else if (trep->type != REDIS_REPLY_STRING) {
                code = -EIO;
                snprintf(why, sizeof(why), "WALNOTERM key %s is missing: the channel was "
                         "deleted or the server lost data", w->tkey);
        } else {
                char *end = NULL;
                errno = 0;
                long long t = strtoll(trep->str, &end, 10);
                if (errno || !end || *end || t < 0) {
                        code = -EBADMSG;
                        snprintf(why, sizeof(why), "WALBADTERM key %s does not hold a term",
                                 w->tkey);
                } else if (t > w->base.term) {
                        code = -ESTALE;
                        atomic_store(&w->fenced, true);
                        snprintf(why, sizeof(why), "WALSTALE term %lld owns %s", t, w->skey);
                } else if (!st.exists) {
                        code = -EIO;
                        snprintf(why, sizeof(why), "stream %s is missing: the channel was "
                                 "deleted or the server lost data", w->skey);
                } else if (st.lastgen.hi >> TERM_SHIFT == (uint64_t)w->base.term) {
                        /* Another client's entries (XADD *) or a writer of the
                         * same term went ahead: continue above them. */
                        w->next_ms = WALU_MAX(w->next_ms, st.lastgen.hi);
                        resend = true;
                } else {
                        char id[48];
                        redis_id_format(st.lastgen, id, sizeof(id));
                        code = -EIO;
                        snprintf(why, sizeof(why), "stream %s: its last ID %s is above the IDs "
                                 "of term %s (an entry added with an explicit ID?)", w->skey,
                                 id, w->term);
                }
        }
        bool again = false;
        for (struct rpend *e = batch; e; e = e->next) {
                if (!e->below && !e->vanished)
                        continue;
                if (resend && e->below && e->resends < RESENDS_MAX) {
                        e->resends++;
                        again = true;
                        continue;
                }
                if (resend)
                        pend_fail(e, -EIO, 0, "%s", e->vanished ? "the stream vanished"
                                  : "its ID kept falling below the stream's last ID");
                else
                        pend_fail(e, code, flags, "%s", why);
                e->below = e->vanished = false;
        }
        if (trep)
                freeReplyObject(trep);
        if (srep)
                freeReplyObject(srep);
        wal_error_free(err);
        return again;
}

/*
 * Put the appends still flagged "below" back at the head of the queue, in
 * order, if they are a suffix of @batch (they always are, see above; if
 * not, they fail rather than be reordered).  Returns what to complete now.
 */
static struct rpend *requeue_below(struct redis_wal *w, struct rpend *batch)
{
        struct rpend *before = NULL, *first = batch;
        while (first && !first->below) {
                before = first;
                first = first->next;
        }
        if (!first)
                return batch;
        struct rpend *last = NULL;
        size_t n = 0;
        bool suffix = true;
        for (struct rpend *x = first; x; x = x->next) {
                suffix &= x->below;
                last = x;
                n++;
        }
        if (!suffix) {
                for (struct rpend *x = first; x; x = x->next)
                        if (x->below) {
                                x->below = false;
                                pend_fail(x, -EAGAIN, WAL_ERROR_RETRIABLE, "%s",
                                          "its ID fell below the stream's last ID");
                        }
                return batch;
        }
        for (struct rpend *x = first; x; x = x->next)
                x->below = false;
        return requeue_suffix(w, batch, before, first, last, n);
}

static void take_id_reply(struct redis_wal *w, struct rpend *e, const redisReply *rep)
{
        if (rep->type == REDIS_REPLY_STRING) {
                if (redis_id_parse(rep->str, rep->len, &e->id) == 0) {
                        e->status = 0;
                        w->next_ms = WALU_MAX(w->next_ms, e->id.hi);
                } else {
                        pend_fail(e, -EPROTO, 0, "XADD on %s returned a bad ID", w->skey);
                }
        } else if (rep->type == REDIS_REPLY_NIL) {
                e->vanished = true;
        } else if (rep->type == REDIS_REPLY_ERROR &&
                   starts_with(rep->str, rep->len, "ERR The ID specified in XADD is equal or "
                               "smaller")) {
                e->below = true;
        } else if (rep->type == REDIS_REPLY_ERROR) {
                e->status = reply_error(rep, &e->err, w->skey);
        } else {
                pend_fail(e, -EPROTO, 0, "XADD on %s: unexpected reply type", w->skey);
        }
}

/* Write "$<len>\r\n" at @q (room checked by the caller). */
static char *put_bulk_head(char *q, size_t len)
{
        char digits[24];
        int n = 0;
        do {
                digits[n++] = (char)('0' + len % 10);
                len /= 10;
        } while (len);
        *q++ = '$';
        while (n > 0)
                *q++ = digits[--n];
        *q++ = '\r';
        *q++ = '\n';
        return q;
}

/* Write "$<len>\r\n<bytes>\r\n" at @q (room checked by the caller). */
static char *put_bulk(char *q, const void *bytes, size_t len)
{
        q = put_bulk_head(q, len);
        memcpy(q, bytes, len);
        q += len;
        *q++ = '\r';
        *q++ = '\n';
        return q;
}

#define PAYLOAD_HEAD "\r\n$7\r\n" PAYLOAD_FIELD "\r\n"

/*
 * ---- The record's fields in RESP form ----
 *
 * An XADD is `*8 XADD <key> NOMKSTREAM <ms>-* _wal_env <envelope> payload
 * <payload>`: the first six arguments are the same for every record of a
 * chunk, the last four are the record's own.  append() builds those four
 * into the pooled buffer when they fit (build_wire), on the appending
 * thread, so the writer's formatting is two copies per record.  The
 * envelope was encoded at WIRE_ENV_AT, which leaves room for its bulk
 * header ("$NNN\r\n": the buffer holds less than 1000 bytes) just before
 * it; the header is written right-aligned against it.
 */
#define WIRE_ENV_AT 6

static void build_wire(struct rpend *e)
{
        char head[8];
        size_t hl = (size_t)(put_bulk_head(head, e->env_len) - head);
        char plhead[24];
        size_t pl = (size_t)(put_bulk_head(plhead, e->plen) - plhead);
        size_t tail = sizeof(PAYLOAD_HEAD) - 1 + pl + e->plen + 2;
        if (WIRE_ENV_AT + e->env_len + tail > PEND_BUF_BYTES)
                return;
        char *start = (char *)e->env - hl;
        memcpy(start, head, hl);
        char *q = (char *)e->env + e->env_len;
        memcpy(q, PAYLOAD_HEAD, sizeof(PAYLOAD_HEAD) - 1);
        q += sizeof(PAYLOAD_HEAD) - 1;
        memcpy(q, plhead, pl);
        q += pl;
        memcpy(q, e->payload, e->plen);
        e->payload = q;
        q += e->plen;
        *q++ = '\r';
        *q++ = '\n';
        e->wire = start;
        e->wire_len = (size_t)(q - start);
        e->msg = wal_msg_unref(e->msg);
}

/*
 * The batch's XADDs in RESP form, formatted into w->obuf and queued with
 * one copy: formatting each command with hiredis (an allocation and a
 * printf-style pass per command) cost the client about as much CPU as the
 * server spends on the XADD.  The arguments every record shares are
 * formatted once, for the first, and copied for the others.
 */
static int format_xadds(struct redis_wal *w, struct rpend *batch, const char *idarg,
                        size_t *ret_len)
{
        size_t klen = strlen(w->skey), ilen = strlen(idarg);
        size_t need = 0;
        for (struct rpend *e = batch; e; e = e->next)
                need += 128 + klen + ilen + e->env_len + e->plen;
        if (need > w->ocap) {
                char *nb = realloc(w->obuf, need);
                if (!nb)
                        return -ENOMEM;
                w->obuf = nb;
                w->ocap = need;
        }
        char *q = w->obuf;
        memcpy(q, "*8\r\n$4\r\nXADD\r\n", 14);
        q += 14;
        q = put_bulk(q, w->skey, klen);
        memcpy(q, "$10\r\nNOMKSTREAM\r\n", 17);
        q += 17;
        q = put_bulk(q, idarg, ilen);
        q = put_bulk(q, ENV_FIELD, sizeof(ENV_FIELD) - 1);
        size_t shared = (size_t)(q - w->obuf);
        for (struct rpend *e = batch; e; e = e->next) {
                if (e != batch) {
                        memcpy(q, w->obuf, shared);
                        q += shared;
                }
                if (e->wire) {
                        memcpy(q, e->wire, e->wire_len);
                        q += e->wire_len;
                        continue;
                }
                q = put_bulk(q, e->env, e->env_len);
                q = put_bulk(q, PAYLOAD_FIELD, sizeof(PAYLOAD_FIELD) - 1);
                q = put_bulk(q, e->payload, e->plen);
        }
        *ret_len = (size_t)(q - w->obuf);
        return 0;
}

/* The clock under the term band: the ms part of an ID written now. */
static uint64_t band_now(const struct redis_wal *w)
{
        return (uint64_t)w->base.term << TERM_SHIFT |
               ((uint64_t)walu_realtime_ms() & MS_MASK);
}

/* The ms part for the next XADDs when none is in flight. */
static uint64_t next_id_ms(const struct redis_wal *w)
{
        uint64_t now = band_now(w);
        /* Keep the ms part while it lags the clock by less than DENSE_LAG_MS:
         * the server then numbers consecutive appends ms-s, ms-(s+1), ...,
         * which lets a tailing scanner skip its trim check (scanner_main). */
        uint64_t ms = w->next_ms;
        if (ms >> TERM_SHIFT != (uint64_t)w->base.term || ms + DENSE_LAG_MS <= now)
                ms = WALU_MAX(now, w->next_ms);
        return ms;
}

/* Format @batch as XADDs with the ms part @ms into w->obuf; 0 or -ENOMEM. */
static int format_xadds_ms(struct redis_wal *w, struct rpend *batch, uint64_t ms,
                           size_t *ret_len)
{
        char idarg[32];
        snprintf(idarg, sizeof(idarg), "%" PRIu64 "-*", ms);
        return format_xadds(w, batch, idarg, ret_len);
}

/* Format and write @batch; 0, or <0 with @err set and the connection closed. */
static int send_batch_ids(struct redis_wal *w, struct rpend *batch, wal_error **err)
{
        const struct redis_params *p = &w->o->p;
        struct rconn *rc = &w->conn;
        size_t len = 0;
        int r = format_xadds_ms(w, batch, next_id_ms(w), &len);
        if (r == 0)
                r = rconn_append_raw(rc, w->obuf, len);
        char nrep[16], tmo[16];
        if (r == 0 && p->wait_replicas > 0) {
                snprintf(nrep, sizeof(nrep), "%d", p->wait_replicas);
                snprintf(tmo, sizeof(tmo), "%d", p->wait_timeout_ms);
                const char *wait_argv[] = { "WAIT", nrep, tmo };
                r = rconn_append(rc, -1, 3, wait_argv, NULL);
        }
        if (r == 0)
                return rconn_flush(rc, err);
        wal_error_set(err, r, 0, "formatting the pipeline failed");
        rconn_close(rc); /* drop a partly formatted pipeline */
        return r;
}

/*
 * @list holds appends refused as below the stream's last ID or answered nil
 * (flagged), all replied: find out why, resend what can be, and fail the
 * rest.  Returns what is left of @list to complete now.
 */
static struct rpend *settle_refused(struct redis_wal *w, struct rpend *list)
{
        if (rconn_connected(&w->conn) && explain_refusals(w, list))
                list = requeue_below(w, list);
        for (struct rpend *x = list; x; x = x->next)
                if (x->below || x->vanished) /* no connection left to ask on */
                        pend_fail(x, -ECONNRESET, WAL_ERROR_RETRIABLE, "%s",
                                  "connection to redis lost while checking a refused "
                                  "append (it was not written)");
        return list;
}

/* Read the replies of @batch, sent with outcome @r (@err consumed), and
 * complete it. */
static void finish_batch_ids(struct redis_wal *w, struct rpend *batch, int r, wal_error *err)
{
        const struct redis_params *p = &w->o->p;
        struct rconn *rc = &w->conn;
        bool refused = false;
        struct rpend *e = batch;
        for (; e && r == 0; e = e->next) {
                redisReply *rep = NULL;
                r = rconn_reply(rc, p->command_timeout_ms, -1, &rep, &err);
                if (r < 0)
                        break;
                take_id_reply(w, e, rep);
                refused |= e->below || e->vanished;
                freeReplyObject(rep);
        }
        bool all_replied = r == 0;
        settle_in_flight(w, batch, e, all_replied, err);
        wal_error_free(err);
        if (refused)
                batch = settle_refused(w, batch);
        complete_list(batch);
}

static void run_batch_ids(struct redis_wal *w, struct rpend *batch)
{
        wal_error *err = NULL;
        int r = send_batch_ids(w, batch, &err);
        finish_batch_ids(w, batch, r, err);
}

#define BATCH_BYTES (16u << 20)

static size_t rpend_bytes(const struct rpend *e)
{
        return e->env_len + e->plen;
}

/*
 * ---- The sliding window (terms carried in IDs, no WAIT) ----
 *
 * Rather than send a batch and wait for all of its replies before sending
 * the next, the writer keeps up to redis.batch_max XADDs in flight on its
 * connection: it sends what is queued as long as the window has room, then
 * reads the replies that have arrived, sends what fits into the room they
 * made, and only then completes their appends.  The server thus works on
 * the next part of the window while the writer completes the previous one,
 * instead of the two taking turns: Redis answers everything it read in one
 * go, so with a window of P on one connection the writer gets whole
 * windows back, and completing before sending would leave the server idle
 * for the completions (on two CPUs, the adaptor's share of every append).
 *
 * Order and fencing stay as in run_batch_ids: every XADD in flight has the
 * same ms part (win->ms, chosen when the window was empty, kept while it
 * lags the clock by under DENSE_LAG_MS, else the window drains first), so
 * once one is refused as below the stream's last ID, every later one in
 * flight is refused too.  From the first refusal on, the writer sends
 * nothing more, holds every later reply in order, and when the window is
 * empty settles the held list as a batch (settle_refused: explain, resend
 * the refused suffix at the head of the queue, or fail).  Completions run
 * in call order.
 *
 * Two halves in flight.  One write carries at most half of the window
 * (take_chunk).  Redis serves what one read of a connection brought in and
 * answers it in one write: a window sent in one piece comes back in one
 * piece, and between the server's reply and the next window reaching it
 * the server waits (for the writer to be woken, read, send; for itself to
 * be woken: each a cross-CPU wake-up when the two run on different CPUs).
 * Sent as two halves, the second going out after the writer completed the
 * previous replies (writer_main sends the first half right after reading,
 * completes, then sends what is left), the server has usually read the
 * first half before the second arrives; it then answers each half on its
 * own, and the writer sends the next half while the server works on the
 * other one, so the server finds work waiting instead of waking for it.
 * When both halves arrive together nothing is lost: the server answers
 * them at once, as before.  Measured at batch_max=64 with the server and
 * bench-api pinned to different CPUs: commands per server read 63 -> 33,
 * appends per second +50 to +60 %.  A half must hold enough of the
 * server's work to cover the writer's turn-around and a wake-up: below
 * WINDOW_HALF_MIN records the halves only add writes (batch_max=16 split
 * in 8 + 8 lost 20 % on the loaded machine, with the server's CPU per
 * record up 15-40 %), so smaller windows go in one write.
 */
#define WINDOW_HALF_MIN 32
struct window {
        struct rpend *head, *tail;     /* sent, replies due, oldest first */
        size_t n;
        size_t bytes;                  /* rpend_bytes() of those */
        uint64_t ms;                   /* the ms part they were sent with */
        struct rpend *held, *held_tail;/* replied after a refusal, in order */
};

static bool window_mode(const struct redis_wal *w)
{
        return w->id_fencing && w->o->p.wait_replicas == 0;
}

/* Room for more, and no reason to let the window drain first. */
static bool window_may_send(const struct redis_wal *w, const struct window *win)
{
        if (win->n == 0)
                return true;
        return !win->held && win->n < (size_t)w->o->p.batch_max && win->bytes < BATCH_BYTES &&
               win->ms + DENSE_LAG_MS > band_now(w);
}

static void list_push(struct rpend **head, struct rpend **tail, struct rpend *e)
{
        e->next = NULL;
        if (*tail)
                (*tail)->next = e;
        else
                *head = e;
        *tail = e;
}

/* Send @chunk (a list) into the window.  A failure closes the connection;
 * window_read() then fails everything in flight. */
static void window_send(struct redis_wal *w, struct window *win, struct rpend *chunk)
{
        if (win->n == 0)
                win->ms = next_id_ms(w);
        size_t len = 0;
        int r = format_xadds_ms(w, chunk, win->ms, &len);
        wal_error *err = NULL;
        if (r == 0)
                r = rconn_send(&w->conn, w->obuf, len, &err);
        else
                rconn_close(&w->conn); /* drop a partly formatted pipeline */
        wal_error_free(err);
        for (struct rpend *e = chunk, *next; e; e = next) {
                next = e->next;
                win->bytes += rpend_bytes(e);
                win->n++;
                list_push(&win->head, &win->tail, e);
        }
}

static struct rpend *window_pop(struct window *win)
{
        struct rpend *e = win->head;
        win->head = e->next;
        if (!win->head)
                win->tail = NULL;
        e->next = NULL;
        win->n--;
        win->bytes -= rpend_bytes(e);
        return e;
}

/* Read at least one reply (waiting for it), then every reply already
 * buffered.  Returns the appends that can be completed now, in order (the
 * caller completes them, after sending more: window_refill). */
static struct rpend *window_read(struct redis_wal *w, struct window *win)
{
        struct rconn *rc = &w->conn;
        struct rpend *done = NULL, *done_tail = NULL;
        wal_error *err = NULL;
        const redisReply *rep = NULL;
        /* XADD replies are one ID, error or nil each: read into the
         * connection's slot, with no allocation per reply. */
        int r = rconn_reply_slot(rc, w->o->p.command_timeout_ms, false, &rep, &err);
        while (r == 0) {
                struct rpend *e = window_pop(win);
                take_id_reply(w, e, rep);
                if (win->held || e->below || e->vanished)
                        list_push(&win->held, &win->held_tail, e);
                else
                        list_push(&done, &done_tail, e);
                if (win->n == 0)
                        break;
                r = rconn_reply_slot(rc, 0, true, &rep, &err);
        }
        if (r < 0 && r != -EAGAIN) {
                /* Everything still in the window was in flight when the
                 * connection broke. */
                while (win->n > 0) {
                        struct rpend *e = window_pop(win);
                        pend_fail(e, -ECONNRESET, WAL_ERROR_RETRIABLE,
                                  "connection to redis lost with the append in flight (it may "
                                  "or may not have been written): %s", wal_error_message(err));
                        if (win->held)
                                list_push(&win->held, &win->held_tail, e);
                        else
                                list_push(&done, &done_tail, e);
                }
        }
        wal_error_free(err);
        return done;
}

/* Once the window drained after a refusal: settle the held replies. */
static void window_settle(struct redis_wal *w, struct window *win)
{
        if (win->held && win->n == 0) {
                struct rpend *held = win->held;
                win->held = win->held_tail = NULL;
                complete_list(settle_refused(w, held));
        }
}

/*
 * Take the next chunk off the queue: what fits into @win (NULL: a whole
 * batch of up to redis.batch_max).  A chunk is one write: bounded in
 * records and in bytes, far below Redis's client-query-buffer-limit
 * (1 GiB).  NULL when the queue is empty.
 */
static struct rpend *take_chunk(struct redis_wal *w, const struct window *win)
{
        size_t room = (size_t)w->o->p.batch_max - (win ? win->n : 0);
        /* In the window, one write carries at most half of it when a half
         * is worth a write of its own (see "Two halves in flight" above
         * struct window). */
        size_t half = (size_t)w->o->p.batch_max / 2;
        if (win && half >= WINDOW_HALF_MIN && room > half)
                room = half;
        size_t room_bytes = BATCH_BYTES - (win ? win->bytes : 0);
        pthread_mutex_lock(&w->lock);
        struct rpend *batch = w->head, *last = w->head;
        size_t n = 1;
        size_t bytes = last ? rpend_bytes(last) : 0;
        /* The rpends were written on the appenders' CPUs: start loading
         * what formatting will read (envelope, payload) while the walk
         * waits for each next pointer. */
        if (last) {
                __builtin_prefetch(last->env);
                __builtin_prefetch(last->payload);
        }
        while (last && last->next && n < room &&
               bytes + rpend_bytes(last->next) <= room_bytes) {
                last = last->next;
                __builtin_prefetch(last->env);
                __builtin_prefetch(last->payload);
                bytes += rpend_bytes(last);
                n++;
        }
        if (last) {
                w->head = last->next;
                if (!w->head)
                        w->tail = NULL;
                last->next = NULL;
                w->queued -= n;
                if (w->space_waiters)
                        pthread_cond_broadcast(&w->space);
        }
        pthread_mutex_unlock(&w->lock);
        return batch;
}

/*
 * After a read made room in the window, send what is queued before the
 * replies just read are completed: the server then works on the next
 * chunk while this thread runs the completions (on one connection with a
 * window of P, Redis answers a whole read at once, so without this the
 * server would wait for every completion of the previous chunk).  Nothing
 * is sent while replies are held after a refusal, nor on a broken
 * connection (the writer reconnects when the window is empty).
 */
static void window_refill(struct redis_wal *w, struct window *win)
{
        if (win->held || !rconn_connected(&w->conn) || !window_may_send(w, win))
                return;
        struct rpend *chunk = take_chunk(w, win);
        if (chunk)
                window_send(w, win, chunk);
}

/* Wait for work (a wake_fd write) or for the connection to turn readable
 * (the reply to an append() sent itself, or the server closing an idle
 * connection).  Returns true if the connection is readable. */
static bool writer_wait(struct redis_wal *w)
{
        struct pollfd pfd[2] = {
                { .fd = w->wake_fd, .events = POLLIN },
                { .fd = rconn_fd(&w->conn), .events = POLLIN },
        };
        while (poll(pfd, 2, -1) < 0 && errno == EINTR)
                ;
        uint64_t v;
        if (pfd[0].revents & POLLIN)
                while (read(w->wake_fd, &v, sizeof(v)) < 0 && errno == EINTR)
                        ;
        return pfd[1].fd >= 0 && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR));
}

/*
 * Log a failed reconnect: the first of an outage, and then one a minute
 * (with how many failed in between), as warnings; the others at debug
 * level, so that a server down for long does not flood the log hook with
 * one warning per backoff step.  @last_ns (0: none yet this outage) and
 * @quiet are the caller's, reset when it reconnects.
 */
#define REDIS_RECONNECT_WARN_NS (60ull * 1000000000u)
static void reconnect_failed_log(uint64_t *last_ns, unsigned *quiet, const char *who,
                                 const char *why)
{
        uint64_t now = walu_monotonic_ns();
        if (*last_ns && now - *last_ns < REDIS_RECONNECT_WARN_NS) {
                (*quiet)++;
                walu_log(WAL_LOG_DEBUG, "redis: %s cannot reconnect: %s", who, why);
                return;
        }
        if (*quiet)
                walu_log(WAL_LOG_WARNING, "redis: %s cannot reconnect: %s (%u more attempts "
                         "failed since the last warning)", who, why, *quiet);
        else
                walu_log(WAL_LOG_WARNING, "redis: %s cannot reconnect: %s", who, why);
        *last_ns = now;
        *quiet = 0;
}

/* Wake an idle writer (caller holds w->lock and saw w->writer_idle). */
static void writer_wake(struct redis_wal *w)
{
        uint64_t one = 1;
        while (write(w->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
                ;
}

static void *writer_main(void *arg)
{
        struct redis_wal *w = arg;
        const struct redis_params *p = &w->o->p;
        int backoff = p->backoff_initial_ms;
        struct window win = { 0 };
        uint64_t warned_ns = 0;
        unsigned quiet = 0;
        char who[300];
        snprintf(who, sizeof(who), "writer of %s", w->skey);
        block_sigpipe();
        pthread_setname_np(pthread_self(), "wal-redis-write");
        for (;;) {
                /* With appends in flight the writer waits for their replies
                 * (window_read), not for work. */
                bool idle = win.n == 0;
                pthread_mutex_lock(&w->lock);
                while (idle && !w->head && !w->direct && !w->closing) {
                        w->writer_idle = true;
                        pthread_mutex_unlock(&w->lock);
                        bool readable = writer_wait(w);
                        pthread_mutex_lock(&w->lock);
                        w->writer_idle = false;
                        /* Data or EOF on an idle connection with no reply
                         * due: the server closed it (or sent garbage).
                         * Drop it under the lock, which append() holds
                         * while it sends; the next work reconnects. */
                        if (readable && !w->direct)
                                rconn_close(&w->conn);
                }
                if (idle && w->direct) {
                        /* append() sent it (see "Sending from append()"). */
                        win.head = win.tail = w->direct;
                        win.n = 1;
                        win.bytes = rpend_bytes(w->direct);
                        win.ms = w->direct_ms;
                        w->direct = NULL;
                        idle = false;
                }
                if (w->conn_suspect) {
                        w->conn_suspect = false;
                        rconn_close(&w->conn);
                }
                bool closing = w->closing;
                bool empty = !w->head;
                pthread_mutex_unlock(&w->lock);
                if (idle && empty)
                        break;
                if (idle && (!rconn_connected(&w->conn) || rconn_peer_closed(&w->conn))) {
                        bool was = rconn_connected(&w->conn);
                        rconn_close(&w->conn);
                        wal_error *e = NULL;
                        int r = rconn_connect(&w->conn, p, RCONN_SCRIPTS_NEED, &e);
                        if (r < 0) {
                                reconnect_failed_log(&warned_ns, &quiet, who,
                                                     wal_error_message(e));
                                if (closing)
                                        fail_queued(w, -ECANCELED, 0, "the wal closed while "
                                                    "redis was unreachable");
                                else
                                        fail_queued(w, r, WAL_ERROR_RETRIABLE,
                                                    wal_error_message(e));
                                wal_error_free(e);
                                pthread_mutex_lock(&w->lock);
                                struct timespec dl = walu_deadline(backoff);
                                while (!w->closing &&
                                       pthread_cond_timedwait(&w->work, &w->lock, &dl) != ETIMEDOUT)
                                        ;
                                pthread_mutex_unlock(&w->lock);
                                backoff = WALU_MIN(backoff * 2, p->backoff_max_ms);
                                continue;
                        }
                        if (was)
                                walu_log(WAL_LOG_INFO, "redis: writer of %s reconnected", w->skey);
                        backoff = p->backoff_initial_ms;
                        warned_ns = 0;
                        quiet = 0;
                }
                if (window_mode(w)) {
                        window_refill(w, &win);
                        if (win.n > 0) {
                                struct rpend *done = window_read(w, &win);
                                window_refill(w, &win);
                                complete_list(done);
                                window_settle(w, &win);
                        }
                        continue;
                }
                struct rpend *batch = take_chunk(w, NULL);
                if (batch && w->id_fencing)
                        run_batch_ids(w, batch);
                else if (batch)
                        run_batch(w, batch);
        }
        rconn_close(&w->conn);
        return NULL;
}

/*
 * ---- Sending from append() ----
 *
 * An idle writer (nothing queued, nothing in flight) waits in poll() on its
 * wake_fd and on its connection.  append() then sends the XADD itself, on
 * the writer's connection, under w->lock: the record reaches the server
 * without waiting for the writer thread to be woken and scheduled, and the
 * reply is what wakes the writer, which takes the record into its window
 * (w->direct) and completes it as any other.  The writer touches neither
 * the connection nor its next_ms/obuf while idle, and leaves the idle
 * state only under w->lock; the connection is closed under w->lock while
 * idle.  The ID's ms part is chosen as the writer would (next_id_ms), so
 * order and fencing are those of the window.  The send never blocks (it
 * holds w->lock, and only records up to DIRECT_MAX_BYTES go this way, into
 * an idle connection's empty socket buffer).  A failed or partial send
 * executed nothing (Redis drops an incomplete command with its
 * connection): the record is queued as usual and the writer drops the
 * connection and reconnects first (conn_suspect).  Returns true if @e was
 * sent.
 *
 * Measured with bench-api's parked workload (one record per 100 us, a
 * tailing scanner in the same process): the writer's wake-up was the one
 * thread hop left between append and delivery once the adaptor wakes a
 * parked scanner as the append starts.
 */
#define DIRECT_MAX_BYTES 4096

static bool send_direct(struct redis_wal *w, struct rpend *e)
{
        if (!w->writer_idle || w->head || w->direct || w->conn_suspect || !window_mode(w) ||
            !rconn_connected(&w->conn))
                return false;
        if (rpend_bytes(e) > DIRECT_MAX_BYTES)
                return false;
        uint64_t ms = next_id_ms(w);
        size_t len = 0;
        if (format_xadds_ms(w, e, ms, &len) < 0)
                return false;
        int r = rconn_send_borrowed(&w->conn, w->obuf, len);
        if (r < 0) {
                if (r != -ENOTCONN)
                        w->conn_suspect = true;
                return false;
        }
        w->direct = e;
        w->direct_ms = ms;
        return true;
}

static int redis_append(struct walimpls_wal *b, wal_msg *msg, walimpls_append_done_fn *done,
                        void *arg)
{
        struct redis_wal *w = wal_from_base(b);
        if (!msg || !done)
                return -EINVAL;
        if (w->base.access != WAL_ACCESS_RW)
                return -EROFS;
        if (atomic_load(&w->fenced))
                return -ESTALE;
        /* Encode straight into a pooled entry (a plain envelope takes about
         * 30 bytes), at WIRE_ENV_AT (see build_wire); only a larger one is
         * sized first. */
        struct rpend *e = pend_alloc(w, PEND_BUF_BYTES);
        if (!e)
                return -ENOMEM;
        e->env += WIRE_ENV_AT;
        int r = walu_envelope_encode(msg, e->env, PEND_BUF_BYTES - WIRE_ENV_AT);
        bool pooled = r >= 0;
        if (r == -ENOSPC) {
                pend_free(e);
                size_t n = walu_envelope_size(msg);
                e = pend_alloc(w, n);
                if (!e)
                        return -ENOMEM;
                r = walu_envelope_encode(msg, e->env, n);
        }
        if (r < 0) {
                pend_free(e);
                return r;
        }
        e->env_len = (size_t)r;
        e->msg = wal_msg_ref(msg);
        e->payload = wal_msg_payload(msg, &e->plen);
        if (!e->payload)
                e->payload = "";
        if (pooled)
                build_wire(e);
        e->done = done;
        e->arg = arg;
        pthread_mutex_lock(&w->lock);
        while (w->queued >= (size_t)w->o->p.max_inflight && !w->closing) {
                w->space_waiters++;
                pthread_cond_wait(&w->space, &w->lock);
                w->space_waiters--;
        }
        if (w->closing) {
                pthread_mutex_unlock(&w->lock);
                pend_free(e);
                return -ESHUTDOWN;
        }
        if (send_direct(w, e)) {
                pthread_mutex_unlock(&w->lock);
                return 0;
        }
        if (w->tail)
                w->tail->next = e;
        else
                w->head = e;
        w->tail = e;
        w->queued++;
        /* A busy writer looks at the queue again after its batch: waking it
         * for every append would cost a system call each. */
        if (w->writer_idle)
                writer_wake(w);
        pthread_mutex_unlock(&w->lock);
        return 0;
}

/* ---- WAL ---- */

static void wal_free(struct redis_wal *w)
{
        if (!w)
                return;
        rconn_close(&w->conn);
        pool_done(w);
        pthread_mutex_destroy(&w->pool_lock);
        free(w->obuf);
        free(w->skey);
        free(w->tkey);
        walimpls_wal_done(&w->base);
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->work);
        pthread_cond_destroy(&w->space);
        if (w->wake_fd >= 0)
                close(w->wake_fd);
        free(w);
}

static int open_error(struct redis_wal *w, const redisReply *rep, wal_error **reterr)
{
        int r = redis_error_to_errno(rep->str, rep->len);
        if (r == -ESTALE)
                return wal_error_set(reterr, -ESTALE, 0,
                                     "channel %s cannot be opened at term %s: %.*s",
                                     w->base.channel, w->term, (int)rep->len, rep->str);
        if (r == -EACCES)
                return wal_error_set(reterr, -EACCES, 0,
                                     "channel %s cannot be opened read-write: the OPEN script "
                                     "(GET, SET, XGROUP, XSETID on %s and %s) was refused: "
                                     "%.*s; writing needs the write commands as well as "
                                     "EVALSHA", w->base.channel, w->skey, w->tkey,
                                     (int)rep->len, rep->str);
        return reply_error(rep, reterr, w->skey);
}

static int redis_open(struct walimpls_opener *b, const struct walimpls_open_opts *opts,
                      struct walimpls_wal **ret, wal_error **reterr)
{
        struct redis_opener *o = opener_from_base(b);
        if (!opts || !walimpls_channel_name_valid(opts->channel))
                return wal_error_set(reterr, -EINVAL, 0, "invalid channel name '%s'",
                                     opts && opts->channel ? opts->channel : "(null)");
        if (opts->term < 0)
                return wal_error_set(reterr, -EINVAL, 0, "negative term %" PRId64, opts->term);
        struct redis_wal *w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        pthread_mutex_init(&w->lock, NULL);
        pthread_mutex_init(&w->pool_lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&w->work, &ca);
        pthread_cond_init(&w->space, &ca);
        pthread_condattr_destroy(&ca);
        w->o = o;
        w->wake_fd = -1;
        int r = walimpls_wal_init(&w->base, &redis_wal_ops, b, opts);
        if (r < 0) {
                free(w); /* nothing else to release yet */
                return r;
        }
        snprintf(w->term, sizeof(w->term), "%" PRId64, opts->term);
        if (asprintf(&w->skey, "%s%s", o->p.prefix, opts->channel) < 0)
                w->skey = NULL;
        if (asprintf(&w->tkey, "%s%s:term", o->p.prefix, opts->channel) < 0)
                w->tkey = NULL;
        if (!w->skey || !w->tkey) {
                r = -ENOMEM;
                goto fail;
        }
        redisReply *rep = NULL;
        pthread_mutex_lock(&o->lock);
        if (opts->access == WAL_ACCESS_RW) {
                char floor[24];
                snprintf(floor, sizeof(floor), "%" PRIu64, term_floor(opts->term));
                w->id_fencing = (uint64_t)opts->term < TERM_IDS_MAX;
                const char *argv[] = { "2", w->skey, w->tkey, w->term, floor };
                r = ctl_call(o, REDIS_SCRIPT_OPEN, 5, argv, NULL, &rep, reterr);
                if (r == 0 && rep->type == REDIS_REPLY_ERROR)
                        r = open_error(w, rep, reterr);
        } else {
                const char *argv[] = { "TYPE", w->skey };
                r = ctl_call(o, -1, 2, argv, NULL, &rep, reterr);
                if (r == 0 && rep->type == REDIS_REPLY_ERROR)
                        r = reply_error(rep, reterr, w->skey);
                else if (r == 0 && !reply_is(rep, "stream") && !reply_is(rep, "none"))
                        r = wal_error_set(reterr, -EBADMSG, 0, "key %s holds a %s, not a stream",
                                          w->skey, rep->str);
                else if (r == 0 && reply_is(rep, "none")) {
                        freeReplyObject(rep);
                        rep = NULL;
                        const char *argv2[] = { "EXISTS", w->tkey };
                        r = ctl_call(o, -1, 2, argv2, NULL, &rep, reterr);
                        if (r == 0 && !(rep->type == REDIS_REPLY_INTEGER && rep->integer == 1))
                                r = wal_error_set(reterr, -ENOENT, 0,
                                                  "no key %s nor %s", w->skey, w->tkey);
                }
        }
        if (r == 0) {
                /* The server may have been reconfigured or replaced since build. */
                w->durability = probe_durability(o);
                r = check_aof(o, w->durability, reterr);
        }
        pthread_mutex_unlock(&o->lock);
        if (rep)
                freeReplyObject(rep);
        if (r < 0)
                goto fail;
        if (opts->access == WAL_ACCESS_RW) {
                w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (w->wake_fd < 0) {
                        int saved = errno;
                        r = wal_error_set(reterr, -saved, 0, "eventfd: %s", strerror(saved));
                        goto fail;
                }
                r = rconn_connect(&w->conn, &o->p, RCONN_SCRIPTS_NEED, reterr);
                if (r < 0)
                        goto fail;
                r = -pthread_create(&w->writer, NULL, writer_main, w);
                if (r < 0) {
                        wal_error_set(reterr, r, 0, "cannot start the writer thread");
                        goto fail;
                }
                w->writer_running = true;
        }
        *ret = &w->base;
        return 0;
fail:
        /* The library's open adds 'opening "X": ' above this. */
        wal_error_prefix(reterr, "redis: ");
        wal_free(w);
        return r;
}

static void redis_wal_close(struct walimpls_wal *b)
{
        struct redis_wal *w = wal_from_base(b);
        pthread_mutex_lock(&w->lock);
        w->closing = true;
        pthread_cond_broadcast(&w->work);
        pthread_cond_broadcast(&w->space);
        if (w->wake_fd >= 0)
                writer_wake(w);
        pthread_mutex_unlock(&w->lock);
        if (w->writer_running)
                pthread_join(w->writer, NULL);
        /* The writer drained the queue; anything left (no writer) is cancelled. */
        fail_queued(w, -ECANCELED, 0, "the wal was closed");
        wal_free(w);
}

static int redis_truncate(struct walimpls_wal *b, struct wal_msgid id, wal_error **reterr)
{
        struct redis_wal *w = wal_from_base(b);
        if (w->base.access != WAL_ACCESS_RW)
                return wal_error_set(reterr, -EROFS, 0, "channel %s is open read-only",
                                     w->base.channel);
        if (wal_msgid_is_none(id))
                return wal_error_set(reterr, -EINVAL, 0, "truncate: no message ID");
        if (atomic_load(&w->fenced))
                return wal_error_set(reterr, -ESTALE, 0, "channel %s: fenced by a newer term",
                                     w->base.channel);
        struct wal_msgid keep;
        if (!redis_id_succ(id, &keep))
                keep = id;
        char minid[48], upto[48];
        redis_id_format(keep, minid, sizeof(minid));
        redis_id_format(id, upto, sizeof(upto));
        const char *argv[] = { "2", w->skey, w->tkey, w->term, minid, upto };
        redisReply *rep = NULL;
        pthread_mutex_lock(&w->o->lock);
        int r = ctl_call(w->o, REDIS_SCRIPT_TRUNCATE, 6, argv, NULL, &rep, reterr);
        pthread_mutex_unlock(&w->o->lock);
        if (r < 0) {
                wal_error_prefix(reterr, "redis: truncating channel %s: ", w->base.channel);
                return r;
        }
        if (rep->type == REDIS_REPLY_ERROR) {
                r = reply_error(rep, reterr, w->skey);
                if (r == -ESTALE)
                        atomic_store(&w->fenced, true);
        } else if (rep->type != REDIS_REPLY_INTEGER) {
                r = wal_error_set(reterr, -EPROTO, 0, "XTRIM on %s: unexpected reply", w->skey);
        }
        freeReplyObject(rep);
        return r;
}

static int redis_info(struct walimpls_wal *b, struct walimpls_info *ret, wal_error **reterr)
{
        struct redis_wal *w = wal_from_base(b);
        redisReply *rep = NULL, *trep = NULL;
        pthread_mutex_lock(&w->o->lock);
        int r = read_state(NULL, w->o, w->skey, &rep, reterr);
        if (r == 0) {
                const char *argv[] = { "GET", w->tkey };
                r = ctl_call(w->o, -1, 2, argv, NULL, &trep, reterr);
        }
        pthread_mutex_unlock(&w->o->lock);
        struct stream_state st;
        if (r == 0)
                r = parse_state(w->skey, rep, &st, reterr);
        if (r == 0) {
                int64_t term = -1;
                if (trep->type == REDIS_REPLY_STRING) {
                        char *end = NULL;
                        long long t = strtoll(trep->str, &end, 10);
                        if (end && *end == '\0' && t >= 0)
                                term = t;
                }
                /* A last ID that is an open's floor (<term << 42>-0) was
                 * never written: the newest entry, if any, was. */
                struct wal_msgid last = st.lastgen;
                if (last.lo == 0 && last.hi != 0 && (last.hi & MS_MASK) == 0)
                        last = st.length > 0 ? st.last : WAL_MSGID_NONE;
                bool any = st.exists && !wal_msgid_is_none(last) &&
                           wal_msgid_cmp(last, WAL_MSGID(0, 0)) > 0;
                *ret = (struct walimpls_info){
                        .first_id = st.exists && st.length > 0 ? st.first : WAL_MSGID_NONE,
                        .last_id = any ? last : WAL_MSGID_NONE,
                        .count = st.exists ? st.length : 0,
                        .bytes = -1,
                        .term = term,
                        .durability = w->durability,
                };
        }
        if (rep)
                freeReplyObject(rep);
        if (trep)
                freeReplyObject(trep);
        if (r < 0)
                wal_error_prefix(reterr, "redis: info of channel %s: ", w->base.channel);
        return r;
}

/* ---- Scanner ---- */

/* Decode one XRANGE entry [id, [field, value, ...]] into an immutable message. */
static int decode_entry(const char *key, const redisReply *ent, wal_msg **ret,
                        struct wal_msgid *ret_id, wal_error **reterr)
{
        struct wal_msgid id;
        if (ent->type != REDIS_REPLY_ARRAY || ent->elements != 2 ||
            parse_id_reply(ent->element[0], &id) < 0)
                return wal_error_set(reterr, -EBADMSG, 0, "key %s: malformed stream entry", key);
        char ids[48];
        redis_id_format(id, ids, sizeof(ids));
        const redisReply *f = ent->element[1];
        if (f->type != REDIS_REPLY_ARRAY || f->elements % 2 != 0)
                return wal_error_set(reterr, -EBADMSG, 0,
                                     "key %s entry %s: fields are not name/value pairs", key, ids);
        const redisReply *env = NULL, *payload = NULL;
        for (size_t i = 0; i < f->elements; i += 2) {
                const redisReply *k = f->element[i], *v = f->element[i + 1];
                if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                        return wal_error_set(reterr, -EBADMSG, 0,
                                             "key %s entry %s: a field is not a string", key, ids);
                if (k->len == sizeof(ENV_FIELD) - 1 && memcmp(k->str, ENV_FIELD, k->len) == 0)
                        env = v;
                else if (k->len == sizeof(PAYLOAD_FIELD) - 1 &&
                         memcmp(k->str, PAYLOAD_FIELD, k->len) == 0)
                        payload = v;
        }
        bool foreign = !env;
        if (foreign && !payload && f->elements > 0)
                payload = f->element[1];
        wal_msg *m = NULL;
        int r = walu_envelope_decode(env ? (const uint8_t *)env->str : NULL, env ? env->len : 0,
                                     payload ? payload->str : NULL, payload ? payload->len : 0,
                                     &m, reterr);
        if (r < 0) {
                wal_error_prefix(reterr, "key %s entry %s: ", key, ids);
                return r;
        }
        for (size_t i = 0; foreign && i < f->elements; i += 2) {
                const redisReply *k = f->element[i], *v = f->element[i + 1];
                if (v == payload || k->len == 0 || memchr(k->str, 0, k->len) ||
                    memchr(v->str, 0, v->len))
                        continue;
                r = wal_msg_set_prop(m, k->str, v->str);
                if (r < 0) {
                        wal_msg_unref(m);
                        return wal_error_set(reterr, r, 0, "key %s entry %s: property %s: %s",
                                             key, ids, k->str, wal_strerror(r));
                }
        }
        r = wal_msg_freeze(m, id);
        if (r < 0) {
                wal_msg_unref(m);
                return wal_error_set(reterr, r, 0, "key %s entry %s: cannot freeze", key, ids);
        }
        *ret = m;
        *ret_id = id;
        return 0;
}

/*
 * Check a round's state against the reader's position.  A fresh check (at
 * read()) passes n = 0: anything deleted after the start position is lost.
 */
static int check_state(struct redis_scanner *s, const struct stream_state *st,
                       struct wal_msgid first_returned, size_t n, wal_error **reterr)
{
        const char *key = s->w->skey;
        char a[48], b[48], c[48];
        if (!st->exists) {
                if (s->seen_stream)
                        return wal_error_set(reterr, -ERANGE, 0,
                                             "stream %s vanished while being read: the server "
                                             "lost its data or the key was deleted", key);
                return 0;
        }
        if (s->seen_stream && wal_msgid_cmp(st->lastgen, s->seen_lastgen) < 0) {
                redis_id_format(st->lastgen, a, sizeof(a));
                redis_id_format(s->seen_lastgen, b, sizeof(b));
                return wal_error_set(reterr, -ERANGE, 0,
                                     "stream %s went back to last ID %s after %s had been "
                                     "written: the server lost data (restarted without AOF?)",
                                     key, a, b);
        }
        if (!s->accept_trimmed && wal_msgid_cmp(st->maxdel, s->after) > 0 &&
            (n == 0 || wal_msgid_cmp(st->maxdel, first_returned) < 0)) {
                /* Named as the first ID wanted (the one after s->after),
                 * which is what "-o ID" gave: the predecessor of 1-0 reads
                 * 0-18446744073709551615. */
                struct wal_msgid from = s->after;
                if (from.lo == UINT64_MAX)
                        from = WAL_MSGID(from.hi + 1, 0);
                else
                        from.lo++;
                redis_id_format(from, a, sizeof(a));
                redis_id_format(st->maxdel, b, sizeof(b));
                if (wal_msgid_is_none(st->first))
                        snprintf(c, sizeof(c), "none (the stream is empty)");
                else
                        redis_id_format(st->first, c, sizeof(c));
                return wal_error_set(reterr, -ERANGE, 0,
                                     "stream %s: reading from %s: the entries up to %s were "
                                     "trimmed away (first retained entry: %s)",
                                     key, a, b, c);
        }
        return 0;
}

static void scanner_fail(struct redis_scanner *s, int code, wal_error *e)
{
        pthread_mutex_lock(&s->lock);
        if (!s->err) {
                s->err = code;
                s->errobj = e;
                e = NULL;
        }
        pthread_mutex_unlock(&s->lock);
        wal_error_free(e);
        walimpls_notifier_signal(&s->note);
}

/* Sleep @ms unless close comes first; true if closing. */
static bool scanner_sleep(struct redis_scanner *s, int ms)
{
        struct pollfd pfd = { .fd = s->stop_fd, .events = POLLIN };
        return poll(&pfd, 1, ms) > 0;
}

/* One round: read, check, deliver.  Returns entries delivered, or <0. */
/*
 * A failure to read a reply of a round that asked for @count entries.  A
 * reply over redis.max_reply_bytes is retried with half the count; with a
 * count of one it is a single entry that is too large, and reading again
 * would meet it again: fatal, like a reply that does not parse.
 */
static int scanner_read_failed(struct redis_scanner *s, int count, int r, wal_error *e,
                               bool *fatal)
{
        if (r == -EMSGSIZE && count > 1) {
                s->count_cap = WALU_MAX(count / 2, 1);
                walu_log(WAL_LOG_INFO, "redis: scanner %s of %s: reply over "
                         "redis.max_reply_bytes, reading %d entries per round",
                         s->base.name, s->w->skey, s->count_cap);
                wal_error_free(e);
                return r;
        }
        if (r == -EMSGSIZE) {
                /* One entry alone is over the limit: name where it is and
                 * what reads it. */
                char after[WAL_MSGID_STRLEN] = "the beginning";
                if (!wal_msgid_is_none(s->after))
                        wal_msgid_format(s->after, after, sizeof(after));
                wal_error_prefix(&e, "scanner of %s: the entry after %s is larger than "
                                 "redis.max_reply_bytes (raise it to read the entry): ",
                                 s->w->skey, after);
                *fatal = true;
                scanner_fail(s, r, e);
                return r;
        }
        if (r == -EPROTO) {
                wal_error_prefix(&e, "scanner of %s: ", s->w->skey);
                *fatal = true;
                scanner_fail(s, r, e);
                return r;
        }
        if (r != -ECANCELED)
                walu_log(WAL_LOG_WARNING, "redis: scanner %s of %s: %s", s->base.name,
                         s->w->skey, wal_error_message(e));
        wal_error_free(e);
        return r;
}

static void scanner_push(struct redis_scanner *s, wal_msg *m, struct wal_msgid id)
{
        pthread_mutex_lock(&s->lock);
        s->q[(s->head + s->len) % s->cap] = m;
        s->len++;
        s->q_bytes += wal_msg_size(m);
        pthread_mutex_unlock(&s->lock);
        s->after = id;
}

/*
 * Process one round: @xrep, the reply of XREAD COUNT n BLOCK b STREAMS key
 * <position> (nil when the block timed out), and @state, the reply of the
 * READ script (count 0) or XINFO STREAM pipelined right behind it; both consumed.  Returns
 * the entries delivered or <0.
 *
 * The two commands are not atomic, and need not be: Redis runs the state
 * read after the XREAD was served (a blocked client's later commands
 * wait in its query buffer), max-deleted-entry-id only grows, and an entry
 * between the position and the first one XREAD returned cannot appear after
 * the XREAD ran (new IDs are larger than every existing one), so if such an
 * entry was deleted, it was deleted before the XREAD and the state shows
 * it.  The same holds when the XREAD blocked: it is served right after the
 * command that added the entries, before anything can delete them, and the
 * state is read after that.  So what XREAD returns is delivered at once,
 * with no second look: a tailing scanner costs one round trip per wake-up.
 */
static int scanner_round(struct redis_scanner *s, redisReply *xrep, redisReply *state,
                         bool *fatal)
{
        wal_error *e = NULL;
        struct stream_state st;
        int delivered = 0;
        int r = 0;
        const redisReply *ents = NULL;
        *fatal = false;
        if (xrep->type == REDIS_REPLY_ERROR)
                r = reply_error(xrep, &e, s->w->skey);
        else if (xrep->type == REDIS_REPLY_ARRAY && xrep->elements == 1 &&
                 xrep->element[0]->type == REDIS_REPLY_ARRAY &&
                 xrep->element[0]->elements == 2 &&
                 xrep->element[0]->element[1]->type == REDIS_REPLY_ARRAY)
                ents = xrep->element[0]->element[1];
        else if (xrep->type != REDIS_REPLY_NIL)
                r = wal_error_set(&e, -EPROTO, 0, "key %s: malformed XREAD reply", s->w->skey);
        if (r == 0 && state)
                r = parse_state(s->w->skey, state, &st, &e);
        if (r < 0) {
                if (redis_errno_retriable(r)) {      /* LOADING, NOSCRIPT, BUSY */
                        rconn_close(&s->conn);
                        wal_error_free(e);
                } else {
                        *fatal = true;
                        scanner_fail(s, r, e);
                }
                goto out;
        }
        size_t n = ents ? ents->elements : 0;
        struct wal_msgid first = WAL_MSGID_NONE;
        if (n > 0)
                parse_id_reply(ents->element[0]->type == REDIS_REPLY_ARRAY &&
                                               ents->element[0]->elements > 0
                                       ? ents->element[0]->element[0]
                                       : NULL,
                               &first);
        r = state ? check_state(s, &st, first, n, &e) : 0;
        if (r < 0) {
                *fatal = true;
                scanner_fail(s, r, e);
                goto out;
        }
        if (state && st.exists) {
                s->seen_stream = true;
                if (wal_msgid_is_none(s->seen_lastgen) ||
                    wal_msgid_cmp(st.lastgen, s->seen_lastgen) > 0)
                        s->seen_lastgen = st.lastgen;
        }
        /* ALL starts at whatever is retained when the first entry shows up. */
        if (n > 0)
                s->accept_trimmed = false;
        for (size_t i = 0; i < n; i++) {
                wal_msg *m = NULL;
                struct wal_msgid id = WAL_MSGID_NONE;
                r = decode_entry(s->w->skey, ents->element[i], &m, &id, &e);
                if (r < 0) {
                        *fatal = true;
                        scanner_fail(s, r, e);
                        goto out;
                }
                if (wal_msgid_cmp(id, s->after) <= 0) {
                        wal_msg_unref(m); /* not after the position: never */
                        continue;
                }
                scanner_push(s, m, id);
                delivered++;
        }
        r = delivered;
out:
        freeReplyObject(xrep);
        if (state)
                freeReplyObject(state);
        if (delivered)
                walimpls_notifier_signal(&s->note);
        return r;
}

/* true if @xrep (an XREAD reply) starts with the entry right after @after:
 * no ID lies between the two, so nothing between can have been deleted. */
static bool xread_starts_at_succ(const redisReply *xrep, struct wal_msgid after)
{
        struct wal_msgid first, next;
        if (xrep->type != REDIS_REPLY_ARRAY || xrep->elements != 1 ||
            xrep->element[0]->type != REDIS_REPLY_ARRAY || xrep->element[0]->elements != 2)
                return false;
        const redisReply *ents = xrep->element[0]->element[1];
        if (ents->type != REDIS_REPLY_ARRAY || ents->elements == 0 ||
            ents->element[0]->type != REDIS_REPLY_ARRAY || ents->element[0]->elements == 0 ||
            parse_id_reply(ents->element[0]->element[0], &first) < 0)
                return false;
        return redis_id_succ(after, &next) && wal_msgid_eq(first, next);
}

static void *scanner_main(void *arg)
{
        struct redis_scanner *s = arg;
        const struct redis_params *p = &s->w->o->p;
        int backoff = p->backoff_initial_ms;
        uint64_t warned_ns = 0;
        unsigned quiet = 0;
        char who[300];
        snprintf(who, sizeof(who), "scanner %s of %s", s->base.name, s->w->skey);
        block_sigpipe();
        pthread_setname_np(pthread_self(), "wal-redis-scan");
        for (;;) {
                if (!rconn_connected(&s->conn)) {
                        wal_error *e = NULL;
                        if (rconn_connect(&s->conn, p, RCONN_SCRIPTS_TRY, &e) < 0) {
                                reconnect_failed_log(&warned_ns, &quiet, who,
                                                     wal_error_message(e));
                                wal_error_free(e);
                                if (scanner_sleep(s, backoff))
                                        break;
                                backoff = WALU_MIN(backoff * 2, p->backoff_max_ms);
                                continue;
                        }
                        backoff = p->backoff_initial_ms;
                        warned_ns = 0;
                        quiet = 0;
                }
                pthread_mutex_lock(&s->lock);
                /* Refill at half empty: rounds of one entry per freed slot
                 * would cost a round trip per message.  Large messages are
                 * also bounded in bytes (redis.max_reply_bytes queued). */
                while ((s->len > s->cap / 2 || s->q_bytes >= s->w->o->p.max_reply_bytes) &&
                       !s->stop)
                        pthread_cond_wait(&s->space, &s->lock);
                bool stop = s->stop;
                size_t room = s->cap - s->len;
                pthread_mutex_unlock(&s->lock);
                if (stop)
                        break;
                int count = (int)WALU_MIN(room, (size_t)s->count_cap);
                /*
                 * XREAD COUNT n BLOCK after the position: it answers at once
                 * when entries are there, else when the next append lands,
                 * else nil after redis.block.  Then the stream state, which
                 * scanner_round() checks the entries against, unless the
                 * first entry is the successor of the position (our writer
                 * numbers consecutive appends so): then no entry can have
                 * been deleted in between, and the round costs one command.
                 */
                char after[48], cnt[16], blk[16];
                redis_id_format(s->after, after, sizeof(after));
                snprintf(cnt, sizeof(cnt), "%d", count);
                snprintf(blk, sizeof(blk), "%d", p->block_ms);
                const char *xargv[] = { "XREAD", "COUNT", cnt, "BLOCK", blk, "STREAMS",
                                        s->w->skey, after };
                const char *rargv[] = { "1", s->w->skey, "0-0", "0" };
                const char *iargv[] = { "XINFO", "STREAM", s->w->skey };
                wal_error *e = NULL;
                redisReply *rep = NULL, *state = NULL;
                bool fatal = false;
                int r = rconn_append(&s->conn, -1, 8, xargv, NULL);
                if (r == 0)
                        r = rconn_flush(&s->conn, &e);
                if (r == 0)
                        r = rconn_reply(&s->conn, p->block_ms + p->command_timeout_ms,
                                        s->stop_fd, &rep, &e);
                if (r == 0 && (rep->type == REDIS_REPLY_ERROR ||
                               !xread_starts_at_succ(rep, s->after))) {
                        r = s->conn.scripts_refused
                                    ? rconn_append(&s->conn, -1, 3, iargv, NULL)
                                    : rconn_append(&s->conn, REDIS_SCRIPT_READ, 4, rargv, NULL);
                        if (r == 0)
                                r = rconn_flush(&s->conn, &e);
                        if (r == 0)
                                r = rconn_reply(&s->conn, p->command_timeout_ms, s->stop_fd,
                                                &state, &e);
                        if (r < 0)
                                freeReplyObject(rep);
                }
                if (r == -ECANCELED)
                        break;
                if (r == 0) {
                        r = scanner_round(s, rep, state, &fatal);
                } else {
                        rconn_close(&s->conn);
                        r = scanner_read_failed(s, count, r, e, &fatal);
                }
                if (fatal)
                        break;
                if (r == -EMSGSIZE) {
                        rconn_close(&s->conn);
                        continue;   /* at once, with the smaller count */
                }
                if (r < 0) {
                        rconn_close(&s->conn);
                        if (scanner_sleep(s, backoff))
                                break;
                        backoff = WALU_MIN(backoff * 2, p->backoff_max_ms);
                        continue;
                }
                if (s->count_cap < p->read_count && r == count)
                        s->count_cap = WALU_MIN(2 * s->count_cap, p->read_count);
        }
        rconn_close(&s->conn);
        return NULL;
}

/* Take a queued message, or the sticky error.  1 delivered, 0 nothing, <0 error. */
static int scanner_take(struct redis_scanner *s, wal_msg **ret, wal_error **reterr)
{
        int r = 0;
        pthread_mutex_lock(&s->lock);
        if (s->len > 0) {
                *ret = s->q[s->head];
                s->q[s->head] = NULL;
                s->head = (s->head + 1) % s->cap;
                s->len--;
                uint64_t limit = s->w->o->p.max_reply_bytes;
                uint64_t size = wal_msg_size(*ret);
                bool was_full = s->q_bytes >= limit;
                s->q_bytes -= size;
                if (s->len == s->cap / 2 || (was_full && s->q_bytes < limit))
                        pthread_cond_signal(&s->space);
                r = 1;
        } else if (s->err) {
                r = s->err;
                if (reterr && !*reterr)
                        *reterr = wal_error_copy(s->errobj);
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

static int redis_next(struct walimpls_scanner *b, int timeout_ms, wal_msg **ret,
                      wal_error **reterr)
{
        struct redis_scanner *s = scanner_from_base(b);
        uint64_t deadline = timeout_ms > 0 ? walu_monotonic_ns() / 1000000 + (uint64_t)timeout_ms : 0;
        for (;;) {
                if (atomic_load(&s->interrupted))
                        return -ECANCELED;
                uint64_t seq = walimpls_notifier_seq(&s->note);
                int r = scanner_take(s, ret, reterr);
                if (r != 0)
                        return r > 0 ? 0 : r;
                int wait = -1;
                if (timeout_ms == 0) {
                        wait = 0;
                } else if (timeout_ms > 0) {
                        uint64_t now = walu_monotonic_ns() / 1000000;
                        wait = now >= deadline ? 0 : (int)(deadline - now);
                }
                if (wait == 0) {
                        /* Drain first, then look again: a message queued after
                         * this look makes the fd readable again. */
                        walimpls_notifier_drain(&s->note);
                        r = scanner_take(s, ret, reterr);
                        if (r != 0)
                                return r > 0 ? 0 : r;
                        return -ETIMEDOUT;
                }
                r = walimpls_notifier_wait(&s->note, seq, wait);
                if (r == -ECANCELED)
                        return -ECANCELED;
        }
}

static void redis_interrupt(struct walimpls_scanner *b)
{
        struct redis_scanner *s = scanner_from_base(b);
        atomic_store(&s->interrupted, true);
        walimpls_notifier_interrupt(&s->note);
}

static int redis_scanner_fd(struct walimpls_scanner *b)
{
        return scanner_from_base(b)->note.efd;
}

static void scanner_free(struct redis_scanner *s)
{
        if (!s)
                return;
        for (size_t i = 0; i < s->len; i++)
                wal_msg_unref(s->q[(s->head + i) % s->cap]);
        free(s->q);
        wal_error_free(s->errobj);
        rconn_close(&s->conn);
        if (s->note.impl)
                walimpls_notifier_done(&s->note);
        if (s->stop_fd >= 0)
                close(s->stop_fd);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->space);
        walimpls_scanner_done(&s->base);
        free(s);
}

static void redis_scanner_close(struct walimpls_scanner *b)
{
        struct redis_scanner *s = scanner_from_base(b);
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_broadcast(&s->space);
        pthread_mutex_unlock(&s->lock);
        uint64_t one = 1;
        while (write(s->stop_fd, &one, sizeof(one)) < 0 && errno == EINTR)
                ;
        if (s->thread_running)
                pthread_join(s->thread, NULL);
        scanner_free(s);
}

static int redis_read(struct walimpls_wal *b, const struct walimpls_read_opts *opts,
                      struct walimpls_scanner **ret, wal_error **reterr)
{
        struct redis_wal *w = wal_from_base(b);
        if (!opts)
                return -EINVAL;
        struct redis_scanner *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->stop_fd = -1;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->space, NULL);
        int r = walimpls_scanner_init(&s->base, &redis_scanner_ops, b, opts->name);
        if (r < 0) {
                pthread_mutex_destroy(&s->lock);
                pthread_cond_destroy(&s->space);
                free(s);
                return r;
        }
        s->w = w;
        s->seen_lastgen = WAL_MSGID_NONE;
        s->count_cap = w->o->p.read_count;
        s->cap = opts->read_ahead ? opts->read_ahead : (size_t)w->o->p.read_count;
        s->q = calloc(s->cap, sizeof(*s->q));
        s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (!s->q || s->stop_fd < 0) {
                r = s->q ? -errno : -ENOMEM;
                goto fail;
        }
        r = walimpls_notifier_init(&s->note);
        if (r < 0)
                goto fail;
        r = rconn_connect(&s->conn, &w->o->p, RCONN_SCRIPTS_TRY, reterr);
        if (r < 0)
                goto fail;
        switch (opts->deliver.policy) {
        case WAL_DELIVER_ALL:
        case WAL_DELIVER_LATEST:
        case WAL_DELIVER_START_FROM:
        case WAL_DELIVER_START_AFTER: {
                if (opts->deliver.policy == WAL_DELIVER_ALL) {
                        s->after = WAL_MSGID(0, 0);
                        s->accept_trimmed = true;
                }
                if (opts->deliver.policy == WAL_DELIVER_START_FROM &&
                    !redis_id_pred(opts->deliver.id, &s->after))
                        s->after = WAL_MSGID(0, 0);
                if (opts->deliver.policy == WAL_DELIVER_START_AFTER)
                        s->after = opts->deliver.id;
                if ((opts->deliver.policy == WAL_DELIVER_START_FROM ||
                     opts->deliver.policy == WAL_DELIVER_START_AFTER) &&
                    wal_msgid_is_none(opts->deliver.id)) {
                        r = wal_error_set(reterr, -EINVAL, 0, "%s needs a message ID",
                                          wal_deliver_policy_name(opts->deliver.policy));
                        goto fail;
                }
                redisReply *rep = NULL;
                r = read_state(&s->conn, NULL, w->skey, &rep, reterr);
                if (r < 0)
                        goto fail;
                struct stream_state st;
                r = parse_state(w->skey, rep, &st, reterr);
                if (r == 0 && opts->deliver.policy == WAL_DELIVER_LATEST)
                        s->after = st.exists ? st.lastgen : WAL_MSGID(0, 0);
                /* ALL on a stream that holds entries starts at the first one
                 * retained now: a trim before the reader's first round is
                 * then -ERANGE, not a silent start further on.  An empty or
                 * missing stream keeps starting at whatever shows up. */
                if (r == 0 && opts->deliver.policy == WAL_DELIVER_ALL && st.exists &&
                    !wal_msgid_is_none(st.first) && redis_id_pred(st.first, &s->after))
                        s->accept_trimmed = false;
                if (r == 0)
                        r = check_state(s, &st, WAL_MSGID_NONE, 0, reterr);
                if (r == 0 && st.exists) {
                        s->seen_stream = true;
                        s->seen_lastgen = st.lastgen;
                }
                freeReplyObject(rep);
                if (r < 0)
                        goto fail;
                break;
        }
        default:
                r = wal_error_set(reterr, -EINVAL, 0, "deliver policy %d is not for backends",
                                  (int)opts->deliver.policy);
                goto fail;
        }
        r = -pthread_create(&s->thread, NULL, scanner_main, s);
        if (r < 0) {
                wal_error_set(reterr, r, 0, "cannot start the reader thread");
                goto fail;
        }
        s->thread_running = true;
        *ret = &s->base;
        return 0;
fail:
        wal_error_prefix(reterr, "redis: reading channel %s: ", w->base.channel);
        scanner_free(s);
        return r;
}

/* ---- Tables ---- */

static const struct walimpls_opener_ops redis_opener_ops = {
        .version = WALIMPLS_VERSION,
        .open = redis_open,
        .list_channels = redis_list_channels,
        .close = redis_opener_close,
};

static const struct walimpls_wal_ops redis_wal_ops = {
        .version = WALIMPLS_VERSION,
        .append = redis_append,
        .read = redis_read,
        .truncate = redis_truncate,
        .info = redis_info,
        .close = redis_wal_close,
};

static const struct walimpls_scanner_ops redis_scanner_ops = {
        .version = WALIMPLS_VERSION,
        .next = redis_next,
        .interrupt = redis_interrupt,
        .fd = redis_scanner_fd,
        .close = redis_scanner_close,
};

const struct walimpls_builder walimpls_redis = {
        .version = WALIMPLS_VERSION,
        .name = "redis",
        .description = "Redis Streams: a channel is a stream key; fencing by term in a Lua script",
        .caps = WALIMPLS_CAP_PERSISTENT | WALIMPLS_CAP_TRUNCATE | WALIMPLS_CAP_FENCING |
                WALIMPLS_CAP_LIST,
        .properties = redis_properties,
        .build = redis_build,
};

WAL_REGISTER_BACKEND(walimpls_redis);
