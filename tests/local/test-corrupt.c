/* SPDX-License-Identifier: MIT */
/*
 * tests/local/test-corrupt.c: damaged channel directories of the local
 * backend (ecosystem-reliability Part C cases 3-6), through the backend
 * interface.
 *
 * Each test writes a channel of N records (payloads derived from the record
 * index, 200-1700 bytes) over several 1 MiB segments, closes it, damages the
 * files the way a crash or a bad disk would, and reopens:
 *
 *   torn last frame (zeroed from a cut), at a sample of byte offsets
 *   inside the frame                    -> open works, that record is gone,
 *                                          every earlier one intact, the next
 *                                          append reuses the torn LSN
 *   the last segment's file cut short
 *   inside a frame                      -> refused (not a crash: segments
 *                                          are preallocated), naming the
 *                                          segment and the frame's offset
 *   garbage after the tail              -> the same (torn-tail handling); a
 *                                          read-write open wipes it
 *   zeroed preallocated space           -> nothing lost
 *   a flipped bit in a frame with valid
 *   frames after it (payload, length,
 *   LSN; sealed or last segment)        -> open refused, -EBADMSG, the error
 *                                          names the segment and the offset
 *   a sealed segment truncated          -> refused, naming that segment and
 *                                          where its data stops
 *   a missing middle segment            -> refused
 *   a file named like a later segment
 *   that a crash cannot have left       -> refused, and left in place
 *
 * The frames are located with a small walker written from the format
 * comment at the top of impls/local/local-format.c (offsets, big-endian
 * fields), not with the backend's own codec, so the test checks the
 * documented format as well as the code.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <wal/wal-config.h>
#include <wal/wal-error.h>
#include <wal/wal-message.h>
#include <wal/wal-registry.h>
#include <walimpls/walimpls.h>
#include "utility/crc32c.h"

#define CHANNEL "corrupt"
#define N_RECORDS 3000
#define SEG_HDR 4096u    /* first frame offset (format comment) */
#define FRAME_HDR 24u

/* ---- Payloads ---- */

static size_t rec_len(uint64_t i)
{
        return 200 + (size_t)((i * 37) % 1500);
}

static void rec_fill(uint8_t *buf, uint64_t i)
{
        size_t len = rec_len(i);
        for (size_t j = 0; j < len; j++)
                buf[j] = (uint8_t)(i * 131 + j * 7 + (j >> 8));
        memcpy(buf, &i, sizeof(i));
}

/* ---- Backend through the interface ---- */

struct handle {
        struct walimpls_opener *opener;
        struct walimpls_wal *wal;
};

/* local.segment_bytes of every open (the read-ahead test sets more). */
static const char *g_segment_bytes = "1m";

static int backend_open(const char *dir, enum wal_access access, struct handle *h,
                        wal_error **reterr)
{
        const struct walimpls_builder *b;
        wal_config *cfg = NULL;
        int r = wal_registry_find("local", &b, reterr);
        if (r < 0)
                return r;
        if ((r = wal_config_new(&cfg)) < 0)
                return r;
        if ((r = wal_config_set(cfg, "local.dir", dir, reterr)) < 0 ||
            (r = wal_config_set(cfg, "local.segment_bytes", g_segment_bytes, reterr)) < 0)
                goto out;
        if ((r = b->build(cfg, &h->opener, reterr)) < 0)
                goto out;
        struct walimpls_open_opts o = { .channel = CHANNEL, .term = 1, .access = access };
        r = h->opener->ops->open(h->opener, &o, &h->wal, reterr);
        if (r < 0)
                h->opener->ops->close(h->opener);
out:
        wal_config_free(cfg);
        return r;
}

static void backend_close(struct handle *h)
{
        h->wal->ops->close(h->wal);
        h->opener->ops->close(h->opener);
}

struct waiter {
        pthread_mutex_t lock;
        pthread_cond_t cv;
        uint64_t done, failed;
        int first_error;
        uint64_t *lsn_of;        /* by record index, may be NULL */
};

static void append_done(void *arg, int status, struct wal_msgid id, const wal_error *e)
{
        struct waiter *w = *(struct waiter **)arg;
        uint64_t i = ((uint64_t *)arg)[1];
        (void)e;
        pthread_mutex_lock(&w->lock);
        if (status < 0) {
                w->failed++;
                if (!w->first_error)
                        w->first_error = status;
        } else if (w->lsn_of) {
                w->lsn_of[i] = id.lo;
        }
        w->done++;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->lock);
        free(arg);
}

/* Append records @from..@to-1 (payload by index) and wait for every one. */
static void append_records(struct handle *h, uint64_t from, uint64_t to, uint64_t *lsn_of)
{
        struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0,
                            lsn_of };
        uint8_t buf[2048];
        for (uint64_t i = from; i < to; i++) {
                pthread_mutex_lock(&w.lock);
                while (i - from - w.done >= 256) /* at most 256 in flight */
                        pthread_cond_wait(&w.cv, &w.lock);
                pthread_mutex_unlock(&w.lock);
                rec_fill(buf, i);
                wal_msg *m;
                cr_assert_eq(wal_msg_new(WAL_MSG_DATA, buf, rec_len(i), &m), 0);
                uint64_t *arg = malloc(2 * sizeof(uint64_t));
                cr_assert_not_null(arg);
                memcpy(arg, &(struct waiter *){ &w }, sizeof(struct waiter *));
                arg[1] = i;
                int r = h->wal->ops->append(h->wal, m, append_done, arg);
                wal_msg_unref(m);
                cr_assert_eq(r, 0, "append %" PRIu64 ": %s", i, wal_strerror(r));
        }
        pthread_mutex_lock(&w.lock);
        while (w.done < to - from)
                pthread_cond_wait(&w.cv, &w.lock);
        pthread_mutex_unlock(&w.lock);
        cr_assert_eq(w.failed, 0, "%" PRIu64 " appends failed, first: %s", w.failed,
                     wal_strerror(w.first_error));
}

/* Check that @p/@len, the record at @id, is record @n. */
static void check_record(long n, struct wal_msgid id, const uint8_t *p, size_t len)
{
        uint8_t expect[2048];
        cr_assert_eq(id.lo, (uint64_t)n + 1, "record %ld has LSN %" PRIu64, n, id.lo);
        cr_assert_eq(len, rec_len((uint64_t)n), "record %ld: %zu bytes", n, len);
        rec_fill(expect, (uint64_t)n);
        cr_assert(memcmp(p, expect, len) == 0, "record %ld: payload differs", n);
}

