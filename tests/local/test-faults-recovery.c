/* SPDX-License-Identifier: MIT */
/*
 * tests/local/test-faults-recovery.c: ownership, retention and recovery
 * tools of the local backend, through the backend interface.
 *
 *  - a second writer PROCESS gets -EBUSY naming the channel, while a
 *    read-only open beside it works, its scanner at the head sees the other
 *    process's new records, and it notices segments that writer truncated;
 *  - the term is recorded durably: a later read-write open with a lower
 *    term gets -ESTALE; a higher term in the same process fences the older
 *    wal (-ESTALE on append) and takes over with the next LSN;
 *  - truncate deletes whole segments below the ID, never the active one; a
 *    scanner positioned in deleted data gets -ERANGE, as do START_FROM and
 *    START_AFTER below the first retained LSN; ALL starts there;
 *  - a flipped bit in a sealed segment refuses the open (-EBADMSG naming the
 *    segment and offset); local_verify reports the same place; local_repair
 *    cuts there after saving the cut bytes, and the open then succeeds with
 *    every record before the fault;
 *  - a scanner's fd wakes for every record (no lost wake-up between
 *    next(0) returning -ETIMEDOUT and poll()).
 */
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-faults-util.h"

#define CHANNEL "rec"
#define LEN 300

static struct tf t;

static void open_ok(const char *ch, enum wal_access acc, int64_t term, struct walimpls_wal **w)
{
        wal_error *err = NULL;
        int r = tf_open(&t, ch, acc, term, w, &err);
        cr_assert_eq(r, 0, "open %s: %s", ch, wal_error_message(err));
}

static void append_sync(struct walimpls_wal *w, size_t from, size_t n)
{
        struct acks s;
        acks_init(&s, from + n);
        for (size_t i = from; i < from + n; i++)
                cr_assert_eq(tf_append(w, &s, i, LEN), 0);
        tf_wait(&s);
        for (size_t i = from; i < from + n; i++) {
                cr_assert_eq(s.a[i].status, 0, "append %zu: %s", i, s.a[i].msg);
                cr_assert_eq(s.a[i].id.lo, i + 1, "append %zu got LSN %" PRIu64, i,
                             s.a[i].id.lo);
        }
        acks_done(&s);
}

/* ---- Ownership ---- */

