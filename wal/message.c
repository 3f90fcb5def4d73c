/* SPDX-License-Identifier: MIT */
/*
 * wal/message.c: the message object (wal/wal-message.h).
 *
 * Layout: one allocation holds the struct and the payload bytes (the payload
 * is written once, at creation); properties are a small array of owned
 * strings kept in first-set order, searched linearly (messages carry a
 * handful).  An atomic reference count lets the write-ahead cache hand one
 * immutable message to many scanners.  `immutable` is set once by
 * wal_msg_freeze() before the message is shared; afterwards nothing changes.
 *
 * Arena messages (wal_msg_copy_in(), for what the library keeps per record:
 * the adaptor's copy of an append, the memory backend's records).  A copy
 * that fits is carved from a chunk of an arena instead of malloc(): one
 * carve holds, 16-byte aligned, the struct, the payload and its NUL, the
 * property array and its key and value strings, and the vchannel
 * (`inline_strs` set: none of them is freed on its own; the first change
 * to a property or the vchannel moves them to their own allocations).  A
 * chunk is an anonymous mapping, faulted in when the arena takes it, so
 * carving never takes a page fault: on this project's VMs a first touch
 * costs 1.5-4 us, once every 10-16 records kept; populating a 2 MiB chunk
 * costs about 0.65 ms (the same CPU per page).  So the next chunk is made
 * ahead, off the copying threads: once the current chunk is half carved
 * the arena asks for a spare (wal_msg_arena_wants_spare()), which its
 * owner's background thread maps and faults in (wal_msg_arena_fill_spare());
 * a copy that finds the chunk full and no spare ready maps one itself.
 * Chunks grow from 64 KiB to 2 MiB.  A chunk's `refs` starts at
 * CHUNK_BIAS; each message carved from it drops one when its last
 * reference goes, and the arena drops CHUNK_BIAS minus the number it
 * carved when it moves to the next chunk (or is freed), so the chunk is
 * unmapped when both the arena and every message are done with it, on
 * whichever thread comes last.  Messages may outlive their arena.
 *
 * Under AddressSanitizer the arena keeps what malloc() would have caught: a
 * chunk is poisoned when mapped, each carve is unpoisoned when handed out
 * and followed by a poisoned redzone of CARVE_REDZONE bytes (so writing
 * past a message's end is reported), a message's carve is poisoned again
 * when its last reference goes (so a use after the last unref is reported),
 * and a chunk is unpoisoned before it is unmapped (so a later mapping at the
 * same address starts clean).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <wal/wal-message.h>

#include "utility/walu.h"
#include "wal/message-internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define ARENA_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define ARENA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#define CARVE_REDZONE 32
#else
#define ARENA_POISON(p, n) ((void)(p), (void)(n))
#define ARENA_UNPOISON(p, n) ((void)(p), (void)(n))
#define CARVE_REDZONE 0
#endif

struct wal_prop_pair {
        char *key;
        char *value;
};

struct wal_msg_chunk {
        atomic_uint_fast64_t refs;    /* see the top of the file */
        size_t len;                   /* of the mapping, this header included */
};

struct wal_msg {
        atomic_uint refs;
        enum wal_msg_type type;
        bool immutable;
        bool inline_strs;             /* props and vchannel live in the carve */
        uint32_t carve_len;           /* bytes carved for it (chunk only) */
        struct wal_msg_chunk *chunk;  /* carved from it, or NULL: malloc() */
        char *vchannel;
        struct wal_prop_pair *props;
        size_t n_props, cap_props;
        size_t props_bytes;           /* sum of key and value lengths */
        uint64_t time_tick;
        int64_t term;
        struct wal_msgid id;
        struct wal_msgid last_confirmed;
        uint64_t txn_id;
        uint32_t txn_keepalive_ms;
        wal_msg **bodies;             /* WAL_MSG_TXN only */
        size_t n_bodies, cap_bodies;
        size_t payload_len;
        unsigned char payload[];
};

