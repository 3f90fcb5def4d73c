/* SPDX-License-Identifier: MIT */
/*
 * tools/walctl/cmd-read.c: `walctl read CHANNEL`.
 *
 * One scanner, one loop: take what wal_scanner_next(s, 0) has, and when it
 * has nothing, flush standard output and poll the scanner's descriptor, the
 * signalfd (SIGINT/SIGTERM end the read with 0) and standard output itself
 * (POLLERR there means the reader of our pipe went away, so `read -f | head`
 * ends at once even when no record comes).
 *
 * Where the end is.  Without -f the read stops at the end of the log as it
 * was when the read began: the last ID wal_info() reported.  The scanner is
 * opened without a filter and walctl filters (type, vchannel) itself, so
 * every message up to that ID passes through the loop and the end is seen
 * even when the last message is one walctl does not print (a time tick).
 * Records the scanner consumes without delivering (a rolled-back
 * transaction, a fenced writer's straggler) can hide it, so whenever the
 * scanner has nothing at hand walctl asks it whether its position (the
 * last record it consumed, delivered or dropped: wal_scanner_position())
 * reached that ID; if so the read ends there.  If not, and nothing comes
 * for IDLE_END_MS, walctl looks whether the log holds any record after
 * that position up to the ID (behind(), a wal_replay() of the raw records,
 * without judging what the scanner would make of them): if it does, the
 * scanner has not consumed it yet and the read goes on waiting (a slow or
 * stalled backend, a scanner that is about to fail), for at most
 * STALL_END_MS without news before it fails with status 69; if it holds
 * none (the ID was deleted), the read ends.  A read that starts at or
 * after that ID (`--after LAST`, the resume of a caught-up reader) ends at
 * once without a scanner; one that starts after it (-o or --after an ID
 * the channel does not have yet) also warns.
 *
 * Positions.  The position is the ID of the last message taken from the
 * scanner, printed or filtered out (not the scanner's own position, which
 * may be past the bodies of a transaction not committed yet); `read --after POS` with the same filters
 * continues with the next one, nothing lost or repeated.  Before any message
 * it is where the read started: "beginning", the --after ID, the ID just
 * before the -o ID (a 128-bit decrement: IDs are ordered pairs), or for
 * -o end the last ID at the start.  A committed transaction arrives as one
 * WAL_MSG_TXN unit at its commit's ID; walctl prints its bodies one record
 * each and counts the unit once for -c, so a count never splits it.
 *
 * JSON (schema v1, WALCTL.md): payloads that are not valid UTF-8 go as
 * "payload_b64"; a property whose key or value is not valid UTF-8 goes in
 * "props_b64" with both base64-encoded, and such a vchannel as
 * "vchannel_b64", so every line is valid JSON and nothing is lost.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <walimpls/walimpls.h>

#include "walctl.h"

#define IDLE_END_MS 2000
#define STALL_END_MS 60000

enum format { FMT_TEXT, FMT_JSON, FMT_RAW };

struct reader {
        const char *channel;          /* borrowed from argv */
        enum format format;
        const char *vchannel;         /* borrowed, or NULL */
        uint32_t types;               /* WAL_FILTER_TYPE bits to print */
        uint64_t count;               /* 0: no limit */
        bool follow, show_position;

        struct wal_msgid position;    /* last message taken, or the start */
        bool at_beginning;            /* nothing taken, started at the beginning */
        bool position_known;
        uint64_t printed;             /* units printed (for -c) */

        wal_msg **tail;               /* -o -N: the last N units, a ring (owned refs) */
        uint64_t tail_n, tail_len, tail_pos;
};

/* ---- Printing ---- */

static void json_bytes_field(const char *name, const void *p, size_t len)
{
        if (walctl_utf8_valid(p, len)) {
                walctl_out_printf(",\"%s\":", name);
                walctl_json_string(p, len);
        } else {
                walctl_out_printf(",\"%s_b64\":", name);
                walctl_base64(p, len);
        }
}

