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
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <wal/wal-message.h>

#include "wal/message-internal.h"

struct wal_prop_pair {
        char *key;
        char *value;
};

struct wal_msg {
        atomic_uint refs;
        enum wal_msg_type type;
        bool immutable;
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
        char *v = NULL;
        if (vchannel && !(v = strdup(vchannel)))
                return -ENOMEM;
        free(m->vchannel);
        m->vchannel = v;
        return 0;
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
        for (size_t i = 0; i < m->n_props; i++) {
                free(m->props[i].key);
                free(m->props[i].value);
        }
        free(m->props);
        for (size_t i = 0; i < m->n_bodies; i++)
                wal_msg_unref(m->bodies[i]);
        free(m->bodies);
        free(m->vchannel);
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