static const char *const type_names[] = {
        [WAL_MSG_DATA] = "data",
        [WAL_MSG_TIME_TICK] = "timetick",
        [WAL_MSG_TXN_BEGIN] = "txn-begin",
        [WAL_MSG_TXN_COMMIT] = "txn-commit",
        [WAL_MSG_TXN_ROLLBACK] = "txn-rollback",
        [WAL_MSG_TXN] = "txn",
};

const char *wal_msg_type_name(enum wal_msg_type type)
{
        if ((int)type < WAL_MSG_DATA || (int)type > WAL_MSG_TYPE_MAX)
                return NULL;
        return type_names[type];
}

int wal_msg_type_parse(const char *name, enum wal_msg_type *ret)
{
        if (!name || !ret)
                return -EINVAL;
        for (int t = WAL_MSG_DATA; t <= WAL_MSG_TYPE_MAX; t++) {
                if (strcmp(name, type_names[t]) == 0) {
                        *ret = (enum wal_msg_type)t;
                        return 0;
                }
        }
        return -EINVAL;
}

int wal_msg_new(enum wal_msg_type type, const void *payload, size_t len, wal_msg **ret)
{
        if (!ret || !wal_msg_type_name(type) || (!payload && len > 0))
                return -EINVAL;
        if (len > SIZE_MAX - sizeof(struct wal_msg) - 1)
                return -ENOMEM;
        /* One spare byte keeps a NUL after the payload, handy for text. */
        wal_msg *m = malloc(sizeof(*m) + len + 1);
        if (!m)
                return -ENOMEM;
        *m = (struct wal_msg){
                .type = type,
                .id = WAL_MSGID_NONE,
                .last_confirmed = WAL_MSGID_NONE,
                .payload_len = len,
        };
        atomic_init(&m->refs, 1);
        if (len)
                memcpy(m->payload, payload, len);
        m->payload[len] = '\0';
        *ret = m;
        return 0;
}

/* Give an arena message's properties and vchannel their own allocations,
 * so they can be changed and freed one by one.  0 or -ENOMEM (then
 * nothing changed). */
static int own_strings(wal_msg *m)
{
        if (!m->inline_strs)
                return 0;
        size_t cap = m->n_props ? m->n_props : 0;
        struct wal_prop_pair *np = cap ? calloc(cap, sizeof(*np)) : NULL;
        char *vch = m->vchannel ? strdup(m->vchannel) : NULL;
        bool ok = (!cap || np) && (!m->vchannel || vch);
        for (size_t i = 0; ok && i < m->n_props; i++) {
                np[i].key = strdup(m->props[i].key);
                np[i].value = strdup(m->props[i].value);
                ok = np[i].key && np[i].value;
        }
        if (!ok) {
                for (size_t i = 0; np && i < m->n_props; i++) {
                        free(np[i].key);
                        free(np[i].value);
                }
                free(np);
                free(vch);
                return -ENOMEM;
        }
        m->props = np;
        m->cap_props = cap;
        m->vchannel = vch;
        m->inline_strs = false;
        return 0;
}

static struct wal_prop_pair *find_prop(const wal_msg *m, const char *key)
{
        for (size_t i = 0; i < m->n_props; i++)
                if (strcmp(m->props[i].key, key) == 0)
                        return &m->props[i];
        return NULL;
}

int wal_msg_set_prop(wal_msg *m, const char *key, const char *value)
{
        if (!m || !key || !*key || !value)
                return -EINVAL;
        if (m->immutable)
                return -EPERM;
        if (own_strings(m) < 0)
                return -ENOMEM;
        char *v = strdup(value);
        if (!v)
                return -ENOMEM;
        struct wal_prop_pair *p = find_prop(m, key);
        if (p) {
                m->props_bytes -= strlen(p->value);
                free(p->value);
                p->value = v;
                m->props_bytes += strlen(v);
                return 0;
        }
        if (m->n_props == m->cap_props) {
                size_t cap = m->cap_props ? m->cap_props * 2 : 4;
                struct wal_prop_pair *np = realloc(m->props, cap * sizeof(*np));
                if (!np) {
                        free(v);
                        return -ENOMEM;
                }
                m->props = np;
                m->cap_props = cap;
        }
        char *k = strdup(key);
        if (!k) {
                free(v);
                return -ENOMEM;
        }
        m->props[m->n_props++] = (struct wal_prop_pair){ k, v };
        m->props_bytes += strlen(k) + strlen(v);
        return 0;
}