static void json_props(const wal_msg *m)
{
        size_t n = wal_msg_prop_count(m);
        bool any_bad = false;
        walctl_out_puts(",\"props\":{");
        bool first = true;
        for (size_t i = 0; i < n; i++) {
                const char *k, *v;
                if (wal_msg_prop_at(m, i, &k, &v) < 0)
                        continue;
                if (!walctl_utf8_valid(k, strlen(k)) || !walctl_utf8_valid(v, strlen(v))) {
                        any_bad = true;
                        continue;
                }
                if (!first)
                        walctl_out_putc(',');
                first = false;
                walctl_json_cstr(k);
                walctl_out_putc(':');
                walctl_json_cstr(v);
        }
        walctl_out_putc('}');
        if (!any_bad)
                return;
        walctl_out_puts(",\"props_b64\":{");
        first = true;
        for (size_t i = 0; i < n; i++) {
                const char *k, *v;
                if (wal_msg_prop_at(m, i, &k, &v) < 0)
                        continue;
                if (walctl_utf8_valid(k, strlen(k)) && walctl_utf8_valid(v, strlen(v)))
                        continue;
                if (!first)
                        walctl_out_putc(',');
                first = false;
                walctl_base64(k, strlen(k));
                walctl_out_putc(':');
                walctl_base64(v, strlen(v));
        }
        walctl_out_putc('}');
}

/*
 * One JSON line.  @m is the record; @unit the transaction it belongs to
 * (NULL if none), whose ID, tick and term stand in for a body's missing ones.
 */
static void print_json(const struct reader *rd, const wal_msg *m, const wal_msg *unit)
{
        struct wal_msgid id = wal_msg_id(m);
        uint64_t tt = wal_msg_time_tick(m);
        int64_t term = wal_msg_term(m);
        if (unit) {
                if (wal_msgid_is_none(id))
                        id = wal_msg_id(unit);
                if (!tt)
                        tt = wal_msg_time_tick(unit);
                if (!term)
                        term = wal_msg_term(unit);
        }
        char text[WAL_MSGID_STRLEN];
        if (wal_msgid_format(id, text, sizeof(text)) < 0)
                snprintf(text, sizeof(text), "none");
        const char *type = wal_msg_type_name(wal_msg_type(m));
        walctl_out_puts("{\"v\":1,\"channel\":");
        walctl_json_cstr(rd->channel);
        walctl_out_printf(",\"id\":\"%s\",\"tt\":%" PRIu64 ",\"term\":%" PRId64
                          ",\"type\":\"%s\"",
                          text, tt, term, type ? type : "unknown");
        if (unit)
                walctl_out_printf(",\"txn\":%" PRIu64, wal_msg_txn_id(unit));
        const char *vc = wal_msg_vchannel(m);
        if (!vc && unit)
                vc = wal_msg_vchannel(unit);
        if (vc)
                json_bytes_field("vchannel", vc, strlen(vc));
        json_props(m);
        size_t len = 0;
        const void *p = wal_msg_payload(m, &len);
        json_bytes_field("payload", p ? p : "", len);
        walctl_out_puts("}\n");
}

static void print_one(const struct reader *rd, const wal_msg *m, const wal_msg *unit)
{
        size_t len = 0;
        const void *p;
        switch (rd->format) {
        case FMT_TEXT:
                p = wal_msg_payload(m, &len);
                walctl_out_write(p, len);
                walctl_out_putc('\n');
                break;
        case FMT_RAW:
                p = wal_msg_payload(m, &len);
                walctl_out_write(p, len);
                break;
        case FMT_JSON:
                print_json(rd, m, unit);
                break;
        }
}

static void print_unit(const struct reader *rd, const wal_msg *m)
{
        if (wal_msg_type(m) != WAL_MSG_TXN) {
                print_one(rd, m, NULL);
                return;
        }
        size_t n = wal_msg_txn_body_count(m);
        for (size_t i = 0; i < n; i++)
                print_one(rd, wal_msg_txn_body_at(m, i), m);
}

/* ---- Selection ---- */

