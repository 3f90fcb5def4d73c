/* SPDX-License-Identifier: MIT */
/*
 * tests/utility/envelope-diff.h: run one input through both envelope
 * decoders (the hand-written walu_envelope_decode and the protobuf-c based
 * walu_envelope_decode_protobuf) and say how their results differ.
 *
 * Input layout, as in tests/fuzz/fuzz-envelope.c so the same corpus
 * serves: the first byte chooses the split.
 *   0        no envelope (foreign record); the rest is the payload;
 *   255      the rest is all envelope, empty payload;
 *   n        the next min(n, rest) bytes are the envelope, the remainder is
 *            the payload.
 * The envelope is copied into a buffer of exactly its size so that an
 * over-read by either decoder shows under ASan.
 *
 * "Same result" means: the same return value; on failure the same error
 * code and message; on success messages equal in every field the envelope
 * carries (type, payload, properties in order, vchannel, time tick, term,
 * last-confirmed ID, transaction ID and keepalive).
 *
 * The in-place reader walu_envelope_view (batch reads) is held to the same
 * standard: it refuses exactly what the decoders refuse (same error code)
 * and otherwise sees the same fields.
 */
#ifndef TESTS_UTILITY_ENVELOPE_DIFF_H
#define TESTS_UTILITY_ENVELOPE_DIFF_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wal/wal-error.h>
#include <wal/wal-message.h>
#include "utility/envelope.h"

static const char *ed_same_msg(const wal_msg *a, const wal_msg *b)
{
        if (wal_msg_type(a) != wal_msg_type(b))
                return "type differs";
        size_t al, bl;
        const void *ap = wal_msg_payload(a, &al), *bp = wal_msg_payload(b, &bl);
        if (al != bl || (al && memcmp(ap, bp, al) != 0))
                return "payload differs";
        if (wal_msg_prop_count(a) != wal_msg_prop_count(b))
                return "property count differs";
        for (size_t i = 0; i < wal_msg_prop_count(a); i++) {
                const char *ak, *av, *bk, *bv;
                if (wal_msg_prop_at(a, i, &ak, &av) < 0 || wal_msg_prop_at(b, i, &bk, &bv) < 0)
                        return "property unreadable";
                if (strcmp(ak, bk) != 0 || strcmp(av, bv) != 0)
                        return "property differs";
        }
        const char *avc = wal_msg_vchannel(a), *bvc = wal_msg_vchannel(b);
        if (!avc != !bvc || (avc && strcmp(avc, bvc) != 0))
                return "vchannel differs";
        if (wal_msg_time_tick(a) != wal_msg_time_tick(b))
                return "time tick differs";
        if (wal_msg_term(a) != wal_msg_term(b))
                return "term differs";
        struct wal_msgid alc = wal_msg_last_confirmed(a), blc = wal_msg_last_confirmed(b);
        if (alc.hi != blc.hi || alc.lo != blc.lo)
                return "last-confirmed differs";
        if (wal_msg_txn_id(a) != wal_msg_txn_id(b))
                return "txn id differs";
        if (wal_msg_txn_keepalive_ms(a) != wal_msg_txn_keepalive_ms(b))
                return "txn keepalive differs";
        return NULL;
}

/* The fields of the view @v against the decoded message @m. */
static const char *ed_same_view(const struct wal_msg_view *v, const wal_msg *m)
{
        if (v->type != wal_msg_type(m))
                return "view: type differs";
        if (v->n_props != wal_msg_prop_count(m))
                return "view: property count differs";
        for (size_t i = 0; i < v->n_props; i++) {
                const char *mk, *mv, *vk, *vv;
                size_t kl, vl;
                if (wal_msg_prop_at(m, i, &mk, &mv) < 0 ||
                    walu_envelope_prop_at(v->env, v->env_len, i, (const uint8_t **)&vk, &kl,
                                          (const uint8_t **)&vv, &vl) < 0)
                        return "view: property unreadable";
                if (strlen(mk) != kl || memcmp(mk, vk, kl) != 0 || strlen(mv) != vl ||
                    (vl && memcmp(mv, vv, vl) != 0))
                        return "view: property differs";
        }
        const char *mvc = wal_msg_vchannel(m);
        if (!mvc != !v->vchannel || (mvc && (strlen(mvc) != v->vchannel_len ||
                                             memcmp(mvc, v->vchannel, v->vchannel_len) != 0)))
                return "view: vchannel differs";
        if (v->time_tick != wal_msg_time_tick(m) || v->term != wal_msg_term(m))
                return "view: time tick or term differs";
        struct wal_msgid lc = wal_msg_last_confirmed(m);
        if (v->last_confirmed.hi != lc.hi || v->last_confirmed.lo != lc.lo)
                return "view: last-confirmed differs";
        if (v->txn_id != wal_msg_txn_id(m) || v->txn_keepalive_ms != wal_msg_txn_keepalive_ms(m))
                return "view: txn fields differ";
        return NULL;
}