Test(local_owner, second_writer_process_is_busy_reader_follows_it, .timeout = 60)
{
        tf_setup(&t, "auto", "64k");
        int go[2], done[2];
        cr_assert_eq(pipe(go), 0);
        cr_assert_eq(pipe(done), 0);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                /* Child: the writer process.  Opens, reports, waits for the
                 * parent's go, appends 200 records, waits to be released.
                 * Only the parent holds the write end of `done`: if it dies,
                 * the child reads EOF and exits instead of hanging. */
                close(go[0]);
                close(done[1]);
                struct walimpls_opener *o = NULL;
                wal_config *cfg = NULL;
                wal_config_new(&cfg);
                wal_config_set(cfg, "local.dir", t.dir, NULL);
                wal_config_set(cfg, "local.segment_bytes", "64k", NULL);
                if (walimpls_local.build(cfg, &o, NULL) < 0)
                        _exit(2);
                struct walimpls_open_opts opts = { CHANNEL, 1, WAL_ACCESS_RW };
                struct walimpls_wal *w = NULL;
                if (o->ops->open(o, &opts, &w, NULL) < 0)
                        _exit(3);
                char c = 'o';
                if (write(go[1], &c, 1) != 1 || read(done[0], &c, 1) != 1)
                        _exit(4);
                struct acks s;
                acks_init(&s, 200);
                for (size_t i = 0; i < 200; i++)
                        if (tf_append(w, &s, i, LEN) < 0)
                                _exit(5);
                tf_wait(&s);
                for (size_t i = 0; i < 200; i++)
                        if (s.a[i].status)
                                _exit(6);
                /* Wait until the parent read everything, then truncate
                 * the first segment away. */
                if (read(done[0], &c, 1) != 1)
                        _exit(7);
                if (w->ops->truncate(w, WAL_MSGID(0, 190), NULL) < 0)
                        _exit(8);
                c = 't';
                if (write(go[1], &c, 1) != 1 || read(done[0], &c, 1) != 1)
                        _exit(9);
                w->ops->close(w);
                o->ops->close(o);
                _exit(0);
        }
        close(go[1]);
        close(done[0]);
        char c;
        cr_assert_eq(read(go[0], &c, 1), 1, "child did not open");

        struct walimpls_wal *w = NULL;
        wal_error *err = NULL;
        int r = tf_open(&t, CHANNEL, WAL_ACCESS_RW, 2, &w, &err);
        cr_assert_eq(r, -EBUSY, "second writer process: %d", r);
        cr_assert(strstr(wal_error_message(err), CHANNEL), "%s", wal_error_message(err));
        wal_error_free(err);

        /* Read-only beside the writer, tailing from the head. */
        struct walimpls_wal *ro = NULL;
        open_ok(CHANNEL, WAL_ACCESS_RO, 0, &ro);
        struct walimpls_read_opts opts = { .name = "tail",
                                           .deliver = { .policy = WAL_DELIVER_ALL } };
        struct walimpls_scanner *sc = NULL;
        cr_assert_eq(ro->ops->read(ro, &opts, &sc, &err), 0, "%s", wal_error_message(err));
        wal_msg *m = NULL;
        cr_assert_eq(sc->ops->next(sc, 0, &m, &err), -ETIMEDOUT);
        cr_assert_eq(write(done[1], "g", 1), 1);
        for (uint64_t lsn = 1; lsn <= 200; lsn++) {
                r = sc->ops->next(sc, 10000, &m, &err);
                cr_assert_eq(r, 0, "record %" PRIu64 ": %d %s", lsn, r, wal_error_message(err));
                cr_assert_eq(wal_msg_id(m).lo, lsn);
                size_t plen;
                const char *p = wal_msg_payload(m, &plen);
                char want[LEN];
                payload_of(lsn - 1, LEN, want);
                cr_assert_eq(plen, LEN);
                cr_assert_eq(memcmp(p, want, LEN), 0);
                wal_msg_unref(m);
        }
        /* The writer truncates: the reader notices the first segment gone. */
        cr_assert_eq(write(done[1], "t", 1), 1);
        cr_assert_eq(read(go[0], &c, 1), 1);
        cr_assert_eq(c, 't');
        struct walimpls_info info;
        cr_assert_eq(ro->ops->info(ro, &info, &err), 0);
        cr_assert_gt(info.first_id.lo, 1, "read-only info still shows truncated records");
        cr_assert_eq(info.last_id.lo, 200);
        struct walimpls_scanner *all = NULL;
        cr_assert_eq(ro->ops->read(ro, &opts, &all, &err), 0, "%s", wal_error_message(err));
        r = all->ops->next(all, 0, &m, &err);
        cr_assert_eq(r, 0, "ALL after truncation: %d %s", r, wal_error_message(err));
        cr_assert_eq(wal_msg_id(m).lo, info.first_id.lo);
        wal_msg_unref(m);
        all->ops->close(all);
        cr_assert_eq(write(done[1], "x", 1), 1);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
        sc->ops->close(sc);
        ro->ops->close(ro);
        /* The writer is gone: the lock is free. */
        open_ok(CHANNEL, WAL_ACCESS_RW, 2, &w);
        append_sync(w, 200, 1);
        w->ops->close(w);
        tf_teardown(&t);
}

