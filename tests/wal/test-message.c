/* SPDX-License-Identifier: MIT */
/*
 * tests/wal/test-message.c: messages (wal/wal-message.h, wal/message.c).
 *
 * Building (payload, properties in first-set order, replace, delete,
 * vchannel), header fields, freezing (every setter then fails with -EPERM
 * and nothing changes), reference counting, copies, transaction bodies, and
 * NULL or out-of-range arguments to every entry point.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include <wal/wal-message.h>

static wal_msg *new_msg(enum wal_msg_type t, const char *payload)
{
        wal_msg *m = NULL;
        cr_assert_eq(wal_msg_new(t, payload, payload ? strlen(payload) : 0, &m), 0);
        cr_assert_not_null(m);
        return m;
}

Test(message, new_and_payload)
{
        wal_msg *m = new_msg(WAL_MSG_DATA, "hello");
        size_t len = 0;
        const char *p = wal_msg_payload(m, &len);
        cr_expect_eq(len, 5u);
        cr_expect_eq(memcmp(p, "hello", 5), 0);
        cr_expect_eq(wal_msg_type(m), WAL_MSG_DATA);
        cr_expect_not(wal_msg_is_immutable(m));
        cr_expect(wal_msgid_is_none(wal_msg_id(m)));
        cr_expect(wal_msgid_is_none(wal_msg_last_confirmed(m)));
        cr_expect_eq(wal_msg_time_tick(m), 0u);
        cr_expect_eq(wal_msg_term(m), 0);
        cr_expect_eq(wal_msg_txn_id(m), 0u);
        cr_expect_eq(wal_msg_txn_keepalive_ms(m), 0u);
        cr_expect_null(wal_msg_vchannel(m));
        cr_expect_eq(wal_msg_prop_count(m), 0u);
        cr_expect_eq(wal_msg_size(m), 5u);
        cr_expect_eq(wal_msg_payload(m, NULL), p, "len may be NULL");
        wal_msg_unref(m);

        /* Payload is copied, binary-safe, and empty is fine. */
        char bin[4] = { 'a', 0, 'b', 0 };
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, bin, sizeof(bin), &m), 0);
        bin[0] = 'z';
        p = wal_msg_payload(m, &len);
        cr_expect_eq(len, 4u);
        cr_expect_eq(memcmp(p, "a\0b\0", 4), 0);
        wal_msg_unref(m);
        cr_assert_eq(wal_msg_new(WAL_MSG_TIME_TICK, NULL, 0, &m), 0);
        wal_msg_payload(m, &len);
        cr_expect_eq(len, 0u);
        wal_msg_unref(m);
}

Test(message, new_rejects_bad_arguments)
{
        wal_msg *m = (wal_msg *)0x1;
        cr_expect_eq(wal_msg_new(WAL_MSG_DATA, "x", 1, NULL), -EINVAL);
        cr_expect_eq(wal_msg_new(0, "x", 1, &m), -EINVAL);
        cr_expect_eq(wal_msg_new((enum wal_msg_type)(WAL_MSG_TYPE_MAX + 1), "x", 1, &m),
                     -EINVAL);
        cr_expect_eq(wal_msg_new((enum wal_msg_type)-1, "x", 1, &m), -EINVAL);
        cr_expect_eq(wal_msg_new(WAL_MSG_DATA, NULL, 3, &m), -EINVAL);
        cr_expect_eq(m, (wal_msg *)0x1, "ret untouched on failure");
}

Test(message, type_names)
{
        for (int t = WAL_MSG_DATA; t <= WAL_MSG_TYPE_MAX; t++) {
                const char *n = wal_msg_type_name((enum wal_msg_type)t);
                cr_assert_not_null(n);
                enum wal_msg_type back = 0;
                cr_expect_eq(wal_msg_type_parse(n, &back), 0);
                cr_expect_eq((int)back, t);
        }
        cr_expect_str_eq(wal_msg_type_name(WAL_MSG_TIME_TICK), "timetick");
        cr_expect_null(wal_msg_type_name(0));
        cr_expect_null(wal_msg_type_name((enum wal_msg_type)7));
        enum wal_msg_type t;
        cr_expect_eq(wal_msg_type_parse("bogus", &t), -EINVAL);
        cr_expect_eq(wal_msg_type_parse(NULL, &t), -EINVAL);
        cr_expect_eq(wal_msg_type_parse("data", NULL), -EINVAL);
}