/* Read everything from scanner @s (with next(), or with next_batch() of at
 * most @max views when @batch) until the end or an error, checking that
 * record i sits at LSN i + 1 with its payload: the records delivered in
 * *@delivered, the error's text in *@msg (owned by the caller).  @returns 0
 * at the end, or the error. */
#define READ_VIEWS_MAX 97
static int read_scanner(struct walimpls_scanner *s, bool batch, size_t max, long *delivered,
                        char **msg)
{
        wal_error *err = NULL;
        long n = 0;
        int r;
        cr_assert(max <= READ_VIEWS_MAX);
        for (;;) {
                wal_msg *m = NULL;
                struct wal_msg_view v[READ_VIEWS_MAX];
                size_t k = 0;
                if (batch)
                        r = s->ops->next_batch(s, 0, v, max, &k, &err);
                else
                        r = s->ops->next(s, 0, &m, &err);
                if (r == -ETIMEDOUT) {
                        r = 0;
                        break;
                }
                if (r < 0) {
                        *msg = strdup(wal_error_message(err));
                        wal_error_free(err);
                        break;
                }
                if (batch) {
                        cr_assert(k >= 1 && k <= max, "next_batch gave %zu views", k);
                        for (size_t i = 0; i < k; i++, n++) {
                                cr_assert_eq(v[i].type, WAL_MSG_DATA);
                                check_record(n, v[i].id, v[i].payload, v[i].payload_len);
                        }
                        continue;
                }
                size_t len;
                const uint8_t *p = wal_msg_payload(m, &len);
                check_record(n, wal_msg_id(m), p, len);
                wal_msg_unref(m);
                n++;
        }
        *delivered = n;
        return r;
}

/* Open @dir, read everything (with next(), or with next_batch() when
 * @batch), check record i sits at LSN i + 1 with its payload.  @returns the
 * number of records, or the open/read error (with *msg, owned by the
 * caller, set to the error text). */
static long read_all_with(const char *dir, enum wal_access access, bool batch, char **msg)
{
        struct handle h;
        wal_error *err = NULL;
        *msg = NULL;
        int r = backend_open(dir, access, &h, &err);
        if (r < 0) {
                *msg = strdup(wal_error_message(err));
                wal_error_free(err);
                return r;
        }
        struct walimpls_read_opts ro = { .name = "corrupt",
                                         .deliver = { .policy = WAL_DELIVER_ALL } };
        struct walimpls_scanner *s;
        r = h.wal->ops->read(h.wal, &ro, &s, &err);
        if (r < 0) {
                *msg = strdup(wal_error_message(err));
                wal_error_free(err);
                backend_close(&h);
                return r;
        }
        cr_assert(!batch || s->ops->next_batch, "the local scanner has next_batch");
        long n = 0;
        r = read_scanner(s, batch, 61, &n, msg);
        s->ops->close(s);
        backend_close(&h);
        return r < 0 ? r : n;
}

/* read_all_with() through both read paths, which must agree; the message
 * is the batch path's. */
static long read_all(const char *dir, enum wal_access access, char **msg)
{
        char *m1 = NULL;
        long a = read_all_with(dir, access, false, &m1);
        long b = read_all_with(dir, access, true, msg);
        cr_assert_eq(a, b, "next() read %ld (%s), next_batch() %ld (%s)", a, m1 ? m1 : "",
                     b, *msg ? *msg : "");
        cr_assert((!m1 && !*msg) || (m1 && *msg && strcmp(m1, *msg) == 0),
                  "next(): %s; next_batch(): %s", m1 ? m1 : "-", *msg ? *msg : "-");
        free(m1);
        return b;
}

/* ---- Files, from the format comment ---- */

static char *g_base;          /* per-test temporary directory */
static char g_pristine[4096]; /* the undamaged channel, built once per test */

struct seg {
        char name[64];
        char path[4400];
        uint64_t size;
};

static int seg_cmp(const void *a, const void *b)
{
        return strcmp(((const struct seg *)a)->name, ((const struct seg *)b)->name);
}

/* The *.seg files of the channel under @dir, sorted (names sort as numbers). */
static size_t list_segs(const char *dir, struct seg *out, size_t max)
{
        char cdir[4300];
        snprintf(cdir, sizeof(cdir), "%s/%s", dir, CHANNEL);
        DIR *d = opendir(cdir);
        cr_assert_not_null(d, "opendir %s: %s", cdir, strerror(errno));
        size_t n = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
                size_t l = strlen(e->d_name);
                if (l < 5 || strcmp(e->d_name + l - 4, ".seg") != 0)
                        continue;
                cr_assert_lt(n, max);
                int w1 = snprintf(out[n].name, sizeof(out[n].name), "%s", e->d_name);
                int w2 = snprintf(out[n].path, sizeof(out[n].path), "%s/%s", cdir, e->d_name);
                cr_assert(w1 > 0 && (size_t)w1 < sizeof(out[n].name) && w2 > 0 &&
                                  (size_t)w2 < sizeof(out[n].path),
                          "segment name too long: %s", e->d_name);
                struct stat st;
                cr_assert_eq(stat(out[n].path, &st), 0);
                out[n].size = (uint64_t)st.st_size;
                n++;
        }
        closedir(d);
        qsort(out, n, sizeof(*out), seg_cmp);
        return n;
}

struct frame {
        uint64_t off, size, lsn;
        uint32_t body;
};

static uint32_t be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
        return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/* Frames of one segment file up to the first all-zero header. */
