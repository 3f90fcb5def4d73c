/* SPDX-License-Identifier: MIT */
/*
 * tools/walctl/cmd-append.c: `walctl append CHANNEL`.
 *
 * Reads standard input in large chunks, cuts it into records at a delimiter
 * (newline unless -D says otherwise; --raw keeps all of it as one record) and
 * appends each with the asynchronous wal_append_take() (handed over, no
 * copy; wal_txn_append() in a transaction), keeping up to --window records
 * in flight, so the backend can batch (group commit) instead of
 * paying one round trip per line.
 *
 * In-flight records live in a ring of slots indexed by input number n (slot
 * n % window).  A completion callback (a libwal thread) fills its slot and
 * marks it done with a release store; the main thread retires slots strictly
 * in input order, printing the -J ack of each, so acks come out in input
 * order and only once durable, even if completions arrive out of order (a
 * retried append).  The main thread sleeps in poll() on standard input, the
 * signalfd and an eventfd; a callback writes the eventfd only when it
 * completes the very slot the main thread said it waits for (wait_for), so a
 * busy run makes no wake-up system calls.
 *
 * --txn wraps every record in one transaction committed at end of input.
 * Readers see nothing unless the commit succeeds; on an error or SIGINT/
 * SIGTERM the transaction is rolled back (and a crash leaves it uncommitted,
 * which readers never see either).  Its acks are printed after the commit.
 *
 * Errors: the first failed record stops input; records already in flight
 * finish and the acks of those that succeeded are still printed, in order.
 * The exit code is that of the first failure.  With -J, standard output
 * failing (the reader of the acks went away) stops input the same way, with
 * exit code 1, as SIGINT does.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <walimpls/walimpls.h>

#include "walctl.h"

#define READ_CHUNK (1u << 20)
#define WINDOW_DEFAULT 4096
#define WINDOW_MAX (1u << 20)

struct appender;

struct slot {
        struct appender *a;           /* the callback's context */
        uint64_t n;                   /* input number of the record in flight */
        atomic_int state;             /* 0 in flight, 1 done */
        int status;                   /* 0 or negative errno (written before state) */
        struct wal_msgid id;
        uint64_t tt;
};

struct ack {                          /* kept until the commit in --txn mode */
        struct wal_msgid id;
        uint64_t tt;
};

struct appender {
        /* options */
        const char *channel;          /* borrowed from argv */
        const char *vchannel;         /* borrowed, or NULL */
        const char **props;           /* "K=V" borrowed from argv */
        size_t n_props;
        char *delim;                  /* owned, decoded -D */
        size_t delim_len;
        bool raw, txn_mode, json;
        size_t window;                /* power of two */

        struct walctl *ctl;           /* borrowed */
        wal_opener *o;                /* borrowed */
        uint64_t max_bytes;           /* message.max_bytes */
        wal *w;                       /* owned; NULL until the channel is open */
        wal_txn *txn;                 /* owned until commit/rollback */
        const char *keepalive;        /* --txn: txn.keepalive as set (borrowed from the config) */
        struct slot *ring;            /* owned, window slots */
        uint64_t next;                /* input number of the next record */
        uint64_t head;                /* oldest record not retired */
        atomic_uint_fast64_t wait_for;/* slot the main thread sleeps on, or UINT64_MAX */
        int evfd;
        int sigfd;

        pthread_mutex_t err_lock;
        int first_status;             /* first failure (err_lock) */
        uint64_t first_n;
        wal_error *first_err;         /* owned (err_lock) */

        struct ack *acks;             /* --txn -J: every ack, owned */
        size_t n_acks, cap_acks;
        uint64_t written;             /* records acknowledged */
        uint64_t unacked;             /* records retired with an error */
        atomic_bool closing;          /* our own wal_close() after a signal has begun:
                                         what fails now is not a failure of the input */
        bool interrupted;
        bool acks_lost;               /* -J: standard output failed; input stopped */
};

