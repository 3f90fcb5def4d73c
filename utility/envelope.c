/* SPDX-License-Identifier: MIT */
/*
 * utility/envelope.c: the message envelope codec (utility/envelope.h).
 *
 * Encoding writes the protobuf wire format of envelope.proto directly into
 * the caller's buffer (no allocation; see the writer below).  Decoding
 * checks the size cap, then reads the wire format in place (see "Decoding"
 * below): it accepts and refuses exactly what protobuf-c's unpack followed
 * by the field checks did, and that protobuf-c path stays here as the
 * reference the differential tests compare against.
 *
 * ---- The envelope format, version 1 ----
 *
 * One protobuf (proto3) message `walu.Envelope`.  A field at its default
 * value (0, false, "") is absent on the wire, so a plain data message with
 * no properties encodes as 4 bytes (version and type).
 *
 *   no  field             type      meaning
 *    1  version           uint32    format version, WALU_ENVELOPE_VERSION (1);
 *                                   required: 0 (absent) is refused
 *    2  type              uint32    enum wal_msg_type: 1 data, 2 time tick,
 *                                   3 txn begin, 4 txn commit, 5 txn
 *                                   rollback, 6 txn (one unit); else refused
 *    3  properties        repeated  walu.Property { 1 key: bytes,
 *                                   2 value: bytes }, in first-set order;
 *                                   keys are non-empty and unique
 *    4  vchannel          bytes     virtual channel; "" = none (every vchannel)
 *
 * Text fields (key, value, vchannel) are C strings: any bytes but NUL, no
 * UTF-8 requirement.  They are declared `bytes` (wire-identical to
 * `string`) so that the decoder sees their lengths and refuses an embedded
 * NUL rather than silently truncating.
 *    5  time_tick         uint64    hybrid logical clock (ms << 18 | logical)
 *    6  term              int64     term of the writer
 *    7  has_lc            bool      fields 8-9 carry a last-confirmed ID;
 *                                   false = WAL_MSGID_NONE (proto3 has no
 *                                   presence, and 0-0 is a valid ID)
 *    8  lc_hi             uint64    last-confirmed ID, high half
 *    9  lc_lo             uint64    last-confirmed ID, low half
 *   10  txn_id            uint64    transaction ID, 0 = not in a transaction
 *   11  txn_keepalive_ms  uint32    transaction keepalive, 0 = none
 *
 * Not carried: the payload (stored beside the envelope by the backend), the
 * message ID (it is the record's position, known to the backend), and the
 * bodies of a WAL_MSG_TXN message (the adaptor assembles those on read from
 * the individual records).
 *
 * Limits: an envelope larger than WALU_ENVELOPE_MAX (1 MiB) is refused on
 * both sides (-EMSGSIZE encoding, -EBADMSG decoding), before any unpacking.
 *
 * Evolution: field numbers are never reused or retyped.  A new field whose
 * absence old readers may safely ignore is added under a new number without
 * a version change (protobuf skips unknown fields).  A change an old reader
 * would misread (new meaning of an existing field, a field that must not be
 * ignored) increments `version`; readers accept only the versions they know
 * and refuse others with -EBADMSG naming the version, rather than guess.
 *
 * Foreign records: a record with no envelope at all (written by another
 * producer, e.g. kcat into the Kafka topic) decodes as a plain data message
 * holding the payload.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include <wal/wal-error.h>
#include <wal/wal-message.h>
#include "utility/envelope.h"
#include "utility/walu.h"

#include "envelope.pb-c.h"

/*
 * Encoding writes the wire format directly: every field is a varint or a
 * length-delimited string, so a hand-written writer is a few lines, needs no
 * allocation and no intermediate structs, and runs several times faster
 * than filling protobuf-c's structs and packing them (the local backend
 * encodes one envelope per record).  Its output is byte-identical to
 * protobuf-c's packer (fields in number order, proto3 defaults omitted);
 * tests/utility/test-envelope.c pins the bytes and decodes them back
 * through protobuf-c.
 */
enum {
        WIRE_VARINT = 0,
        WIRE_LEN = 2,
};
#define TAG(field, wire) ((uint8_t)((field) << 3 | (wire)))

struct writer {
        uint8_t *p, *end;
        size_t n;                       /* bytes the envelope needs */
};

static inline size_t varint_len(uint64_t v)
{
        size_t n = 1;
        while (v >= 0x80) {
                v >>= 7;
                n++;
        }
        return n;
}

static inline void put_byte(struct writer *w, uint8_t b)
{
        if (w->p < w->end)
                *w->p++ = b;
        w->n++;
}

static inline void put_varint(struct writer *w, uint64_t v)
{
        if ((size_t)(w->end - w->p) >= 10) {
                uint8_t *q = w->p;
                while (v >= 0x80) {
                        *q++ = (uint8_t)(v | 0x80);
                        v >>= 7;
                }
                *q++ = (uint8_t)v;
                w->n += (size_t)(q - w->p);
                w->p = q;
                return;
        }
        while (v >= 0x80) {
                put_byte(w, (uint8_t)(v | 0x80));
                v >>= 7;
        }
        put_byte(w, (uint8_t)v);
}