static bool selected(const struct reader *rd, const wal_msg *m)
{
        if (!(rd->types & WAL_FILTER_TYPE(wal_msg_type(m))))
                return false;
        if (rd->vchannel) {
                /* Strictly V: unlike the library's filter, which also
                 * delivers records of no vchannel (said in --help and
                 * walctl.1). */
                const char *vc = wal_msg_vchannel(m);
                if (!vc || strcmp(vc, rd->vchannel) != 0)
                        return false;
        }
        return true;
}

/* Keep @m (a reference is taken) among the last tail_n units. */
static void tail_push(struct reader *rd, wal_msg *m)
{
        size_t i = (size_t)((rd->tail_pos + rd->tail_len) % rd->tail_n);
        if (rd->tail_len == rd->tail_n) {
                wal_msg_unref(rd->tail[rd->tail_pos]);
                rd->tail[rd->tail_pos] = wal_msg_ref(m);
                rd->tail_pos = (rd->tail_pos + 1) % rd->tail_n;
        } else {
                rd->tail[i] = wal_msg_ref(m);
                rd->tail_len++;
        }
}

/* Print the ring and empty it; @returns true when -c is satisfied.  The
 * units after the one that satisfied -c were read but not printed, so the
 * position (--show-position) goes back to that unit. */
static bool tail_flush(struct reader *rd)
{
        bool done = false;
        for (uint64_t k = 0; k < rd->tail_len; k++) {
                wal_msg *m = rd->tail[(rd->tail_pos + k) % rd->tail_n];
                if (!done)
                        print_unit(rd, m);
                if (!done && rd->count && ++rd->printed >= rd->count) {
                        done = true;
                        rd->position = wal_msg_id(m);
                }
                wal_msg_unref(m);
        }
        rd->tail_len = 0;
        rd->tail_pos = 0;
        rd->tail_n = 0;
        return done;
}

/* The read is at its end, or idle: a tail (-n, *@tailing) is printed now,
 * once.  @returns true when the read stops here: -c is satisfied, or there
 * is no --follow. */
static bool at_end(struct reader *rd, bool *tailing)
{
        if (*tailing) {
                *tailing = false;
                if (tail_flush(rd))
                        return true;
        }
        return !rd->follow;
}

/* ---- Positions ---- */

static struct wal_msgid msgid_pred(struct wal_msgid id)
{
        if (id.lo > 0)
                return WAL_MSGID(id.hi, id.lo - 1);
        return WAL_MSGID(id.hi - 1, UINT64_MAX);
}

static void print_position(const struct reader *rd)
{
        if (!rd->position_known)
                return;
        if (rd->at_beginning) {
                fputs("position: beginning\n", stderr);
                return;
        }
        char text[WAL_MSGID_STRLEN];
        if (wal_msgid_format(rd->position, text, sizeof(text)) >= 0)
                fprintf(stderr, "position: %s\n", text);
}

/* ---- The loop ---- */

static int parse_start(const char *s, struct wal_deliver *d, uint64_t *last_n)
{
        if (strcmp(s, "beginning") == 0) {
                *d = (struct wal_deliver){ .policy = WAL_DELIVER_ALL };
                return 0;
        }
        if (strcmp(s, "end") == 0) {
                *d = (struct wal_deliver){ .policy = WAL_DELIVER_LATEST };
                return 0;
        }
        if (s[0] == '-')
                return walctl_parse_u64(s + 1, 1, 1u << 24, last_n) < 0
                               ? -EINVAL
                               : (*d = (struct wal_deliver){ .policy = WAL_DELIVER_ALL }, 0);
        struct wal_msgid id;
        if (wal_msgid_parse(s, &id) < 0)
                return -EINVAL;
        *d = (struct wal_deliver){ .policy = WAL_DELIVER_START_FROM, .id = id };
        return 0;
}

struct behind {
        struct wal_msgid stop_at;
        struct wal_msgid first;         /* the first record found, if any */
};

static int behind_fn(void *arg, const struct wal_msg_view *views, size_t n)
{
        struct behind *b = arg;
        (void)n;
        if (wal_msgid_cmp(views[0].id, b->stop_at) > 0)
                return 2;
        b->first = views[0].id;
        return 1;
}