/* ---- Completions ---- */

static void note_failure(struct appender *a, uint64_t n, int status, const wal_error *err)
{
        pthread_mutex_lock(&a->err_lock);
        if (a->first_status == 0 || n < a->first_n) {
                a->first_status = status;
                a->first_n = n;
                wal_error_free(a->first_err);
                a->first_err = wal_error_copy(err);
        }
        pthread_mutex_unlock(&a->err_lock);
}

static int failed(struct appender *a)
{
        pthread_mutex_lock(&a->err_lock);
        int s = a->first_status;
        pthread_mutex_unlock(&a->err_lock);
        return s;
}

static void on_done(void *userdata, int status, const wal_msg *msg, const wal_error *err)
{
        struct slot *s = userdata;
        struct appender *a = s->a;
        uint64_t n = s->n;
        s->status = status;
        if (status == 0) {
                s->id = wal_msg_id(msg);
                s->tt = wal_msg_time_tick(msg);
        } else if (!atomic_load(&a->closing)) {
                note_failure(a, n, status, err);
        }
        /* seq_cst, not release: this store and the load of wait_for below
         * pair with the main thread's store of wait_for and load of state
         * (wait_event); with a weaker store the two loads can both miss and
         * the main thread sleeps on a completed slot. */
        atomic_store(&s->state, 1);
        uint64_t want = n;
        if (atomic_load(&a->wait_for) == n &&
            atomic_compare_exchange_strong(&a->wait_for, &want, UINT64_MAX)) {
                uint64_t one = 1;
                ssize_t r = write(a->evfd, &one, sizeof(one));
                (void)r; /* the counter cannot overflow: it is drained each wake */
        }
}

/* ---- Acks and retirement ---- */

static void print_ack(const struct appender *a, uint64_t n, struct wal_msgid id, uint64_t tt)
{
        char text[WAL_MSGID_STRLEN];
        if (wal_msgid_format(id, text, sizeof(text)) < 0)
                snprintf(text, sizeof(text), "none");
        walctl_out_puts("{\"v\":1,\"channel\":");
        walctl_json_cstr(a->channel);
        walctl_out_printf(",\"id\":\"%s\",\"tt\":%" PRIu64 ",\"n\":%" PRIu64 "}\n", text, tt,
                          n);
}

static int keep_ack(struct appender *a, struct wal_msgid id, uint64_t tt)
{
        if (a->n_acks == a->cap_acks) {
                size_t cap = a->cap_acks ? a->cap_acks * 2 : 1024;
                struct ack *na = realloc(a->acks, cap * sizeof(*na));
                if (!na)
                        return -ENOMEM;
                a->acks = na;
                a->cap_acks = cap;
        }
        a->acks[a->n_acks++] = (struct ack){ id, tt };
        return 0;
}

/* Retire every completed slot at the head, in order.  @returns 0 or -ENOMEM. */
static int retire(struct appender *a)
{
        bool printed = false;
        while (a->head < a->next) {
                struct slot *s = &a->ring[a->head & (a->window - 1)];
                if (!atomic_load_explicit(&s->state, memory_order_acquire))
                        break;
                if (s->status == 0) {
                        if (a->txn_mode && a->json) {
                                if (keep_ack(a, s->id, s->tt) < 0)
                                        return -ENOMEM;
                        } else if (a->json) {
                                print_ack(a, a->head, s->id, s->tt);
                                printed = true;
                        }
                        if (!a->txn_mode)
                                a->written++;
                } else {
                        a->unacked++;
                }
                atomic_store_explicit(&s->state, 0, memory_order_relaxed);
                a->head++;
        }
        if (printed)
                walctl_out_flush();
        return 0;
}

/*
 * Sleep until the head slot completes, a signal arrives or (when @stdin_too)
 * standard input is readable.  @returns a bitmask: 1 input, 2 signal.
 */