static inline void put_bytes(struct writer *w, const void *src, size_t len)
{
        if ((size_t)(w->end - w->p) >= len) {
                memcpy(w->p, src, len);
                w->p += len;
        } else {
                w->p = w->end;          /* out of room: only count from here */
        }
        w->n += len;
}

/* A varint field, omitted at its default 0 (proto3). */
static inline void put_uint_field(struct writer *w, unsigned field, uint64_t v)
{
        if (!v)
                return;
        put_byte(w, TAG(field, WIRE_VARINT));
        put_varint(w, v);
}

/* A string field of @len bytes, omitted when empty (proto3). */
static inline void put_str_field(struct writer *w, unsigned field, const char *s,
                                 size_t len)
{
        if (!len)
                return;
        put_byte(w, TAG(field, WIRE_LEN));
        put_varint(w, len);
        put_bytes(w, s, len);
}

/*
 * Write @m's envelope through @w.  With a zero-sized writer it only counts:
 * w->n is the encoded size either way.  Once the buffer runs out, w->p stays
 * at w->end and the rest is counted, not written.
 */
static void write_envelope(struct writer *w, const wal_msg *m)
{
        put_uint_field(w, 1, WALU_ENVELOPE_VERSION);
        put_uint_field(w, 2, (uint64_t)wal_msg_type(m));
        size_t n = wal_msg_prop_count(m);
        for (size_t i = 0; i < n; i++) {
                const char *k = NULL, *v = NULL;
                wal_msg_prop_at(m, i, &k, &v);
                size_t kl = strlen(k), vl = strlen(v);
                size_t sub = (kl ? 1 + varint_len(kl) + kl : 0) +
                             (vl ? 1 + varint_len(vl) + vl : 0);
                put_byte(w, TAG(3, WIRE_LEN));
                put_varint(w, sub);
                put_str_field(w, 1, k, kl);
                put_str_field(w, 2, v, vl);
        }
        const char *vc = wal_msg_vchannel(m);
        if (vc)
                put_str_field(w, 4, vc, strlen(vc));
        put_uint_field(w, 5, wal_msg_time_tick(m));
        /* int64: two's complement as a 64-bit varint (10 bytes if negative). */
        put_uint_field(w, 6, (uint64_t)wal_msg_term(m));
        struct wal_msgid lc = wal_msg_last_confirmed(m);
        if (!wal_msgid_is_none(lc)) {
                put_uint_field(w, 7, 1);
                put_uint_field(w, 8, lc.hi);
                put_uint_field(w, 9, lc.lo);
        }
        put_uint_field(w, 10, wal_msg_txn_id(m));
        put_uint_field(w, 11, wal_msg_txn_keepalive_ms(m));
}

size_t walu_envelope_size(const wal_msg *m)
{
        if (!m)
                return 0;
        struct writer w = { NULL, NULL, 0 };
        write_envelope(&w, m);
        return w.n;
}

/* The most a plain envelope (no property, no vchannel) can take: tags and
 * varints of version, type, time tick, term, has_lc, lc_hi, lc_lo, txn_id
 * and txn_keepalive_ms at their longest. */
#define PLAIN_MAX (2 + 2 + 11 + 11 + 2 + 11 + 11 + 11 + 6)

static inline uint8_t *plain_varint(uint8_t *q, uint64_t v)
{
        while (v >= 0x80) {
                *q++ = (uint8_t)(v | 0x80);
                v >>= 7;
        }
        *q++ = (uint8_t)v;
        return q;
}

static inline uint8_t *plain_uint_field(uint8_t *q, unsigned field, uint64_t v)
{
        if (!v)
                return q;
        *q++ = TAG(field, WIRE_VARINT);
        return plain_varint(q, v);
}

/*
 * write_envelope() for the usual message, one with neither properties nor
 * vchannel, into a buffer of at least PLAIN_MAX bytes: the same bytes,
 * written through a local pointer with no bounds to check (backends encode
 * one envelope per record, and the general writer's state round-trips
 * through memory around every accessor call).  Returns the length.
 */
static size_t write_plain_envelope(const wal_msg *m, uint8_t *buf)
{
        uint64_t type = (uint64_t)wal_msg_type(m), tick = wal_msg_time_tick(m);
        uint64_t term = (uint64_t)wal_msg_term(m), txn = wal_msg_txn_id(m);
        uint64_t keepalive = wal_msg_txn_keepalive_ms(m);
        struct wal_msgid lc = wal_msg_last_confirmed(m);
        uint8_t *q = plain_uint_field(buf, 1, WALU_ENVELOPE_VERSION);
        q = plain_uint_field(q, 2, type);
        q = plain_uint_field(q, 5, tick);
        q = plain_uint_field(q, 6, term);
        if (!wal_msgid_is_none(lc)) {
                q = plain_uint_field(q, 7, 1);
                q = plain_uint_field(q, 8, lc.hi);
                q = plain_uint_field(q, 9, lc.lo);
        }
        q = plain_uint_field(q, 10, txn);
        q = plain_uint_field(q, 11, keepalive);
        return (size_t)(q - buf);
}