/*
 * Decode @env/@env_len (NULL: foreign record) with @payload through both
 * decoders.  NULL if the results agree, else what differs.  *ret_ok (if not
 * NULL) is set to whether the input decoded.
 */
static const char *ed_compare(const uint8_t *env, size_t env_len, const void *payload,
                              size_t payload_len, int *ret_ok)
{
        wal_msg *a = NULL, *b = NULL;
        wal_error *ea = NULL, *eb = NULL;
        int ra = walu_envelope_decode(env, env_len, payload, payload_len, &a, &ea);
        int rb = walu_envelope_decode_protobuf(env, env_len, payload, payload_len, &b, &eb);
        const char *diff = NULL;
        if (ra != rb)
                diff = "return values differ";
        else if (ra < 0) {
                if (a || b)
                        diff = "result set on failure";
                else if (!ea || !eb || wal_error_code(ea) != wal_error_code(eb))
                        diff = "error codes differ";
                else if (strcmp(wal_error_message(ea), wal_error_message(eb)) != 0)
                        diff = "error messages differ";
        } else if (!a || !b || ea || eb) {
                diff = "success without a message, or with an error";
        } else {
                diff = ed_same_msg(a, b);
        }
        if (!diff && (env || env_len == 0) && (payload || payload_len == 0)) {
                struct wal_msg_view v;
                int rv = walu_envelope_view(env, env_len, &v, NULL);
                if (rv != ra)
                        diff = "view: return value differs";
                else if (rv == 0)
                        diff = ed_same_view(&v, a);
                /* The inline reader of the common envelopes: the same. */
                struct wal_msg_view vi;
                int ri = walu_envelope_view_inline(env, env_len, &vi, NULL);
                if (!diff && ri != ra)
                        diff = "inline view: return value differs";
                else if (!diff && ri == 0)
                        diff = ed_same_view(&vi, a);
                /* Its fixed-offset path for the adaptor's stamp alone:
                 * the same rule. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                struct wal_msg_view vs;
                if (!diff && walu_envelope_view_stamp_(env, env_len, &vs)) {
                        if (ra != 0)
                                diff = "stamp view accepts what the decoder refuses";
                        else if (vs.env != env || vs.env_len != env_len)
                                diff = "stamp view: env differs";
                        else
                                diff = ed_same_view(&vs, a);
                }
#endif
                /* Its fast path alone: whatever it accepts, the decoder
                 * accepts too, read to the same fields. */
                struct wal_msg_view vf;
                if (!diff && walu_envelope_view_fast(env, env_len, &vf)) {
                        if (ra != 0)
                                diff = "fast view accepts what the decoder refuses";
                        else if (vf.env != env || vf.env_len != env_len)
                                diff = "fast view: env differs";
                        else
                                diff = ed_same_view(&vf, a);
                }
        }
        if (diff) {
                fprintf(stderr, "envelope-diff: %s (hand-written %d '%s', protobuf-c %d '%s')\n",
                        diff, ra, ea ? wal_error_message(ea) : "", rb,
                        eb ? wal_error_message(eb) : "");
        }
        if (ret_ok)
                *ret_ok = ra == 0;
        wal_msg_unref(a);
        wal_msg_unref(b);
        wal_error_free(ea);
        wal_error_free(eb);
        return diff;
}

/* One input in the fuzz layout (above).  NULL if both decoders agree. */
static const char *ed_check_input(const uint8_t *data, size_t size, int *ret_ok)
{
        if (ret_ok)
                *ret_ok = 0;
        if (size == 0)
                return NULL;
        uint8_t mode = data[0];
        const uint8_t *rest = data + 1;
        size_t rlen = size - 1;
        if (mode == 0)
                return ed_compare(NULL, 0, rlen ? rest : NULL, rlen, ret_ok);
        size_t env_len = mode == 255 ? rlen : mode < rlen ? mode : rlen;
        uint8_t *env = malloc(env_len ? env_len : 1);
        if (!env)
                return "out of memory";
        memcpy(env, rest, env_len);
        size_t plen = rlen - env_len;
        const char *d = ed_compare(env, env_len, plen ? rest + env_len : NULL, plen, ret_ok);
        free(env);
        return d;
}

#endif /* TESTS_UTILITY_ENVELOPE_DIFF_H */
