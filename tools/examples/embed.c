/* Append three records to a channel and read them back. */
#include <stdio.h>
#include <string.h>
#include <wal/wal.h>

static int fail(const char *what, int r, wal_error *err)
{
        fprintf(stderr, "%s: %s\n", what, err ? wal_error_message(err) : wal_strerror(r));
        wal_error_free(err);
        return 1;
}

int main(void)
{
        wal_config *cfg = NULL;
        wal_opener *opener = NULL;
        wal *w = NULL;
        wal_scanner *scanner = NULL;
        wal_error *err = NULL;
        int r;

        /* The local backend keeps the log in files under local.dir. */
        wal_config_new(&cfg);
        if ((r = wal_config_set(cfg, "local.dir", "./example-wal", &err)) < 0)
                return fail("config", r, err);
        if ((r = wal_opener_new("local", cfg, &opener, &err)) < 0)
                return fail("opener", r, err);
        wal_config_free(cfg);

        /* Open the channel "orders" read-write as owner of term 1. */
        if ((r = wal_open(opener, "orders", 1, WAL_ACCESS_RW, &w, &err)) < 0)
                return fail("open", r, err);

        for (int i = 0; i < 3; i++) {
                char text[32];
                wal_msg *m = NULL, *written = NULL;
                snprintf(text, sizeof(text), "order %d", i);
                wal_msg_new(WAL_MSG_DATA, text, strlen(text), &m);
                wal_msg_set_prop(m, "customer", "42");
                /* Returns once the record is durable. */
                r = wal_append_wait(w, m, &written, &err);
                wal_msg_unref(m);
                if (r < 0)
                        return fail("append", r, err);
                char id[WAL_MSGID_STRLEN];
                wal_msgid_format(wal_msg_id(written), id, sizeof(id));
                printf("appended %s as %s\n", text, id);
                wal_msg_unref(written);
        }

        /* Read everything, data messages only, until nothing more comes. */
        struct wal_deliver from = { .policy = WAL_DELIVER_ALL };
        struct wal_filter data_only = { .types = WAL_FILTER_TYPE(WAL_MSG_DATA) };
        if ((r = wal_read(w, &from, &data_only, &scanner, &err)) < 0)
                return fail("read", r, err);
        wal_msg *m;
        while (wal_scanner_next(scanner, 200, &m, NULL) == 0) {
                size_t len;
                const char *p = wal_msg_payload(m, &len);
                printf("read %.*s (customer %s)\n", (int)len, p, wal_msg_prop(m, "customer"));
                wal_msg_unref(m);
        }

        wal_scanner_close(scanner);
        wal_close(w);
        wal_opener_close(opener);
        return 0;
}