Test(local_owner, terms_are_recorded_and_fence, .timeout = 60)
{
        tf_setup(&t, "auto", "64k");
        struct walimpls_wal *w5 = NULL, *w7 = NULL, *w = NULL;
        open_ok(CHANNEL, WAL_ACCESS_RW, 5, &w5);
        append_sync(w5, 0, 10);
        /* A higher term in this process fences the older wal. */
        open_ok(CHANNEL, WAL_ACCESS_RW, 7, &w7);
        struct acks s;
        acks_init(&s, 20);
        cr_assert_eq(tf_append(w5, &s, 10, LEN), -ESTALE);
        acks_done(&s);
        append_sync(w7, 10, 5);
        w5->ops->close(w5);
        w7->ops->close(w7);
        t.o->ops->close(t.o);
        t.o = NULL;

        /* Recorded durably: a new opener with a lower term is refused. */
        tf_build(&t, "auto", "64k");
        wal_error *err = NULL;
        int r = tf_open(&t, CHANNEL, WAL_ACCESS_RW, 6, &w, &err);
        cr_assert_eq(r, -ESTALE, "lower term after reopen: %d", r);
        wal_error_free(err);
        open_ok(CHANNEL, WAL_ACCESS_RW, 7, &w);
        struct walimpls_info info;
        cr_assert_eq(w->ops->info(w, &info, NULL), 0);
        cr_assert_eq(info.term, 7);
        cr_assert_eq(info.count, 15);
        cr_assert_eq(info.last_id.lo, 15);
        cr_assert_str_eq(info.durability, "fdatasync");
        append_sync(w, 15, 1);
        w->ops->close(w);
        tf_teardown(&t);
}

/* ---- Retention ---- */

static size_t seg_count(void)
{
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", t.dir, CHANNEL);
        struct local_chan_scan sc;
        cr_assert_eq(local_chan_scan(local_io_default_ops(), path, LOCAL_SCAN_FULL, &sc,
                                     NULL), 0);
        size_t n = sc.n_segs;
        local_chan_scan_done(&sc);
        return n;
}

Test(local_retention, truncate_deletes_whole_segments_and_readers_get_erange, .timeout = 60)
{
        tf_setup(&t, "auto", "64k");
        struct walimpls_wal *w = NULL;
        open_ok(CHANNEL, WAL_ACCESS_RW, 1, &w);
        append_sync(w, 0, 1000);      /* about 6 segments of ~180 records */
        size_t before = seg_count();
        cr_assert_geq(before, 4, "only %zu segments", before);

        /* A scanner positioned at LSN 2. */
        struct walimpls_read_opts ro = { .name = "slow",
                                         .deliver = { .policy = WAL_DELIVER_ALL } };
        struct walimpls_scanner *slow = NULL;
        wal_error *err = NULL;
        cr_assert_eq(w->ops->read(w, &ro, &slow, &err), 0);
        wal_msg *m = NULL;
        cr_assert_eq(slow->ops->next(slow, 0, &m, &err), 0);
        cr_assert_eq(wal_msg_id(m).lo, 1);
        wal_msg_unref(m);

        cr_assert_eq(w->ops->truncate(w, WAL_MSGID(0, 500), &err), 0, "%s",
                     wal_error_message(err));
        size_t after = seg_count();
        cr_assert_lt(after, before, "nothing deleted");
        struct walimpls_info info;
        cr_assert_eq(w->ops->info(w, &info, NULL), 0);
        uint64_t first = info.first_id.lo;
        cr_assert_gt(first, 1);
        cr_assert_leq(first, 501, "deleted records above the truncation point");
        cr_assert_eq(info.last_id.lo, 1000);
        cr_assert_eq((uint64_t)info.count, 1000 - first + 1);

        /* The positioned scanner: -ERANGE, never a silent skip. */
        int r = slow->ops->next(slow, 0, &m, &err);
        cr_assert_eq(r, -ERANGE, "positioned scanner got %d", r);
        wal_error_free(err);
        err = NULL;
        slow->ops->close(slow);

        /* Start positions below the first retained LSN. */
        ro.deliver = (struct wal_deliver){ .policy = WAL_DELIVER_START_FROM,
                                           .id = WAL_MSGID(0, first - 1) };
        struct walimpls_scanner *sc = NULL;
        r = w->ops->read(w, &ro, &sc, &err);
        if (r == 0) {
                r = sc->ops->next(sc, 0, &m, &err);
                sc->ops->close(sc);
        }
        cr_assert_eq(r, -ERANGE, "START_FROM below first: %d", r);
        wal_error_free(err);
        err = NULL;
        ro.deliver = (struct wal_deliver){ .policy = WAL_DELIVER_START_AFTER,
                                           .id = WAL_MSGID(0, first - 2) };
        r = w->ops->read(w, &ro, &sc, &err);
        if (r == 0) {
                r = sc->ops->next(sc, 0, &m, &err);
                sc->ops->close(sc);
        }
        cr_assert_eq(r, -ERANGE, "START_AFTER below first: %d", r);
        wal_error_free(err);
        err = NULL;
        /* START_AFTER first-1 and ALL both start at first. */
        ro.deliver = (struct wal_deliver){ .policy = WAL_DELIVER_START_AFTER,
                                           .id = WAL_MSGID(0, first - 1) };
        cr_assert_eq(w->ops->read(w, &ro, &sc, &err), 0);
        cr_assert_eq(sc->ops->next(sc, 0, &m, &err), 0);
        cr_assert_eq(wal_msg_id(m).lo, first);
        wal_msg_unref(m);
        sc->ops->close(sc);

        /* Truncating past the end never deletes the active segment. */
        cr_assert_eq(w->ops->truncate(w, WAL_MSGID(0, 5000), &err), 0);
        cr_assert_eq(seg_count(), 1);
        append_sync(w, 1000, 1);
        w->ops->close(w);
        t.o->ops->close(t.o);
        t.o = NULL;

        /* After reopen the retained range is the same. */
        tf_build(&t, "auto", "64k");
        open_ok(CHANNEL, WAL_ACCESS_RW, 1, &w);
        cr_assert_eq(w->ops->info(w, &info, NULL), 0);
        cr_assert_eq(info.last_id.lo, 1001);
        ro.deliver = (struct wal_deliver){ .policy = WAL_DELIVER_ALL };
        cr_assert_eq(w->ops->read(w, &ro, &sc, &err), 0);
        cr_assert_eq(sc->ops->next(sc, 0, &m, &err), 0);
        cr_assert_eq(wal_msg_id(m).lo, info.first_id.lo);
        wal_msg_unref(m);
        sc->ops->close(sc);
        w->ops->close(w);
        tf_teardown(&t);
}