static int wait_event(struct appender *a, bool stdin_too)
{
        struct pollfd fds[3] = {
                { .fd = a->evfd, .events = POLLIN },
                { .fd = a->sigfd, .events = POLLIN },
                { .fd = STDIN_FILENO, .events = POLLIN },
        };
        bool armed = false;
        if (a->head < a->next) {
                atomic_store(&a->wait_for, a->head);
                armed = true;
                if (atomic_load(&a->ring[a->head & (a->window - 1)].state)) {
                        atomic_store(&a->wait_for, UINT64_MAX);
                        return 0;
                }
        } else if (!stdin_too) {
                return 0;
        }
        int res = 0;
        int r = poll(fds, stdin_too ? 3 : 2, -1);
        if (armed)
                atomic_store(&a->wait_for, UINT64_MAX);
        if (r > 0) {
                if (fds[0].revents) {
                        uint64_t v;
                        ssize_t n = read(a->evfd, &v, sizeof(v));
                        (void)n;
                }
                if (fds[1].revents && walctl_signal_pending(a->sigfd))
                        res |= 2;
                if (stdin_too && fds[2].revents)
                        res |= 1;
        }
        return res;
}

/* ---- Submitting ---- */

static int make_msg(struct appender *a, const void *p, size_t len, wal_msg **ret)
{
        wal_msg *m = NULL;
        int r = wal_msg_new(WAL_MSG_DATA, p, len, &m);
        for (size_t i = 0; r == 0 && i < a->n_props; i++) {
                const char *eq = strchr(a->props[i], '=');
                char key[256];
                size_t klen = (size_t)(eq - a->props[i]);
                memcpy(key, a->props[i], klen);
                key[klen] = '\0';
                r = wal_msg_set_prop(m, key, eq + 1);
        }
        if (r == 0 && a->vchannel && !a->txn_mode)
                r = wal_msg_set_vchannel(m, a->vchannel);
        if (r < 0) {
                wal_msg_unref(m);
                return r;
        }
        *ret = m;
        return 0;
}

/*
 * An expired --txn (-ETIME) means the input paused longer than the
 * keepalive: say so, and which property to raise, instead of the bare
 * "transaction N expired".  Replaces *@err (owned) when it does.
 */
static void explain_expiry(const struct appender *a, int r, wal_error **err)
{
        if (r != -ETIME || !a->txn_mode)
                return;
        wal_error *e = wal_error_new(r, 0, "%s: the input was idle longer than txn.keepalive "
                                     "(%s; raise it with -X txn.keepalive=DURATION); nothing "
                                     "of the transaction is visible to readers",
                                     *err ? wal_error_message(*err) : "transaction expired",
                                     a->keepalive ? a->keepalive : "?");
        if (e) {
                wal_error_free(*err);
                *err = e;
        }
}

/* Begin the --txn transaction.  @returns 0 or an exit code. */
static int begin_txn(struct appender *a)
{
        if (!a->txn_mode)
                return 0;
        wal_error *err = NULL;
        a->keepalive = wal_config_get(a->ctl->cfg, "txn.keepalive");
        int r = wal_txn_begin(a->w, a->vchannel, 0, &a->txn, &err);
        if (r < 0) {
                char what[300];
                snprintf(what, sizeof(what), "append %s: transaction", a->channel);
                return walctl_fail(what, r, err);
        }
        return 0;
}

/*
 * Create and open the channel, and begin the --txn transaction.  A channel
 * that does not exist yet is created only here, once the first record has
 * passed the size check or input ended with none, so that an append refused
 * outright leaves no empty channel behind.  @returns 0 or an exit code.
 */
static int open_channel(struct appender *a)
{
        int rc = walctl_open_rw(a->ctl, a->o, a->channel, WALCTL_CREATE, &a->w);
        return rc ? rc : begin_txn(a);
}