/*
 * Does the log hold a record after the scanner's position (or, before it
 * has one, from where the read started, @d) up to @stop_at, one the
 * scanner has yet to consume?  @returns 1 (its ID in *first), 0 (none:
 * the read is at its end), or a negative errno with *reterr (the replay
 * failed: the scanner will meet the same).
 */
static int behind(wal_scanner *s, wal *w, const struct wal_deliver *d, struct wal_msgid stop_at,
                  struct wal_msgid *first, wal_error **reterr)
{
        struct wal_msgid pos;
        struct wal_deliver from = *d;
        wal_scanner_position(s, WAL_MSGID_NONE, &pos, NULL);
        if (!wal_msgid_is_none(pos))
                from = (struct wal_deliver){ .policy = WAL_DELIVER_START_AFTER, .id = pos };
        struct behind b = { .stop_at = stop_at, .first = WAL_MSGID_NONE };
        int r = wal_replay(w, &from, behind_fn, &b, reterr);
        if (r < 0)
                return r;
        *first = b.first;
        return r == 1;
}

static int read_loop(struct reader *rd, wal *w, const struct wal_deliver *d,
                     struct wal_msgid stop_at, int sigfd)
{
        wal_scanner *s = NULL;
        wal_error *err = NULL;
        int r = wal_read(w, d, NULL, &s, &err);
        if (r < 0)
                return walctl_fail(rd->channel, r, err);
        int sfd = wal_scanner_fd(s);
        /* Watch standard output for its reader going away, if it is open. */
        int out_fd = fcntl(STDOUT_FILENO, F_GETFD) < 0 ? -1 : STDOUT_FILENO;
        bool tailing = rd->tail_n > 0 && !wal_msgid_is_none(stop_at);
        bool ended = !rd->follow && wal_msgid_is_none(stop_at);
        int rc = 0;
        int idle_ms = 0;                /* without news, a record to consume known */
        struct wal_msgid idle_pos = WAL_MSGID_NONE; /* the scanner's, when last idle */
        while (!ended) {
                wal_msg *m = NULL;
                r = wal_scanner_next(s, 0, &m, &err);
                if (r == 0) {
                        idle_ms = 0;
                        struct wal_msgid id = wal_msg_id(m);
                        rd->position = id;
                        rd->position_known = true;
                        rd->at_beginning = false;
                        bool reached = !wal_msgid_is_none(stop_at) &&
                                       wal_msgid_cmp(id, stop_at) >= 0;
                        if (selected(rd, m)) {
                                if (tailing) {
                                        tail_push(rd, m);
                                } else {
                                        print_unit(rd, m);
                                        if (rd->count && ++rd->printed >= rd->count)
                                                ended = true;
                                }
                        }
                        wal_msg_unref(m);
                        if (reached && at_end(rd, &tailing))
                                ended = true;
                        if (walctl_out_error())
                                break;
                        continue;
                }
                if (r != -ETIMEDOUT) {
                        if (r == -ESHUTDOWN)
                                wal_error_free(err);
                        else
                                rc = walctl_fail(rd->channel, r, err);
                        break;
                }
                wal_error_free(err);
                err = NULL;
                if (!wal_msgid_is_none(stop_at) &&
                    wal_scanner_position(s, stop_at, NULL, NULL) == 1) {
                        /* The end is behind records the scanner dropped. */
                        if (at_end(rd, &tailing))
                                break;
                }
                if (walctl_out_flush())
                        break;
                struct pollfd fds[3] = {
                        { .fd = sfd, .events = POLLIN },
                        { .fd = sigfd, .events = POLLIN },
                        { .fd = out_fd, .events = 0 },
                };
                int pr = poll(fds, 3, rd->follow && !tailing ? -1 : IDLE_END_MS);
                if (pr < 0 && errno != EINTR) {
                        rc = walctl_fail(rd->channel, -errno, NULL);
                        break;
                }
                if (pr > 0 && fds[1].revents && walctl_signal_pending(sigfd))
                        break;
                if (pr > 0 && (fds[2].revents & (POLLERR | POLLHUP)))
                        break;  /* the reader of our pipe is gone */
                if (pr == 0 && !rd->follow && !wal_msgid_is_none(stop_at)) {
                        /* Nothing for IDLE_END_MS and the end not
                         * reached: the backend is slow, or the end was
                         * deleted.  The log says which. */
                        struct wal_msgid first;
                        r = behind(s, w, d, stop_at, &first, &err);
                        if (r < 0) {
                                rc = walctl_fail(rd->channel, r, err);
                                err = NULL;
                                break;
                        }
                        /* Records consumed and dropped are news too. */
                        struct wal_msgid now;
                        wal_scanner_position(s, WAL_MSGID_NONE, &now, NULL);
                        if (!wal_msgid_eq(now, idle_pos)) {
                                idle_pos = now;
                                idle_ms = 0;
                        }
                        if (r == 1 && (idle_ms += IDLE_END_MS) < STALL_END_MS)
                                continue;
                        if (r == 1) {
                                char at[WAL_MSGID_STRLEN], id[WAL_MSGID_STRLEN];
                                struct wal_msgid pos;
                                wal_msgid_format(first, id, sizeof(id));
                                wal_scanner_position(s, WAL_MSGID_NONE, &pos, NULL);
                                if (wal_msgid_is_none(pos))
                                        snprintf(at, sizeof(at), "%s", rd->at_beginning
                                                 ? "beginning" : "its start");
                                else
                                        wal_msgid_format(pos, at, sizeof(at));
                                err = wal_error_new(-ETIMEDOUT, 0, "the scanner consumed "
                                                    "nothing for %d s after %s although the "
                                                    "log holds %s",
                                                    STALL_END_MS / 1000, at, id);
                                rc = walctl_fail(rd->channel, -ETIMEDOUT, err);
                                err = NULL;
                                break;
                        }
                }
                if (pr == 0 && at_end(rd, &tailing))
                        break;
        }
        if (tailing)
                tail_flush(rd);
        wal_scanner_close(s);
        return rc;
}