/* ---- Verify and repair ---- */

Test(local_repair, flipped_bit_in_sealed_segment_refused_verified_repaired, .timeout = 60)
{
        tf_setup(&t, "auto", "64k");
        struct walimpls_wal *w = NULL;
        open_ok(CHANNEL, WAL_ACCESS_RW, 1, &w);
        append_sync(w, 0, 600);
        w->ops->close(w);
        t.o->ops->close(t.o);
        t.o = NULL;

        char chan[4096];
        snprintf(chan, sizeof(chan), "%s/%s", t.dir, CHANNEL);
        struct local_fault f;
        cr_assert_eq(local_verify(chan, &f, NULL), 0);
        cr_assert_eq(f.kind, LOCAL_FAULT_NONE);
        cr_assert_eq(f.last_lsn, 600);

        /* Flip one payload bit of the 11th frame of the second segment. */
        struct local_chan_scan sc;
        cr_assert_eq(local_chan_scan(local_io_default_ops(), chan, LOCAL_SCAN_FULL, &sc,
                                     NULL), 0);
        cr_assert_geq(sc.n_segs, 3);
        struct local_seg *s2 = sc.segs[1];
        /* Every frame has the same size here (same payload length). */
        uint64_t frame = (s2->end - LOCAL_SEG_HDR_SIZE) / (s2->last_lsn - s2->first_lsn + 1);
        uint64_t off = LOCAL_SEG_HDR_SIZE + 10 * frame;
        uint64_t bad_lsn = s2->first_lsn + 10;
        char seg2[LOCAL_SEG_NAME_LEN + 1];
        local_seg_name(seg2, s2->first_lsn);
        int fd = open(s2->path, O_RDWR);
        cr_assert_geq(fd, 0);
        uint8_t b;
        cr_assert_eq(pread(fd, &b, 1, (off_t)(off + LOCAL_FRAME_HDR_SIZE + 40)), 1);
        b ^= 0x10;
        cr_assert_eq(pwrite(fd, &b, 1, (off_t)(off + LOCAL_FRAME_HDR_SIZE + 40)), 1);
        close(fd);
        local_chan_scan_done(&sc);

        /* Verify names the place. */
        cr_assert_eq(local_verify(chan, &f, NULL), 0);
        cr_assert_eq(f.kind, LOCAL_FAULT_BAD_FRAME, "kind %s", local_fault_kind_name(f.kind));
        cr_assert_str_eq(f.segment, seg2);
        cr_assert_eq(f.offset, off);
        cr_assert_eq(f.lsn, bad_lsn);
        cr_assert_eq(f.last_lsn, bad_lsn - 1);

        char want[64];
        snprintf(want, sizeof(want), "offset %" PRIu64, off);

        /* By default an open checks the CRCs of the last segment only and
         * walks the headers of the others: it succeeds, and a scanner
         * refuses the bad frame when it reaches it (next and next_batch),
         * after delivering every record before it. */
        tf_build(&t, "auto", "64k");
        wal_error *err = NULL;
        enum wal_access modes[] = { WAL_ACCESS_RO, WAL_ACCESS_RW };
        for (size_t m = 0; m < 2; m++) {
                for (int batch = 0; batch < 2; batch++) {
                        int r = tf_open(&t, CHANNEL, modes[m], 1, &w, &err);
                        cr_assert_eq(r, 0, "open: %s", wal_error_message(err));
                        struct walimpls_read_opts ro = {
                                .name = "check", .deliver = { .policy = WAL_DELIVER_ALL } };
                        struct walimpls_scanner *scn = NULL;
                        cr_assert_eq(w->ops->read(w, &ro, &scn, &err), 0);
                        uint64_t got = 0;
                        for (;;) {
                                wal_msg *msg = NULL;
                                struct wal_msg_view v[7];
                                size_t k = 0;
                                if (batch) {
                                        r = scn->ops->next_batch(scn, 0, v, 7, &k, &err);
                                } else {
                                        r = scn->ops->next(scn, 0, &msg, &err);
                                        k = r == 0;
                                        wal_msg_unref(msg);
                                }
                                if (r < 0)
                                        break;
                                got += k;
                        }
                        cr_assert_eq(r, -EBADMSG, "read past the bad frame: %d", r);
                        cr_assert_eq(got, bad_lsn - 1, "%" PRIu64 " records before it", got);
                        cr_assert(strstr(wal_error_message(err), seg2) &&
                                  strstr(wal_error_message(err), want), "%s",
                                  wal_error_message(err));
                        wal_error_free(err);
                        err = NULL;
                        scn->ops->close(scn);
                        w->ops->close(w);
                }
        }
        t.o->ops->close(t.o);

        /* local.open_check=all refuses at open, naming segment and offset. */
        wal_config *cfg = NULL;
        cr_assert_eq(wal_config_new(&cfg), 0);
        cr_assert_eq(wal_config_set(cfg, "local.dir", t.dir, &err), 0);
        cr_assert_eq(wal_config_set(cfg, "local.open_check", "all", &err), 0);
        cr_assert_eq(walimpls_local.build(cfg, &t.o, &err), 0);
        wal_config_free(cfg);
        int r = tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err);
        cr_assert_eq(r, -EBADMSG);
        cr_assert(strstr(wal_error_message(err), seg2) && strstr(wal_error_message(err), want),
                  "%s", wal_error_message(err));
        wal_error_free(err);
        err = NULL;
        r = tf_open(&t, CHANNEL, WAL_ACCESS_RO, 1, &w, &err);
        cr_assert_eq(r, -EBADMSG, "read-only open of a corrupt channel: %d", r);
        wal_error_free(err);
        err = NULL;

        /* Repair cuts there, keeping a copy of what it cut. */
        cr_assert_eq(local_repair(chan, &f, &err), 0, "%s", wal_error_message(err));
        cr_assert_eq(f.kind, LOCAL_FAULT_BAD_FRAME);
        char side[4200];
        snprintf(side, sizeof(side), "%s/%s.cut-%" PRIu64, chan, seg2, off);
        struct stat st;
        cr_assert_eq(stat(side, &st), 0, "no side file %s", side);
        cr_assert_gt(st.st_size, 0);
        cr_assert_eq(local_verify(chan, &f, NULL), 0);
        cr_assert_eq(f.kind, LOCAL_FAULT_NONE, "still %s", local_fault_kind_name(f.kind));
        cr_assert_eq(f.last_lsn, bad_lsn - 1);

        open_ok(CHANNEL, WAL_ACCESS_RW, 1, &w);
        size_t *idx = calloc(bad_lsn, sizeof(*idx));
        cr_assert_eq(tf_read_all(w, LEN, idx, bad_lsn), bad_lsn - 1);
        for (size_t i = 0; i + 1 < bad_lsn; i++)
                cr_assert_eq(idx[i], i);
        free(idx);
        /* Appends continue right after the cut. */
        struct acks s;
        acks_init(&s, 1);
        cr_assert_eq(tf_append(w, &s, 0, LEN), 0);
        tf_wait(&s);
        cr_assert_eq(s.a[0].status, 0, "%s", s.a[0].msg);
        cr_assert_eq(s.a[0].id.lo, bad_lsn);
        acks_done(&s);
        w->ops->close(w);
        tf_teardown(&t);
}