static size_t walk_frames(const char *path, struct frame *out, size_t max, uint64_t *end)
{
        int fd = open(path, O_RDONLY);
        cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
        struct stat st;
        fstat(fd, &st);
        uint8_t *buf = malloc((size_t)st.st_size);
        cr_assert_not_null(buf);
        cr_assert_eq(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
        close(fd);
        cr_assert(memcmp(buf, "LWALSEG1", 8) == 0, "%s: no segment magic", path);
        size_t n = 0;
        uint64_t off = SEG_HDR;
        static const uint8_t zero[FRAME_HDR];
        while (off + FRAME_HDR <= (uint64_t)st.st_size &&
               memcmp(buf + off, zero, FRAME_HDR) != 0) {
                cr_assert_lt(n, max);
                uint32_t b = be32(buf + off);
                out[n] = (struct frame){ .off = off, .lsn = be64(buf + off + 8), .body = b,
                                         .size = (FRAME_HDR + (uint64_t)b + 7) & ~7ull };
                off += out[n].size;
                n++;
        }
        *end = off;
        free(buf);
        return n;
}

static void pwrite_at(const char *path, const void *buf, size_t len, uint64_t off)
{
        int fd = open(path, O_WRONLY);
        cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
        cr_assert_eq(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
        close(fd);
}

static void flip_bit(const char *path, uint64_t off, int bit)
{
        int fd = open(path, O_RDWR);
        cr_assert_geq(fd, 0);
        uint8_t c;
        cr_assert_eq(pread(fd, &c, 1, (off_t)off), 1);
        c ^= (uint8_t)(1u << bit);
        cr_assert_eq(pwrite(fd, &c, 1, (off_t)off), 1);
        close(fd);
}

static void zero_range(const char *path, uint64_t off, uint64_t len)
{
        uint8_t *z = calloc(1, len ? len : 1);
        cr_assert_not_null(z);
        pwrite_at(path, z, len, off);
        free(z);
}

static void sh(const char *fmt, const char *a, const char *b)
{
        char cmd[9000];
        snprintf(cmd, sizeof(cmd), fmt, a, b);
        cr_assert_eq(system(cmd), 0, "%s failed", cmd);
}

/* A fresh copy of the pristine channel; @returns its local.dir. */
static const char *fresh_copy(const char *tag)
{
        static char dir[4200];
        snprintf(dir, sizeof(dir), "%s/%s", g_base, tag);
        sh("rm -rf '%s' && mkdir -p '%s'", dir, dir);
        sh("cp -a '%s/" CHANNEL "' '%s/'", g_pristine, dir);
        return dir;
}

static void setup(void)
{
        const char *t = getenv("TMPDIR");
        cr_assert_geq(asprintf(&g_base, "%s/libwal-corrupt-XXXXXX", t && *t ? t : "/tmp"), 0);
        cr_assert_not_null(mkdtemp(g_base));
        snprintf(g_pristine, sizeof(g_pristine), "%s/pristine", g_base);
        cr_assert_eq(mkdir(g_pristine, 0755), 0);
        struct handle h;
        wal_error *err = NULL;
        int r = backend_open(g_pristine, WAL_ACCESS_RW, &h, &err);
        cr_assert_eq(r, 0, "open: %s (%s)", wal_strerror(r), wal_error_message(err));
        append_records(&h, 0, N_RECORDS, NULL);
        backend_close(&h);
}

static void teardown(void)
{
        if (g_base) {
                sh("rm -rf '%s'%s", g_base, "");
                free(g_base);
                g_base = NULL;
        }
}

TestSuite(local_corrupt, .init = setup, .fini = teardown, .timeout = 120);

/* An open that must be refused with -EBADMSG naming @seg and @off. */
static void expect_refused(const char *dir, const char *seg, uint64_t off, const char *what)
{
        enum wal_access modes[] = { WAL_ACCESS_RO, WAL_ACCESS_RW };
        for (size_t i = 0; i < 2; i++) {
                char *msg;
                long r = read_all(dir, modes[i], &msg);
                cr_assert_eq(r, -EBADMSG, "%s (%s open): got %ld (%s), want -EBADMSG", what,
                             i ? "read-write" : "read-only", r, msg ? msg : "no message");
                cr_assert_not_null(msg, "%s: no error message", what);
                cr_assert(strstr(msg, seg), "%s: the error does not name %s: %s", what, seg,
                          msg);
                if (off != UINT64_MAX) {
                        char dec[32], hex[32];
                        snprintf(dec, sizeof(dec), "%" PRIu64, off);
                        snprintf(hex, sizeof(hex), "%#" PRIx64, off);
                        cr_assert(strstr(msg, dec) || strstr(msg, hex),
                                  "%s: the error does not name offset %s: %s", what, dec, msg);
                }
                cr_log_info("%s: refused: %s", what, msg);
                free(msg);
        }
}

/* Open must work and hold exactly @n intact records, read-only and then
 * read-write; afterwards one more append must get LSN n + 1. */
static void expect_records(const char *dir, long n, const char *what)
{
        char *msg;
        long r = read_all(dir, WAL_ACCESS_RO, &msg);
        cr_assert_eq(r, n, "%s (read-only): %ld records (%s), want %ld", what, r,
                     msg ? msg : "", n);
        free(msg);
        r = read_all(dir, WAL_ACCESS_RW, &msg);
        cr_assert_eq(r, n, "%s (read-write): %ld records (%s), want %ld", what, r,
                     msg ? msg : "", n);
        free(msg);
        struct handle h;
        wal_error *err = NULL;
        int o = backend_open(dir, WAL_ACCESS_RW, &h, &err);
        cr_assert_eq(o, 0, "%s: reopen: %s", what, wal_error_message(err));
        uint64_t lsn[N_RECORDS + 1] = { 0 };
        append_records(&h, (uint64_t)n, (uint64_t)n + 1, lsn);
        cr_assert_eq(lsn[n], (uint64_t)n + 1, "%s: the next append got LSN %" PRIu64
                     ", want %ld", what, lsn[n], n + 1);
        backend_close(&h);
        r = read_all(dir, WAL_ACCESS_RO, &msg);
        cr_assert_eq(r, n + 1, "%s: after one more append: %ld records (%s)", what, r,
                     msg ? msg : "");
        free(msg);
}

Test(local_corrupt, pristine_channel_reads_back)
{
        struct seg segs[16];
        size_t ns = list_segs(g_pristine, segs, 16);
        cr_assert_geq(ns, 3, "want at least 3 segments to damage, have %zu", ns);
        uint64_t total = 0, end;
        static struct frame fr[N_RECORDS];
        for (size_t i = 0; i < ns; i++)
                total += walk_frames(segs[i].path, fr, N_RECORDS, &end);
        cr_assert_eq(total, N_RECORDS, "the format walker found %" PRIu64 " frames", total);
        expect_records(fresh_copy("pristine-copy"), N_RECORDS, "undamaged");
}

Test(local_corrupt, torn_last_frame_is_dropped)
{
        struct seg segs[16];
        static struct frame fr[N_RECORDS];
        uint64_t end;
        size_t ns = list_segs(g_pristine, segs, 16);
        size_t nf = walk_frames(segs[ns - 1].path, fr, N_RECORDS, &end);
        cr_assert_gt(nf, 1);
        struct frame last = fr[nf - 1];
        cr_assert_eq(last.lsn, N_RECORDS);
        /* Cut points inside the last frame's bytes (header and body; the
         * zero padding after the body carries nothing): in its header, at
         * the body's start, in the body, one byte short of the end. */
        uint64_t data = FRAME_HDR + last.body;
        uint64_t cuts[] = { 1, 4, 8, 12, 16, 20, 23, 24, 25, 100, data / 2, data - 9, data - 1 };
        for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
                uint64_t k = cuts[c];
                if (k >= data || k == 0)
                        continue;
                char tag[64], what[128];
                /* (a) the rest of the frame never reached the disk: zeros */
                snprintf(tag, sizeof(tag), "zero-%" PRIu64, k);
                const char *dir = fresh_copy(tag);
                list_segs(dir, segs, 16);
                zero_range(segs[ns - 1].path, last.off + k, last.size - k);
                snprintf(what, sizeof(what), "last frame zeroed from byte %" PRIu64, k);
                expect_records(dir, N_RECORDS - 1, what);
                /* (b) the file itself ends inside the frame: not a torn
                 * tail (a crash never shrinks a preallocated segment; nor
                 * does libwal's own cut leave a partial frame), so the
                 * records that followed may have been cut off with it:
                 * refused, naming where the data stops (see
                 * truncated_last_segment_is_refused).  It used to be taken
                 * for a torn tail.  Only a cut that leaves nothing but zero
                 * bytes of the frame (the high bytes of its length) reads
                 * as the end of data, as zero padding does. */
                snprintf(tag, sizeof(tag), "cut-%" PRIu64, k);
                dir = fresh_copy(tag);
                list_segs(dir, segs, 16);
                uint8_t head[FRAME_HDR] = { 0 };
                int fd = open(segs[ns - 1].path, O_RDONLY);
                cr_assert_geq(fd, 0);
                cr_assert_eq(pread(fd, head, FRAME_HDR, (off_t)last.off), (ssize_t)FRAME_HDR);
                close(fd);
                bool zeros_left = true;
                for (uint64_t j = 0; j < k && j < FRAME_HDR; j++)
                        zeros_left = zeros_left && head[j] == 0;
                cr_assert_eq(truncate(segs[ns - 1].path, (off_t)(last.off + k)), 0);
                snprintf(what, sizeof(what), "last segment cut at byte %" PRIu64 " of its last "
                         "frame", k);
                if (zeros_left && k < FRAME_HDR)
                        expect_records(dir, N_RECORDS - 1, what);
                else
                        expect_refused(dir, segs[ns - 1].name, last.off, what);
        }
}

Test(local_corrupt, garbage_after_tail_is_torn_tail)
{
        struct seg segs[16];
        static struct frame fr[N_RECORDS];
        uint64_t end;
        size_t ns = list_segs(g_pristine, segs, 16);
        walk_frames(segs[ns - 1].path, fr, N_RECORDS, &end);
        uint8_t junk[3000];
        uint64_t x = 88172645463325252ull;
        for (size_t i = 0; i < sizeof(junk); i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                junk[i] = (uint8_t)x;
        }
        /* Random bytes right after the last frame. */
        const char *dir = fresh_copy("garbage");
        list_segs(dir, segs, 16);
        cr_assert_leq(end + sizeof(junk), segs[ns - 1].size);
        pwrite_at(segs[ns - 1].path, junk, sizeof(junk), end);
        expect_records(dir, N_RECORDS, "random bytes after the tail");

        /* A plausible frame header (small length, the next LSN) with a bad CRC. */
        dir = fresh_copy("garbage-header");
        list_segs(dir, segs, 16);
        uint8_t hdr[FRAME_HDR + 64] = { 0 };
        hdr[3] = 64;                                   /* B = 64 */
        uint64_t lsn = N_RECORDS + 1;
        for (int i = 0; i < 8; i++)
                hdr[8 + i] = (uint8_t)(lsn >> (56 - 8 * i)); /* LSN, big-endian */
        memcpy(hdr + 20, junk, 4 + 64);                /* CRC + body: junk */
        pwrite_at(segs[ns - 1].path, hdr, sizeof(hdr), end);
        expect_records(dir, N_RECORDS, "a frame header with a bad CRC after the tail");
}

Test(local_corrupt, read_write_open_wipes_the_torn_tail)
{
        struct seg segs[16];
        static struct frame fr[N_RECORDS];
        uint64_t end;
        size_t ns = list_segs(g_pristine, segs, 16);
        walk_frames(segs[ns - 1].path, fr, N_RECORDS, &end);
        const char *dir = fresh_copy("wipe");
        list_segs(dir, segs, 16);
        uint8_t junk[512];
        memset(junk, 0xA5, sizeof(junk));
        pwrite_at(segs[ns - 1].path, junk, sizeof(junk), end);
        char *msg;
        cr_assert_eq(read_all(dir, WAL_ACCESS_RW, &msg), N_RECORDS);
        free(msg);
        /* After a read-write open the bytes past the end of data are zeros. */
        int fd = open(segs[ns - 1].path, O_RDONLY);
        cr_assert_geq(fd, 0);
        uint8_t back[512];
        ssize_t got = pread(fd, back, sizeof(back), (off_t)end);
        close(fd);
        cr_assert_geq(got, 0);
        for (ssize_t i = 0; i < got; i++)
                cr_assert_eq(back[i], 0, "byte %zd after the end survived a read-write open", i);
}

Test(local_corrupt, zeroed_preallocated_space_is_fine)
{
        struct seg segs[16];
        static struct frame fr[N_RECORDS];
        uint64_t end;
        size_t ns = list_segs(g_pristine, segs, 16);
        walk_frames(segs[ns - 1].path, fr, N_RECORDS, &end);
        const char *dir = fresh_copy("zeroed");
        list_segs(dir, segs, 16);
        /* Written zeros (not just unwritten extents) up to the end of the file. */
        zero_range(segs[ns - 1].path, end, segs[ns - 1].size - end);
        expect_records(dir, N_RECORDS, "zeros written over the preallocated space");
}

/* A flipped bit in frame @fi of segment @si (valid frames follow it). */
static void flip_and_expect_refused(size_t si, size_t fi, uint64_t at, int bit,
                                    const char *what)
{
        struct seg segs[16];
        static struct frame fr[N_RECORDS];
        uint64_t end;
        const char *dir = fresh_copy("flip");
        size_t ns = list_segs(dir, segs, 16);
        cr_assert_lt(si, ns);
        size_t nf = walk_frames(segs[si].path, fr, N_RECORDS, &end);
        cr_assert_lt(fi + 1, nf, "frame %zu is not followed by another in %s", fi,
                     segs[si].name);
        flip_bit(segs[si].path, fr[fi].off + at, bit);
        char w[256];
        snprintf(w, sizeof(w), "%s (%s, frame at offset %" PRIu64 ")", what, segs[si].name,
                 fr[fi].off);
        expect_refused(dir, segs[si].name, fr[fi].off, w);
}

Test(local_corrupt, flipped_payload_bit_in_sealed_segment_is_refused)
{
        struct seg segs[16];
        static struct frame fr[N_RECORDS];
        uint64_t end;
        list_segs(g_pristine, segs, 16);
        size_t nf = walk_frames(segs[0].path, fr, N_RECORDS, &end);
        flip_and_expect_refused(0, nf / 2, FRAME_HDR + fr[nf / 2].body / 2, 3,
                                "payload bit flipped");
}

Test(local_corrupt, flipped_header_bits_are_refused)
{
        struct seg segs[16];
        static struct frame fr[N_RECORDS];
        uint64_t end;
        list_segs(g_pristine, segs, 16);
        size_t nf = walk_frames(segs[1].path, fr, N_RECORDS, &end);
        /* The length field (a low bit: the frame still fits the file), the
         * LSN, and the CRC. */
        flip_and_expect_refused(1, nf / 3, 3, 4, "length bit flipped");
        flip_and_expect_refused(1, nf / 3, 15, 0, "LSN bit flipped");
        flip_and_expect_refused(1, nf / 3, 21, 6, "CRC bit flipped");
}

Test(local_corrupt, flipped_bit_in_last_segment_before_valid_frames_is_refused)
{
        struct seg segs[16];
        static struct frame fr[N_RECORDS];
        uint64_t end;
        size_t ns = list_segs(g_pristine, segs, 16);
        size_t nf = walk_frames(segs[ns - 1].path, fr, N_RECORDS, &end);
        cr_assert_gt(nf, 10);
        flip_and_expect_refused(ns - 1, nf / 2, FRAME_HDR + 5, 1,
                                "payload bit flipped in the last segment");
}

Test(local_corrupt, truncated_sealed_segment_is_refused)
{
        struct seg segs[16];
        static struct frame fr[N_RECORDS];
        uint64_t end;
        /* Inside a frame: the frame runs past the end of the file. */
        const char *dir = fresh_copy("trunc-mid");
        list_segs(dir, segs, 16);
        size_t nf = walk_frames(segs[0].path, fr, N_RECORDS, &end);
        uint64_t cut = fr[nf / 2].off + 40;
        cr_assert_eq(truncate(segs[0].path, (off_t)cut), 0);
        expect_refused(dir, segs[0].name, fr[nf / 2].off, "sealed segment cut inside a frame");

        /* At a frame boundary, or inside the next frame's header (fewer
         * than 24 bytes of it left): the segment ends early, and the next
         * segment does not follow.  The error names the segment that was
         * cut and where its data stops, not the next one at offset 0 (it
         * named "lsn-gap in <next segment> at offset 0"). */
        dir = fresh_copy("trunc-boundary");
        list_segs(dir, segs, 16);
        cr_assert_eq(truncate(segs[0].path, (off_t)fr[nf / 2].off), 0);
        expect_refused(dir, segs[0].name, fr[nf / 2].off, "sealed segment cut at a frame "
                       "boundary");
        dir = fresh_copy("trunc-in-header");
        list_segs(dir, segs, 16);
        cr_assert_eq(truncate(segs[0].path, (off_t)fr[nf / 2].off + 10), 0);
        expect_refused(dir, segs[0].name, fr[nf / 2].off, "sealed segment cut inside a frame "
                       "header");
}

/*
 * The last segment cut short (shorter than the size its header says it was
 * created with) inside a frame: that is not a torn tail (a crash never
 * shrinks a preallocated segment, and libwal's own cut at the end of data
 * leaves no partial frame), so the records after the cut were lost and the
 * open is refused.  It used to be taken for a torn tail: the open worked,
 * `walctl verify` said ok, and the next append reused the lost LSNs.
 */
Test(local_corrupt, truncated_last_segment_is_refused)
{
        struct seg segs[16];
        static struct frame fr[N_RECORDS];
        uint64_t end;
        const char *dir = fresh_copy("trunc-last-mid");
        size_t ns = list_segs(dir, segs, 16);
        size_t nf = walk_frames(segs[ns - 1].path, fr, N_RECORDS, &end);
        cr_assert_gt(nf, 10);
        cr_assert_eq(truncate(segs[ns - 1].path, (off_t)fr[nf / 2].off + 40), 0);
        expect_refused(dir, segs[ns - 1].name, fr[nf / 2].off, "last segment cut inside a "
                       "frame");
        dir = fresh_copy("trunc-last-in-header");
        list_segs(dir, segs, 16);
        cr_assert_eq(truncate(segs[ns - 1].path, (off_t)fr[nf / 2].off + 10), 0);
        expect_refused(dir, segs[ns - 1].name, fr[nf / 2].off, "last segment cut inside a "
                       "frame header");
}

/*
 * A file named like a segment after the last one that is not one a crash
 * could have left: a bad header is taken for a segment torn while being
 * created (and removed) only when its name is the next LSN and its first
 * bytes are zero or the segment magic.  Anything else is refused and left
 * in place; it used to be deleted by the next read-write open.
 */
Test(local_corrupt, foreign_file_after_the_last_segment_is_refused_not_removed)
{
        const char *what[] = { "text named as the next segment", "zeros named after a gap" };
        for (int k = 0; k < 2; k++) {
                const char *dir = fresh_copy(k ? "foreign-gap" : "foreign-text");
                char name[64], path[4400];
                snprintf(name, sizeof(name), "%020d.seg", N_RECORDS + 1 + (k ? 100 : 0));
                snprintf(path, sizeof(path), "%s/" CHANNEL "/%s", dir, name);
                int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
                cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
                if (k)
                        cr_assert_eq(ftruncate(fd, 1 << 20), 0);
                else
                        cr_assert_eq(write(fd, "not a segment\n", 14), 14);
                close(fd);
                expect_refused(dir, name, 0, what[k]);
                cr_assert_eq(access(path, F_OK), 0, "%s: %s was removed", what[k], name);
        }
}

Test(local_corrupt, missing_middle_segment_is_refused)
{
        struct seg segs[16];
        const char *dir = fresh_copy("missing");
        size_t ns = list_segs(dir, segs, 16);
        cr_assert_geq(ns, 3);
        cr_assert_eq(unlink(segs[1].path), 0);
        /* The segment that no longer follows is the one after the hole. */
        expect_refused(dir, segs[2].name, UINT64_MAX, "middle segment missing");
}

/* A new last segment whose header never reached the disk (killed while the
 * segment was being created): no frame can be in it, so it is dropped. */
Test(local_corrupt, torn_segment_creation_is_dropped)
{
        struct seg segs[16];
        const char *dir = fresh_copy("torn-create");
        size_t ns = list_segs(dir, segs, 16);
        char path[4400];
        snprintf(path, sizeof(path), "%s/" CHANNEL "/%020d.seg", dir, N_RECORDS + 1);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
        cr_assert_eq(ftruncate(fd, 1 << 20), 0);
        close(fd);
        expect_records(dir, N_RECORDS, "an all-zero segment after the last one");
        /* The zero file is gone, or is a proper segment again: never left
         * behind looking like a segment with a bad header. */
        size_t now = list_segs(dir, segs, 16);
        cr_assert(now == ns || now == ns + 1, "%zu segments, had %zu", now, ns);
        if (now == ns + 1) {
                static struct frame fr[4];
                uint64_t end;
                cr_assert_eq(walk_frames(path, fr, 4, &end), 1);
                cr_assert_eq(fr[0].lsn, N_RECORDS + 1);
        }
}

/* A new last segment with a valid header (written per the format comment)
 * and no frame yet: the state right after a segment roll. */
Test(local_corrupt, empty_last_segment_is_fine)
{
        const char *dir = fresh_copy("empty-last");
        char path[4400];
        snprintf(path, sizeof(path), "%s/" CHANNEL "/%020d.seg", dir, N_RECORDS + 1);
        uint8_t hdr[SEG_HDR] = { 0 };
        memcpy(hdr, "LWALSEG1", 8);
        hdr[11] = 1;                               /* version 1 */
        hdr[14] = 0x10;                            /* header size 4096 */
        uint64_t first = N_RECORDS + 1, size = 1 << 20;
        for (int i = 0; i < 8; i++) {
                hdr[16 + i] = (uint8_t)(first >> (56 - 8 * i));
                hdr[24 + i] = (uint8_t)(size >> (56 - 8 * i));
        }
        uint32_t crc = walu_crc32c(0, hdr, 60);
        for (int i = 0; i < 4; i++)
                hdr[60 + i] = (uint8_t)(crc >> (24 - 8 * i));
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
        cr_assert_eq(ftruncate(fd, (off_t)size), 0);
        cr_assert_eq(pwrite(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
        close(fd);
        expect_records(dir, N_RECORDS, "an empty segment after the last one");
        /* The segment was kept (its header is valid) and took the append. */
        static struct frame fr[4];
        uint64_t end;
        cr_assert_eq(walk_frames(path, fr, 4, &end), 1);
        cr_assert_eq(fr[0].lsn, N_RECORDS + 1);
        cr_assert_eq(fr[0].off, SEG_HDR);
}

/* A length field damaged so that the frame seems to run past the end of the
 * file (ecosystem-reliability Part C case 5), with valid frames after it:
 * acknowledged records follow, so this is corruption, not a torn tail. */
Test(local_corrupt, oversized_length_before_valid_frames_is_refused)
{
        struct seg segs[16];
        static struct frame fr[N_RECORDS];
        uint64_t end;
        size_t ns = list_segs(g_pristine, segs, 16);
        size_t nf = walk_frames(segs[ns - 1].path, fr, N_RECORDS, &end);
        cr_assert_gt(nf, 10);
        /* Bit 27 of the length: 128 MiB more, under the 256 MiB cap but far
         * past the end of a 1 MiB segment. */
        flip_and_expect_refused(ns - 1, nf / 2, 0, 3,
                                "length pointing past the end of the last segment");
        list_segs(g_pristine, segs, 16);
        nf = walk_frames(segs[0].path, fr, N_RECORDS, &end);
        flip_and_expect_refused(0, nf / 2, 0, 3,
                                "length pointing past the end of a sealed segment");
}

/* ---- The previous-segment summary in a header page (format comment) ---- */

#define PREV_OFF 64u     /* "LWALPRV1", first LSN, last LSN, end, n, index, CRC */

static void read_page(const char *path, uint8_t *page)
{
        int fd = open(path, O_RDONLY);
        cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
        cr_assert_eq(pread(fd, page, SEG_HDR, 0), (ssize_t)SEG_HDR);
        close(fd);
}

/* Replace the summary's end of data with @end, CRC made valid again. */
static void rewrite_summary_end(const char *path, uint64_t end)
{
        uint8_t page[SEG_HDR];
        read_page(path, page);
        uint8_t *p = page + PREV_OFF;
        cr_assert(memcmp(p, "LWALPRV1", 8) == 0, "%s has no summary", path);
        for (int i = 0; i < 8; i++)
                p[24 + i] = (uint8_t)(end >> (56 - 8 * i));
        /* Keep the summary possible (index entries inside the data): the
         * writer notes an entry where a batch starts, so one may sit at the
         * very frame the new end cuts off, depending on how the appends
         * were batched; such a summary is refused as damaged (bad-header)
         * instead of merely disagreeing with the data, and the test failed
         * now and then. */
        uint32_t n = be32(p + 32);
        while (n > 0 && be64(p + 44 + 16 * (n - 1)) >= end)
                n--;
        for (int i = 0; i < 4; i++)
                p[32 + i] = (uint8_t)(n >> (24 - 8 * i));
        size_t len = 36 + 16 * (size_t)n;
        uint32_t crc = walu_crc32c(0, p, len);
        for (int i = 0; i < 4; i++)
                p[len + i] = (uint8_t)(crc >> (24 - 8 * i));
        pwrite_at(path, page, SEG_HDR, 0);
}

Test(local_corrupt, every_later_segment_summarises_the_one_before)
{
        struct seg segs[16];
        static struct frame fr[N_RECORDS];
        size_t ns = list_segs(g_pristine, segs, 16);
        cr_assert_geq(ns, 3);
        for (size_t i = 1; i < ns; i++) {
                uint8_t page[SEG_HDR];
                read_page(segs[i].path, page);
                const uint8_t *p = page + PREV_OFF;
                cr_assert(memcmp(p, "LWALPRV1", 8) == 0, "%s has no summary", segs[i].name);
                uint64_t end;
                size_t nf = walk_frames(segs[i - 1].path, fr, N_RECORDS, &end);
                cr_assert_eq(be64(p + 8), fr[0].lsn, "%s: first LSN", segs[i].name);
                cr_assert_eq(be64(p + 16), fr[nf - 1].lsn, "%s: last LSN", segs[i].name);
                cr_assert_eq(be64(p + 24), end, "%s: end of data", segs[i].name);
        }
        uint8_t page[SEG_HDR];
        read_page(segs[0].path, page);
        cr_assert(memcmp(page + PREV_OFF, "LWALPRV1", 8) != 0, "the first segment has no "
                  "segment before it");
}

Test(local_corrupt, damaged_summary_is_refused)
{
        struct seg segs[16];
        const char *dir = fresh_copy("summary-flip");
        size_t ns = list_segs(dir, segs, 16);
        cr_assert_geq(ns, 3);
        /* The end-of-data field of the summary in the second segment. */
        flip_bit(segs[1].path, PREV_OFF + 30, 2);
        expect_refused(dir, segs[1].name, PREV_OFF, "summary bit flipped");
}

Test(local_corrupt, summary_disagreeing_with_the_data_is_not_trusted)
{
        struct seg segs[16];
        static struct frame fr[N_RECORDS];
        uint64_t end;
        /* A summary (with a valid CRC) whose end is a frame too early: the
         * open walks the segment instead and finds every record. */
        const char *dir = fresh_copy("summary-early");
        list_segs(dir, segs, 16);
        size_t nf = walk_frames(segs[0].path, fr, N_RECORDS, &end);
        rewrite_summary_end(segs[1].path, fr[nf - 1].off);
        expect_records(dir, N_RECORDS, "summary end one frame early");
        /* One past the end of the file. */
        dir = fresh_copy("summary-late");
        list_segs(dir, segs, 16);
        rewrite_summary_end(segs[1].path, segs[0].size + 8);
        expect_records(dir, N_RECORDS, "summary end past the file");
}

Test(local_corrupt, segments_without_summaries_read_back)
{
        /* As written before summaries existed: the header pages' tails zero. */
        struct seg segs[16];
        const char *dir = fresh_copy("no-summaries");
        size_t ns = list_segs(dir, segs, 16);
        for (size_t i = 0; i < ns; i++)
                zero_range(segs[i].path, PREV_OFF, SEG_HDR - PREV_OFF);
        expect_records(dir, N_RECORDS, "no summaries");
}

Test(local_corrupt, flipped_bit_in_summarised_segment_is_refused_when_read)
{
        /* The open trusts the summary and does not read the middle of the
         * first segment; reading it must still refuse the damaged frame. */
        struct seg segs[16];
        static struct frame fr[N_RECORDS];
        uint64_t end;
        list_segs(g_pristine, segs, 16);
        size_t nf = walk_frames(segs[0].path, fr, N_RECORDS, &end);
        flip_and_expect_refused(0, nf / 3, FRAME_HDR + 9, 5, "payload bit, summarised segment");
}

/*
 * Read-ahead (impls/local/local.c): a scanner that has read two full 1 MiB
 * chunks of a segment with more ahead has a helper thread read the next
 * chunk while it checks the current one, and stitches the frame cut by a
 * chunk's end in front of it.  A channel of 8 MiB segments (about 20 MiB of
 * 200-1700-byte records) reads back whole through both read paths, and a
 * bit flipped far into a sealed segment (read through the helper's chunks)
 * is refused with -EBADMSG naming the segment and the frame's offset.
 */
#define RA_RECORDS 21000

Test(local_corrupt, read_ahead_reads_back_and_refuses_damage)
{
        g_segment_bytes = "8m";
        char dir[4200];
        snprintf(dir, sizeof(dir), "%s/readahead", g_base);
        cr_assert_eq(mkdir(dir, 0755), 0);
        struct handle h;
        wal_error *err = NULL;
        int r = backend_open(dir, WAL_ACCESS_RW, &h, &err);
        cr_assert_eq(r, 0, "open: %s (%s)", wal_strerror(r), wal_error_message(err));
        append_records(&h, 0, RA_RECORDS, NULL);
        backend_close(&h);
        char *msg;
        long n = read_all(dir, WAL_ACCESS_RO, &msg);
        cr_assert_eq(n, RA_RECORDS, "read back %ld (%s), want %d", n, msg ? msg : "",
                     RA_RECORDS);
        free(msg);

        struct seg segs[16];
        static struct frame fr[RA_RECORDS];
        uint64_t end;
        size_t ns = list_segs(dir, segs, 16);
        cr_assert_geq(ns, 2, "want a sealed segment, have %zu segments", ns);
        size_t nf = walk_frames(segs[0].path, fr, RA_RECORDS, &end);
        cr_assert_gt(end, (uint64_t)6 << 20, "segment 0 ends at %" PRIu64, end);
        /* a frame past 5 MiB: the fifth chunk or later, read ahead */
        size_t fi = 0;
        while (fi + 1 < nf && fr[fi].off < (uint64_t)5 << 20)
                fi++;
        flip_bit(segs[0].path, fr[fi].off + FRAME_HDR + fr[fi].body / 2, 2);
        char w[256];
        snprintf(w, sizeof(w), "read-ahead (%s, frame at offset %" PRIu64 ")", segs[0].name,
                 fr[fi].off);
        expect_refused(dir, segs[0].name, fr[fi].off, w);
        g_segment_bytes = "1m";
}

/*
 * The read-ahead helper checks frames too (impls/local/local.c
 * "Read-ahead"): damage it finds must be refused exactly where the
 * scanner's own checks refuse it, with the records before it delivered and
 * none after.  The helper's chunks are the 1 MiB reads that follow the
 * scanner's second synchronous read of a segment: the first read is at the
 * segment's first frame, the second at the first frame not whole in it
 * (p1), the helper's at p1 + k MiB (k >= 1) up to the end of the segment's
 * data.  Damaged here: the first frame wholly inside a chunk, a frame cut by
 * a chunk's end (a byte before and a byte after the cut: the helper copies
 * the frame's start in front of the next chunk), and the last frame of a
 * sealed segment.  Each is read with the scanner taking a chunk only once
 * the helper checked all of it (local_readahead_wait_checks: the helper
 * finds the damage), with the helper checking nothing and walking from the
 * sparse index's hints (local_readahead_skip_checks: the scanner finds it
 * in chunks the helper walked), and as in production (whoever gets there
 * first), by next() and by next_batch().
 */
#include "impls/local/local.h"

static uint64_t max_u64(uint64_t a, uint64_t b)
{
        return a > b ? a : b;
}

/* Read everything from @dir (read-only) until the end or an error: the
 * number of records delivered (each checked) in *@delivered, the error's
 * text in *@msg (owned by the caller).  @returns 0 or the error. */
static int read_until_error(const char *dir, bool batch, long *delivered, char **msg)
{
        struct handle h;
        wal_error *err = NULL;
        *msg = NULL;
        *delivered = 0;
        int r = backend_open(dir, WAL_ACCESS_RO, &h, &err);
        cr_assert_eq(r, 0, "open %s: %s", dir, wal_error_message(err));
        struct walimpls_read_opts ro = { .name = "ra-check",
                                         .deliver = { .policy = WAL_DELIVER_ALL } };
        struct walimpls_scanner *s;
        r = h.wal->ops->read(h.wal, &ro, &s, &err);
        cr_assert_eq(r, 0, "read %s: %s", dir, wal_error_message(err));
        r = read_scanner(s, batch, READ_VIEWS_MAX, delivered, msg);
        s->ops->close(s);
        backend_close(&h);
        return r;
}

Test(local_corrupt, read_ahead_helper_refuses_damage_where_the_scanner_would, .timeout = 240)
{
        g_segment_bytes = "8m";
        char src[4200];
        snprintf(src, sizeof(src), "%s/ra-src", g_base);
        cr_assert_eq(mkdir(src, 0755), 0);
        struct handle h;
        wal_error *err = NULL;
        int r = backend_open(src, WAL_ACCESS_RW, &h, &err);
        cr_assert_eq(r, 0, "open: %s (%s)", wal_strerror(r), wal_error_message(err));
        append_records(&h, 0, RA_RECORDS, NULL);
        backend_close(&h);

        struct seg segs[16];
        static struct frame fr[RA_RECORDS];
        uint64_t end;
        size_t ns = list_segs(src, segs, 16);
        cr_assert_geq(ns, 2, "want a sealed segment, have %zu segments", ns);
        size_t nf = walk_frames(segs[0].path, fr, RA_RECORDS, &end);
        const uint64_t mib = 1u << 20;
        /* p1: the first frame not whole in the first 1 MiB read */
        size_t i1 = 0;
        while (fr[i1].off + FRAME_HDR + fr[i1].body <= SEG_HDR + mib)
                i1++;
        uint64_t p1 = fr[i1].off;
        cr_assert_gt(end, p1 + 5 * mib, "segment 0 ends at %" PRIu64, end);
        /* the first frame wholly in the helper's second chunk */
        size_t a = i1;
        while (fr[a].off < p1 + 2 * mib)
                a++;
        /* the frame cut by the end of the helper's third chunk */
        uint64_t cut = p1 + 4 * mib;
        size_t c = i1;
        while (fr[c].off + fr[c].size <= cut)
                c++;
        cr_assert(fr[c].off < cut && fr[c].off + FRAME_HDR + fr[c].body > cut,
                  "frame %zu [%" PRIu64 ", +%" PRIu64 ") is not cut at %" PRIu64, c, fr[c].off,
                  fr[c].size, cut);
        struct {
                const char *what;
                size_t frame;
                uint64_t at;    /* byte offset in the segment file */
        } cases[] = {
                { "first frame of a chunk", a, fr[a].off + FRAME_HDR + fr[a].body / 2 },
                { "a frame across a chunk's end, before the cut", c,
                  max_u64(cut - 1, fr[c].off + FRAME_HDR) },
                { "a frame across a chunk's end, after the cut", c, cut },
                { "last frame of a sealed segment", nf - 1,
                  fr[nf - 1].off + FRAME_HDR + fr[nf - 1].body - 1 },
        };
        char dir[4200];
        snprintf(dir, sizeof(dir), "%s/ra-damaged", g_base);
        for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
                sh("rm -rf '%s'%s", dir, "");
                sh("cp -a '%s' '%s'", src, dir);
                char path[4500];
                snprintf(path, sizeof(path), "%s/" CHANNEL "/%s", dir, segs[0].name);
                size_t fi = cases[ci].frame;
                flip_bit(path, cases[ci].at, 4);
                char off[32];
                snprintf(off, sizeof(off), "%" PRIu64, fr[fi].off);
                for (int mode = 0; mode < 6; mode++) {
                        bool wait = mode % 3 == 1, skip = mode % 3 == 2, batch = mode >= 3;
                        const char *who = wait   ? "helper checks"
                                          : skip ? "scanner checks"
                                                 : "either checks";
                        local_readahead_wait_checks(wait);
                        local_readahead_skip_checks(skip);
                        uint64_t jumps = local_readahead_hint_jumps();
                        long got;
                        char *msg;
                        r = read_until_error(dir, batch, &got, &msg);
                        local_readahead_wait_checks(false);
                        local_readahead_skip_checks(false);
                        /* the helper walked from the index's hints */
                        cr_assert(!skip || local_readahead_hint_jumps() > jumps,
                                  "%s: the helper never walked from a hint", cases[ci].what);
                        cr_assert_eq(r, -EBADMSG, "%s (%s, %s): got %d (%s), want -EBADMSG",
                                     cases[ci].what, batch ? "next_batch" : "next", who, r,
                                     msg ? msg : "-");
                        cr_assert_eq(got, (long)fi,
                                     "%s (%s, %s): %ld records before the error, want %zu",
                                     cases[ci].what, batch ? "next_batch" : "next", who,
                                     got, fi);
                        cr_assert(strstr(msg, segs[0].name) && strstr(msg, off),
                                  "%s: the error does not name %s at offset %s: %s",
                                  cases[ci].what, segs[0].name, off, msg);
                        free(msg);
                }
        }
        g_segment_bytes = "1m";
}
