/* SPDX-License-Identifier: MIT */
/*
 * adaptor/opener.c: the opener, owner of one backend client.
 *
 * Keeps the configuration (a copy), the interceptors every wal it opens
 * starts its chain with, and a list of the wals it opened (each holding a
 * reference on the opener, and the list one on each wal).  Close refuses new
 * calls, waits for opens in progress, closes every wal still open, then
 * releases the backend opener; the struct goes with its last reference.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "adaptor/adaptor.h"
#include "utility/walu.h"

int wal_adaptor_opener_new(const struct walimpls_builder *b, const wal_config *cfg,
                           wal_opener **ret, wal_error **reterr)
{
        wal_opener *o = calloc(1, sizeof(*o));
        if (!o)
                return wal_error_set(reterr, -ENOMEM, 0, "out of memory");
        atomic_init(&o->refs, 1);
        wal_life_init(&o->life);
        pthread_mutex_init(&o->lock, NULL);
        o->builder = b;
        int r = cfg ? wal_config_copy(cfg, &o->cfg) : wal_config_new(&o->cfg);
        if (r < 0) {
                wal_error_set(reterr, r, 0, "copying the configuration: %s", wal_strerror(r));
                goto fail;
        }
        r = b->build(o->cfg, &o->impl, reterr);
        if (r < 0) {
                if (!reterr || !*reterr)
                        wal_error_set(reterr, r, 0, "building backend \"%s\": %s", b->name,
                                      wal_strerror(r));
                else
                        wal_error_prefix(reterr, "backend \"%s\": ", b->name);
                o->impl = NULL;
                goto fail;
        }
        *ret = o;
        return 0;
fail:
        wal_opener_unref_internal(o);
        return r;
}

void wal_opener_unref_internal(wal_opener *o)
{
        if (!o || atomic_fetch_sub(&o->refs, 1) != 1)
                return;
        for (size_t i = 0; i < o->n_ics; i++)
                free(o->ics[i].name);
        free(o->ics);
        free(o->wals);
        wal_config_free(o->cfg);
        pthread_mutex_destroy(&o->lock);
        wal_life_done(&o->life);
        free(o);
}

int wal_adaptor_opener_add_interceptor(wal_opener *o, const struct wal_interceptor *ic,
                                       wal_error **reterr)
{
        int r = wal_life_enter(&o->life);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "opener is closed");
        pthread_mutex_lock(&o->lock);
        for (size_t i = 0; i < o->n_ics; i++) {
                if (strcmp(o->ics[i].name, ic->name) == 0) {
                        r = wal_error_set(reterr, -EEXIST, 0,
                                          "interceptor \"%s\" is already registered", ic->name);
                        goto out;
                }
        }
        struct wal_chain_link *n = realloc(o->ics, (o->n_ics + 1) * sizeof(*n));
        if (!n) {
                r = wal_error_set(reterr, -ENOMEM, 0, "out of memory");
                goto out;
        }
        o->ics = n;
        struct wal_chain_link *l = &o->ics[o->n_ics];
        *l = (struct wal_chain_link){ .ic = *ic, .name = strdup(ic->name) };
        if (!l->name) {
                r = wal_error_set(reterr, -ENOMEM, 0, "out of memory");
                goto out;
        }
        l->ic.name = l->name;
        o->n_ics++;
out:
        pthread_mutex_unlock(&o->lock);
        wal_life_leave(&o->life);
        return r;
}

int wal_adaptor_list_channels(wal_opener *o, wal_channel_fn *fn, void *arg,
                              wal_error **reterr)
{
        int r = wal_life_enter(&o->life);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "opener is closed");
        if (!o->impl->ops->list_channels)
                r = wal_error_set(reterr, -EOPNOTSUPP, 0, "backend \"%s\" cannot list channels",
                                  o->builder->name);
        else
                r = o->impl->ops->list_channels(o->impl, fn, arg, reterr);
        wal_life_leave(&o->life);
        return r;
}

int wal_adaptor_opener_stats_json(wal_opener *o, char **ret)
{
        int r = wal_life_enter(&o->life);
        if (r < 0)
                return r;
        struct wal_strbuf sb = { 0 };
        wal_strbuf_printf(&sb, "{\"v\":1,\"backend\":");
        wal_strbuf_json_string(&sb, o->builder->name);
        wal_strbuf_printf(&sb, ",\"wals\":[");
        pthread_mutex_lock(&o->lock);
        for (size_t i = 0; i < o->n_wals; i++) {
                if (i)
                        wal_strbuf_printf(&sb, ",");
                wal_metrics_json(o->wals[i], &sb);
        }
        pthread_mutex_unlock(&o->lock);
        wal_strbuf_printf(&sb, "]}");
        wal_life_leave(&o->life);
        if (sb.oom) {
                free(sb.buf);
                return -ENOMEM;
        }
        *ret = sb.buf;
        return 0;
}

void wal_adaptor_opener_close(wal_opener *o)
{
        if (wal_life_begin_close(&o->life)) {
                wal_life_wait_idle(&o->life);
                for (;;) {
                        pthread_mutex_lock(&o->lock);
                        wal *w = o->n_wals ? o->wals[o->n_wals - 1] : NULL;
                        if (w)
                                atomic_fetch_add(&w->refs, 1);
                        pthread_mutex_unlock(&o->lock);
                        if (!w)
                                break;
                        wal_adaptor_close_inner(w); /* leaves the list */
                        wal_unref_internal(w);
                }
                if (o->impl)
                        o->impl->ops->close(o->impl);
                o->impl = NULL;
                wal_life_set_closed(&o->life);
        }
        wal_opener_unref_internal(o);
}