/* Append one record.  @returns 0, or an exit code after printing the error. */
static int submit(struct appender *a, const void *p, size_t len)
{
        while (a->next - a->head >= a->window) {
                if (retire(a) < 0)
                        return walctl_fail(a->channel, -ENOMEM, NULL);
                if (a->next - a->head >= a->window && (wait_event(a, false) & 2)) {
                        a->interrupted = true;
                        return 0;
                }
        }
        wal_msg *m = NULL;
        int r = make_msg(a, p, len, &m);
        if (r < 0)
                return walctl_fail(a->channel, r, NULL);
        uint64_t n = a->next;
        if (!a->w) {
                /* The one check of the validate interceptor that walctl's
                 * options cannot make before any input: made here, before
                 * the channel exists, in the interceptor's words. */
                size_t size = wal_msg_size(m);
                if (size > a->max_bytes) {
                        wal_msg_unref(m);
                        char what[300];
                        snprintf(what, sizeof(what), "append %s: record %" PRIu64, a->channel, n);
                        walctl_error(what, "message of %zu bytes exceeds message.max_bytes "
                                     "(%" PRIu64 ")", size, a->max_bytes);
                        return walctl_exit_code(-EMSGSIZE);
                }
                r = open_channel(a);
                if (r) {
                        wal_msg_unref(m);
                        return r;
                }
        }
        struct slot *s = &a->ring[n & (a->window - 1)];
        s->a = a;
        s->n = n;
        s->status = 0;
        atomic_store_explicit(&s->state, 0, memory_order_relaxed);
        for (;;) {
                wal_error *err = NULL;
                /* Outside a transaction the record is handed over (no
                 * copy); on success the reference is the library's. */
                r = a->txn ? wal_txn_append(a->txn, m, on_done, s, &err)
                           : wal_append_take(a->w, m, on_done, s, &err);
                if (r == 0 && !a->txn)
                        m = NULL;
                if (r == -EAGAIN && a->head < a->next) {
                        /* Backpressure: the write-ahead cache is full; let one finish. */
                        wal_error_free(err);
                        if (wait_event(a, false) & 2) {
                                wal_msg_unref(m);
                                a->interrupted = true;
                                return 0;
                        }
                        if (retire(a) < 0) {
                                wal_msg_unref(m);
                                return walctl_fail(a->channel, -ENOMEM, NULL);
                        }
                        continue;
                }
                if (r < 0) {
                        wal_msg_unref(m);
                        char what[300];
                        snprintf(what, sizeof(what), "append %s: record %" PRIu64, a->channel, n);
                        explain_expiry(a, r, &err);
                        return walctl_fail(what, r, err);
                }
                break;
        }
        wal_msg_unref(m);
        a->next++;
        return 0;
}

/* ---- Input ---- */

/* Find the delimiter in @p..@p+len; @returns its offset or -1. */
static ssize_t find_delim(const struct appender *a, const char *p, size_t len)
{
        const char *d = a->delim_len == 1 ? memchr(p, a->delim[0], len)
                                          : memmem(p, len, a->delim, a->delim_len);
        return d ? d - p : -1;
}

/*
 * Read standard input to the end (or a signal, or an error) and submit its
 * records.  @returns 0 or an exit code.
 */