int walu_envelope_encode(const wal_msg *m, uint8_t *buf, size_t len)
{
        if (!m || (!buf && len > 0))
                return -EINVAL;
        if (len >= PLAIN_MAX && wal_msg_prop_count(m) == 0 && !wal_msg_vchannel(m))
                return (int)write_plain_envelope(m, buf);
        struct writer w = { buf, buf ? buf + len : NULL, 0 };
        write_envelope(&w, m);
        if (w.n > WALU_ENVELOPE_MAX)
                return -EMSGSIZE;
        if (w.n > len)
                return -ENOSPC;
        return (int)w.n;
}

/* ---- Reference decoder (protobuf-c) ---- */

/*
 * walu_envelope_decode_protobuf() is the decoder the library used before the
 * hand-written one below: protobuf-c unpacks, then every field is validated.
 * Only the differential tests call it (tests/utility/test-envelope-diff.c and
 * its fuzz target), to show the two accept and reject the same inputs with
 * the same results.
 *
 * protobuf-c allocates every piece of an unpacked message separately (the
 * envelope, the property array, each property, each byte string).  Decoding
 * lends it a bump arena on the stack instead; what does not fit falls back
 * to malloc and is counted, so free_unpacked runs only when something was
 * really allocated (arena pieces are freed as a no-op).
 */
#define ARENA_BYTES 4096

struct arena {
        _Alignas(16) unsigned char mem[ARENA_BYTES];
        size_t used;
        size_t n_heap;                  /* live malloc fallbacks */
};

static void *arena_alloc(void *data, size_t size)
{
        struct arena *a = data;
        size_t need = (size + 15) & ~(size_t)15;
        if (need >= size && need <= ARENA_BYTES - a->used) {
                void *p = a->mem + a->used;
                a->used += need;
                return p;
        }
        void *p = malloc(size ? size : 1);
        if (p)
                a->n_heap++;
        return p;
}

static void arena_free(void *data, void *p)
{
        struct arena *a = data;
        unsigned char *c = p;
        if (!c || (c >= a->mem && c < a->mem + ARENA_BYTES))
                return;
        free(p);
        a->n_heap--;
}

/*
 * Copy the text field @b into a C string: into @stack (@stack_len bytes)
 * when it fits, else into a new allocation stored in *heap (freed by the
 * caller).  NULL with *err set: -EBADMSG for an embedded NUL, -ENOMEM.
 */
static const char *text_of(const uint8_t *data, size_t len, char *stack, size_t stack_len,
                           char **heap, int *err)
{
        if (len && memchr(data, '\0', len)) {
                *err = -EBADMSG;
                return NULL;
        }
        char *s = stack;
        if (len >= stack_len) {
                s = *heap = malloc(len + 1);
                if (!s) {
                        *err = -ENOMEM;
                        return NULL;
                }
        }
        if (len)
                memcpy(s, data, len);
        s[len] = '\0';
        return s;
}

/*
 * Set property @i (key @kd/@kl, value @vd/@vl, as on the wire) on @m.
 * 0, -EBADMSG or -ENOMEM.  Shared by both decoders.
 */
static int apply_prop(const uint8_t *kd, size_t kl, const uint8_t *vd, size_t vl, size_t i,
                      wal_msg *m, wal_error **reterr)
{
        char kbuf[128], vbuf[256];
        char *kheap = NULL, *vheap = NULL;
        int r = 0;
        if (kl == 0)
                return wal_error_set(reterr, -EBADMSG, 0,
                                     "envelope: property %zu has an empty key", i);
        const char *k = text_of(kd, kl, kbuf, sizeof(kbuf), &kheap, &r);
        if (!k) {
                r = wal_error_set(reterr, r, 0, "envelope: property %zu key: %s", i,
                                  r == -EBADMSG ? "contains a NUL byte" : wal_strerror(r));
                goto out;
        }
        const char *v = text_of(vd, vl, vbuf, sizeof(vbuf), &vheap, &r);
        if (!v) {
                r = wal_error_set(reterr, r, 0, "envelope: property '%s' value: %s", k,
                                  r == -EBADMSG ? "contains a NUL byte" : wal_strerror(r));
                goto out;
        }
        r = wal_msg_set_prop(m, k, v);
        if (r < 0) {
                r = wal_error_set(reterr, r, 0, "envelope: storing property '%s': %s", k,
                                  wal_strerror(r));
                goto out;
        }
        /* A repeated key replaced the earlier value: the count did not
         * grow.  Our encoder never writes that. */
        if (wal_msg_prop_count(m) != i + 1)
                r = wal_error_set(reterr, -EBADMSG, 0,
                                  "envelope: duplicate property key '%s'", k);
out:
        free(kheap);
        free(vheap);
        return r;
}

/* Set the vchannel @d/@len (non-empty) on @m.  0, -EBADMSG or -ENOMEM. */
static int apply_vchannel(const uint8_t *d, size_t len, wal_msg *m, wal_error **reterr)
{
        char vbuf[128], *vheap = NULL;
        int r = 0;
        const char *vc = text_of(d, len, vbuf, sizeof(vbuf), &vheap, &r);
        if (vc)
                r = wal_msg_set_vchannel(m, vc);
        free(vheap);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "envelope: vchannel: %s",
                                     r == -EBADMSG ? "contains a NUL byte" : wal_strerror(r));
        return 0;
}