Test(local_repair, repair_refuses_while_a_writer_holds_the_channel, .timeout = 60)
{
        tf_setup(&t, "auto", "64k");
        char chan[4096];
        snprintf(chan, sizeof(chan), "%s/%s", t.dir, CHANNEL);
        struct walimpls_wal *w = NULL;
        open_ok(CHANNEL, WAL_ACCESS_RW, 1, &w);
        append_sync(w, 0, 5);
        struct local_fault f;
        wal_error *err = NULL;
        cr_assert_eq(local_repair(chan, &f, &err), -EBUSY);
        wal_error_free(err);
        w->ops->close(w);
        cr_assert_eq(local_repair(chan, &f, NULL), 0);
        cr_assert_eq(f.kind, LOCAL_FAULT_NONE);
        tf_teardown(&t);
}

/* ---- Scanner wake-ups ---- */

struct pingpong {
        struct walimpls_wal *w;
        sem_t turn;            /* posted by the reader after each record */
        int n;
};

static void *pp_writer(void *p)
{
        struct pingpong *pp = p;
        struct acks s;
        acks_init(&s, (size_t)pp->n);
        for (int i = 0; i < pp->n; i++) {
                if (tf_append(pp->w, &s, (size_t)i, 16) < 0)
                        return (void *)1;
                while (sem_wait(&pp->turn) < 0 && errno == EINTR)
                        ;
        }
        tf_wait(&s);
        acks_done(&s);
        return NULL;
}