static int pump(struct appender *a)
{
        size_t cap = READ_CHUNK, len = 0, scan = 0;
        char *buf = malloc(cap);
        if (!buf)
                return walctl_fail(a->channel, -ENOMEM, NULL);
        int rc = 0;
        bool eof = false;
        while (!eof && !rc && !a->interrupted && !failed(a)) {
                if (retire(a) < 0) {
                        rc = walctl_fail(a->channel, -ENOMEM, NULL);
                        break;
                }
                if (a->json && walctl_out_error()) {
                        /* Nobody reads the acks any more (`append -J | head`):
                         * stop taking input, as a reader that went away
                         * stops `read`. */
                        a->acks_lost = true;
                        break;
                }
                int ev = wait_event(a, true);
                if (ev & 2) {
                        a->interrupted = true;
                        break;
                }
                if (!(ev & 1))
                        continue;
                if (len == cap) {
                        size_t ncap = cap * 2;
                        char *nb = realloc(buf, ncap);
                        if (!nb) {
                                rc = walctl_fail(a->channel, -ENOMEM, NULL);
                                break;
                        }
                        buf = nb;
                        cap = ncap;
                }
                ssize_t got = read(STDIN_FILENO, buf + len, cap - len);
                if (got < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        walctl_error("standard input", "%s", strerror(errno));
                        rc = WALCTL_EXIT_IOERR;
                        break;
                }
                if (got == 0)
                        eof = true;
                len += (size_t)got;
                if (a->raw)
                        continue;
                /* Cut every complete record; keep the partial tail. */
                size_t start = 0;
                for (;;) {
                        /* A delimiter may straddle the old and new bytes. */
                        size_t from = scan > a->delim_len - 1 ? scan - (a->delim_len - 1) : 0;
                        if (from < start)
                                from = start;
                        ssize_t off = find_delim(a, buf + from, len - from);
                        if (off < 0) {
                                scan = len;
                                break;
                        }
                        size_t end = from + (size_t)off;
                        rc = submit(a, buf + start, end - start);
                        if (rc || a->interrupted || failed(a))
                                break;
                        start = end + a->delim_len;
                        scan = start;
                }
                if (rc || a->interrupted)
                        break;
                if (start > 0) {
                        memmove(buf, buf + start, len - start);
                        len -= start;
                        scan -= start;
                }
        }
        /* The last record needs no delimiter after it; --raw is all of it. */
        if (!rc && eof && !a->interrupted && !failed(a) && (a->raw || len > 0))
                rc = submit(a, buf, len);
        free(buf);
        return rc;
}

/* ---- Options ---- */

/* Decode the escapes of -D: \n \t \r \0 \\ \xHH.  @returns 0 or -EINVAL. */
static int decode_delim(const char *s, char **ret, size_t *ret_len)
{
        size_t n = 0;
        char *d = malloc(strlen(s) + 1);
        if (!d)
                return -ENOMEM;
        for (const char *p = s; *p; p++) {
                if (*p != '\\') {
                        d[n++] = *p;
                        continue;
                }
                p++;
                switch (*p) {
                case 'n': d[n++] = '\n'; break;
                case 't': d[n++] = '\t'; break;
                case 'r': d[n++] = '\r'; break;
                case '0': d[n++] = '\0'; break;
                case '\\': d[n++] = '\\'; break;
                case 'x': {
                        char hex[3] = { 0 };
                        char *end;
                        if (!p[1] || !p[2])
                                goto bad;
                        hex[0] = p[1];
                        hex[1] = p[2];
                        long v = strtol(hex, &end, 16);
                        if (*end)
                                goto bad;
                        d[n++] = (char)v;
                        p += 2;
                        break;
                }
                default:
                        goto bad;
                }
        }
        if (n == 0)
                goto bad;
        *ret = d;
        *ret_len = n;
        return 0;
bad:
        free(d);
        return -EINVAL;
}

enum { OPT_RAW = 0x100, OPT_VCHANNEL, OPT_TXN, OPT_WINDOW };