int wal_msg_del_prop(wal_msg *m, const char *key)
{
        if (!m || !key)
                return -EINVAL;
        if (m->immutable)
                return -EPERM;
        if (own_strings(m) < 0)
                return -ENOMEM;
        struct wal_prop_pair *p = find_prop(m, key);
        if (!p)
                return -ENOENT;
        m->props_bytes -= strlen(p->key) + strlen(p->value);
        free(p->key);
        free(p->value);
        size_t i = (size_t)(p - m->props);
        memmove(p, p + 1, (m->n_props - i - 1) * sizeof(*p));
        m->n_props--;
        return 0;
}

int wal_msg_set_vchannel(wal_msg *m, const char *vchannel)
{
        if (!m || (vchannel && !*vchannel))
                return -EINVAL;
        if (m->immutable)
                return -EPERM;
        if (own_strings(m) < 0)
                return -ENOMEM;
        char *v = NULL;
        if (vchannel && !(v = strdup(vchannel)))
                return -ENOMEM;
        free(m->vchannel);
        m->vchannel = v;
        return 0;
}

#define CHUNK_BIAS (UINT64_C(1) << 62)

static atomic_size_t chunks_mapped; /* for wal_msg_arena_chunks_mapped() */

/* Drop @n of @c's references; the last one unmaps it. */
static void chunk_put(struct wal_msg_chunk *c, uint64_t n)
{
        if (atomic_fetch_sub_explicit(&c->refs, n, memory_order_acq_rel) == n) {
                ARENA_UNPOISON(c, c->len);
                munmap(c, c->len);
                atomic_fetch_sub_explicit(&chunks_mapped, 1, memory_order_relaxed);
        }
}

size_t wal_msg_arena_chunks_mapped(void)
{
        return atomic_load(&chunks_mapped);
}

wal_msg *wal_msg_ref(wal_msg *m)
{
        if (m)
                atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
        return m;
}

wal_msg *wal_msg_unref(wal_msg *m)
{
        if (!m)
                return NULL;
        if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
                return NULL;
        if (!m->inline_strs) {
                for (size_t i = 0; i < m->n_props; i++) {
                        free(m->props[i].key);
                        free(m->props[i].value);
                }
                free(m->props);
                free(m->vchannel);
        }
        for (size_t i = 0; i < m->n_bodies; i++)
                wal_msg_unref(m->bodies[i]);
        free(m->bodies);
        if (m->chunk) {
                struct wal_msg_chunk *c = m->chunk;
                ARENA_POISON(m, m->carve_len);
                chunk_put(c, 1);
        } else
                free(m);
        return NULL;
}

bool wal_msg_is_sole(const wal_msg *m)
{
        return atomic_load_explicit(&((wal_msg *)m)->refs, memory_order_acquire) == 1;
}

void wal_msg_unrefp(wal_msg **mp)
{
        if (mp)
                *mp = wal_msg_unref(*mp);
}

enum wal_msg_type wal_msg_type(const wal_msg *m)
{
        return m ? m->type : 0;
}

const void *wal_msg_payload(const wal_msg *m, size_t *len)
{
        if (len)
                *len = m ? m->payload_len : 0;
        return m ? m->payload : NULL;
}

const char *wal_msg_vchannel(const wal_msg *m)
{
        return m ? m->vchannel : NULL;
}

size_t wal_msg_prop_count(const wal_msg *m)
{
        return m ? m->n_props : 0;
}

int wal_msg_prop_at(const wal_msg *m, size_t i, const char **key, const char **value)
{
        if (!m)
                return -EINVAL;
        if (i >= m->n_props)
                return -ERANGE;
        if (key)
                *key = m->props[i].key;
        if (value)
                *value = m->props[i].value;
        return 0;
}

const char *wal_msg_prop(const wal_msg *m, const char *key)
{
        if (!m || !key)
                return NULL;
        struct wal_prop_pair *p = find_prop(m, key);
        return p ? p->value : NULL;
}