Test(message, properties_order_replace_delete)
{
        wal_msg *m = new_msg(WAL_MSG_DATA, "p");
        cr_expect_eq(wal_msg_set_prop(m, "b", "1"), 0);
        cr_expect_eq(wal_msg_set_prop(m, "a", "22"), 0);
        cr_expect_eq(wal_msg_set_prop(m, "c", ""), 0);
        cr_expect_eq(wal_msg_prop_count(m), 3u);
        cr_expect_eq(wal_msg_size(m), 1u + 2 + 3 + 1);

        /* Replacing keeps the first-set position. */
        cr_expect_eq(wal_msg_set_prop(m, "b", "replaced"), 0);
        cr_expect_eq(wal_msg_prop_count(m), 3u);
        const char *k, *v;
        cr_assert_eq(wal_msg_prop_at(m, 0, &k, &v), 0);
        cr_expect_str_eq(k, "b");
        cr_expect_str_eq(v, "replaced");
        cr_expect_str_eq(wal_msg_prop(m, "a"), "22");
        cr_expect_str_eq(wal_msg_prop(m, "c"), "");
        cr_expect_null(wal_msg_prop(m, "missing"));
        cr_expect_eq(wal_msg_size(m), 1u + 9 + 3 + 1);

        /* Delete from the middle keeps the rest in order. */
        cr_expect_eq(wal_msg_del_prop(m, "a"), 0);
        cr_expect_eq(wal_msg_del_prop(m, "a"), -ENOENT);
        cr_expect_eq(wal_msg_prop_count(m), 2u);
        cr_assert_eq(wal_msg_prop_at(m, 1, &k, NULL), 0);
        cr_expect_str_eq(k, "c");
        cr_expect_eq(wal_msg_prop_at(m, 2, &k, &v), -ERANGE);
        cr_expect_eq(wal_msg_prop_at(m, SIZE_MAX, &k, &v), -ERANGE);
        cr_expect_eq(wal_msg_size(m), 1u + 9 + 1);

        /* Key and value are copied. */
        char key[] = "dyn", val[] = "value";
        cr_expect_eq(wal_msg_set_prop(m, key, val), 0);
        key[0] = 'X';
        val[0] = 'X';
        cr_expect_str_eq(wal_msg_prop(m, "dyn"), "value");

        /* Many properties grow the array. */
        for (int i = 0; i < 100; i++) {
                char kk[16];
                snprintf(kk, sizeof(kk), "k%d", i);
                cr_assert_eq(wal_msg_set_prop(m, kk, kk), 0);
        }
        cr_expect_eq(wal_msg_prop_count(m), 103u);
        cr_expect_str_eq(wal_msg_prop(m, "k99"), "k99");
        wal_msg_unref(m);
}

Test(message, property_bad_arguments)
{
        wal_msg *m = new_msg(WAL_MSG_DATA, "p");
        cr_expect_eq(wal_msg_set_prop(NULL, "k", "v"), -EINVAL);
        cr_expect_eq(wal_msg_set_prop(m, NULL, "v"), -EINVAL);
        cr_expect_eq(wal_msg_set_prop(m, "", "v"), -EINVAL);
        cr_expect_eq(wal_msg_set_prop(m, "k", NULL), -EINVAL);
        cr_expect_eq(wal_msg_del_prop(NULL, "k"), -EINVAL);
        cr_expect_eq(wal_msg_del_prop(m, NULL), -EINVAL);
        cr_expect_eq(wal_msg_prop_at(NULL, 0, NULL, NULL), -EINVAL);
        cr_expect_null(wal_msg_prop(m, NULL));
        cr_expect_null(wal_msg_prop(NULL, "k"));
        cr_expect_eq(wal_msg_prop_count(m), 0u);
        wal_msg_unref(m);
}