/* One record at a time, each appended only after the previous one was read:
 * every record's wake-up is the only one, so a lost wake-up shows as a poll
 * that times out while a record is available.  Both write paths. */
static void fd_wakes_for_every_record(const char *io)
{
        tf_setup(&t, io, "64k");
        struct pingpong pp = { .n = 1500 };
        sem_init(&pp.turn, 0, 0);
        open_ok(CHANNEL, WAL_ACCESS_RW, 1, &pp.w);
        struct walimpls_read_opts ro = { .name = "poller",
                                         .deliver = { .policy = WAL_DELIVER_ALL } };
        struct walimpls_scanner *sc = NULL;
        wal_error *err = NULL;
        cr_assert_eq(pp.w->ops->read(pp.w, &ro, &sc, &err), 0);
        int fd = sc->ops->fd(sc);
        cr_assert_geq(fd, 0);
        pthread_t th;
        pthread_create(&th, NULL, pp_writer, &pp);
        for (int got = 0; got < pp.n;) {
                wal_msg *m = NULL;
                int r = sc->ops->next(sc, 0, &m, &err);
                if (r == -ETIMEDOUT) {
                        struct pollfd pfd = { .fd = fd, .events = POLLIN };
                        int pr = poll(&pfd, 1, 5000);
                        cr_assert_eq(pr, 1, "record %d available but the fd never woke", got);
                        continue;
                }
                cr_assert_eq(r, 0, "%s", wal_error_message(err));
                cr_assert_eq(wal_msg_id(m).lo, (uint64_t)got + 1);
                wal_msg_unref(m);
                got++;
                sem_post(&pp.turn);
        }
        void *ret;
        pthread_join(th, &ret);
        cr_assert_null(ret);
        sc->ops->close(sc);
        pp.w->ops->close(pp.w);
        sem_destroy(&pp.turn);
        tf_teardown(&t);
}