size_t wal_msg_size(const wal_msg *m)
{
        if (!m)
                return 0;
        size_t n = m->payload_len + m->props_bytes;
        for (size_t i = 0; i < m->n_bodies; i++)
                n += wal_msg_size(m->bodies[i]);
        return n;
}

bool wal_msg_is_immutable(const wal_msg *m)
{
        return m && m->immutable;
}

struct wal_msgid wal_msg_id(const wal_msg *m)
{
        return m ? m->id : WAL_MSGID_NONE;
}

uint64_t wal_msg_time_tick(const wal_msg *m)
{
        return m ? m->time_tick : 0;
}

int64_t wal_msg_term(const wal_msg *m)
{
        return m ? m->term : 0;
}

struct wal_msgid wal_msg_last_confirmed(const wal_msg *m)
{
        return m ? m->last_confirmed : WAL_MSGID_NONE;
}

uint64_t wal_msg_txn_id(const wal_msg *m)
{
        return m ? m->txn_id : 0;
}

uint32_t wal_msg_txn_keepalive_ms(const wal_msg *m)
{
        return m ? m->txn_keepalive_ms : 0;
}

#define CHECK_MUTABLE(m)                \
        do {                            \
                if (!(m))               \
                        return -EINVAL; \
                if ((m)->immutable)     \
                        return -EPERM;  \
        } while (0)

int wal_msg_set_time_tick(wal_msg *m, uint64_t tt)
{
        CHECK_MUTABLE(m);
        m->time_tick = tt;
        return 0;
}

int wal_msg_set_term(wal_msg *m, int64_t term)
{
        CHECK_MUTABLE(m);
        m->term = term;
        return 0;
}

int wal_msg_set_last_confirmed(wal_msg *m, struct wal_msgid id)
{
        CHECK_MUTABLE(m);
        m->last_confirmed = id;
        return 0;
}

int wal_msg_set_txn(wal_msg *m, uint64_t txn_id, uint32_t keepalive_ms)
{
        CHECK_MUTABLE(m);
        m->txn_id = txn_id;
        m->txn_keepalive_ms = keepalive_ms;
        return 0;
}

int wal_msg_freeze(wal_msg *m, struct wal_msgid id)
{
        CHECK_MUTABLE(m);
        if (wal_msgid_is_none(id))
                return -EINVAL;
        m->id = id;
        m->immutable = true;
        return 0;
}

int wal_msg_copy(const wal_msg *m, wal_msg **ret)
{
        if (!m || !ret)
                return -EINVAL;
        wal_msg *c;
        int r = wal_msg_new(m->type, m->payload, m->payload_len, &c);
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->n_props && r >= 0; i++)
                r = wal_msg_set_prop(c, m->props[i].key, m->props[i].value);
        if (r >= 0)
                r = wal_msg_set_vchannel(c, m->vchannel);
        for (size_t i = 0; i < m->n_bodies && r >= 0; i++)
                r = wal_msg_txn_add_body(c, m->bodies[i]);
        if (r < 0) {
                wal_msg_unref(c);
                return r;
        }
        c->time_tick = m->time_tick;
        c->term = m->term;
        c->last_confirmed = m->last_confirmed;
        c->txn_id = m->txn_id;
        c->txn_keepalive_ms = m->txn_keepalive_ms;
        *ret = c;
        return 0;
}

size_t wal_msg_txn_body_count(const wal_msg *m)
{
        return m ? m->n_bodies : 0;
}

const wal_msg *wal_msg_txn_body_at(const wal_msg *m, size_t i)
{
        if (!m || i >= m->n_bodies)
                return NULL;
        return m->bodies[i];
}

int wal_msg_txn_add_body(wal_msg *m, wal_msg *body)
{
        CHECK_MUTABLE(m);
        /* A unit never holds another unit: nesting would let two mutable
         * units hold each other, a reference cycle that leaks and sends
         * wal_msg_size() into endless recursion. */
        if (!body || m->type != WAL_MSG_TXN || body->type == WAL_MSG_TXN)
                return -EINVAL;
        if (m->n_bodies == m->cap_bodies) {
                size_t cap = m->cap_bodies ? m->cap_bodies * 2 : 4;
                wal_msg **nb = realloc(m->bodies, cap * sizeof(*nb));
                if (!nb)
                        return -ENOMEM;
                m->bodies = nb;
                m->cap_bodies = cap;
        }
        m->bodies[m->n_bodies++] = wal_msg_ref(body);
        return 0;
}