/* Fill @m from the unpacked envelope @e.  0, -EBADMSG or -ENOMEM. */
static int apply(const Walu__Envelope *e, wal_msg *m, wal_error **reterr)
{
        int r;
        for (size_t i = 0; i < e->n_properties; i++) {
                const Walu__Property *p = e->properties[i];
                r = apply_prop(p->key.data, p->key.len, p->value.data, p->value.len, i, m,
                               reterr);
                if (r < 0)
                        return r;
        }
        if (e->vchannel.len) {
                r = apply_vchannel(e->vchannel.data, e->vchannel.len, m, reterr);
                if (r < 0)
                        return r;
        }
        wal_msg_set_time_tick(m, e->time_tick);
        wal_msg_set_term(m, e->term);
        if (e->has_lc)
                wal_msg_set_last_confirmed(m, WAL_MSGID(e->lc_hi, e->lc_lo));
        wal_msg_set_txn(m, e->txn_id, e->txn_keepalive_ms);
        return 0;
}

/*
 * What both decoders check first: the arguments, the foreign record (no
 * envelope: a plain data message, stored in *ret) and the size cap.
 * Returns 1 when there is an envelope to decode, 0 when *ret was set, or a
 * negative errno.
 */
static int decode_prologue(const uint8_t *env, size_t env_len, const void *payload,
                           size_t payload_len, wal_msg **ret, wal_error **reterr)
{
        if (!ret)
                return wal_error_set(reterr, -EINVAL, 0, "envelope: NULL result pointer");
        if (!env && env_len > 0)
                return wal_error_set(reterr, -EINVAL, 0,
                                     "envelope: NULL envelope with length %zu", env_len);
        if (!payload && payload_len > 0)
                return wal_error_set(reterr, -EINVAL, 0,
                                     "envelope: NULL payload with length %zu", payload_len);

        wal_msg *m = NULL;
        int r;
        if (!env) {
                /* Foreign record: the payload is all there is. */
                r = wal_msg_new(WAL_MSG_DATA, payload, payload_len, &m);
                if (r < 0)
                        return wal_error_set(reterr, r, 0,
                                             "envelope: %zu-byte payload: %s",
                                             payload_len, wal_strerror(r));
                *ret = m;
                return 0;
        }

        if (env_len > WALU_ENVELOPE_MAX)
                return wal_error_set(reterr, -EBADMSG, 0,
                                     "envelope: %zu bytes exceeds the %u-byte limit",
                                     env_len, (unsigned)WALU_ENVELOPE_MAX);
        return 1;
}

int walu_envelope_decode_protobuf(const uint8_t *env, size_t env_len, const void *payload,
                                  size_t payload_len, wal_msg **ret, wal_error **reterr)
{
        int r = decode_prologue(env, env_len, payload, payload_len, ret, reterr);
        if (r <= 0)
                return r;
        wal_msg *m = NULL;
        struct arena arena;
        arena.used = 0;
        arena.n_heap = 0;
        ProtobufCAllocator alloc = {
                .alloc = arena_alloc,
                .free = arena_free,
                .allocator_data = &arena,
        };
        Walu__Envelope *e = walu__envelope__unpack(&alloc, env_len, env);
        if (!e)
                return wal_error_set(reterr, -EBADMSG, 0,
                                     "envelope: %zu bytes are not a valid envelope message",
                                     env_len);
        if (e->version != WALU_ENVELOPE_VERSION) {
                r = wal_error_set(reterr, -EBADMSG, 0,
                                  "envelope: unknown version %u (this build reads %u)",
                                  e->version, (unsigned)WALU_ENVELOPE_VERSION);
                goto out;
        }
        if (!wal_msg_type_name((enum wal_msg_type)e->type)) {
                r = wal_error_set(reterr, -EBADMSG, 0,
                                  "envelope: message type %u out of range 1..%d",
                                  e->type, WAL_MSG_TYPE_MAX);
                goto out;
        }
        r = wal_msg_new((enum wal_msg_type)e->type, payload, payload_len, &m);
        if (r < 0) {
                r = wal_error_set(reterr, r, 0, "envelope: %zu-byte payload: %s",
                                  payload_len, wal_strerror(r));
                goto out;
        }
        r = apply(e, m, reterr);
        if (r < 0) {
                m = wal_msg_unref(m);
                goto out;
        }
        *ret = m;
        r = 0;
out:
        if (arena.n_heap)
                walu__envelope__free_unpacked(e, &alloc);
        return r;
}

/* ---- Decoding ---- */