/* ---- The command ---- */

enum { OPT_AFTER = 0x100, OPT_FORMAT, OPT_VCHANNEL, OPT_TYPE, OPT_SHOW_POSITION };

static int run(struct walctl *w, int argc, char **argv)
{
        static const struct option longopts[] = {
                { "offset", required_argument, NULL, 'o' },
                { "after", required_argument, NULL, OPT_AFTER },
                { "count", required_argument, NULL, 'c' },
                { "follow", no_argument, NULL, 'f' },
                { "format", required_argument, NULL, OPT_FORMAT },
                { "vchannel", required_argument, NULL, OPT_VCHANNEL },
                { "type", required_argument, NULL, OPT_TYPE },
                { "show-position", no_argument, NULL, OPT_SHOW_POSITION },
                { NULL, 0, NULL, 0 },
        };
        struct reader rd = { .format = FMT_TEXT };
        const char *offset = NULL, *after = NULL;
        uint32_t types = 0;
        for (;;) {
                int c = walctl_getopt("read", argc, argv, "o:c:f", longopts);
                if (c == -1)
                        break;
                switch (c) {
                case 'o':
                        offset = optarg;
                        break;
                case OPT_AFTER:
                        after = optarg;
                        break;
                case 'c':
                        if (walctl_parse_u64(optarg, 1, UINT64_MAX, &rd.count) < 0)
                                return walctl_usage_error("read -c", "'%s' is not a count "
                                                          "(a positive integer)", optarg);
                        break;
                case 'f':
                        rd.follow = true;
                        break;
                case OPT_FORMAT:
                        if (strcmp(optarg, "text") == 0)
                                rd.format = FMT_TEXT;
                        else if (strcmp(optarg, "json") == 0)
                                rd.format = FMT_JSON;
                        else if (strcmp(optarg, "raw") == 0)
                                rd.format = FMT_RAW;
                        else
                                return walctl_usage_error("read --format", "'%s' is not one "
                                                          "of text, json, raw", optarg);
                        break;
                case OPT_VCHANNEL:
                        if (!*optarg)
                                return walctl_usage_error("read --vchannel", "empty name");
                        if (!walimpls_channel_name_valid(optarg))
                                return walctl_usage_error("read --vchannel", "\"%s\" is not "
                                                          "a valid name (%s)", optarg,
                                                          WALCTL_NAME_RULE);
                        rd.vchannel = optarg;
                        break;
                case OPT_TYPE: {
                        enum wal_msg_type t;
                        if (wal_msg_type_parse(optarg, &t) < 0)
                                return walctl_usage_error("read --type", "'%s' is not one of "
                                                          "data, timetick, txn", optarg);
                        if (t == WAL_MSG_TXN_BEGIN || t == WAL_MSG_TXN_COMMIT ||
                            t == WAL_MSG_TXN_ROLLBACK)
                                /* A scanner delivers a committed transaction
                                 * whole (type txn) and never its control
                                 * records: such a filter would print nothing. */
                                return walctl_usage_error("read --type", "'%s' records are "
                                                          "never delivered: a committed "
                                                          "transaction is read whole as "
                                                          "type txn, a rolled-back one not "
                                                          "at all", optarg);
                        types |= WAL_FILTER_TYPE(t);
                        break;
                }
                case OPT_SHOW_POSITION:
                        rd.show_position = true;
                        break;
                default:
                        return WALCTL_EXIT_USAGE;
                }
        }
        if (optind >= argc)
                return walctl_usage_error("read", "no channel given");
        if (walctl_no_operands("read", argc, argv, optind + 1))
                return WALCTL_EXIT_USAGE;
        rd.channel = argv[optind];
        rd.types = types ? types : WAL_FILTER_TYPE(WAL_MSG_DATA) | WAL_FILTER_TYPE(WAL_MSG_TXN);
        if (offset && after)
                return walctl_usage_error("read", "-o and --after exclude each other");

        struct wal_deliver d = { .policy = WAL_DELIVER_ALL };
        if (offset && parse_start(offset, &d, &rd.tail_n) < 0)
                return walctl_usage_error("read -o", "'%s' is not beginning, end, an ID or "
                                          "-N", offset);
        if (after && strcmp(after, "beginning") != 0) {
                struct wal_msgid id;
                if (wal_msgid_parse(after, &id) < 0)
                        return walctl_usage_error("read --after", "'%s' is not an ID", after);
                d = (struct wal_deliver){ .policy = WAL_DELIVER_START_AFTER, .id = id };
        }
        if (rd.tail_n) {
                rd.tail = calloc(rd.tail_n, sizeof(*rd.tail));
                if (!rd.tail)
                        return walctl_fail("read", -ENOMEM, NULL);
        }

        int sigfd = walctl_signal_fd();
        if (sigfd < 0) {
                free(rd.tail);
                return walctl_fail("read: signals", sigfd, NULL);
        }
        wal_opener *o = NULL;
        wal *wl = NULL;
        int rc = walctl_opener(w, &o);
        if (!rc)
                rc = walctl_open_ro(w, o, rd.channel, &wl);
        struct wal_info info;
        if (!rc) {
                wal_error *err = NULL;
                int r = wal_info(wl, &info, &err);
                if (r < 0)
                        rc = walctl_fail(rd.channel, r, err);
        }
        if (!rc) {
                /* Where the read stands before its first message. */
                rd.position_known = true;
                switch (d.policy) {
                case WAL_DELIVER_ALL:
                        rd.at_beginning = true;
                        break;
                case WAL_DELIVER_START_AFTER:
                        rd.position = d.id;
                        break;
                case WAL_DELIVER_START_FROM:
                        if (d.id.hi == 0 && d.id.lo == 0)
                                rd.at_beginning = true;
                        else
                                rd.position = msgid_pred(d.id);
                        break;
                default:
                        if (wal_msgid_is_none(info.last_id))
                                rd.at_beginning = true;
                        else
                                rd.position = info.last_id;
                        break;
                }
                struct wal_msgid stop_at = info.last_id;
                if (d.policy == WAL_DELIVER_LATEST && !rd.follow)
                        stop_at = WAL_MSGID_NONE;  /* nothing to wait for */
                if (!rd.follow && !rd.at_beginning && !wal_msgid_is_none(stop_at) &&
                    (d.policy == WAL_DELIVER_START_AFTER || d.policy == WAL_DELIVER_START_FROM) &&
                    wal_msgid_cmp(rd.position, stop_at) >= 0) {
                        /* Starting at or after the end: nothing to read, and
                         * no message will ever show the end was reached. */
                        if (wal_msgid_cmp(rd.position, stop_at) > 0) {
                                char last[WAL_MSGID_STRLEN];
                                wal_msgid_format(stop_at, last, sizeof(last));
                                walctl_warn(w, "read %s: %s %s is after the last ID %s; "
                                            "nothing to read", rd.channel,
                                            after ? "--after" : "-o", after ? after : offset,
                                            last);
                        }
                } else {
                        rc = read_loop(&rd, wl, &d, stop_at, sigfd);
                }
        }
        int orc = walctl_out_finish("read");
        if (!rc)
                rc = orc;
        if (rd.show_position)
                print_position(&rd);
        wal_close(wl);
        wal_opener_close(o);
        close(sigfd);
        free(rd.tail);
        return rc;
}