/* ---- Arenas (see the top of the file) ---- */

#define CHUNK_FIRST ((size_t)64 << 10)
#define CHUNK_MAX ((size_t)2 << 20)
#define CARVE_ALIGN 16

struct wal_msg_arena {
        pthread_mutex_t lock;
        struct wal_msg_chunk *cur;    /* NULL before the first carve */
        size_t used;                  /* bytes of cur carved, header included */
        uint64_t carved;              /* messages carved from cur */
        size_t next_len;              /* length of the next chunk */
        struct wal_msg_chunk *spare;  /* the next chunk, faulted in ahead */
        atomic_bool want_spare;       /* cur is past half and there is none */
};

int wal_msg_arena_new(struct wal_msg_arena **ret)
{
        if (!ret)
                return -EINVAL;
        struct wal_msg_arena *a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        pthread_mutex_init(&a->lock, NULL);
        a->next_len = CHUNK_FIRST;
        *ret = a;
        return 0;
}

/* The arena's own hold on its current chunk ends (@a locked or dying). */
static void arena_retire(struct wal_msg_arena *a)
{
        if (a->cur)
                chunk_put(a->cur, CHUNK_BIAS - a->carved);
        a->cur = NULL;
        a->used = 0;
        a->carved = 0;
}

void wal_msg_arena_free(struct wal_msg_arena *a)
{
        if (!a)
                return;
        arena_retire(a);
        if (a->spare)
                chunk_put(a->spare, CHUNK_BIAS);
        pthread_mutex_destroy(&a->lock);
        free(a);
}

static size_t carve_round(size_t n)
{
        return (n + CARVE_ALIGN - 1) & ~(size_t)(CARVE_ALIGN - 1);
}

/* Map a chunk of @len bytes and fault it in now (write-populate), or NULL
 * when the system refuses the mapping.  No huge pages: on this project's
 * VMs (THP "madvise", defrag "madvise") an MADV_HUGEPAGE chunk took 4.5 ms
 * to populate once free huge pages ran out (direct compaction), against
 * 0.65 ms for 512 small pages. */
static struct wal_msg_chunk *chunk_new(size_t len)
{
        unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                return NULL;
        walu_populate(p, len);
        struct wal_msg_chunk *c = (struct wal_msg_chunk *)p;
        atomic_init(&c->refs, CHUNK_BIAS);
        atomic_fetch_add_explicit(&chunks_mapped, 1, memory_order_relaxed);
        c->len = len;
        const size_t hdr = carve_round(sizeof(*c));
        ARENA_POISON(p + hdr, len - hdr);
        return c;
}

/* @size bytes from @a, or NULL (too large for a chunk, or no memory);
 * *@chunk names the chunk the carve counts against. */
static void *arena_carve(struct wal_msg_arena *a, size_t size, struct wal_msg_chunk **chunk)
{
        const size_t hdr = carve_round(sizeof(struct wal_msg_chunk));
        if (size > CHUNK_MAX / 8)
                return NULL;
        const size_t want = size;
        size += CARVE_REDZONE;        /* left poisoned after the carve */
        pthread_mutex_lock(&a->lock);
        if (!a->cur || a->used + size > a->cur->len) {
                size_t len = a->next_len;
                while (hdr + size > len / 2)
                        len *= 2;
                struct wal_msg_chunk *c = NULL;
                if (a->spare && a->spare->len >= len) {
                        c = a->spare;
                        a->spare = NULL;
                } else {
                        /* A spare too small for this chunk (made before a
                         * large copy, or before next_len grew) goes: kept,
                         * it would stop the arena asking for spares for
                         * good. */
                        if (a->spare) {
                                chunk_put(a->spare, CHUNK_BIAS);
                                a->spare = NULL;
                        }
                        if (!(c = chunk_new(len))) {
                                pthread_mutex_unlock(&a->lock);
                                return NULL;
                        }
                }
                arena_retire(a);
                a->cur = c;
                a->used = hdr;
                if (a->next_len < CHUNK_MAX)
                        a->next_len *= 2;
        }
        void *p = (unsigned char *)a->cur + a->used;
        a->used += size;
        a->carved++;
        *chunk = a->cur;
        if (!a->spare && a->used > a->cur->len / 2 &&
            !atomic_load_explicit(&a->want_spare, memory_order_relaxed))
                atomic_store_explicit(&a->want_spare, true, memory_order_relaxed);
        pthread_mutex_unlock(&a->lock);
        ARENA_UNPOISON(p, want);
        return p;
}