/*
 * The decoder reads the wire format in place: no unpacking into structs, no
 * copies of the fields, no allocation besides the message itself (and its
 * property strings).  It accepts and refuses exactly what protobuf-c 1.4's
 * unpack followed by the checks of the reference decoder above does, field
 * by field (tests/utility/test-envelope-diff.c and the fuzz-envelope-diff
 * target compare the two):
 *
 * - A tag is a varint of at most 5 bytes within the input, truncated to 32
 *   bits, whose first byte has a field bit set (so a one-byte field 0 is
 *   refused); field numbers 1-11 (1-2 in a property) are known, all others
 *   are skipped as unknown fields of any valid wire type.
 * - Wire types 0 (varint, at most 10 bytes), 1 (8 bytes), 2 (length prefix
 *   of at most 5 bytes, then that many bytes) and 5 (4 bytes) must fit in
 *   what is left; 3, 4 (groups), 6 and 7 are refused.
 * - A known integer field must be a varint (uint32 keeps the low 32 bits of
 *   the value); a bytes or property field must be length-delimited.  The bool
 *   has_lc takes any wire type and is true when any byte after its tag (the
 *   length prefix included) has a non-zero low 7 bits, as protobuf-c reads
 *   it.
 * - A singular field given twice keeps the last value; properties keep wire
 *   order.
 * - The whole envelope (properties included) is checked before any field is
 *   used, so a structural fault anywhere is reported as such, ahead of the
 *   version and type checks, as protobuf-c's failed unpack was.
 */
enum {
        WIRE_I64 = 1,
        WIRE_I32 = 5,
};

struct wire_field {
        uint32_t num;                   /* field number, truncated to 32 bits */
        unsigned wire;                  /* wire type */
        const uint8_t *raw;             /* bytes after the tag */
        size_t raw_len;                 /* ... up to the next tag */
        const uint8_t *data;            /* content: varint/fixed bytes, or the */
        size_t len;                     /* ... length-delimited bytes */
};

/* Value of the varint @p (@n bytes, already scanned): protobuf-c's rules. */
static inline uint64_t varint_value(const uint8_t *p, size_t n)
{
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++)
                v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        return v;
}

/*
 * Read the field at *pp (before @end) into @f and advance *pp past it.
 * 1: a field; 0: at the end; -1: malformed.
 */
static int next_field(const uint8_t **pp, const uint8_t *end, struct wire_field *f)
{
        const uint8_t *p = *pp;
        size_t rem = (size_t)(end - p);
        if (!rem)
                return 0;
        /* protobuf-c refuses a first tag byte whose field bits are all zero
         * (field 0 in one byte); 0x80 0x00 (field 0 in two) passes. */
        if (!(p[0] & 0xf8))
                return -1;

        uint32_t num = (uint32_t)(p[0] & 0x7f) >> 3;
        size_t used = 1;
        f->wire = p[0] & 7;
        if (p[0] & 0x80) {
                size_t max = rem < 5 ? rem : 5;
                unsigned shift = 4;
                for (;;) {
                        if (used == max)
                                return -1;
                        uint8_t b = p[used++];
                        num |= (uint32_t)(b & 0x7f) << shift;
                        if (!(b & 0x80))
                                break;
                        shift += 7;
                }
        }
        p += used;
        rem -= used;
        f->num = num;
        f->raw = p;

        size_t n, pre = 0;
        switch (f->wire) {
        case WIRE_VARINT: {
                size_t max = rem < 10 ? rem : 10;
                for (n = 0; n < max && (p[n] & 0x80); n++)
                        ;
                if (n == max)
                        return -1;
                n++;
                break;
        }
        case WIRE_I64:
                if (rem < 8)
                        return -1;
                n = 8;
                break;
        case WIRE_I32:
                if (rem < 4)
                        return -1;
                n = 4;
                break;
        case WIRE_LEN: {
                size_t max = rem < 5 ? rem : 5;
                uint64_t len = 0;
                for (pre = 0; pre < max; pre++) {
                        len |= (uint64_t)(p[pre] & 0x7f) << (7 * pre);
                        if (!(p[pre] & 0x80))
                                break;
                }
                if (pre == max)
                        return -1;
                pre++;
                /* protobuf-c computes the length in 32 bits; a length that
                 * wraps there still ends beyond any input we accept. */
                len &= 0xffffffffu;
                if (len > rem - pre)
                        return -1;
                n = pre + (size_t)len;
                break;
        }
        default:
                return -1;
        }
        f->raw_len = n;
        f->data = p + pre;
        f->len = n - pre;
        *pp = p + n;
        return 1;
}

/* has_lc as protobuf-c reads a bool: any content bit after the tag. */
static bool bool_value(const struct wire_field *f)
{
        for (size_t i = 0; i < f->raw_len; i++)
                if (f->raw[i] & 0x7f)
                        return true;
        return false;
}

/*
 * Check the property @d/@len and find its key and value (last of each wins,
 * absent = empty).  false if malformed.
 */
static bool scan_prop(const uint8_t *d, size_t len, const uint8_t **k, size_t *kl,
                      const uint8_t **v, size_t *vl)
{
        const uint8_t *p = d, *end = d + len;
        struct wire_field f;
        int r;
        *k = *v = NULL;
        *kl = *vl = 0;
        while ((r = next_field(&p, end, &f)) > 0) {
                if (f.num != 1 && f.num != 2)
                        continue;
                if (f.wire != WIRE_LEN)
                        return false;
                if (f.num == 1) {
                        *k = f.data;
                        *kl = f.len;
                } else {
                        *v = f.data;
                        *vl = f.len;
                }
        }
        return r == 0;
}

