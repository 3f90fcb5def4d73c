/* SPDX-License-Identifier: MIT */
/*
 * wal/api.c: the public entry points of wal/wal-api.h.
 *
 * Each function checks its arguments, reporting misuse as -EINVAL with an
 * error that names the argument (never a crash on NULL or out-of-range
 * input), then hands over to the adaptor (adaptor/adaptor.h), which owns the
 * objects and their lifetimes.  Keeping the checks here keeps the adaptor's
 * internals free of public-API defensiveness and the API backend-agnostic.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <wal/wal-api.h>
#include <wal/wal-registry.h>
#include "adaptor/adaptor.h"
#include "utility/envelope.h"
#include "utility/walu.h"

#define BAD(reterr, ...) wal_error_set((reterr), -EINVAL, 0, __VA_ARGS__)

int wal_append_next_call(wal_append_next *next, wal_msg *msg)
{
        if (!next || !msg)
                return -EINVAL;
        return wal_adaptor_next_call(next, msg);
}

/* ---- Opener ---- */

int wal_opener_new(const char *backend, const wal_config *cfg, wal_opener **ret,
                   wal_error **reterr)
{
        if (!ret)
                return BAD(reterr, "wal_opener_new: ret is NULL");
        wal_config *defaults = NULL;
        if (!cfg) {
                int r = wal_config_new(&defaults);
                if (r < 0)
                        return wal_error_set(reterr, r, 0, "out of memory");
                cfg = defaults;
        }
        if (!backend)
                backend = wal_config_get(cfg, "backend");
        int r;
        const struct walimpls_builder *b = NULL;
        if (!backend || !*backend)
                r = BAD(reterr, "no backend named (argument NULL and property \"backend\" unset)");
        else
                r = wal_registry_find(backend, &b, reterr);
        if (r == 0)
                r = wal_adaptor_opener_new(b, cfg, ret, reterr);
        wal_config_free(defaults);
        return r;
}

/*
 * A user interceptor's name: not reserved ("wal." names) and not one of the
 * built-ins every chain ends with (adaptor/wal.c), which would make every
 * later open of the chain fail with -EEXIST.
 */
static int check_interceptor_name(const char *name, wal_error **reterr)
{
        static const char *const builtins[] = { "retry", "validate", "timetick", "metrics" };
        if (strncmp(name, "wal.", 4) == 0)
                return BAD(reterr, "interceptor name \"%.64s\": names starting with \"wal.\" "
                           "are reserved for libwal", name);
        for (size_t i = 0; i < WALU_ARRAY_SIZE(builtins); i++)
                if (strcmp(name, builtins[i]) == 0)
                        return wal_error_set(reterr, -EEXIST, 0,
                                             "interceptor name \"%s\" is taken by a built-in "
                                             "interceptor (retry, validate, timetick, metrics)",
                                             name);
        return 0;
}

int wal_opener_add_interceptor(wal_opener *o, const struct wal_interceptor *ic,
                               wal_error **reterr)
{
        if (!o)
                return BAD(reterr, "wal_opener_add_interceptor: opener is NULL");
        if (!ic)
                return BAD(reterr, "wal_opener_add_interceptor: interceptor is NULL");
        if (!ic->name || !*ic->name || !ic->do_append)
                return BAD(reterr, "interceptor needs a name and a do_append method");
        int r = check_interceptor_name(ic->name, reterr);
        if (r < 0)
                return r;
        return wal_adaptor_opener_add_interceptor(o, ic, reterr);
}

const char *wal_opener_backend(const wal_opener *o)
{
        return o ? o->builder->name : NULL;
}

int wal_opener_list_channels(wal_opener *o, wal_channel_fn *fn, void *arg, wal_error **reterr)
{
        if (!o || !fn)
                return BAD(reterr, "wal_opener_list_channels: %s is NULL", o ? "fn" : "opener");
        return wal_adaptor_list_channels(o, fn, arg, reterr);
}