Test(message, vchannel)
{
        wal_msg *m = new_msg(WAL_MSG_DATA, "p");
        char vc[] = "orders-1";
        cr_expect_eq(wal_msg_set_vchannel(m, vc), 0);
        vc[0] = 'X';
        cr_expect_str_eq(wal_msg_vchannel(m), "orders-1");
        cr_expect_eq(wal_msg_set_vchannel(m, "other"), 0);
        cr_expect_str_eq(wal_msg_vchannel(m), "other");
        cr_expect_eq(wal_msg_set_vchannel(m, ""), -EINVAL);
        cr_expect_str_eq(wal_msg_vchannel(m), "other");
        cr_expect_eq(wal_msg_set_vchannel(m, NULL), 0);
        cr_expect_null(wal_msg_vchannel(m));
        cr_expect_eq(wal_msg_set_vchannel(NULL, "x"), -EINVAL);
        wal_msg_unref(m);
}

Test(message, header_fields)
{
        wal_msg *m = new_msg(WAL_MSG_DATA, "p");
        cr_expect_eq(wal_msg_set_time_tick(m, UINT64_MAX), 0);
        cr_expect_eq(wal_msg_set_term(m, INT64_MIN), 0);
        cr_expect_eq(wal_msg_set_last_confirmed(m, WAL_MSGID(3, 4)), 0);
        cr_expect_eq(wal_msg_set_txn(m, 99, 5000), 0);
        cr_expect_eq(wal_msg_time_tick(m), UINT64_MAX);
        cr_expect_eq(wal_msg_term(m), INT64_MIN);
        cr_expect(wal_msgid_eq(wal_msg_last_confirmed(m), WAL_MSGID(3, 4)));
        cr_expect_eq(wal_msg_txn_id(m), 99u);
        cr_expect_eq(wal_msg_txn_keepalive_ms(m), 5000u);
        cr_expect_eq(wal_msg_set_time_tick(NULL, 1), -EINVAL);
        cr_expect_eq(wal_msg_set_term(NULL, 1), -EINVAL);
        cr_expect_eq(wal_msg_set_last_confirmed(NULL, WAL_MSGID(0, 1)), -EINVAL);
        cr_expect_eq(wal_msg_set_txn(NULL, 1, 1), -EINVAL);
        wal_msg_unref(m);
}

Test(message, freeze_makes_every_setter_fail)
{
        wal_msg *m = new_msg(WAL_MSG_TXN, "p");
        wal_msg *body = new_msg(WAL_MSG_DATA, "b");
        wal_msg_set_prop(m, "k", "v");
        wal_msg_set_vchannel(m, "vc");
        wal_msg_set_time_tick(m, 10);
        cr_expect_eq(wal_msg_freeze(m, WAL_MSGID_NONE), -EINVAL);
        cr_expect_not(wal_msg_is_immutable(m));
        cr_assert_eq(wal_msg_freeze(m, WAL_MSGID(0, 7)), 0);
        cr_expect(wal_msg_is_immutable(m));
        cr_expect(wal_msgid_eq(wal_msg_id(m), WAL_MSGID(0, 7)));

        cr_expect_eq(wal_msg_set_prop(m, "k", "new"), -EPERM);
        cr_expect_eq(wal_msg_set_prop(m, "k2", "new"), -EPERM);
        cr_expect_eq(wal_msg_del_prop(m, "k"), -EPERM);
        cr_expect_eq(wal_msg_set_vchannel(m, "x"), -EPERM);
        cr_expect_eq(wal_msg_set_vchannel(m, NULL), -EPERM);
        cr_expect_eq(wal_msg_set_time_tick(m, 11), -EPERM);
        cr_expect_eq(wal_msg_set_term(m, 2), -EPERM);
        cr_expect_eq(wal_msg_set_last_confirmed(m, WAL_MSGID(0, 1)), -EPERM);
        cr_expect_eq(wal_msg_set_txn(m, 1, 1), -EPERM);
        cr_expect_eq(wal_msg_txn_add_body(m, body), -EPERM);
        cr_expect_eq(wal_msg_freeze(m, WAL_MSGID(0, 8)), -EPERM);

        /* Nothing changed. */
        cr_expect_str_eq(wal_msg_prop(m, "k"), "v");
        cr_expect_eq(wal_msg_prop_count(m), 1u);
        cr_expect_str_eq(wal_msg_vchannel(m), "vc");
        cr_expect_eq(wal_msg_time_tick(m), 10u);
        cr_expect(wal_msgid_eq(wal_msg_id(m), WAL_MSGID(0, 7)));
        cr_expect_eq(wal_msg_txn_body_count(m), 0u);
        wal_msg_unref(body);
        wal_msg_unref(m);
}