/* The envelope's fields, as views into the input. */
struct env_view {
        uint32_t version, type, txn_keepalive_ms;
        uint64_t time_tick, lc_hi, lc_lo, txn_id;
        int64_t term;
        bool has_lc;
        size_t n_props;
        const uint8_t *vchannel;
        size_t vchannel_len;
};

/* Check the whole envelope @env/@len and fill @e.  false if malformed. */
static bool scan_envelope(const uint8_t *env, size_t len, struct env_view *e)
{
        const uint8_t *p = env, *end = env + len;
        struct wire_field f;
        int r;
        *e = (struct env_view){ 0 };
        while ((r = next_field(&p, end, &f)) > 0) {
                if (f.num == 7) {
                        e->has_lc = bool_value(&f);
                        continue;
                }
                if (f.num == 3 || f.num == 4) {
                        if (f.wire != WIRE_LEN)
                                return false;
                        if (f.num == 4) {
                                e->vchannel = f.data;
                                e->vchannel_len = f.len;
                        } else {
                                const uint8_t *k, *v;
                                size_t kl, vl;
                                if (!scan_prop(f.data, f.len, &k, &kl, &v, &vl))
                                        return false;
                                e->n_props++;
                        }
                        continue;
                }
                if (f.num < 1 || f.num > 11)
                        continue;               /* unknown field: skipped */
                if (f.wire != WIRE_VARINT)
                        return false;
                uint64_t v = varint_value(f.data, f.len);
                switch (f.num) {
                case 1: e->version = (uint32_t)v; break;
                case 2: e->type = (uint32_t)v; break;
                case 5: e->time_tick = v; break;
                case 6: e->term = (int64_t)v; break;
                case 8: e->lc_hi = v; break;
                case 9: e->lc_lo = v; break;
                case 10: e->txn_id = v; break;
                case 11: e->txn_keepalive_ms = (uint32_t)v; break;
                }
        }
        return r == 0;
}

/* Set the properties of the checked envelope @env/@len on @m, in wire order. */
static int apply_props(const uint8_t *env, size_t len, wal_msg *m, wal_error **reterr)
{
        const uint8_t *p = env, *end = env + len;
        struct wire_field f;
        size_t i = 0;
        while (next_field(&p, end, &f) > 0) {
                if (f.num != 3)
                        continue;
                const uint8_t *k, *v;
                size_t kl, vl;
                scan_prop(f.data, f.len, &k, &kl, &v, &vl);
                int r = apply_prop(k, kl, v, vl, i++, m, reterr);
                if (r < 0)
                        return r;
        }
        return 0;
}

/*
 * One field of a plain envelope at *@pp: a one-byte tag of a known integer
 * field (1, 2, 5-11) and its varint value (@ret, and in @ret_any the OR of
 * its 7-bit groups: a bool is true when any is set).  @returns the field
 * number, or 0 for anything else (the caller then takes the general path,
 * which decides).  Inlined into both plain readers below: they run once per
 * record in a replay.
 */
static inline __attribute__((always_inline)) unsigned
plain_field(const uint8_t **pp, const uint8_t *end, uint64_t *ret, unsigned *ret_any)
{
        const uint8_t *p = *pp;
        unsigned tag = *p++;
        unsigned num = tag >> 3;
        if ((tag & 0x87) != WIRE_VARINT || num == 0 || num == 3 || num == 4 || num > 11)
                return 0;
        if (p < end && !(*p & 0x80)) {
                /* one-byte value: the usual version, type and flags */
                *ret = *p;
                *ret_any = *p++;
                *pp = p;
                return num;
        }
        uint64_t x = 0;
        unsigned any = 0;
        for (unsigned i = 0;; i++) {
                if (p == end || i == 10)
                        return 0;
                unsigned b = *p++;
                x |= (uint64_t)(b & 0x7f) << (7 * i);
                any |= b & 0x7f;
                if (!(b & 0x80))
                        break;
        }
        *ret = x;
        *ret_any = any;
        *pp = p;
        return num;
}

/*
 * The common envelope in one tight loop: only integer fields (1, 2, 5-11)
 * with one-byte tags and varint values, no properties, no vchannel, no
 * unknown field.  Fills @e exactly as scan_envelope() would and returns
 * true; false for anything else (not necessarily invalid: the caller then
 * runs scan_envelope(), which decides).  A replay of small records spends
 * a good part of its time here.
 */