int wal_opener_stats_json(wal_opener *o, char **ret)
{
        if (!o || !ret)
                return -EINVAL;
        return wal_adaptor_opener_stats_json(o, ret);
}

void wal_opener_close(wal_opener *o)
{
        if (o)
                wal_adaptor_opener_close(o);
}

/* ---- WAL ---- */

static int check_interceptors(const struct wal_open_opts *opts, wal_error **reterr)
{
        if (opts->n_interceptors > 0 && !opts->interceptors)
                return BAD(reterr, "n_interceptors is %zu but interceptors is NULL",
                           opts->n_interceptors);
        for (size_t i = 0; i < opts->n_interceptors; i++) {
                const struct wal_interceptor *ic = &opts->interceptors[i];
                if (!ic->name || !*ic->name || !ic->do_append)
                        return BAD(reterr, "interceptor %zu needs a name and a do_append "
                                   "method", i);
                int r = check_interceptor_name(ic->name, reterr);
                if (r < 0)
                        return r;
        }
        return 0;
}

int wal_open_ex(wal_opener *o, const struct wal_open_opts *opts, wal **ret, wal_error **reterr)
{
        if (!o)
                return BAD(reterr, "wal_open: opener is NULL");
        if (!opts || !ret)
                return BAD(reterr, "wal_open: %s is NULL", opts ? "ret" : "opts");
        if (!opts->channel)
                return BAD(reterr, "channel name is NULL");
        if (!walimpls_channel_name_valid(opts->channel))
                return BAD(reterr, "channel name \"%.64s\" is invalid: 1..200 bytes of "
                           "[A-Za-z0-9._-], not starting with '.' or '-'", opts->channel);
        if (opts->term < 0)
                return BAD(reterr, "term %lld is negative", (long long)opts->term);
        if (opts->access != WAL_ACCESS_RO && opts->access != WAL_ACCESS_RW)
                return BAD(reterr, "access mode %d is neither read-only nor read-write",
                           (int)opts->access);
        int r = check_interceptors(opts, reterr);
        if (r < 0)
                return r;
        return wal_adaptor_open(o, opts, ret, reterr);
}

int wal_open(wal_opener *o, const char *channel, int64_t term, enum wal_access access,
             wal **ret, wal_error **reterr)
{
        struct wal_open_opts opts = { .channel = channel, .term = term, .access = access };
        return wal_open_ex(o, &opts, ret, reterr);
}

const char *wal_channel(const wal *w)
{
        return w ? w->channel : NULL;
}

int64_t wal_term(const wal *w)
{
        return w ? w->term : -1;
}

enum wal_access wal_access_mode(const wal *w)
{
        return w ? w->access : 0;
}

int wal_append(wal *w, wal_msg *msg, wal_append_done_fn *done, void *userdata,
               wal_error **reterr)
{
        if (!w || !msg)
                return BAD(reterr, "wal_append: %s is NULL", w ? "message" : "wal");
        return wal_adaptor_append(w, msg, false, NULL, false, done, userdata, reterr);
}

int wal_append_take(wal *w, wal_msg *msg, wal_append_done_fn *done, void *userdata,
                    wal_error **reterr)
{
        if (!w || !msg)
                return BAD(reterr, "wal_append_take: %s is NULL", w ? "message" : "wal");
        return wal_adaptor_append(w, msg, true, NULL, false, done, userdata, reterr);
}

int wal_append_wait(wal *w, wal_msg *msg, wal_msg **ret_msg, wal_error **reterr)
{
        if (!w || !msg)
                return BAD(reterr, "wal_append_wait: %s is NULL", w ? "message" : "wal");
        return wal_adaptor_append_wait(w, msg, NULL, false, w->append_timeout_ms, ret_msg,
                                       reterr);
}