const struct walctl_command walctl_cmd_read = {
        .name = "read",
        .args = "CHANNEL",
        .summary = "print records",
        .help = "Print the records of CHANNEL, from the beginning unless told otherwise,\n"
                "and stop at the end of the log as it was when the read began (at once\n"
                "when -o or --after is at or after that end; after it, with a warning).\n"
                "\n"
                "Options:\n"
                "  -o, --offset POS       where to start: beginning (the default), end (only\n"
                "                         records appended from now on), an ID (inclusive),\n"
                "                         or -N (the last N records)\n"
                "      --after ID         start after ID (exclusive); \"beginning\" is the\n"
                "                         beginning\n"
                "  -c, --count N          stop after N records (a transaction counts as one\n"
                "                         and is printed whole)\n"
                "  -f, --follow           keep waiting for new records; SIGINT or SIGTERM\n"
                "                         end the read with status 0\n"
                "      --format FMT       text (the payload, one per line; the default),\n"
                "                         json (one object per line, schema v1 below) or raw\n"
                "                         (the payload bytes, nothing added)\n"
                "      --vchannel V       only records of the virtual channel V: records\n"
                "                         with no vchannel are left out (a library scanner\n"
                "                         filtered on V, struct wal_filter, delivers them)\n"
                "      --type T           only messages of type T; repeatable.  Types: data,\n"
                "                         txn (a committed transaction: its records) and\n"
                "                         timetick.  Default: data and txn\n"
                "      --show-position    at exit, print \"position: POS\" on standard\n"
                "                         error: `read --after POS` (same filters) goes on\n"
                "                         with the next record, nothing lost or repeated\n"
                "\n"
                "JSON lines (schema v1):\n"
                "  {\"v\":1,\"channel\":C,\"id\":ID,\"tt\":TICK,\"term\":N,\"type\":\"data\",\n"
                "   \"vchannel\":V,\"props\":{\"k\":\"v\"},\"payload\":TEXT}\n"
                "\"vchannel\" is absent when the record has none.  A payload that is not\n"
                "valid UTF-8 is \"payload_b64\" (base64) instead of \"payload\"; likewise\n"
                "\"vchannel_b64\", and properties whose key or value is not valid UTF-8 go in\n"
                "\"props_b64\" with key and value base64-encoded.  Records of a transaction\n"
                "carry \"txn\":ID.\n"
                "\n"
                "A closed standard output (`| head`) ends the read quietly with status 0.\n"
                "A channel that does not exist exits with status 66.\n"
                "\n"
                "Examples:\n"
                "  walctl read orders\n"
                "  walctl read -o -10 --format json orders\n"
                "  walctl read -f -o end orders\n"
                "  walctl read --show-position orders 2>pos; walctl read --after \"$(sed -n \\\n"
                "          's/^position: //p' pos)\" orders\n",
        .flags = WALCTL_CMD_USES_BACKEND,
        .run = run,
};