bool wal_msg_arena_wants_spare(struct wal_msg_arena *a)
{
        return a && atomic_load_explicit(&a->want_spare, memory_order_relaxed);
}

void wal_msg_arena_fill_spare(struct wal_msg_arena *a)
{
        if (!a || !atomic_exchange(&a->want_spare, false))
                return;
        pthread_mutex_lock(&a->lock);
        size_t len = a->spare ? 0 : a->next_len;
        pthread_mutex_unlock(&a->lock);
        /* Mapped and faulted in outside the lock: carving goes on meanwhile. */
        struct wal_msg_chunk *c = len ? chunk_new(len) : NULL;
        if (!c)
                return;
        pthread_mutex_lock(&a->lock);
        if (!a->spare) {
                a->spare = c;
                c = NULL;
        }
        pthread_mutex_unlock(&a->lock);
        if (c)
                chunk_put(c, CHUNK_BIAS);
}

int wal_msg_copy_in(struct wal_msg_arena *a, const wal_msg *m, wal_msg **ret)
{
        if (!m || !ret)
                return -EINVAL;
        if (!a || m->n_bodies)
                return wal_msg_copy(m, ret);
        /* Sizes of the parts, each rounded so the next stays aligned. */
        size_t strs = m->vchannel ? strlen(m->vchannel) + 1 : 0;
        for (size_t i = 0; i < m->n_props; i++)
                strs += strlen(m->props[i].key) + strlen(m->props[i].value) + 2;
        if (m->payload_len > CHUNK_MAX || strs > CHUNK_MAX || m->n_props > CHUNK_MAX)
                return wal_msg_copy(m, ret);
        size_t head = carve_round(sizeof(struct wal_msg) + m->payload_len + 1);
        size_t arr = carve_round(m->n_props * sizeof(struct wal_prop_pair));
        struct wal_msg_chunk *chunk;
        const size_t carve = head + arr + carve_round(strs);
        unsigned char *p = arena_carve(a, carve, &chunk);
        if (!p)
                return wal_msg_copy(m, ret);
        wal_msg *c = (wal_msg *)p;
        *c = (struct wal_msg){
                .type = m->type,
                .inline_strs = true,
                .chunk = chunk,
                .carve_len = (uint32_t)carve,
                .props = m->n_props ? (struct wal_prop_pair *)(p + head) : NULL,
                .n_props = m->n_props,
                .cap_props = m->n_props,
                .props_bytes = m->props_bytes,
                .time_tick = m->time_tick,
                .term = m->term,
                .id = WAL_MSGID_NONE,
                .last_confirmed = m->last_confirmed,
                .txn_id = m->txn_id,
                .txn_keepalive_ms = m->txn_keepalive_ms,
                .payload_len = m->payload_len,
        };
        atomic_init(&c->refs, 1);
        if (m->payload_len)
                memcpy(c->payload, m->payload, m->payload_len);
        c->payload[m->payload_len] = '\0';
        char *s = (char *)(p + head + arr);
        for (size_t i = 0; i < m->n_props; i++) {
                size_t kl = strlen(m->props[i].key) + 1, vl = strlen(m->props[i].value) + 1;
                c->props[i].key = memcpy(s, m->props[i].key, kl);
                s += kl;
                c->props[i].value = memcpy(s, m->props[i].value, vl);
                s += vl;
        }
        if (m->vchannel)
                c->vchannel = memcpy(s, m->vchannel, strlen(m->vchannel) + 1);
        *ret = c;
        return 0;
}