static int run(struct walctl *w, int argc, char **argv)
{
        static const struct option longopts[] = {
                { "delimiter", required_argument, NULL, 'D' },
                { "raw", no_argument, NULL, OPT_RAW },
                { "header", required_argument, NULL, 'H' },
                { "property", required_argument, NULL, 'H' },
                { "vchannel", required_argument, NULL, OPT_VCHANNEL },
                { "txn", no_argument, NULL, OPT_TXN },
                { "json", no_argument, NULL, 'J' },
                { "window", required_argument, NULL, OPT_WINDOW },
                { NULL, 0, NULL, 0 },
        };
        struct appender a = { .window = WINDOW_DEFAULT, .evfd = -1, .sigfd = -1 };
        const char *delim_text = NULL;
        int rc = 0;
        for (;;) {
                int c = walctl_getopt("append", argc, argv, "D:H:J", longopts);
                if (c == -1)
                        break;
                switch (c) {
                case 'D':
                        delim_text = optarg;
                        break;
                case OPT_RAW:
                        a.raw = true;
                        break;
                case 'H': {
                        const char *eq = strchr(optarg, '=');
                        if (!eq || eq == optarg) {
                                rc = walctl_usage_error("append -H", "expected KEY=VALUE, got '%s'",
                                                        optarg);
                                goto out;
                        }
                        if (optarg[0] == '_') {
                                rc = walctl_usage_error("append -H", "property key '%.*s' is "
                                                        "reserved (keys starting with '_' "
                                                        "belong to libwal)",
                                                        (int)(eq - optarg), optarg);
                                goto out;
                        }
                        if (eq - optarg >= 256) {
                                rc = walctl_usage_error("append -H", "property key longer "
                                                        "than 255 bytes");
                                goto out;
                        }
                        const char **np = realloc(a.props, (a.n_props + 1) * sizeof(*np));
                        if (!np) {
                                rc = walctl_fail("append", -ENOMEM, NULL);
                                goto out;
                        }
                        a.props = np;
                        a.props[a.n_props++] = optarg;
                        break;
                }
                case OPT_VCHANNEL:
                        if (!*optarg) {
                                rc = walctl_usage_error("append --vchannel", "empty name");
                                goto out;
                        }
                        if (!walimpls_channel_name_valid(optarg)) {
                                rc = walctl_usage_error("append --vchannel", "\"%s\" is not "
                                                        "a valid name (%s)", optarg,
                                                        WALCTL_NAME_RULE);
                                goto out;
                        }
                        a.vchannel = optarg;
                        break;
                case OPT_TXN:
                        a.txn_mode = true;
                        break;
                case 'J':
                        a.json = true;
                        break;
                case OPT_WINDOW: {
                        uint64_t v;
                        if (walctl_parse_u64(optarg, 1, WINDOW_MAX, &v) < 0) {
                                rc = walctl_usage_error("append --window", "'%s' is not a "
                                                        "count in 1..%u", optarg, WINDOW_MAX);
                                goto out;
                        }
                        size_t p2 = 1;
                        while (p2 < v)
                                p2 <<= 1;
                        a.window = p2;
                        break;
                }
                default:
                        rc = WALCTL_EXIT_USAGE;
                        goto out;
                }
        }
        if (optind >= argc) {
                rc = walctl_usage_error("append", "no channel given");
                goto out;
        }
        if (walctl_no_operands("append", argc, argv, optind + 1)) {
                rc = WALCTL_EXIT_USAGE;
                goto out;
        }
        a.channel = argv[optind];
        if (a.raw && delim_text) {
                rc = walctl_usage_error("append", "--raw and -D exclude each other");
                goto out;
        }
        int r = decode_delim(delim_text ? delim_text : "\\n", &a.delim, &a.delim_len);
        if (r < 0) {
                rc = walctl_usage_error("append -D", "'%s' is not a delimiter (text, with "
                                        "the escapes \\n \\t \\r \\0 \\\\ \\xHH)",
                                        delim_text);
                goto out;
        }

        a.ring = calloc(a.window, sizeof(*a.ring));
        a.evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (!a.ring || a.evfd < 0) {
                rc = walctl_fail("append", a.ring ? -errno : -ENOMEM, NULL);
                goto out;
        }
        a.sigfd = walctl_signal_fd();
        if (a.sigfd < 0) {
                rc = walctl_fail("append: signals", a.sigfd, NULL);
                goto out;
        }
        atomic_init(&a.wait_for, UINT64_MAX);
        atomic_init(&a.closing, false);
        pthread_mutex_init(&a.err_lock, NULL);

        wal_opener *o = NULL;
        rc = walctl_opener(w, &o);
        if (rc)
                goto out_lock;
        a.ctl = w;
        a.o = o;
        r = wal_config_get_size(w->cfg, "message.max_bytes", &a.max_bytes);
        if (r < 0) {
                rc = walctl_fail("append: message.max_bytes", r, NULL);
                goto out_opener;
        }
        /* An existing channel is opened now; a new one once its first
         * record is known to fit (open_channel). */
        rc = walctl_open_rw(w, o, a.channel, WALCTL_CREATE_LATER, &a.w);
        if (rc)
                goto out_opener;
        if (a.w)
                rc = begin_txn(&a);
        if (rc)
                goto out_wal;

        rc = pump(&a);
        /* Input ended with no record: the channel is still created, as
         * `walctl append C < /dev/null` always did. */
        if (!rc && !a.w && !a.interrupted)
                rc = open_channel(&a);

        /* Let everything in flight finish; print the acks in order.  After
         * SIGINT or SIGTERM, wait no more: a record the backend keeps
         * retrying (a server that went away) would never let walctl exit.
         * Closing the wal ends what is still in flight instead: the
         * backend finishes it or it completes with -ECANCELED. */
        while (a.head < a.next && !a.interrupted) {
                if (retire(&a) < 0 && !rc)
                        rc = walctl_fail(a.channel, -ENOMEM, NULL);
                if (a.head < a.next && (wait_event(&a, false) & 2))
                        a.interrupted = true;
        }
        bool closed_early = false;
        if (a.interrupted && a.head < a.next) {
                atomic_store(&a.closing, true);
                wal_close(a.w);
                a.w = NULL;
                closed_early = true;
                /* Every callback ran before wal_close() returned. */
                if (retire(&a) < 0 && !rc)
                        rc = walctl_fail(a.channel, -ENOMEM, NULL);
        }
        int st = failed(&a);
        if (a.txn) {
                wal_error *err = NULL;
                char what[300];
                snprintf(what, sizeof(what), "append %s: transaction", a.channel);
                if (rc || st || a.interrupted) {
                        /* After the early close this only releases the
                         * transaction (-ESHUTDOWN): never committed, it is
                         * invisible to readers, as after a crash. */
                        r = wal_txn_rollback(a.txn, &err);
                        a.txn = NULL;
                        if (r < 0 && !closed_early)
                                walctl_fail(what, r, err);
                        else if (!rc && !st)
                                walctl_error(what, "interrupted; %s: none of "
                                             "its %" PRIu64 " records is visible to readers",
                                             closed_early ? "not committed" : "rolled back",
                                             a.next);
                        if (closed_early)
                                wal_error_free(err);
                } else {
                        r = wal_txn_commit(a.txn, NULL, &err);
                        a.txn = NULL;
                        if (r < 0) {
                                explain_expiry(&a, r, &err);
                                rc = walctl_fail(what, r, err);
                        } else {
                                a.written = a.next;
                                for (size_t i = 0; i < a.n_acks; i++)
                                        print_ack(&a, i, a.acks[i].id, a.acks[i].tt);
                        }
                }
        }
        if (!rc && st) {
                char what[300];
                snprintf(what, sizeof(what), "append %s: record %" PRIu64, a.channel,
                         a.first_n);
                pthread_mutex_lock(&a.err_lock);
                rc = walctl_fail(what, st, a.first_err);
                a.first_err = NULL;
                pthread_mutex_unlock(&a.err_lock);
        }
        if (!rc && a.acks_lost) {
                walctl_error("append", "standard output closed; stopped reading input after "
                             "%" PRIu64 " records (every one acknowledged is durable)",
                             a.written);
                rc = WALCTL_EXIT_FAILURE;
        }
        if (!rc && a.interrupted) {
                uint64_t lost = a.unacked + (a.next - a.head);
                if (!a.txn_mode && lost)
                        walctl_error("append", "interrupted after %" PRIu64 " records (every "
                                     "one acknowledged is durable); %" PRIu64 " in flight not "
                                     "acknowledged (they may or may not be in the log)",
                                     a.written, lost);
                else if (!a.txn_mode)
                        walctl_error("append", "interrupted after %" PRIu64 " records (every "
                                     "one acknowledged is durable)", a.written);
                rc = WALCTL_EXIT_FAILURE;
        }
        int orc = walctl_out_finish("append");
        if (!rc)
                rc = orc;
        if (!rc && a.written > 0) {
                /* The memory backend (or a plugin like it) forgets everything
                 * when walctl exits: say so, since status 0 suggests otherwise. */
                const char *bname = wal_opener_backend(o);
                const struct walimpls_builder *b = NULL;
                if (bname && wal_registry_find(bname, &b, NULL) == 0 && b &&
                    !(b->caps & WALIMPLS_CAP_PERSISTENT))
                        walctl_warn(w, "append %s: the %s backend keeps records only in the "
                                    "process that wrote them: the %" PRIu64 " appended are "
                                    "gone when walctl exits", a.channel, bname, a.written);
        }
out_wal:
        wal_close(a.w);
out_opener:
        wal_opener_close(o);
out_lock:
        pthread_mutex_destroy(&a.err_lock);
        wal_error_free(a.first_err);
out:
        if (a.evfd >= 0)
                close(a.evfd);
        if (a.sigfd >= 0)
                close(a.sigfd);
        free(a.ring);
        free(a.acks);
        free(a.delim);
        free(a.props);
        return rc;
}

