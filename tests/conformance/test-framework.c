/* SPDX-License-Identifier: MIT */
/*
 * tests/conformance/test-framework.c: the Milvus walimpls test framework
 * (reference/milvus-wal.md section 9), ported to the C SPI.
 *
 * Three channels run concurrently on one opener.  On each, for terms 1..3: a
 * read-write open; five writers append N-1 data messages (properties id, const)
 * while two DeliverAll readers read until the time tick that carries the
 * current term; both readers must see exactly the cumulative list of every
 * message written so far, earlier terms included, in strictly ascending ID
 * order.  Then start-from / start-after the middle ID yield exactly the
 * tail, latest yields nothing within a second, and a read-only open refuses
 * append and truncate with -EROFS.  Finally term 4 appends one message,
 * truncates at it and reopens.  Worker threads never assert: they record the
 * first failure in their run's error buffer, and the test thread asserts on
 * it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "conformance.h"

#define FW_N 100           /* messages per term: N-1 data + 1 time tick */
#define FW_CHANNELS 3
#define FW_TERMS 3
#define FW_WRITERS 5
#define FW_READERS 2

struct fw_entry {
        struct wal_msgid id;
        long idx;                   /* the "id" property */
};

struct fw_run {
        int no;
        char channel[64];
        char err[CONF_ERRLEN];
        struct fw_entry *cum;       /* cumulative written list, ID order */
        size_t n_cum;
        int64_t term;
        struct walimpls_wal *w;
        /* writers */
        atomic_long next_idx;
        pthread_mutex_t lock;
        struct fw_entry written[FW_N];
        size_t n_written;
        /* readers */
        atomic_bool abort_readers;  /* set on failure: readers stop waiting */
        struct fw_entry *got[FW_READERS];
        size_t n_got[FW_READERS];
};

struct fw_reader_arg {
        struct fw_run *run;
        int k;
};

static wal_msg *fw_msg(long idx, enum wal_msg_type type)
{
        char num[32];
        snprintf(num, sizeof(num), "%ld", idx);
        wal_msg *m = NULL;
        if (wal_msg_new(type, num, strlen(num), &m) < 0 || wal_msg_set_prop(m, "id", num) < 0 ||
            wal_msg_set_prop(m, "const", "t") < 0)
                abort();
        return m;
}

static void fw_record(struct fw_run *run, struct wal_msgid id, long idx)
{
        pthread_mutex_lock(&run->lock);
        run->written[run->n_written++] = (struct fw_entry){ id, idx };
        pthread_mutex_unlock(&run->lock);
}

static void *fw_writer(void *arg)
{
        struct fw_run *run = arg;
        for (;;) {
                long idx = atomic_fetch_add(&run->next_idx, 1);
                if (idx >= FW_N - 1)
                        break;
                wal_msg *m = fw_msg(idx, WAL_MSG_DATA);
                struct wal_msgid id = WAL_MSGID_NONE;
                int r = conf_append_sync(run->w, m, &id);
                wal_msg_unref(m);
                if (r < 0) {
                        conf_fail(run->err, "%s term %lld: append %ld: %s", run->channel,
                                  (long long)run->term, idx, strerror(-r));
                        break;
                }
                if (wal_msgid_is_none(id)) {
                        conf_fail(run->err, "%s: append %ld returned no ID", run->channel, idx);
                        break;
                }
                fw_record(run, id, idx);
        }
        return NULL;
}