Test(message, refcount)
{
        wal_msg *m = new_msg(WAL_MSG_DATA, "p");
        cr_expect_eq(wal_msg_ref(m), m);
        cr_expect_eq(wal_msg_ref(m), m);
        cr_expect_null(wal_msg_unref(m));
        cr_expect_null(wal_msg_unref(m));
        /* Still alive with the last reference (ASan would catch otherwise). */
        cr_expect_eq(wal_msg_set_prop(m, "k", "v"), 0);
        cr_expect_str_eq(wal_msg_prop(m, "k"), "v");
        wal_msg_unrefp(&m);
        cr_expect_null(m);
        wal_msg_unrefp(&m);
        wal_msg_unrefp(NULL);
        cr_expect_null(wal_msg_ref(NULL));
        cr_expect_null(wal_msg_unref(NULL));
}

Test(message, copy)
{
        wal_msg *m = new_msg(WAL_MSG_DATA, "payload");
        wal_msg_set_prop(m, "a", "1");
        wal_msg_set_prop(m, "b", "2");
        wal_msg_set_vchannel(m, "vc");
        wal_msg_set_time_tick(m, 5);
        wal_msg_set_term(m, 6);
        wal_msg_set_last_confirmed(m, WAL_MSGID(0, 3));
        wal_msg_set_txn(m, 7, 8);
        cr_assert_eq(wal_msg_freeze(m, WAL_MSGID(0, 9)), 0);

        wal_msg *c = NULL;
        cr_assert_eq(wal_msg_copy(m, &c), 0);
        cr_expect_neq(c, m);
        cr_expect_not(wal_msg_is_immutable(c), "a copy is mutable");
        cr_expect(wal_msgid_is_none(wal_msg_id(c)), "a copy has no ID");
        size_t len;
        const char *p = wal_msg_payload(c, &len);
        cr_expect_eq(len, 7u);
        cr_expect_eq(memcmp(p, "payload", 7), 0);
        const char *k;
        cr_assert_eq(wal_msg_prop_at(c, 0, &k, NULL), 0);
        cr_expect_str_eq(k, "a");
        cr_expect_str_eq(wal_msg_prop(c, "b"), "2");
        cr_expect_str_eq(wal_msg_vchannel(c), "vc");
        cr_expect_eq(wal_msg_time_tick(c), 5u);
        cr_expect_eq(wal_msg_term(c), 6);
        cr_expect(wal_msgid_eq(wal_msg_last_confirmed(c), WAL_MSGID(0, 3)));
        cr_expect_eq(wal_msg_txn_id(c), 7u);
        cr_expect_eq(wal_msg_txn_keepalive_ms(c), 8u);
        cr_expect_eq(wal_msg_size(c), wal_msg_size(m));

        /* Independent: changing the copy leaves the original alone. */
        cr_expect_eq(wal_msg_set_prop(c, "a", "changed"), 0);
        cr_expect_str_eq(wal_msg_prop(m, "a"), "1");
        wal_msg_unref(m);
        cr_expect_str_eq(wal_msg_vchannel(c), "vc");
        wal_msg_unref(c);

        cr_expect_eq(wal_msg_copy(NULL, &c), -EINVAL);
        m = new_msg(WAL_MSG_DATA, "x");
        cr_expect_eq(wal_msg_copy(m, NULL), -EINVAL);
        wal_msg_unref(m);
}

