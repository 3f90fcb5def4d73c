/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz-envelope.c: fuzz target for the envelope decoder
 * (utility/envelope.c).
 *
 * Input layout: the first byte chooses how the rest is split.
 *   0        a foreign record: no envelope, the rest is the payload;
 *   255      the rest is all envelope, empty payload (reaches long envelopes);
 *   n        the next min(n, rest) bytes are the envelope, the remainder is
 *            the payload.
 * The envelope is copied into a buffer of exactly its size so that an
 * over-read shows under ASan instead of landing in the payload.
 *
 * Beyond "no crash", a decoded message must be sane (known type, non-empty
 * keys), and re-encoding is a fixed point: decode(encode(m)) encodes to the
 * same bytes again.  A violation aborts, which the fuzzer reports.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wal/wal-error.h>
#include <wal/wal-message.h>
#include "utility/envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
        fprintf(stderr, "fuzz-envelope: %s\n", what);
        abort();
}

/* Encode @m into a new exact-size buffer; *len set.  Aborts on failure. */
static uint8_t *encode(const wal_msg *m, size_t *len)
{
        size_t n = walu_envelope_size(m);
        uint8_t *buf = malloc(n ? n : 1);
        if (!buf)
                fail("out of memory");
        int r = walu_envelope_encode(m, buf, n);
        if (r < 0 || (size_t)r != n)
                fail("encode disagrees with size");
        *len = n;
        return buf;
}

static void check_decoded(const wal_msg *m, const void *payload, size_t payload_len)
{
        if (!wal_msg_type_name(wal_msg_type(m)))
                fail("decoded type out of range");
        size_t plen;
        const void *p = wal_msg_payload(m, &plen);
        if (plen != payload_len || (plen && memcmp(p, payload, plen) != 0))
                fail("payload changed");
        for (size_t i = 0; i < wal_msg_prop_count(m); i++) {
                const char *k, *v;
                if (wal_msg_prop_at(m, i, &k, &v) < 0 || !k || !*k || !v)
                        fail("bad property");
        }
        const char *vc = wal_msg_vchannel(m);
        if (vc && !*vc)
                fail("empty vchannel");

        /* Re-encoding is a fixed point. */
        size_t n1, n2;
        uint8_t *e1 = encode(m, &n1);
        wal_msg *again = NULL;
        if (walu_envelope_decode(e1, n1, p, plen, &again, NULL) < 0)
                fail("our own encoding does not decode");
        uint8_t *e2 = encode(again, &n2);
        if (n1 != n2 || memcmp(e1, e2, n1) != 0)
                fail("re-encoding is not stable");
        free(e2);
        free(e1);
        wal_msg_unref(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size == 0)
                return 0;
        uint8_t mode = data[0];
        const uint8_t *rest = data + 1;
        size_t rlen = size - 1;
        size_t env_len = mode == 255 ? rlen : mode < rlen ? mode : rlen;
        const uint8_t *payload = rest + env_len;
        size_t payload_len = rlen - env_len;

        uint8_t *env = NULL;
        if (mode != 0) {
                env = malloc(env_len ? env_len : 1);
                if (!env)
                        return 0;
                memcpy(env, rest, env_len);
        } else {
                payload = rest;
                payload_len = rlen;
                env_len = 0;
        }

        wal_msg *m = NULL;
        wal_error *err = NULL;
        int r = walu_envelope_decode(env, env_len, payload_len ? payload : NULL,
                                     payload_len, &m, &err);
        if (r < 0) {
                if (m)
                        fail("result set on failure");
                if (!err || wal_error_code(err) != r)
                        fail("failure without a matching error object");
                if (r != -EBADMSG && r != -ENOMEM)
                        fail("unexpected error code");
        } else {
                if (!m || err)
                        fail("success without a message, or with an error");
                if (mode == 0 && wal_msg_type(m) != WAL_MSG_DATA)
                        fail("foreign record is not plain data");
                check_decoded(m, payload, payload_len);
        }
        wal_error_free(err);
        wal_msg_unref(m);
        free(env);
        return 0;
}