static void *fw_reader(void *arg)
{
        struct fw_reader_arg *ra = arg;
        struct fw_run *run = ra->run;
        char name[32];
        snprintf(name, sizeof(name), "scanner%d", ra->k + 1);
        struct walimpls_scanner *s = NULL;
        int r = conf_read(run->w, name, WAL_DELIVER_ALL, WAL_MSGID_NONE, &s, run->err);
        if (r < 0) {
                conf_fail(run->err, "%s: read %s: %s", run->channel, name, strerror(-r));
                return NULL;
        }
        if (strcmp(s->name, name) != 0) {
                conf_fail(run->err, "%s: scanner name '%s', want '%s'", run->channel, s->name,
                          name);
                goto out;
        }
        size_t cap = run->n_cum + FW_N + 16;
        struct fw_entry *got = calloc(cap, sizeof(*got));
        size_t n = 0;
        uint64_t deadline = t_now_ms() + 60000;
        for (;;) {
                wal_msg *m = NULL;
                r = conf_next(s, 1000, &m, run->err);
                if (r == -ETIMEDOUT && atomic_load(&run->abort_readers))
                        break;
                if (r == -ETIMEDOUT && t_now_ms() < deadline)
                        continue;
                if (r < 0) {
                        conf_fail(run->err, "%s term %lld: %s next after %zu messages: %s",
                                  run->channel, (long long)run->term, name, n, strerror(-r));
                        break;
                }
                if (!m || !wal_msg_is_immutable(m)) {
                        conf_fail(run->err, "%s: next returned a NULL or mutable message",
                                  run->channel);
                        wal_msg_unref(m);
                        break;
                }
                const char *idp = wal_msg_prop(m, "id");
                if (n == cap) {
                        conf_fail(run->err, "%s: %s read more than %zu messages", run->channel,
                                  name, cap);
                        wal_msg_unref(m);
                        break;
                }
                got[n++] = (struct fw_entry){ wal_msg_id(m), idp ? atol(idp) : -1 };
                if (!idp || strcmp(wal_msg_prop(m, "const") ?: "", "t") != 0) {
                        conf_fail(run->err, "%s: message %s lacks id/const properties",
                                  run->channel, conf_id(wal_msg_id(m)));
                        wal_msg_unref(m);
                        break;
                }
                bool stop = false;
                if (wal_msg_type(m) == WAL_MSG_TIME_TICK) {
                        const char *tp = wal_msg_prop(m, "term");
                        if (!tp) {
                                conf_fail(run->err, "%s: time tick without term property",
                                          run->channel);
                                wal_msg_unref(m);
                                break;
                        }
                        stop = atoll(tp) == run->term;
                }
                wal_msg_unref(m);
                if (stop)
                        break;
        }
        run->got[ra->k] = got;
        run->n_got[ra->k] = n;
out:
        s->ops->close(s);
        return NULL;
}

static int cmp_entry(const void *a, const void *b)
{
        const struct fw_entry *x = a, *y = b;
        return wal_msgid_cmp(x->id, y->id);
}

/* Start-from (@after false) or start-after the middle ID: exactly the tail. */
static int fw_check_start(struct fw_run *run, bool after)
{
        size_t idx = run->n_cum / 2;
        struct walimpls_scanner *s = NULL;
        int r = conf_read(run->w, after ? "start-after" : "start-from",
                          after ? WAL_DELIVER_START_AFTER : WAL_DELIVER_START_FROM,
                          run->cum[idx].id, &s, run->err);
        if (r < 0)
                return conf_fail(run->err, "%s: read start-%s %s: %s", run->channel,
                                 after ? "after" : "from", conf_id(run->cum[idx].id),
                                 strerror(-r));
        int ret = 0;
        for (size_t i = idx + (after ? 1 : 0); i < run->n_cum; i++) {
                wal_msg *m = NULL;
                r = conf_next(s, 10000, &m, run->err);
                if (r < 0) {
                        ret = conf_fail(run->err, "%s: start-%s: next at %zu/%zu: %s",
                                        run->channel, after ? "after" : "from", i, run->n_cum,
                                        strerror(-r));
                        break;
                }
                bool ok = wal_msgid_eq(wal_msg_id(m), run->cum[i].id);
                struct wal_msgid got = wal_msg_id(m);
                wal_msg_unref(m);
                if (!ok) {
                        ret = conf_fail(run->err, "%s: start-%s: entry %zu is %s, want %s",
                                        run->channel, after ? "after" : "from", i,
                                        conf_id(got), conf_id(run->cum[i].id));
                        break;
                }
        }
        s->ops->close(s);
        return ret;
}

static int fw_check_latest(struct fw_run *run)
{
        struct walimpls_scanner *s = NULL;
        int r = conf_read(run->w, "latest", WAL_DELIVER_LATEST, WAL_MSGID_NONE, &s, run->err);
        if (r < 0)
                return conf_fail(run->err, "%s: read latest: %s", run->channel, strerror(-r));
        wal_msg *m = NULL;
        r = conf_next(s, 1000, &m, run->err);
        int ret = 0;
        if (r != -ETIMEDOUT) {
                ret = conf_fail(run->err, "%s: latest on an idle channel: next gave %s (%s)",
                                run->channel, r == 0 ? "a message" : strerror(-r),
                                r == 0 ? conf_id(wal_msg_id(m)) : "");
                wal_msg_unref(m);
        }
        s->ops->close(s);
        return ret;
}

