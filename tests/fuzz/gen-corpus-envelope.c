/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/gen-corpus-envelope.c: writes the seed corpus of the envelope
 * fuzz target (tests/fuzz/corpus/envelope/, committed).
 *
 * Usage: gen-corpus-envelope DIR.  Each file is one input in the layout of
 * fuzz-envelope.c (a split byte, then envelope and payload): valid
 * envelopes of every type and field, foreign records, every truncation of a
 * full envelope, hand-made wrong ones (version, type, empty and duplicate
 * keys) and seeded random garbage.  Deterministic: rerunning it rewrites the
 * same bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wal/wal-message.h>
#include "utility/envelope.h"

static const char *dir;

static void put(const char *name, uint8_t mode, const uint8_t *env, size_t env_len,
                const void *payload, size_t payload_len)
{
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        FILE *f = fopen(path, "wb");
        if (!f) {
                perror(path);
                exit(1);
        }
        fputc(mode, f);
        if (env_len)
                fwrite(env, 1, env_len, f);
        if (payload_len)
                fwrite(payload, 1, payload_len, f);
        if (fclose(f) != 0) {
                perror(path);
                exit(1);
        }
}

/* Write @m's envelope with @payload: split byte = envelope size if it fits
 * in 1..254, else 255 (all envelope, payload dropped). */
static void put_msg(const char *name, const wal_msg *m)
{
        uint8_t buf[65536];
        int n = walu_envelope_encode(m, buf, sizeof(buf));
        if (n < 0) {
                fprintf(stderr, "%s: encode: %s\n", name, strerror(-n));
                exit(1);
        }
        size_t plen;
        const void *p = wal_msg_payload(m, &plen);
        if (n >= 1 && n <= 254)
                put(name, (uint8_t)n, buf, (size_t)n, p, plen);
        else
                put(name, 255, buf, (size_t)n, NULL, 0);
}

static wal_msg *msg(enum wal_msg_type t, const char *payload)
{
        wal_msg *m = NULL;
        if (wal_msg_new(t, payload, strlen(payload), &m) < 0)
                exit(1);
        return m;
}