static int check_deliver(const struct wal_deliver *d, wal_error **reterr)
{
        switch (d->policy) {
        case WAL_DELIVER_ALL:
        case WAL_DELIVER_LATEST:
        case WAL_DELIVER_FROM_TIME_TICK:
                return 0;
        case WAL_DELIVER_START_FROM:
        case WAL_DELIVER_START_AFTER:
                if (wal_msgid_is_none(d->id))
                        return BAD(reterr, "deliver policy %s needs a message ID",
                                   wal_deliver_policy_name(d->policy));
                return 0;
        }
        return BAD(reterr, "unknown deliver policy %d", (int)d->policy);
}

int wal_read(wal *w, const struct wal_deliver *deliver, const struct wal_filter *filter,
             wal_scanner **ret, wal_error **reterr)
{
        if (!w || !deliver || !ret)
                return BAD(reterr, "wal_read: %s is NULL",
                           !w ? "wal" : !deliver ? "deliver" : "ret");
        int r = check_deliver(deliver, reterr);
        if (r < 0)
                return r;
        if (filter) {
                if (filter->vchannel && !walimpls_channel_name_valid(filter->vchannel))
                        return BAD(reterr, "filter vchannel \"%.64s\" is not a valid name",
                                   filter->vchannel);
                uint32_t known = 0;
                for (int t = WAL_MSG_DATA; t <= WAL_MSG_TYPE_MAX; t++)
                        known |= WAL_FILTER_TYPE(t);
                if (filter->types & ~known)
                        return BAD(reterr, "filter types 0x%x name unknown message types",
                                   (unsigned)filter->types);
        }
        return wal_adaptor_read(w, deliver, filter, ret, reterr);
}

int wal_truncate(wal *w, struct wal_msgid id, wal_error **reterr)
{
        if (!w)
                return BAD(reterr, "wal_truncate: wal is NULL");
        if (wal_msgid_is_none(id))
                return BAD(reterr, "wal_truncate: no message ID given");
        return wal_adaptor_truncate(w, id, reterr);
}

int wal_info(wal *w, struct wal_info *ret, wal_error **reterr)
{
        if (!w || !ret)
                return BAD(reterr, "wal_info: %s is NULL", w ? "ret" : "wal");
        return wal_adaptor_info(w, ret, reterr);
}

int wal_stats_json(wal *w, char **ret)
{
        if (!w || !ret)
                return -EINVAL;
        return wal_adaptor_stats_json(w, ret);
}

void wal_close(wal *w)
{
        if (w)
                wal_adaptor_close(w);
}

/* ---- Scanner ---- */

int wal_scanner_next(wal_scanner *s, int timeout_ms, wal_msg **ret, wal_error **reterr)
{
        if (!s || !ret)
                return BAD(reterr, "wal_scanner_next: %s is NULL", s ? "ret" : "scanner");
        if (timeout_ms < -1)
                return BAD(reterr, "wal_scanner_next: timeout %d ms (use -1 for forever)",
                           timeout_ms);
        return wal_adaptor_scanner_next(s, timeout_ms, ret, reterr);
}

int wal_scanner_fd(wal_scanner *s)
{
        if (!s)
                return -EINVAL;
        return wal_adaptor_scanner_fd(s);
}

/* The position is the scanner's own (adaptor/scanner.c, process()): only
 * wal_scanner_next() moves it, on the thread the caller promises is the
 * only one using the scanner, so it is read here as it is. */
int wal_scanner_position(const wal_scanner *s, struct wal_msgid id, struct wal_msgid *ret_pos,
                         wal_error **reterr)
{
        if (!s)
                return BAD(reterr, "wal_scanner_position: scanner is NULL");
        struct wal_msgid pos = s->have_pos ? s->pos : WAL_MSGID_NONE;
        if (ret_pos)
                *ret_pos = pos;
        return s->have_pos && !wal_msgid_is_none(id) && wal_msgid_cmp(pos, id) >= 0;
}