static int fw_check_ro(struct fw_run *run)
{
        struct walimpls_wal *ro = NULL;
        int r = conf_open(conf.o, run->channel, run->term, WAL_ACCESS_RO, &ro, run->err);
        if (r < 0)
                return conf_fail(run->err, "%s: open RO term %lld: %s", run->channel,
                                 (long long)run->term, strerror(-r));
        int ret = 0;
        wal_msg *m = fw_msg(0, WAL_MSG_DATA);
        struct conf_done *d = conf_done_new();
        r = ro->ops->append(ro, m, conf_done_cb, d);
        wal_msg_unref(m);
        if (r != -EROFS)
                ret = conf_fail(run->err, "%s: append on a read-only wal returned %d, want -EROFS",
                                run->channel, r);
        if (r == 0)
                conf_done_wait(d, 10000);
        else
                conf_done_free(d);
        if (ro->ops->truncate) {
                wal_error *e = NULL;
                r = ro->ops->truncate(ro, run->cum[0].id, &e);
                wal_error_free(e);
                if (r != -EROFS)
                        ret = conf_fail(run->err, "%s: truncate on a read-only wal returned %d, "
                                        "want -EROFS", run->channel, r);
        }
        ro->ops->close(ro);
        return ret;
}

static int fw_term(struct fw_run *run, int64_t term)
{
        run->term = term;
        int r = conf_open(conf.o, run->channel, term, WAL_ACCESS_RW, &run->w, run->err);
        if (r < 0)
                return conf_fail(run->err, "%s: open RW term %lld: %s", run->channel,
                                 (long long)term, strerror(-r));
        if (!run->w || strcmp(run->w->channel, run->channel) != 0 || run->w->term != term ||
            run->w->access != WAL_ACCESS_RW)
                return conf_fail(run->err, "%s: wal base fields do not match the open", run->channel);

        atomic_store(&run->next_idx, 0);
        run->n_written = 0;
        pthread_t writers[FW_WRITERS], readers[FW_READERS];
        struct fw_reader_arg ra[FW_READERS];
        for (int k = 0; k < FW_READERS; k++) {
                ra[k] = (struct fw_reader_arg){ run, k };
                run->got[k] = NULL;
                pthread_create(&readers[k], NULL, fw_reader, &ra[k]);
        }
        for (int k = 0; k < FW_WRITERS; k++)
                pthread_create(&writers[k], NULL, fw_writer, run);
        for (int k = 0; k < FW_WRITERS; k++)
                pthread_join(writers[k], NULL);
        if (!run->err[0]) {
                /* The time tick goes last, carrying the term the readers wait for. */
                wal_msg *tt = fw_msg(FW_N - 1, WAL_MSG_TIME_TICK);
                char tnum[32];
                snprintf(tnum, sizeof(tnum), "%lld", (long long)term);
                wal_msg_set_prop(tt, "term", tnum);
                wal_msg_set_vchannel(tt, "v1");
                struct wal_msgid id = WAL_MSGID_NONE;
                r = conf_append_sync(run->w, tt, &id);
                wal_msg_unref(tt);
                if (r < 0)
                        conf_fail(run->err, "%s: append time tick: %s", run->channel,
                                  strerror(-r));
                else
                        fw_record(run, id, FW_N - 1);
        }
        if (run->err[0]) {
                /* Readers would wait for a tick that never comes. */
                atomic_store(&run->abort_readers, true);
                for (int k = 0; k < FW_READERS; k++) {
                        pthread_join(readers[k], NULL);
                        free(run->got[k]);
                }
                run->w->ops->close(run->w);
                run->w = NULL;
                return -1;
        }
        for (int k = 0; k < FW_READERS; k++)
                pthread_join(readers[k], NULL);

        /* Written, sorted by ID, extends the cumulative list: strictly ascending. */
        qsort(run->written, run->n_written, sizeof(run->written[0]), cmp_entry);
        for (size_t i = 0; i < run->n_written; i++) {
                if (run->n_cum > 0 &&
                    wal_msgid_cmp(run->cum[run->n_cum - 1].id, run->written[i].id) >= 0)
                        return conf_fail(run->err, "%s term %lld: ID %s not above %s",
                                         run->channel, (long long)term,
                                         conf_id(run->written[i].id),
                                         conf_id(run->cum[run->n_cum - 1].id));
                run->cum[run->n_cum++] = run->written[i];
        }
        for (int k = 0; k < FW_READERS && !run->err[0]; k++) {
                if (run->n_got[k] != run->n_cum)
                        conf_fail(run->err, "%s term %lld: scanner%d read %zu messages, %zu written",
                                  run->channel, (long long)term, k + 1, run->n_got[k],
                                  run->n_cum);
                for (size_t i = 0; i < run->n_got[k] && !run->err[0]; i++) {
                        if (i > 0 && wal_msgid_cmp(run->got[k][i - 1].id, run->got[k][i].id) >= 0)
                                conf_fail(run->err, "%s: scanner%d not strictly ascending at %zu",
                                          run->channel, k + 1, i);
                        else if (i < run->n_cum &&
                                 (!wal_msgid_eq(run->got[k][i].id, run->cum[i].id) ||
                                  run->got[k][i].idx != run->cum[i].idx))
                                conf_fail(run->err, "%s: scanner%d entry %zu is %s id=%ld, "
                                          "written %s id=%ld", run->channel, k + 1, i,
                                          conf_id(run->got[k][i].id), run->got[k][i].idx,
                                          conf_id(run->cum[i].id), run->cum[i].idx);
                }
        }
        for (int k = 0; k < FW_READERS; k++)
                free(run->got[k]);
        if (!run->err[0])
                fw_check_start(run, false);
        if (!run->err[0])
                fw_check_start(run, true);
        if (!run->err[0])
                fw_check_latest(run);
        run->w->ops->close(run->w);
        run->w = NULL;
        if (!run->err[0])
                fw_check_ro(run);
        return run->err[0] ? -1 : 0;
}