const struct walctl_command walctl_cmd_append = {
        .name = "append",
        .args = "CHANNEL",
        .summary = "append records read from standard input",
        .help = "Append records read from standard input to CHANNEL (created if it does\n"
                "not exist), one per line.  Each record is durable when walctl exits 0.\n"
                "\n"
                "Options:\n"
                "  -D, --delimiter DELIM  cut records at DELIM instead of a newline; DELIM\n"
                "                         is text with the escapes \\n \\t \\r \\0 \\\\ \\xHH\n"
                "                         (a trailing delimiter adds no empty record)\n"
                "      --raw              all of standard input is one record\n"
                "  -H, --property KEY=VALUE\n"
                "                         add a property to every record; repeatable\n"
                "                         (keys starting with '_' are reserved)\n"
                "      --vchannel V       the virtual channel of every record\n"
                "      --txn              append every record in one transaction, committed\n"
                "                         at end of input: readers see all or nothing (an\n"
                "                         error or SIGINT rolls it back).  An idle input\n"
                "                         longer than txn.keepalive (-X) expires it\n"
                "  -J, --json             print one JSON ack per record, in input order,\n"
                "                         once the record is durable:\n"
                "                         {\"v\":1,\"channel\":C,\"id\":ID,\"tt\":TICK,\"n\":INDEX}\n"
                "                         (with --txn: after the commit).  If standard\n"
                "                         output fails (`| head`), input stops: exit 1\n"
                "      --window N         records in flight at once (default 4096)\n"
                "\n"
                "Without --term the channel is opened at the term its owner holds (1 for a\n"
                "new channel), so an append joins the current writer instead of fencing it.\n"
                "\n"
                "Examples:\n"
                "  seq 3 | walctl append orders\n"
                "  printf 'a\\0b\\0' | walctl append -D '\\0' -H source=cli orders\n"
                "  walctl append --raw blobs < picture.png\n"
                "  walctl append -J --txn orders < batch.txt\n",
        .flags = WALCTL_CMD_USES_BACKEND,
        .run = run,
};