const char *wal_scanner_name(const wal_scanner *s)
{
        return s ? s->name : NULL;
}

void wal_scanner_close(wal_scanner *s)
{
        if (s)
                wal_adaptor_scanner_close(s);
}

/* ---- Transactions ---- */

int wal_txn_begin(wal *w, const char *vchannel, uint32_t keepalive_ms, wal_txn **ret,
                  wal_error **reterr)
{
        if (!w || !ret)
                return BAD(reterr, "wal_txn_begin: %s is NULL", w ? "ret" : "wal");
        return wal_adaptor_txn_begin(w, vchannel, keepalive_ms, ret, reterr);
}

int wal_txn_append(wal_txn *t, wal_msg *msg, wal_append_done_fn *done, void *userdata,
                   wal_error **reterr)
{
        if (!t || !msg)
                return BAD(reterr, "wal_txn_append: %s is NULL", t ? "message" : "transaction");
        return wal_adaptor_txn_append(t, msg, done, userdata, reterr);
}

int wal_txn_commit(wal_txn *t, wal_msg **ret_msg, wal_error **reterr)
{
        if (!t)
                return BAD(reterr, "wal_txn_commit: transaction is NULL");
        return wal_adaptor_txn_commit(t, ret_msg, reterr);
}

int wal_txn_commit_async(wal_txn *t, wal_append_done_fn *done, void *userdata,
                         wal_error **reterr)
{
        if (!t)
                return BAD(reterr, "wal_txn_commit_async: transaction is NULL");
        return wal_adaptor_txn_commit_async(t, done, userdata, reterr);
}

int wal_txn_rollback(wal_txn *t, wal_error **reterr)
{
        if (!t)
                return BAD(reterr, "wal_txn_rollback: transaction is NULL");
        return wal_adaptor_txn_rollback(t, reterr);
}

uint64_t wal_txn_id(const wal_txn *t)
{
        return t ? t->id : 0;
}

/* ---- Records read in place ---- */

int wal_msg_view_prop_at(const struct wal_msg_view *v, size_t i, const char **key,
                         size_t *key_len, const char **value, size_t *value_len)
{
        if (!v)
                return -EINVAL;
        if (i >= v->n_props)
                return -ERANGE;
        const uint8_t *k, *val;
        size_t kl, vl;
        int r = walu_envelope_prop_at(v->env, v->env_len, i, &k, &kl, &val, &vl);
        if (r < 0)
                return r;
        if (key)
                *key = (const char *)k;
        if (key_len)
                *key_len = kl;
        if (value)
                *value = (const char *)val;
        if (value_len)
                *value_len = vl;
        return 0;
}

int wal_msg_view_to_msg(const struct wal_msg_view *v, wal_msg **ret)
{
        if (!v || !ret || wal_msgid_is_none(v->id) || (!v->payload && v->payload_len))
                return -EINVAL;
        wal_msg *m = NULL;
        int r = walu_envelope_decode(v->env, v->env_len, v->payload, v->payload_len, &m, NULL);
        if (r < 0)
                return r;
        r = wal_msg_freeze(m, v->id);
        if (r < 0) {
                wal_msg_unref(m);
                return r;
        }
        *ret = m;
        return 0;
}

/* ---- Replay ---- */

#define REPLAY_BATCH 256
#define REPLAY_WAIT_MS 10000   /* per call, for backends that fetch asynchronously */

/* A view of the message @m for backends without next_batch: its envelope
 * encoded into *buf (grown as needed), read back in place. */
static int view_of_msg(const wal_msg *m, struct wal_msg_view *v, uint8_t **buf, size_t *cap)
{
        size_t need = walu_envelope_size(m);
        if (need > *cap) {
                uint8_t *nb = realloc(*buf, need);
                if (!nb)
                        return -ENOMEM;
                *buf = nb;
                *cap = need;
        }
        int n = walu_envelope_encode(m, *buf, *cap);
        if (n < 0)
                return n;
        int r = walu_envelope_view(*buf, (size_t)n, v, NULL);
        if (r < 0)
                return r;
        v->id = wal_msg_id(m);
        v->payload = wal_msg_payload(m, &v->payload_len);
        return 0;
}