static void *fw_channel(void *arg)
{
        struct fw_run *run = arg;
        for (int64_t term = 1; term <= FW_TERMS; term++)
                if (fw_term(run, term) < 0)
                        return NULL;

        /* Term 4: append one, truncate at it, close, reopen at the same term. */
        struct walimpls_wal *w = NULL;
        if (conf_open(conf.o, run->channel, FW_TERMS + 1, WAL_ACCESS_RW, &w, run->err) < 0) {
                conf_fail(run->err, "%s: open RW term %d failed", run->channel, FW_TERMS + 1);
                return NULL;
        }
        wal_msg *m = fw_msg(0, WAL_MSG_DATA);
        struct wal_msgid id = WAL_MSGID_NONE;
        int r = conf_append_sync(w, m, &id);
        wal_msg_unref(m);
        if (r < 0 || wal_msgid_is_none(id))
                conf_fail(run->err, "%s: term 4 append: %s", run->channel, strerror(-r));
        if (!run->err[0] && w->ops->truncate) {
                wal_error *e = NULL;
                r = w->ops->truncate(w, id, &e);
                if (r < 0)
                        conf_fail(run->err, "%s: truncate(%s): %s", run->channel, conf_id(id),
                                  wal_error_message(e));
                wal_error_free(e);
        }
        w->ops->close(w);
        if (run->err[0])
                return NULL;
        if (conf_open(conf.o, run->channel, FW_TERMS + 1, WAL_ACCESS_RW, &w, run->err) < 0) {
                conf_fail(run->err, "%s: reopen RW term %d after truncate failed", run->channel,
                          FW_TERMS + 1);
                return NULL;
        }
        w->ops->close(w);
        return NULL;
}

TestSuite(framework, .init = conf_init, .fini = conf_fini);

Test(framework, three_channels_three_terms_concurrent, .timeout = 120)
{
        static struct fw_run runs[FW_CHANNELS];
        pthread_t th[FW_CHANNELS];
        for (int i = 0; i < FW_CHANNELS; i++) {
                char prefix[32];
                snprintf(prefix, sizeof(prefix), "test_%d", i);
                runs[i].no = i;
                conf_channel(prefix, runs[i].channel);
                runs[i].cum = calloc(FW_N * FW_TERMS + 1, sizeof(struct fw_entry));
                pthread_mutex_init(&runs[i].lock, NULL);
                cr_assert_eq(pthread_create(&th[i], NULL, fw_channel, &runs[i]), 0);
        }
        for (int i = 0; i < FW_CHANNELS; i++)
                pthread_join(th[i], NULL);
        for (int i = 0; i < FW_CHANNELS; i++) {
                cr_expect_eq(runs[i].err[0], '\0', "channel %d: %s", i, runs[i].err);
                cr_expect_eq(runs[i].n_cum, (size_t)FW_N * FW_TERMS,
                             "channel %d: %zu messages in the cumulative list", i, runs[i].n_cum);
        }
        for (int i = 0; i < FW_CHANNELS; i++) {
                free(runs[i].cum);
                pthread_mutex_destroy(&runs[i].lock);
        }
}