static bool scan_plain_envelope(const uint8_t *p, size_t len, struct env_view *e)
{
        const uint8_t *end = p + len;
        /* Field by field: a struct-wide zeroing becomes `rep stos`, whose
         * start-up cost is most of this function's for a 4-byte envelope. */
        e->version = e->type = e->txn_keepalive_ms = 0;
        e->time_tick = e->lc_hi = e->lc_lo = e->txn_id = 0;
        e->term = 0;
        e->has_lc = false;
        e->n_props = 0;
        e->vchannel = NULL;
        e->vchannel_len = 0;
        while (p < end) {
                uint64_t v;
                unsigned any;
                unsigned num = plain_field(&p, end, &v, &any);
                if (!num)
                        return false;
                switch (num) {
                case 1: e->version = (uint32_t)v; break;
                case 2: e->type = (uint32_t)v; break;
                case 5: e->time_tick = v; break;
                case 6: e->term = (int64_t)v; break;
                case 7: e->has_lc = any != 0; break;
                case 8: e->lc_hi = v; break;
                case 9: e->lc_lo = v; break;
                case 10: e->txn_id = v; break;
                case 11: e->txn_keepalive_ms = (uint32_t)v; break;
                }
        }
        return true;
}

/* Scan @env into @e (the plain fast path, else the general one) and check
 * what both the decoder and the view reader require of it: its version and
 * a known message type. */
static int scan_checked(const uint8_t *env, size_t env_len, struct env_view *e,
                        wal_error **reterr)
{
        if (!scan_plain_envelope(env, env_len, e) && !scan_envelope(env, env_len, e))
                return wal_error_set(reterr, -EBADMSG, 0,
                                     "envelope: %zu bytes are not a valid envelope message",
                                     env_len);
        if (e->version != WALU_ENVELOPE_VERSION)
                return wal_error_set(reterr, -EBADMSG, 0,
                                     "envelope: unknown version %u (this build reads %u)",
                                     e->version, (unsigned)WALU_ENVELOPE_VERSION);
        if (!wal_msg_type_name((enum wal_msg_type)e->type))
                return wal_error_set(reterr, -EBADMSG, 0,
                                     "envelope: message type %u out of range 1..%d",
                                     e->type, WAL_MSG_TYPE_MAX);
        return 0;
}

int walu_envelope_decode(const uint8_t *env, size_t env_len, const void *payload,
                         size_t payload_len, wal_msg **ret, wal_error **reterr)
{
        int r = decode_prologue(env, env_len, payload, payload_len, ret, reterr);
        if (r <= 0)
                return r;
        wal_msg *m = NULL;
        struct env_view e;
        r = scan_checked(env, env_len, &e, reterr);
        if (r < 0)
                return r;
        r = wal_msg_new((enum wal_msg_type)e.type, payload, payload_len, &m);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "envelope: %zu-byte payload: %s",
                                     payload_len, wal_strerror(r));
        if (e.n_props) {
                r = apply_props(env, env_len, m, reterr);
                if (r < 0)
                        goto fail;
        }
        if (e.vchannel_len) {
                r = apply_vchannel(e.vchannel, e.vchannel_len, m, reterr);
                if (r < 0)
                        goto fail;
        }
        wal_msg_set_time_tick(m, e.time_tick);
        wal_msg_set_term(m, e.term);
        if (e.has_lc)
                wal_msg_set_last_confirmed(m, WAL_MSGID(e.lc_hi, e.lc_lo));
        wal_msg_set_txn(m, e.txn_id, e.txn_keepalive_ms);
        *ret = m;
        return 0;
fail:
        wal_msg_unref(m);
        return r;
}

/* ---- Views: the envelope read in place ---- */

/*
 * The view of a plain envelope (scan_plain_envelope's case: varint fields
 * only, no property, no vchannel) straight into @v, with scan_checked()'s
 * checks (version, known type).  The replay of small records reads one per
 * record, so this is scan_plain_envelope() without the intermediate struct
 * and the out-of-line type check.  @returns false for anything else (not
 * necessarily invalid: the caller then takes the general path, which decides
 * and names the fault); @v may then have been written.
 */
static bool view_plain(const uint8_t *p, size_t len, struct wal_msg_view *v)
{
        const uint8_t *end = p + len;
        /* Separate variables (an array indexed by field number is zeroed
         * with `rep stos`, which costs more than the rest here). */
        uint32_t version = 0, type = 0, keepalive = 0;
        uint64_t tick = 0, lc_hi = 0, lc_lo = 0, txn = 0, term = 0;
        bool has_lc = false;
        /* What the encoder writes first: version and type, one byte each
         * (the whole envelope of a message with no other field set). */
        if (len >= 4 && p[0] == 0x08 && p[1] < 0x80 && p[2] == 0x10 && p[3] < 0x80) {
                version = p[1];
                type = p[3];
                p += 4;
        }
        while (p < end) {
                uint64_t x;
                unsigned any;
                unsigned num = plain_field(&p, end, &x, &any);
                if (!num)
                        return false;
                /* a repeated field: the last one counts */
                switch (num) {
                case 1: version = (uint32_t)x; break;
                case 2: type = (uint32_t)x; break;
                case 5: tick = x; break;
                case 6: term = x; break;
                case 7: has_lc = any != 0; break;
                case 8: lc_hi = x; break;
                case 9: lc_lo = x; break;
                case 10: txn = x; break;
                case 11: keepalive = (uint32_t)x; break;
                }
        }
        /* What scan_checked() requires (wal_msg_type_name's range). */
        if (version != WALU_ENVELOPE_VERSION || type < WAL_MSG_DATA || type > WAL_MSG_TYPE_MAX)
                return false;
        v->type = (enum wal_msg_type)type;
        v->time_tick = tick;
        v->term = (int64_t)term;
        v->last_confirmed = has_lc ? WAL_MSGID(lc_hi, lc_lo) : WAL_MSGID_NONE;
        v->txn_id = txn;
        v->txn_keepalive_ms = keepalive;
        v->n_props = 0;
        v->vchannel = NULL;
        v->vchannel_len = 0;
        return true;
}