Test(local_scanner, fd_wakes_for_every_record_auto, .timeout = 60)
{
        fd_wakes_for_every_record("auto");
}

Test(local_scanner, fd_wakes_for_every_record_uring, .timeout = 60)
{
        fd_wakes_for_every_record("uring");
}

/* ---- Batch reads ---- */

/* Check the view @v is record @i (LSN i + 1) as append_sync wrote it. */
static void check_view(const struct wal_msg_view *v, size_t i)
{
        char want[LEN];
        payload_of(i, LEN, want);
        cr_assert_eq(v->id.lo, i + 1, "view has LSN %" PRIu64 ", want %zu", v->id.lo, i + 1);
        cr_assert_eq(v->type, WAL_MSG_DATA);
        cr_assert_eq(v->payload_len, (size_t)LEN);
        cr_assert_eq(memcmp(v->payload, want, LEN), 0, "record %zu payload differs", i);
}

Test(local_scanner, next_batch_positions_mixes_with_next_and_waits_at_the_head, .timeout = 60)
{
        tf_setup(&t, "auto", "64k");   /* about 200 records per segment */
        struct walimpls_wal *w = NULL;
        open_ok(CHANNEL, WAL_ACCESS_RW, 1, &w);
        append_sync(w, 0, 700);

        struct walimpls_read_opts ro = {
                .name = "batch",
                .deliver = { .policy = WAL_DELIVER_START_FROM, .id = WAL_MSGID(0, 101) } };
        struct walimpls_scanner *sc = NULL;
        wal_error *err = NULL;
        cr_assert_eq(w->ops->read(w, &ro, &sc, &err), 0, "%s", wal_error_message(err));
        cr_assert_geq(sc->ops->version, 2u);
        struct wal_msg_view v[16];
        size_t n = 99;
        cr_assert_eq(sc->ops->next_batch(sc, 0, v, 0, &n, &err), -EINVAL);
        wal_error_free(err);
        err = NULL;
        cr_assert_eq(n, 0);

        /* From LSN 101 (record 100), alternating next_batch and next across
         * every segment boundary. */
        size_t i = 100;
        bool batch = true;
        for (;;) {
                int r;
                if (batch) {
                        r = sc->ops->next_batch(sc, 0, v, 16, &n, &err);
                        if (r == 0) {
                                cr_assert(n >= 1 && n <= 16, "%zu views", n);
                                for (size_t k = 0; k < n; k++)
                                        check_view(&v[k], i++);
                        }
                } else {
                        wal_msg *m = NULL;
                        r = sc->ops->next(sc, 0, &m, &err);
                        if (r == 0) {
                                cr_assert_eq(wal_msg_id(m).lo, i + 1);
                                wal_msg_unref(m);
                                i++;
                        }
                }
                if (r == -ETIMEDOUT)
                        break;
                cr_assert_eq(r, 0, "%s", wal_error_message(err));
                batch = !batch;
        }
        cr_assert_eq(i, 700, "read up to record %zu", i);

        /* At the head: nothing now; a new record arrives within the wait. */
        cr_assert_eq(sc->ops->next_batch(sc, 0, v, 16, &n, &err), -ETIMEDOUT);
        cr_assert_eq(n, 0);
        append_sync(w, 700, 1);
        cr_assert_eq(sc->ops->next_batch(sc, 10000, v, 16, &n, &err), 0, "%s",
                     wal_error_message(err));
        cr_assert_eq(n, 1);
        check_view(&v[0], 700);

        /* A view turns into a message with the same content. */
        wal_msg *m = NULL;
        cr_assert_eq(wal_msg_view_to_msg(&v[0], &m), 0);
        size_t len = 0;
        const char *p = wal_msg_payload(m, &len);
        cr_assert_eq(len, (size_t)LEN);
        cr_assert_eq(memcmp(p, v[0].payload, LEN), 0);
        cr_assert_eq(wal_msg_id(m).lo, 701);
        cr_assert(wal_msg_is_immutable(m));
        wal_msg_unref(m);
        cr_assert_eq(wal_msg_view_prop_at(&v[0], 0, NULL, NULL, NULL, NULL), -ERANGE);

        sc->ops->close(sc);
        w->ops->close(w);
        tf_teardown(&t);
}