int wal_replay(wal *w, const struct wal_deliver *deliver, wal_replay_fn *fn, void *arg,
               wal_error **reterr)
{
        if (!w || !deliver || !fn)
                return BAD(reterr, "wal_replay: %s is NULL",
                           !w ? "wal" : !deliver ? "deliver" : "fn");
        int r = check_deliver(deliver, reterr);
        if (r < 0)
                return r;
        if (deliver->policy != WAL_DELIVER_ALL && deliver->policy != WAL_DELIVER_START_FROM &&
            deliver->policy != WAL_DELIVER_START_AFTER)
                return BAD(reterr, "wal_replay: policy %s is not all, start-from or start-after",
                           wal_deliver_policy_name(deliver->policy));
        r = wal_life_enter(&w->life);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "wal_replay: the wal is closing");
        struct walimpls_read_opts ro = { .name = "replay", .deliver = *deliver };
        struct walimpls_scanner *s = NULL;
        struct wal_msg_view *views = malloc(REPLAY_BATCH * sizeof(*views));
        uint8_t *env = NULL;
        size_t env_cap = 0;
        if (!views) {
                r = wal_error_set(reterr, -ENOMEM, 0, "wal_replay: out of memory");
                goto out;
        }
        /* Where the log ends now: the replay stops after that record.  A
         * backend that cannot say is read until it has nothing at once. */
        struct walimpls_info info = { .last_id = WAL_MSGID_NONE };
        bool known_end = w->impl->ops->info &&
                         w->impl->ops->info(w->impl, &info, NULL) == 0;
        if (known_end && (wal_msgid_is_none(info.last_id) ||
                          (deliver->policy == WAL_DELIVER_START_FROM &&
                           wal_msgid_cmp(deliver->id, info.last_id) > 0) ||
                          (deliver->policy == WAL_DELIVER_START_AFTER &&
                           wal_msgid_cmp(deliver->id, info.last_id) >= 0)))
                goto out;       /* nothing at or after the start */
        int wait_ms = known_end ? REPLAY_WAIT_MS : 0;
        r = w->impl->ops->read(w->impl, &ro, &s, reterr);
        if (r < 0)
                goto out;
        bool batch = s->ops->version >= 2 && s->ops->next_batch;
        for (;;) {
                size_t n = 0;
                wal_msg *m = NULL;
                if (batch) {
                        r = s->ops->next_batch(s, wait_ms, views, REPLAY_BATCH, &n, reterr);
                } else {
                        r = s->ops->next(s, wait_ms, &m, reterr);
                        if (r == 0) {
                                n = 1;
                                r = view_of_msg(m, &views[0], &env, &env_cap);
                                if (r < 0)
                                        wal_error_set(reterr, r, 0, "wal_replay: re-reading a "
                                                      "record's envelope: %s", wal_strerror(r));
                        }
                }
                bool at_end = r == 0 && known_end &&
                              wal_msgid_cmp(views[n - 1].id, info.last_id) >= 0;
                if (r == 0)
                        r = fn(arg, views, n);
                wal_msg_unref(m);
                if (r == -ETIMEDOUT && n == 0) {
                        if (!known_end) {
                                r = 0;  /* nothing more at once: the end */
                                break;
                        }
                        r = wal_error_set(reterr, -ETIMEDOUT, WAL_ERROR_RETRIABLE,
                                          "wal_replay: no record for %d ms before the end of "
                                          "the log", REPLAY_WAIT_MS);
                }
                if (r != 0 || at_end)
                        break;
        }
out:
        if (s)
                s->ops->close(s);
        free(views);
        free(env);
        wal_life_leave(&w->life);
        return r;
}