int main(int argc, char **argv)
{
        if (argc != 2) {
                fprintf(stderr, "usage: %s DIR\n", argv[0]);
                return 2;
        }
        dir = argv[1];
        char name[64];

        for (int t = WAL_MSG_DATA; t <= WAL_MSG_TYPE_MAX; t++) {
                wal_msg *m = msg((enum wal_msg_type)t, "payload");
                snprintf(name, sizeof(name), "valid-type-%s", wal_msg_type_name(t));
                put_msg(name, m);
                wal_msg_unref(m);
        }

        wal_msg *full = msg(WAL_MSG_TXN_COMMIT, "hello");
        wal_msg_set_prop(full, "k1", "v1");
        wal_msg_set_prop(full, "empty-value", "");
        wal_msg_set_prop(full, "trace-id", "4bf92f3577b34da6a3ce929d0e0e4736");
        wal_msg_set_vchannel(full, "vch-7");
        wal_msg_set_time_tick(full, (UINT64_C(1700000000000) << 18) | 5);
        wal_msg_set_term(full, -42);
        wal_msg_set_last_confirmed(full, WAL_MSGID(UINT64_MAX - 1, 3));
        wal_msg_set_txn(full, UINT64_MAX, UINT32_MAX);
        put_msg("valid-full", full);

        /* What the adaptor stamps on every message: a 9-byte time tick,
         * term, last confirmed (walu_envelope_view_fast's second shape). */
        wal_msg *stamped = msg(WAL_MSG_DATA, "0123456789");
        wal_msg_set_time_tick(stamped, (UINT64_C(1763766000000) << 18) | 77);
        wal_msg_set_term(stamped, 1);
        wal_msg_set_last_confirmed(stamped, WAL_MSGID(0, 123456));
        put_msg("valid-adaptor", stamped);
        wal_msg_set_last_confirmed(stamped, WAL_MSGID(3, 1));
        put_msg("valid-adaptor-lc-hi", stamped);
        wal_msg_unref(stamped);

        wal_msg *zero_lc = msg(WAL_MSG_DATA, "");
        wal_msg_set_last_confirmed(zero_lc, WAL_MSGID(0, 0));
        put_msg("valid-lc-zero", zero_lc);
        wal_msg_unref(zero_lc);

        wal_msg *many = msg(WAL_MSG_DATA, "m");
        for (int i = 0; i < 40; i++) {
                char k[16], v[16];
                snprintf(k, sizeof(k), "key%02d", i);
                snprintf(v, sizeof(v), "v%d", i * i);
                wal_msg_set_prop(many, k, v);
        }
        put_msg("valid-many-props", many);
        wal_msg_unref(many);

        put("foreign-text", 0, NULL, 0, "from kcat", 9);
        put("foreign-empty", 0, NULL, 0, NULL, 0);

        /* Every truncation of the full envelope. */
        uint8_t env[512];
        int n = walu_envelope_encode(full, env, sizeof(env));
        if (n < 0)
                return 1;
        for (int cut = 0; cut < n; cut++) {
                snprintf(name, sizeof(name), "truncated-%03d", cut);
                put(name, 255, env, (size_t)cut, NULL, 0);
        }
        wal_msg_unref(full);

        const uint8_t v2[] = { 0x08, 0x02, 0x10, 0x01 };
        put("bad-version-2", 255, v2, sizeof(v2), NULL, 0);
        const uint8_t t9[] = { 0x08, 0x01, 0x10, 0x09 };
        put("bad-type-9", 255, t9, sizeof(t9), NULL, 0);
        const uint8_t empty_key[] = { 0x08, 0x01, 0x10, 0x01, 0x1a, 0x03, 0x12, 0x01, 'v' };
        put("bad-empty-key", 255, empty_key, sizeof(empty_key), NULL, 0);
        const uint8_t dup[] = { 0x08, 0x01, 0x10, 0x01,
                                0x1a, 0x06, 0x0a, 0x01, 'k', 0x12, 0x01, 'a',
                                0x1a, 0x06, 0x0a, 0x01, 'k', 0x12, 0x01, 'b' };
        put("bad-duplicate-key", 255, dup, sizeof(dup), NULL, 0);
        const uint8_t huge_len[] = { 0x08, 0x01, 0x10, 0x01, 0x1a, 0xff, 0xff, 0xff, 0xff, 0x0f };
        put("bad-huge-length", 255, huge_len, sizeof(huge_len), NULL, 0);
        const uint8_t future[] = { 0x08, 0x01, 0x10, 0x01, 0x78, 0x05 };
        put("valid-unknown-field", 255, future, sizeof(future), NULL, 0);

        const uint8_t nul_key[] = { 0x08, 0x01, 0x10, 0x01,
                                    0x1a, 0x05, 0x0a, 0x03, 'a', 0x00, 'b' };
        put("bad-nul-in-key", 255, nul_key, sizeof(nul_key), NULL, 0);
        const uint8_t nul_vch[] = { 0x08, 0x01, 0x10, 0x01, 0x22, 0x02, 'v', 0x00 };
        put("bad-nul-in-vchannel", 255, nul_vch, sizeof(nul_vch), NULL, 0);

        unsigned seed = 20261121;
        for (int i = 0; i < 8; i++) {
                uint8_t g[200];
                size_t len = 1 + (size_t)rand_r(&seed) % sizeof(g);
                for (size_t j = 0; j < len; j++)
                        g[j] = (uint8_t)rand_r(&seed);
                snprintf(name, sizeof(name), "garbage-%d", i);
                put(name, g[0], g + 1, len - 1 < g[0] ? len - 1 : g[0], g + 1 + g[0],
                    len - 1 > g[0] ? len - 1 - g[0] : 0);
        }
        return 0;
}
