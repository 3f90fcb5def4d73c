/* SPDX-License-Identifier: MIT */
/*
 * adaptor/metrics.c: the metrics interceptor's counters and histograms, and
 * the JSON they are read through.
 *
 * Counters are relaxed atomics bumped on the append and scan paths; the
 * append latency (wal_append() to completion) goes into a log2 histogram of
 * microseconds, so recording is one atomic add per bucket and quantiles are
 * bucket upper bounds (at most 2x high).  wal_stats_json() renders one wal:
 *
 *   {"v":1,"channel":"c","term":1,"access":"rw","appends":{"ok":N,"failed":N,
 *    "refused":N,"bytes":N,"retries":N,"ticks":N},
 *    "append_latency_us":{"count":N,"sum":N,"p50":N,"p99":N,"p999":N,
 *    "buckets":[...]},"txn":{"begun":N,"committed":N,"rolled_back":N,"expired":N},
 *    "scan":{"opened":N,"open":N,"delivered":N,"from_cache":N,"from_backend":N,
 *    "to_tailing":N,"to_catchup":N,"stale_dropped":N},"cache":{"entries":N,"bytes":N,"evictions":N}}
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adaptor/adaptor.h"

void wal_hist_add(struct wal_hist *h, uint64_t ns)
{
        uint64_t us = ns / 1000u;
        /* the first b with us < 2^b: the bit length of us */
        unsigned b = us ? 64u - (unsigned)__builtin_clzll(us) : 0u;
        if (b > WAL_HIST_BUCKETS - 1)
                b = WAL_HIST_BUCKETS - 1;
        atomic_fetch_add_explicit(&h->b[b], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

uint64_t wal_hist_quantile_us(const struct wal_hist *h, double q)
{
        uint64_t n = atomic_load_explicit(&h->count, memory_order_relaxed);
        if (n == 0)
                return 0;
        uint64_t want = (uint64_t)(q * (double)n);
        if (want >= n)
                want = n - 1;
        uint64_t seen = 0;
        for (unsigned b = 0; b < WAL_HIST_BUCKETS; b++) {
                seen += atomic_load_explicit(&h->b[b], memory_order_relaxed);
                if (seen > want)
                        return 1ull << b;
        }
        return 1ull << (WAL_HIST_BUCKETS - 1);
}

void wal_strbuf_printf(struct wal_strbuf *sb, const char *fmt, ...)
{
        if (sb->oom)
                return;
        for (;;) {
                va_list ap;
                va_start(ap, fmt);
                size_t room = sb->cap - sb->len;
                int n = vsnprintf(sb->buf ? sb->buf + sb->len : NULL, room, fmt, ap);
                va_end(ap);
                if (n < 0) {
                        sb->oom = true;
                        return;
                }
                if ((size_t)n < room) {
                        sb->len += (size_t)n;
                        return;
                }
                size_t ncap = (sb->cap ? sb->cap * 2 : 256) + (size_t)n;
                char *nb = realloc(sb->buf, ncap);
                if (!nb) {
                        sb->oom = true;
                        return;
                }
                sb->buf = nb;
                sb->cap = ncap;
        }
}

void wal_strbuf_json_string(struct wal_strbuf *sb, const char *s)
{
        wal_strbuf_printf(sb, "\"");
        for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
                if (*p == '"' || *p == '\\')
                        wal_strbuf_printf(sb, "\\%c", *p);
                else if (*p < 0x20)
                        wal_strbuf_printf(sb, "\\u%04x", *p);
                else
                        wal_strbuf_printf(sb, "%c", *p);
        }
        wal_strbuf_printf(sb, "\"");
}

#define LD(x) ((unsigned long long)atomic_load_explicit(&(x), memory_order_relaxed))

void wal_metrics_json(wal *w, struct wal_strbuf *sb)
{
        struct wal_metrics *m = &w->metrics;
        wal_strbuf_printf(sb, "{\"v\":1,\"channel\":");
        wal_strbuf_json_string(sb, w->channel);
        wal_strbuf_printf(sb, ",\"term\":%lld,\"access\":\"%s\"", (long long)w->term,
                          w->access == WAL_ACCESS_RW ? "rw" : "ro");
        wal_strbuf_printf(sb,
                          ",\"appends\":{\"ok\":%llu,\"failed\":%llu,\"refused\":%llu,"
                          "\"bytes\":%llu,\"retries\":%llu,\"ticks\":%llu}",
                          LD(m->appends_ok), LD(m->appends_failed), LD(m->appends_refused),
                          LD(m->append_bytes), LD(m->retries), LD(m->ticks));
        const struct wal_hist *h = &m->append_latency;
        wal_strbuf_printf(sb,
                          ",\"append_latency_us\":{\"count\":%llu,\"sum\":%llu,"
                          "\"p50\":%llu,\"p99\":%llu,\"p999\":%llu,\"buckets\":[",
                          LD(h->count), LD(h->sum_us),
                          (unsigned long long)wal_hist_quantile_us(h, 0.5),
                          (unsigned long long)wal_hist_quantile_us(h, 0.99),
                          (unsigned long long)wal_hist_quantile_us(h, 0.999));
        for (unsigned b = 0; b < WAL_HIST_BUCKETS; b++)
                wal_strbuf_printf(sb, "%s%llu", b ? "," : "", LD(h->b[b]));
        wal_strbuf_printf(sb, "]}");
        wal_strbuf_printf(sb,
                          ",\"txn\":{\"begun\":%llu,\"committed\":%llu,"
                          "\"rolled_back\":%llu,\"expired\":%llu}",
                          LD(m->txn_begun), LD(m->txn_committed), LD(m->txn_rolled_back),
                          LD(m->txn_expired));
        pthread_mutex_lock(&w->scan_lock);
        size_t open = w->n_scanners;
        pthread_mutex_unlock(&w->scan_lock);
        wal_strbuf_printf(sb,
                          ",\"scan\":{\"opened\":%llu,\"open\":%zu,\"delivered\":%llu,"
                          "\"from_cache\":%llu,\"from_backend\":%llu,\"to_tailing\":%llu,"
                          "\"to_catchup\":%llu,\"stale_dropped\":%llu}",
                          LD(m->scanners_opened), open, LD(m->delivered),
                          LD(m->delivered_from_cache), LD(m->delivered_from_backend),
                          LD(m->switches_to_tailing), LD(m->switches_to_catchup),
                          LD(m->stale_dropped));
        size_t entries = 0, bytes = 0;
        uint64_t ev = 0;
        if (w->has_cache)
                wal_cache_stats(&w->cache, &entries, &bytes, &ev);
        wal_strbuf_printf(sb, ",\"cache\":{\"entries\":%zu,\"bytes\":%zu,\"evictions\":%llu}}",
                          entries, bytes, (unsigned long long)ev);
}

int wal_adaptor_stats_json(wal *w, char **ret)
{
        struct wal_strbuf sb = { 0 };
        wal_metrics_json(w, &sb);
        if (sb.oom) {
                free(sb.buf);
                return -ENOMEM;
        }
        *ret = sb.buf;
        return 0;
}