static int view_general(const uint8_t *env, size_t env_len, struct wal_msg_view *v,
                        wal_error **reterr) __attribute__((noinline));

int walu_envelope_view(const uint8_t *env, size_t env_len, struct wal_msg_view *v,
                       wal_error **reterr)
{
        if (v && env && env_len <= WALU_ENVELOPE_MAX && view_plain(env, env_len, v)) {
                v->env = env;
                v->env_len = env_len;
                return 0;
        }
        return view_general(env, env_len, v, reterr);
}

/* Any envelope, and the errors: apart from the hot path above so that it
 * keeps a small frame. */
static int view_general(const uint8_t *env, size_t env_len, struct wal_msg_view *v,
                        wal_error **reterr)
{
        if (!v || (!env && env_len > 0))
                return wal_error_set(reterr, -EINVAL, 0, "envelope: NULL argument");
        v->last_confirmed = WAL_MSGID_NONE;
        v->vchannel = NULL;
        v->vchannel_len = 0;
        v->env = env;
        v->env_len = env_len;
        if (!env) {
                /* Foreign record: a plain data message. */
                v->type = WAL_MSG_DATA;
                v->time_tick = 0;
                v->term = 0;
                v->txn_id = 0;
                v->txn_keepalive_ms = 0;
                v->n_props = 0;
                return 0;
        }
        if (env_len > WALU_ENVELOPE_MAX)
                return wal_error_set(reterr, -EBADMSG, 0,
                                     "envelope: %zu bytes exceeds the %u-byte limit",
                                     env_len, (unsigned)WALU_ENVELOPE_MAX);
        struct env_view e;
        int r = scan_checked(env, env_len, &e, reterr);
        if (r < 0)
                return r;
        /* What the decoder refuses while storing properties: an empty key,
         * a NUL byte, a repeated key (quadratic, but envelopes carry few). */
        for (size_t i = 0; i < e.n_props; i++) {
                const uint8_t *k, *val;
                size_t kl, vl;
                walu_envelope_prop_at(env, env_len, i, &k, &kl, &val, &vl);
                if (kl == 0)
                        return wal_error_set(reterr, -EBADMSG, 0,
                                             "envelope: property %zu has an empty key", i);
                if (memchr(k, '\0', kl))
                        return wal_error_set(reterr, -EBADMSG, 0,
                                             "envelope: property %zu key: contains a NUL byte",
                                             i);
                if (vl && memchr(val, '\0', vl))
                        return wal_error_set(reterr, -EBADMSG, 0,
                                             "envelope: property %zu value: contains a NUL "
                                             "byte", i);
                for (size_t j = 0; j < i; j++) {
                        const uint8_t *k2, *v2;
                        size_t kl2, vl2;
                        walu_envelope_prop_at(env, env_len, j, &k2, &kl2, &v2, &vl2);
                        if (kl2 == kl && memcmp(k, k2, kl) == 0)
                                return wal_error_set(reterr, -EBADMSG, 0,
                                                     "envelope: duplicate property key "
                                                     "'%.*s'", (int)WALU_MIN(kl, 200), k);
                }
        }
        if (e.vchannel_len && memchr(e.vchannel, '\0', e.vchannel_len))
                return wal_error_set(reterr, -EBADMSG, 0,
                                     "envelope: vchannel: contains a NUL byte");
        v->type = (enum wal_msg_type)e.type;
        v->time_tick = e.time_tick;
        v->term = e.term;
        if (e.has_lc)
                v->last_confirmed = WAL_MSGID(e.lc_hi, e.lc_lo);
        v->txn_id = e.txn_id;
        v->txn_keepalive_ms = e.txn_keepalive_ms;
        v->n_props = (uint32_t)e.n_props;
        if (e.vchannel_len) {
                v->vchannel = (const char *)e.vchannel;
                v->vchannel_len = e.vchannel_len;
        }
        return 0;
}

int walu_envelope_prop_at(const uint8_t *env, size_t env_len, size_t i, const uint8_t **key,
                          size_t *key_len, const uint8_t **value, size_t *value_len)
{
        if (!env)
                return -ERANGE;
        const uint8_t *p = env, *end = env + env_len;
        struct wire_field f;
        size_t at = 0;
        while (next_field(&p, end, &f) > 0) {
                if (f.num != 3 || f.wire != WIRE_LEN)
                        continue;
                if (at++ != i)
                        continue;
                const uint8_t *k, *v;
                size_t kl, vl;
                if (!scan_prop(f.data, f.len, &k, &kl, &v, &vl))
                        return -EBADMSG;
                *key = k;
                *key_len = kl;
                *value = v;
                *value_len = vl;
                return 0;
        }
        return -ERANGE;
}