Test(message, txn_bodies)
{
        wal_msg *txn = new_msg(WAL_MSG_TXN, NULL);
        wal_msg *b1 = new_msg(WAL_MSG_DATA, "one");
        wal_msg *b2 = new_msg(WAL_MSG_DATA, "second");
        wal_msg_set_prop(b2, "k", "v");
        cr_expect_eq(wal_msg_txn_add_body(txn, b1), 0);
        cr_expect_eq(wal_msg_txn_add_body(txn, b2), 0);
        cr_expect_eq(wal_msg_txn_body_count(txn), 2u);
        cr_expect_eq(wal_msg_txn_body_at(txn, 0), b1);
        cr_expect_eq(wal_msg_txn_body_at(txn, 1), b2);
        cr_expect_null(wal_msg_txn_body_at(txn, 2));
        /* The size counts the bodies. */
        cr_expect_eq(wal_msg_size(txn), 3u + 6 + 2);

        /* A reference was taken: the bodies outlive the caller's refs. */
        wal_msg_unref(b1);
        wal_msg_unref(b2);
        size_t len;
        wal_msg_payload(wal_msg_txn_body_at(txn, 1), &len);
        cr_expect_eq(len, 6u);

        /* A copy shares the bodies. */
        wal_msg *c = NULL;
        cr_assert_eq(wal_msg_copy(txn, &c), 0);
        cr_expect_eq(wal_msg_txn_body_count(c), 2u);
        cr_expect_eq(wal_msg_txn_body_at(c, 0), wal_msg_txn_body_at(txn, 0));
        wal_msg_unref(txn);
        cr_expect_eq(wal_msg_size(c), 3u + 6 + 2);
        wal_msg_unref(c);
}

Test(message, txn_body_bad_arguments)
{
        wal_msg *txn = new_msg(WAL_MSG_TXN, NULL);
        wal_msg *data = new_msg(WAL_MSG_DATA, "d");
        wal_msg *other = new_msg(WAL_MSG_TXN, NULL);
        cr_expect_eq(wal_msg_txn_add_body(NULL, data), -EINVAL);
        cr_expect_eq(wal_msg_txn_add_body(txn, NULL), -EINVAL);
        cr_expect_eq(wal_msg_txn_add_body(data, txn), -EINVAL, "not a txn message");
        cr_expect_eq(wal_msg_txn_add_body(txn, txn), -EINVAL, "itself");
        /* Nesting units would allow cycles (a in b, b in a): refused. */
        cr_expect_eq(wal_msg_txn_add_body(txn, other), -EINVAL, "a txn unit as body");
        cr_expect_eq(wal_msg_txn_body_count(txn), 0u);
        cr_expect_eq(wal_msg_txn_body_count(data), 0u);
        cr_expect_eq(wal_msg_txn_body_count(NULL), 0u);
        cr_expect_null(wal_msg_txn_body_at(NULL, 0));
        wal_msg_unref(other);
        wal_msg_unref(data);
        wal_msg_unref(txn);
}

Test(message, null_readers)
{
        size_t len = 99;
        cr_expect_eq(wal_msg_type(NULL), 0);
        cr_expect_null(wal_msg_payload(NULL, &len));
        cr_expect_eq(len, 0u);
        cr_expect_null(wal_msg_payload(NULL, NULL));
        cr_expect_null(wal_msg_vchannel(NULL));
        cr_expect_eq(wal_msg_prop_count(NULL), 0u);
        cr_expect_eq(wal_msg_size(NULL), 0u);
        cr_expect_not(wal_msg_is_immutable(NULL));
        cr_expect(wal_msgid_is_none(wal_msg_id(NULL)));
        cr_expect_eq(wal_msg_time_tick(NULL), 0u);
        cr_expect_eq(wal_msg_term(NULL), 0);
        cr_expect(wal_msgid_is_none(wal_msg_last_confirmed(NULL)));
        cr_expect_eq(wal_msg_txn_id(NULL), 0u);
        cr_expect_eq(wal_msg_txn_keepalive_ms(NULL), 0u);
        cr_expect_eq(wal_msg_freeze(NULL, WAL_MSGID(0, 1)), -EINVAL);
}
