/* SPDX-License-Identifier: MIT */
/*
 * sample.c: "sample", a backend over plain files, shipped as a plugin.
 *
 * It is the worked example of README.md: it includes only installed headers
 * (<walimpls/walimpls.h>, <wal/wal-plugin.h>) and links libwal.so, so it
 * shows what an out-of-tree backend needs and nothing more.  It favours
 * plainness over speed.
 *
 * Layout: sample.dir/<channel>/log holds the records, appended only;
 * sample.dir/<channel>/term holds the owner term as decimal text (replaced
 * atomically: written to term.tmp, fsync'ed, renamed).
 *
 * Record format (integers big-endian):
 *
 *   offset  size  field
 *   0       4     L: length of the body
 *   4       4     CRC-32 (IEEE) of the body
 *   8       L     body:
 *                   u64 seq               (the ID is {0, seq}, seq >= 1)
 *                   u8  type              (enum wal_msg_type)
 *                   i64 term, u64 time tick, u64 last-confirmed hi, lo,
 *                   u64 txn id, u32 txn keepalive ms
 *                   u32 vchannel length + 1 (0: none), its bytes
 *                   u32 property count, then per property:
 *                       u32 key length, key, u32 value length, value
 *                   u32 payload length, payload
 *
 * Writing: a read-write wal has one writer thread.  append() queues the
 * message (a reference) and wakes it; the thread takes the whole queue as a
 * batch and, holding flock(LOCK_EX) on the log, checks the term file (a
 * higher term means fenced: -ESTALE, permanent), numbers the records after
 * the last one in the file, writes them with one write() and fdatasync()s,
 * then runs the completions in order.  So IDs follow append() call order,
 * and an acknowledged record is on disk.  A write or fsync error makes the
 * wal unavailable (-EIO) and is never retried.
 *
 * Fencing: a read-write open takes the same lock, refuses a term below the
 * recorded one (-ESTALE) and records its own; because every batch re-reads
 * the term under the lock, a fenced writer cannot slip a batch in after the
 * takeover, even from another process.  Within one opener a newer RW open
 * of a channel also fences an older RW wal of the same term (generation
 * counter), as the memory backend does.
 *
 * Recovery: an RW open scans the log; a last record that is incomplete or
 * fails its CRC is a torn write and is cut off; a bad record followed by
 * more data is corruption and the open fails with -EBADMSG naming the offset.
 *
 * Reading: a scanner has its own file descriptor and walks the records from
 * an offset, skipping those below its start sequence.  It reads up to the
 * channel's committed end (advanced by writers of this opener after their
 * fdatasync) or, when no writer of this opener is open, to the file's size.
 * Writers signal the scanners of the channel through walimpls_notifier; a
 * scanner whose writer lives in another opener or process finds new data by
 * polling every 100 ms inside next().  There is no truncation (the builder
 * does not claim WALIMPLS_CAP_TRUNCATE): truncate only checks its arguments.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <walimpls/walimpls.h>
#include <wal/wal-plugin.h>

#define REC_HEADER 8u
#define REC_MAX (256u * 1024 * 1024)   /* largest body accepted when reading */
#define POLL_MS 100                     /* cross-process tailing */

/* ---- CRC-32 (IEEE 802.3, reflected 0xEDB88320) ---- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
        for (uint32_t i = 0; i < 256; i++) {
                uint32_t c = i;
                for (int k = 0; k < 8; k++)
                        c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
                crc_table[i] = c;
        }
}

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
        pthread_once(&crc_once, crc_init);
        uint32_t c = 0xFFFFFFFFu;
        while (n--)
                c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
}

/* ---- Byte buffers ---- */

struct buf {
        unsigned char *p;
        size_t n, cap;
        bool oom;
};

static void buf_put(struct buf *b, const void *src, size_t n)
{
        if (b->oom)
                return;
        if (b->n + n > b->cap) {
                size_t cap = b->cap ? b->cap : 4096;
                while (cap < b->n + n)
                        cap *= 2;
                unsigned char *np = realloc(b->p, cap);
                if (!np) {
                        b->oom = true;
                        return;
                }
                b->p = np;
                b->cap = cap;
        }
        if (n)
                memcpy(b->p + b->n, src, n);
        b->n += n;
}

static void put_u32(unsigned char *p, uint32_t v)
{
        p[0] = (unsigned char)(v >> 24);
        p[1] = (unsigned char)(v >> 16);
        p[2] = (unsigned char)(v >> 8);
        p[3] = (unsigned char)v;
}

static uint32_t get_u32(const unsigned char *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void buf_u8(struct buf *b, uint8_t v)
{
        buf_put(b, &v, 1);
}

static void buf_u32(struct buf *b, uint32_t v)
{
        unsigned char t[4];
        put_u32(t, v);
        buf_put(b, t, 4);
}

static void buf_u64(struct buf *b, uint64_t v)
{
        buf_u32(b, (uint32_t)(v >> 32));
        buf_u32(b, (uint32_t)v);
}

static void buf_bytes(struct buf *b, const void *p, size_t n)
{
        buf_u32(b, (uint32_t)n);
        buf_put(b, p, n);
}

/* Append one record for @m numbered @seq. */
static void encode_record(struct buf *b, const wal_msg *m, uint64_t seq)
{
        size_t start = b->n;
        unsigned char hdr[REC_HEADER] = { 0 };
        buf_put(b, hdr, sizeof(hdr));           /* filled in below */
        buf_u64(b, seq);
        buf_u8(b, (uint8_t)wal_msg_type(m));
        buf_u64(b, (uint64_t)wal_msg_term(m));
        buf_u64(b, wal_msg_time_tick(m));
        struct wal_msgid lc = wal_msg_last_confirmed(m);
        buf_u64(b, lc.hi);
        buf_u64(b, lc.lo);
        buf_u64(b, wal_msg_txn_id(m));
        buf_u32(b, wal_msg_txn_keepalive_ms(m));
        const char *vc = wal_msg_vchannel(m);
        buf_u32(b, vc ? (uint32_t)strlen(vc) + 1 : 0);
        if (vc)
                buf_put(b, vc, strlen(vc));
        size_t np = wal_msg_prop_count(m);
        buf_u32(b, (uint32_t)np);
        for (size_t i = 0; i < np; i++) {
                const char *k = NULL, *v = NULL;
                wal_msg_prop_at(m, i, &k, &v);
                buf_bytes(b, k, strlen(k));
                buf_bytes(b, v, strlen(v));
        }
        size_t len = 0;
        const void *payload = wal_msg_payload(m, &len);
        buf_bytes(b, payload, len);
        if (b->oom)
                return;
        size_t body = b->n - start - REC_HEADER;
        put_u32(b->p + start, (uint32_t)body);
        put_u32(b->p + start + 4, crc32_of(b->p + start + REC_HEADER, body));
}

/* A bounds-checked reader over one body. */
struct rd {
        const unsigned char *p;
        size_t n, off;
        bool bad;
};

static const unsigned char *rd_take(struct rd *r, size_t n)
{
        if (r->bad || n > r->n - r->off) {
                r->bad = true;
                return NULL;
        }
        const unsigned char *p = r->p + r->off;
        r->off += n;
        return p;
}

static uint32_t rd_u32(struct rd *r)
{
        const unsigned char *p = rd_take(r, 4);
        return p ? get_u32(p) : 0;
}

static uint64_t rd_u64(struct rd *r)
{
        uint64_t hi = rd_u32(r);
        return hi << 32 | rd_u32(r);
}

/* A NUL-terminated copy of the next length-prefixed string (NULL if bad). */
static char *rd_str(struct rd *r, uint32_t n)
{
        const unsigned char *p = rd_take(r, n);
        if (!p || memchr(p, '\0', n))
                return r->bad = true, NULL;
        return strndup((const char *)p, n);
}

/* Decode a body into a frozen message.  0, -EBADMSG, -ENOMEM. */
static int decode_body(const unsigned char *body, size_t n, uint64_t *seq, wal_msg **ret)
{
        struct rd r = { body, n, 0, false };
        *seq = rd_u64(&r);
        const unsigned char *tp = rd_take(&r, 1);
        int64_t term = (int64_t)rd_u64(&r);
        uint64_t tt = rd_u64(&r);
        struct wal_msgid lc;
        lc.hi = rd_u64(&r);
        lc.lo = rd_u64(&r);
        uint64_t txn = rd_u64(&r);
        uint32_t keepalive = rd_u32(&r);
        if (r.bad || *seq == 0)
                return -EBADMSG;
        uint32_t vlen = rd_u32(&r);
        char *vc = vlen ? rd_str(&r, vlen - 1) : NULL;
        uint32_t nprops = rd_u32(&r);
        if (r.bad || nprops > n)
                goto bad_vc;
        /* Properties are decoded after the payload is known: skip for now. */
        size_t props_at = r.off;
        for (uint32_t i = 0; i < nprops * 2 && !r.bad; i++)
                rd_take(&r, rd_u32(&r));
        uint32_t plen = rd_u32(&r);
        const unsigned char *payload = rd_take(&r, plen);
        if (r.bad || r.off != n)
                goto bad_vc;
        wal_msg *m = NULL;
        int rc = wal_msg_new((enum wal_msg_type)*tp, plen ? payload : NULL, plen, &m);
        if (rc < 0) {
                free(vc);
                return rc == -ENOMEM ? rc : -EBADMSG;
        }
        r.off = props_at;
        for (uint32_t i = 0; i < nprops && rc == 0; i++) {
                char *k = rd_str(&r, rd_u32(&r));
                char *v = k ? rd_str(&r, rd_u32(&r)) : NULL;
                rc = k && v ? wal_msg_set_prop(m, k, v) : -EBADMSG;
                free(k);
                free(v);
        }
        if (rc == 0 && vc)
                rc = wal_msg_set_vchannel(m, vc);
        free(vc);
        if (rc == 0)
                rc = wal_msg_set_term(m, term);
        if (rc == 0)
                rc = wal_msg_set_time_tick(m, tt);
        if (rc == 0)
                rc = wal_msg_set_last_confirmed(m, lc);
        if (rc == 0)
                rc = wal_msg_set_txn(m, txn, keepalive);
        if (rc == 0)
                rc = wal_msg_freeze(m, WAL_MSGID(0, *seq));
        if (rc < 0) {
                wal_msg_unref(m);
                return rc == -ENOMEM ? rc : -EBADMSG;
        }
        *ret = m;
        return 0;
bad_vc:
        free(vc);
        return -EBADMSG;
}

/*
 * Read the record at @off of @fd, not past @limit.  Returns 1 with *body
 * (malloc'ed) and *len, 0 when no complete record is there yet, -EBADMSG
 * when a complete record fails its CRC, other negative errno on I/O errors.
 */
static int read_record(int fd, uint64_t off, uint64_t limit, unsigned char **body, size_t *len)
{
        unsigned char hdr[REC_HEADER];
        if (off + REC_HEADER > limit)
                return 0;
        ssize_t n = pread(fd, hdr, sizeof(hdr), (off_t)off);
        if (n < 0)
                return -errno;
        if ((size_t)n < sizeof(hdr))
                return 0;
        uint32_t l = get_u32(hdr), crc = get_u32(hdr + 4);
        if (l > REC_MAX)
                return -EBADMSG;
        if (off + REC_HEADER + l > limit)
                return 0;
        unsigned char *b = malloc(l ? l : 1);
        if (!b)
                return -ENOMEM;
        size_t got = 0;
        while (got < l) {
                n = pread(fd, b + got, l - got, (off_t)(off + REC_HEADER + got));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        free(b);
                        return n < 0 ? -errno : 0;
                }
                got += (size_t)n;
        }
        if (crc32_of(b, l) != crc) {
                free(b);
                return -EBADMSG;
        }
        *body = b;
        *len = l;
        return 1;
}

static uint64_t body_seq(const unsigned char *b, size_t n)
{
        return n >= 8 ? (uint64_t)get_u32(b) << 32 | get_u32(b + 4) : 0;
}

/*
 * Walk the valid records of @fd from @off up to @size.  Stores where the
 * valid prefix ends, the last sequence seen (unchanged if none) and the
 * count.  Returns 0 (stopped at @size or at a torn last record: *end tells),
 * -EBADMSG corruption before the last record, or -errno.
 */
static int scan_log(int fd, uint64_t off, uint64_t size, uint64_t *end, uint64_t *last_seq,
                    uint64_t *first_seq, int64_t *count)
{
        for (;;) {
                unsigned char *b = NULL;
                size_t l = 0;
                int r = read_record(fd, off, size, &b, &l);
                if (r == 0) {
                        *end = off;
                        return 0;
                }
                if (r == -EBADMSG) {
                        /* Torn if it reaches the end of the file; else corrupt. */
                        unsigned char hdr[REC_HEADER];
                        if (pread(fd, hdr, sizeof(hdr), (off_t)off) == (ssize_t)sizeof(hdr) &&
                            off + REC_HEADER + get_u32(hdr) >= size) {
                                *end = off;
                                return 0;
                        }
                        *end = off;
                        return -EBADMSG;
                }
                if (r < 0)
                        return r;
                uint64_t seq = body_seq(b, l);
                free(b);
                if (first_seq && *first_seq == 0)
                        *first_seq = seq;
                *last_seq = seq;
                if (count)
                        (*count)++;
                off += REC_HEADER + l;
        }
}

/* ---- Objects ---- */

struct s_scanner;

/* One channel as seen by one opener; lives until the opener closes. */
struct s_chan {
        char *name;
        char *dir;                    /* sample.dir/<name> */
        char *log;                    /* .../log */
        char *term;                   /* .../term */
        pthread_mutex_t lock;         /* the fields below */
        uint64_t end;                 /* committed end, advanced by our writers */
        int writers;                  /* RW wals of this opener open on it */
        uint64_t gen;                 /* bumped by every RW open */
        struct s_scanner **scanners;
        size_t n_scanners;
        struct s_chan *next;
};

struct s_opener {
        struct walimpls_opener base;  /* must be first */
        char *dir;
        pthread_mutex_t lock;         /* chans */
        struct s_chan *chans;
};

struct s_pending {
        wal_msg *msg;                 /* one reference */
        walimpls_append_done_fn *done;
        void *arg;
};

struct s_wal {
        struct walimpls_wal base;     /* must be first */
        struct s_chan *chan;          /* borrowed from the opener */
        int fd;                       /* RW: the log, O_APPEND; RO: -1 */
        uint64_t gen;
        uint64_t known_end;           /* writer: file size after our last batch */
        uint64_t last_seq;            /* writer: last sequence in the file then */
        pthread_mutex_t qlock;
        pthread_cond_t qcond;
        struct s_pending *q;
        size_t nq, capq;
        bool closing;
        atomic_int failed;            /* 0, or the permanent error: -ESTALE, -EIO */
        pthread_t thread;
        bool has_thread;
};

struct s_scanner {
        struct walimpls_scanner base; /* must be first */
        struct s_chan *chan;
        int fd;
        uint64_t off;                 /* next record to look at */
        uint64_t from_seq;            /* deliver seq >= this */
        int error;                    /* sticky failure */
        atomic_bool interrupted;
        struct walimpls_notifier notifier;
};

static const struct walimpls_opener_ops s_opener_ops;
static const struct walimpls_wal_ops s_wal_ops;
static const struct walimpls_scanner_ops s_scanner_ops;

static const char s_durability[] =
        "local disk: fdatasync after every batch (survives a crash of the process or machine)";

/* ---- Terms ---- */

/* The recorded term of @c, -1 when none.  Negative errno on a bad file. */
static int read_term(const struct s_chan *c, int64_t *ret)
{
        FILE *f = fopen(c->term, "re");
        if (!f) {
                if (errno == ENOENT) {
                        *ret = -1;
                        return 0;
                }
                return -errno;
        }
        long long t;
        int n = fscanf(f, "%lld", &t);
        fclose(f);
        if (n != 1 || t < 0)
                return -EBADMSG;
        *ret = t;
        return 0;
}

static int fsync_path(const char *path, int flags)
{
        int fd = open(path, flags | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = fsync(fd) < 0 ? -errno : 0;
        close(fd);
        return r;
}

static int write_term(const struct s_chan *c, int64_t term)
{
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp", c->term);
        FILE *f = fopen(tmp, "we");
        if (!f)
                return -errno;
        int r = fprintf(f, "%lld\n", (long long)term) < 0 ? -EIO : 0;
        if (fflush(f) != 0 || fsync(fileno(f)) < 0)
                r = -errno;
        if (fclose(f) != 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, c->term) < 0)
                r = -errno;
        if (r == 0)
                r = fsync_path(c->dir, O_RDONLY | O_DIRECTORY);
        return r;
}

/* ---- Builder and opener ---- */

static int s_build(const wal_config *cfg, struct walimpls_opener **ret, wal_error **reterr);

static const struct wal_property s_properties[] = {
        { "sample.dir", WAL_PROP_STRING, NULL, 1, 0, NULL, 0,
          "Directory holding the sample backend's channels (one subdirectory each); "
          "created if missing." },
        { NULL, 0, NULL, 0, 0, NULL, 0, NULL },
};

static const struct walimpls_builder sample_builder = {
        .version = WALIMPLS_VERSION,
        .name = "sample",
        .description = "sample plugin: one append-only file per channel, fdatasync per batch",
        .caps = WALIMPLS_CAP_PERSISTENT | WALIMPLS_CAP_FENCING | WALIMPLS_CAP_LIST,
        .properties = s_properties,
        .build = s_build,
};

WAL_PLUGIN(&sample_builder)

/* Build an opener on sample.dir; @cfg is borrowed (the path is copied). */
static int s_build(const wal_config *cfg, struct walimpls_opener **ret, wal_error **reterr)
{
        const char *dir = wal_config_get(cfg, "sample.dir");
        if (!dir || !*dir)
                return wal_error_set(reterr, -EINVAL, 0,
                                     "sample: property sample.dir is not set (the directory "
                                     "of the channels)");
        if (mkdir(dir, 0777) < 0 && errno != EEXIST)
                return wal_error_set(reterr, -errno, 0, "sample: cannot create %s: %s", dir,
                                     strerror(errno));
        struct stat st;
        if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
                return wal_error_set(reterr, -ENOTDIR, 0, "sample: %s is not a directory", dir);
        struct s_opener *o = calloc(1, sizeof(*o));
        if (!o || !(o->dir = strdup(dir))) {
                free(o);
                return wal_error_set(reterr, -ENOMEM, 0, "sample: out of memory");
        }
        o->base.ops = &s_opener_ops;
        o->base.builder = &sample_builder;
        pthread_mutex_init(&o->lock, NULL);
        *ret = &o->base;
        return 0;
}

static void chan_free(struct s_chan *c)
{
        free(c->name);
        free(c->dir);
        free(c->log);
        free(c->term);
        free(c->scanners);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

/* The channel object of @name, made on first use.  NULL on ENOMEM. */
static struct s_chan *opener_chan(struct s_opener *o, const char *name)
{
        pthread_mutex_lock(&o->lock);
        struct s_chan *c = o->chans;
        while (c && strcmp(c->name, name) != 0)
                c = c->next;
        if (!c && (c = calloc(1, sizeof(*c)))) {
                pthread_mutex_init(&c->lock, NULL);
                c->name = strdup(name);
                if (asprintf(&c->dir, "%s/%s", o->dir, name) < 0)
                        c->dir = NULL;
                if (asprintf(&c->log, "%s/%s/log", o->dir, name) < 0)
                        c->log = NULL;
                if (asprintf(&c->term, "%s/%s/term", o->dir, name) < 0)
                        c->term = NULL;
                if (!c->name || !c->dir || !c->log || !c->term) {
                        chan_free(c);
                        c = NULL;
                } else {
                        c->next = o->chans;
                        o->chans = c;
                }
        }
        pthread_mutex_unlock(&o->lock);
        return c;
}

static void *writer_main(void *arg);

/* RW part of open: lock, recover, check and record the term.  Holds no lock
 * on return.  0 or negative errno with @reterr set. */
static int open_rw(struct s_wal *w, int64_t term, wal_error **reterr)
{
        struct s_chan *c = w->chan;
        if (mkdir(c->dir, 0777) < 0 && errno != EEXIST)
                return wal_error_set(reterr, -errno, 0, "sample: open %s: cannot create %s: %s",
                                     c->name, c->dir, strerror(errno));
        w->fd = open(c->log, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
        if (w->fd < 0)
                return wal_error_set(reterr, -errno, 0, "sample: open %s: %s: %s", c->name, c->log,
                                     strerror(errno));
        if (flock(w->fd, LOCK_EX) < 0)
                return wal_error_set(reterr, -errno, 0, "sample: open %s: flock: %s", c->name,
                                     strerror(errno));
        int r;
        struct stat st;
        uint64_t end = 0, last = 0;
        if (fstat(w->fd, &st) < 0) {
                r = wal_error_set(reterr, -errno, 0, "sample: open %s: fstat: %s", c->name,
                                  strerror(errno));
                goto out;
        }
        r = scan_log(w->fd, 0, (uint64_t)st.st_size, &end, &last, NULL, NULL);
        if (r == -EBADMSG) {
                r = wal_error_set(reterr, -EBADMSG, 0,
                                  "sample: open %s: %s is corrupt at offset %" PRIu64, c->name,
                                  c->log, end);
                goto out;
        }
        if (r < 0) {
                r = wal_error_set(reterr, r, 0, "sample: open %s: reading %s: %s", c->name,
                                  c->log, strerror(-r));
                goto out;
        }
        if (end < (uint64_t)st.st_size &&
            (ftruncate(w->fd, (off_t)end) < 0 || fdatasync(w->fd) < 0)) {
                r = wal_error_set(reterr, -errno, 0, "sample: open %s: cutting the torn tail: %s",
                                  c->name, strerror(errno));
                goto out;
        }
        int64_t owner;
        r = read_term(c, &owner);
        if (r < 0) {
                r = wal_error_set(reterr, r, 0, "sample: open %s: bad term file %s", c->name,
                                  c->term);
                goto out;
        }
        if (term < owner) {
                r = wal_error_set(reterr, -ESTALE, WAL_ERROR_FATAL,
                                  "sample: open %s at term %lld: fenced by term %lld", c->name,
                                  (long long)term, (long long)owner);
                goto out;
        }
        if (term > owner && (r = write_term(c, term)) < 0) {
                r = wal_error_set(reterr, r, 0, "sample: open %s: writing %s: %s", c->name,
                                  c->term, strerror(-r));
                goto out;
        }
        w->known_end = end;
        w->last_seq = last;
        pthread_mutex_lock(&c->lock);
        w->gen = ++c->gen;
        if (c->writers++ == 0 || c->end < end)
                c->end = end;
        pthread_mutex_unlock(&c->lock);
out:
        flock(w->fd, LOCK_UN);
        return r;
}

static void wal_free(struct s_wal *w)
{
        if (w->fd >= 0)
                close(w->fd);
        free(w->q);
        pthread_cond_destroy(&w->qcond);
        pthread_mutex_destroy(&w->qlock);
        walimpls_wal_done(&w->base);
        free(w);
}

static int s_open(struct walimpls_opener *base, const struct walimpls_open_opts *opts,
                  struct walimpls_wal **ret, wal_error **reterr)
{
        if (!base || !opts || !ret || !walimpls_channel_name_valid(opts->channel) ||
            opts->term < 0)
                return wal_error_set(reterr, -EINVAL, 0, "sample: open: bad arguments");
        struct s_opener *o = (struct s_opener *)base;
        struct s_chan *c = opener_chan(o, opts->channel);
        if (!c)
                return wal_error_set(reterr, -ENOMEM, 0, "sample: open: out of memory");
        struct s_wal *w = calloc(1, sizeof(*w));
        if (!w)
                return wal_error_set(reterr, -ENOMEM, 0, "sample: open: out of memory");
        w->fd = -1;
        w->chan = c;
        pthread_mutex_init(&w->qlock, NULL);
        pthread_cond_init(&w->qcond, NULL);
        int r = walimpls_wal_init(&w->base, &s_wal_ops, base, opts);
        if (r < 0) {
                pthread_cond_destroy(&w->qcond);
                pthread_mutex_destroy(&w->qlock);
                free(w);
                return wal_error_set(reterr, r, 0, "sample: open: out of memory");
        }
        if (opts->access == WAL_ACCESS_RO) {
                if (access(c->log, F_OK) < 0) {
                        r = wal_error_set(reterr, -ENOENT, 0,
                                          "sample: open %s read-only: no such channel",
                                          c->name);
                        wal_free(w);
                        return r;
                }
                *ret = &w->base;
                return 0;
        }
        r = open_rw(w, opts->term, reterr);
        if (r == 0) {
                r = -pthread_create(&w->thread, NULL, writer_main, w);
                if (r < 0) {
                        pthread_mutex_lock(&c->lock);
                        c->writers--;
                        pthread_mutex_unlock(&c->lock);
                        wal_error_set(reterr, r, 0, "sample: open %s: no writer thread",
                                      c->name);
                }
        }
        if (r < 0) {
                wal_free(w);
                return r;
        }
        w->has_thread = true;
        *ret = &w->base;
        return 0;
}

static int s_list_channels(struct walimpls_opener *base, walimpls_channel_fn *fn, void *arg,
                           wal_error **reterr)
{
        struct s_opener *o = (struct s_opener *)base;
        DIR *d = opendir(o->dir);
        if (!d)
                return wal_error_set(reterr, -errno, 0, "sample: list %s: %s", o->dir,
                                     strerror(errno));
        int r = 0;
        struct dirent *de;
        while (r == 0 && (de = readdir(d))) {
                if (!walimpls_channel_name_valid(de->d_name))
                        continue;
                char path[4096];
                snprintf(path, sizeof(path), "%s/%s/log", o->dir, de->d_name);
                if (access(path, F_OK) == 0)
                        r = fn(arg, de->d_name);
        }
        closedir(d);
        return r;
}

static void s_opener_close(struct walimpls_opener *base)
{
        struct s_opener *o = (struct s_opener *)base;
        while (o->chans) {
                struct s_chan *c = o->chans;
                o->chans = c->next;
                chan_free(c);
        }
        pthread_mutex_destroy(&o->lock);
        free(o->dir);
        free(o);
}

static const struct walimpls_opener_ops s_opener_ops = {
        .version = WALIMPLS_VERSION,
        .open = s_open,
        .list_channels = s_list_channels,
        .close = s_opener_close,
};

/* ---- Appending ---- */

static int s_append(struct walimpls_wal *base, wal_msg *msg, walimpls_append_done_fn *done,
                    void *arg)
{
        struct s_wal *w = (struct s_wal *)base;
        if (!msg || !done)
                return -EINVAL;
        if (w->base.access != WAL_ACCESS_RW)
                return -EROFS;
        int failed = atomic_load(&w->failed);
        if (failed)
                return failed;
        pthread_mutex_lock(&w->qlock);
        if (w->closing) {
                pthread_mutex_unlock(&w->qlock);
                return -ESHUTDOWN;
        }
        if (w->nq == w->capq) {
                size_t cap = w->capq ? w->capq * 2 : 64;
                struct s_pending *nq = realloc(w->q, cap * sizeof(*nq));
                if (!nq) {
                        pthread_mutex_unlock(&w->qlock);
                        return -ENOMEM;
                }
                w->q = nq;
                w->capq = cap;
        }
        w->q[w->nq++] = (struct s_pending){ wal_msg_ref(msg), done, arg };
        if (w->nq == 1)
                pthread_cond_signal(&w->qcond);
        pthread_mutex_unlock(&w->qlock);
        return 0;
}

/* Is @w still the owner?  0, -ESTALE, or another negative errno. */
static int check_owner(struct s_wal *w)
{
        struct s_chan *c = w->chan;
        pthread_mutex_lock(&c->lock);
        bool taken = c->gen != w->gen;
        pthread_mutex_unlock(&c->lock);
        int64_t owner;
        int r = read_term(c, &owner);
        if (r < 0)
                return r;
        return taken || owner > w->base.term ? -ESTALE : 0;
}

/* Write one batch; fills @ids.  0 or a negative errno (then nothing of the
 * batch is acknowledged). */
static int write_batch(struct s_wal *w, struct s_pending *b, size_t n, uint64_t *seqs,
                       uint64_t *new_end)
{
        struct s_chan *c = w->chan;
        if (flock(w->fd, LOCK_EX) < 0)
                return -errno;
        int r = check_owner(w);
        struct buf out = { 0 };
        struct stat st;
        if (r == 0 && fstat(w->fd, &st) < 0)
                r = -errno;
        /* Records another writer added since our last batch (a same-term
         * writer in another process) move the numbering on. */
        uint64_t end = w->known_end, last = w->last_seq;
        if (r == 0 && (uint64_t)st.st_size != w->known_end)
                r = scan_log(w->fd, w->known_end, (uint64_t)st.st_size, &end, &last, NULL,
                             NULL);
        if (r == 0 && end != (uint64_t)st.st_size)
                r = -EBADMSG;            /* someone left a torn record: refuse */
        for (size_t i = 0; r == 0 && i < n; i++) {
                seqs[i] = last + 1 + i;
                encode_record(&out, b[i].msg, seqs[i]);
        }
        if (r == 0 && out.oom)
                r = -ENOMEM;
        size_t done = 0;
        while (r == 0 && done < out.n) {
                ssize_t k = write(w->fd, out.p + done, out.n - done);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        r = k < 0 ? -errno : -EIO;
                        atomic_store(&w->failed, -EIO);
                        break;
                }
                done += (size_t)k;
        }
        if (r == 0 && fdatasync(w->fd) < 0) {
                r = -errno;
                atomic_store(&w->failed, -EIO);  /* never retried (fsyncgate) */
        }
        if (r == -ESTALE)
                atomic_store(&w->failed, -ESTALE);
        if (r == 0) {
                w->known_end = (uint64_t)st.st_size + out.n;
                w->last_seq = seqs[n - 1];
        }
        flock(w->fd, LOCK_UN);
        *new_end = w->known_end;
        free(out.p);
        (void)c;
        return r;
}

static void *writer_main(void *arg)
{
        struct s_wal *w = arg;
        struct s_chan *c = w->chan;
        pthread_mutex_lock(&w->qlock);
        for (;;) {
                while (w->nq == 0 && !w->closing)
                        pthread_cond_wait(&w->qcond, &w->qlock);
                if (w->nq == 0)
                        break;               /* closing and drained */
                struct s_pending *b = w->q;
                size_t n = w->nq;
                w->q = NULL;
                w->nq = w->capq = 0;
                pthread_mutex_unlock(&w->qlock);

                uint64_t *seqs = calloc(n, sizeof(*seqs));
                uint64_t end = 0;
                int r = atomic_load(&w->failed);
                if (r == 0)
                        r = seqs ? write_batch(w, b, n, seqs, &end) : -ENOMEM;
                if (r == 0) {
                        pthread_mutex_lock(&c->lock);
                        if (c->end < end)
                                c->end = end;
                        for (size_t i = 0; i < c->n_scanners; i++)
                                walimpls_notifier_signal(&c->scanners[i]->notifier);
                        pthread_mutex_unlock(&c->lock);
                }
                for (size_t i = 0; i < n; i++) {
                        b[i].done(b[i].arg, r, r == 0 ? WAL_MSGID(0, seqs[i]) : WAL_MSGID_NONE,
                                  NULL);
                        wal_msg_unref(b[i].msg);
                }
                free(seqs);
                free(b);
                pthread_mutex_lock(&w->qlock);
        }
        pthread_mutex_unlock(&w->qlock);
        return NULL;
}

static int s_truncate(struct walimpls_wal *base, struct wal_msgid id, wal_error **reterr)
{
        struct s_wal *w = (struct s_wal *)base;
        if (w->base.access != WAL_ACCESS_RW)
                return wal_error_set(reterr, -EROFS, 0, "sample: truncate %s: read-only wal",
                                     w->base.channel);
        if (wal_msgid_is_none(id))
                return wal_error_set(reterr, -EINVAL, 0, "sample: truncate %s: no ID",
                                     w->base.channel);
        int failed = atomic_load(&w->failed);
        if (failed)
                return wal_error_set(reterr, failed, 0, "sample: truncate %s: %s",
                                     w->base.channel, strerror(-failed));
        /* No WALIMPLS_CAP_TRUNCATE: deletion is allowed but never happens. */
        return 0;
}

/* The limit a reader of @c may read up to. */
static uint64_t read_limit(struct s_chan *c, int fd)
{
        pthread_mutex_lock(&c->lock);
        int writers = c->writers;
        uint64_t end = c->end;
        pthread_mutex_unlock(&c->lock);
        if (writers > 0)
                return end;
        struct stat st;
        return fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static int s_info(struct walimpls_wal *base, struct walimpls_info *ret, wal_error **reterr)
{
        struct s_wal *w = (struct s_wal *)base;
        struct s_chan *c = w->chan;
        int fd = open(c->log, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return wal_error_set(reterr, -errno, 0, "sample: info %s: %s", c->name,
                                     strerror(errno));
        uint64_t limit = read_limit(c, fd), end = 0, first = 0, last = 0;
        int64_t count = 0, term = -1;
        int r = scan_log(fd, 0, limit, &end, &last, &first, &count);
        close(fd);
        if (r == 0)
                r = read_term(c, &term);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "sample: info %s: %s", c->name, strerror(-r));
        *ret = (struct walimpls_info){
                .first_id = count ? WAL_MSGID(0, first) : WAL_MSGID_NONE,
                .last_id = count ? WAL_MSGID(0, last) : WAL_MSGID_NONE,
                .count = count,
                .bytes = (int64_t)end,
                .term = term,
                .durability = s_durability,
        };
        return 0;
}

static void s_wal_close(struct walimpls_wal *base)
{
        struct s_wal *w = (struct s_wal *)base;
        if (w->has_thread) {
                pthread_mutex_lock(&w->qlock);
                w->closing = true;
                pthread_cond_signal(&w->qcond);
                pthread_mutex_unlock(&w->qlock);
                pthread_join(w->thread, NULL);   /* it writes what was queued */
                pthread_mutex_lock(&w->chan->lock);
                w->chan->writers--;
                pthread_mutex_unlock(&w->chan->lock);
        }
        wal_free(w);
}

/* ---- Scanners ---- */

static int s_read(struct walimpls_wal *base, const struct walimpls_read_opts *opts,
                  struct walimpls_scanner **ret, wal_error **reterr)
{
        struct s_wal *w = (struct s_wal *)base;
        struct s_chan *c = w->chan;
        const struct wal_deliver *d = &opts->deliver;
        struct s_scanner *s = calloc(1, sizeof(*s));
        if (!s)
                return wal_error_set(reterr, -ENOMEM, 0, "sample: read: out of memory");
        s->chan = c;
        atomic_init(&s->interrupted, false);
        s->fd = open(c->log, O_RDONLY | O_CLOEXEC);
        int r = s->fd < 0 ? -errno : 0;
        if (r == 0 && (r = walimpls_scanner_init(&s->base, &s_scanner_ops, base, opts->name)) == 0 &&
            (r = walimpls_notifier_init(&s->notifier)) < 0)
                walimpls_scanner_done(&s->base);
        if (r < 0) {
                if (s->fd >= 0)
                        close(s->fd);
                free(s);
                return wal_error_set(reterr, r, 0, "sample: read %s: %s", c->name, strerror(-r));
        }
        uint64_t limit = read_limit(c, s->fd);
        switch (d->policy) {
        case WAL_DELIVER_LATEST:
                s->off = limit;
                s->from_seq = 0;
                break;
        case WAL_DELIVER_START_FROM:
                s->from_seq = d->id.hi ? UINT64_MAX : d->id.lo;
                break;
        case WAL_DELIVER_START_AFTER:
                s->from_seq = d->id.hi || d->id.lo == UINT64_MAX ? UINT64_MAX : d->id.lo + 1;
                break;
        default:
                s->from_seq = 0;
                break;
        }
        pthread_mutex_lock(&c->lock);
        struct s_scanner **ns = realloc(c->scanners, (c->n_scanners + 1) * sizeof(*ns));
        if (ns) {
                c->scanners = ns;
                c->scanners[c->n_scanners++] = s;
        }
        pthread_mutex_unlock(&c->lock);
        if (!ns) {
                walimpls_notifier_done(&s->notifier);
                walimpls_scanner_done(&s->base);
                close(s->fd);
                free(s);
                return wal_error_set(reterr, -ENOMEM, 0, "sample: read: out of memory");
        }
        *ret = &s->base;
        return 0;
}

/* One attempt: 0 delivered, -EAGAIN nothing yet, else the scanner's error. */
static int scanner_try(struct s_scanner *s, wal_msg **ret)
{
        for (;;) {
                uint64_t limit = read_limit(s->chan, s->fd);
                unsigned char *b = NULL;
                size_t l = 0;
                int r = read_record(s->fd, s->off, limit, &b, &l);
                if (r == 0)
                        return -EAGAIN;
                if (r < 0)
                        return r;
                s->off += REC_HEADER + l;
                uint64_t seq = 0;
                wal_msg *m = NULL;
                if (body_seq(b, l) < s->from_seq) {
                        free(b);
                        continue;
                }
                r = decode_body(b, l, &seq, &m);
                free(b);
                if (r < 0)
                        return r;
                s->from_seq = seq + 1;
                *ret = m;
                return 0;
        }
}

static uint64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int s_next(struct walimpls_scanner *base, int timeout_ms, wal_msg **ret,
                  wal_error **reterr)
{
        struct s_scanner *s = (struct s_scanner *)base;
        if (s->error)
                return wal_error_set(reterr, s->error, 0, "sample: scanner on %s failed",
                                     s->chan->name);
        uint64_t deadline = timeout_ms > 0 ? now_ms() + (uint64_t)timeout_ms : 0;
        for (;;) {
                if (atomic_load(&s->interrupted))
                        return -ECANCELED;
                uint64_t seen = walimpls_notifier_seq(&s->notifier);
                int r = scanner_try(s, ret);
                if (r == -EAGAIN) {
                        walimpls_notifier_drain(&s->notifier);
                        r = scanner_try(s, ret);
                }
                if (r == 0)
                        return 0;
                if (r != -EAGAIN) {
                        s->error = r;
                        return wal_error_set(reterr, r, 0,
                                             "sample: scanner on %s at offset %" PRIu64 ": %s",
                                             s->chan->name, s->off, strerror(-r));
                }
                if (timeout_ms == 0)
                        return -ETIMEDOUT;
                int wait = POLL_MS;
                if (timeout_ms > 0) {
                        uint64_t now = now_ms();
                        if (now >= deadline)
                                return -ETIMEDOUT;
                        if (deadline - now < (uint64_t)wait)
                                wait = (int)(deadline - now);
                }
                if (walimpls_notifier_wait(&s->notifier, seen, wait) == -ECANCELED)
                        return -ECANCELED;
        }
}

static void s_interrupt(struct walimpls_scanner *base)
{
        struct s_scanner *s = (struct s_scanner *)base;
        atomic_store(&s->interrupted, true);
        walimpls_notifier_interrupt(&s->notifier);
}

static int s_fd(struct walimpls_scanner *base)
{
        return ((struct s_scanner *)base)->notifier.efd;
}

static void s_scanner_close(struct walimpls_scanner *base)
{
        struct s_scanner *s = (struct s_scanner *)base;
        struct s_chan *c = s->chan;
        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < c->n_scanners; i++)
                if (c->scanners[i] == s) {
                        c->scanners[i] = c->scanners[--c->n_scanners];
                        break;
                }
        pthread_mutex_unlock(&c->lock);
        walimpls_notifier_done(&s->notifier);
        walimpls_scanner_done(&s->base);
        close(s->fd);
        free(s);
}

static const struct walimpls_wal_ops s_wal_ops = {
        .version = WALIMPLS_VERSION,
        .append = s_append,
        .read = s_read,
        .truncate = s_truncate,
        .info = s_info,
        .close = s_wal_close,
};

static const struct walimpls_scanner_ops s_scanner_ops = {
        .version = WALIMPLS_VERSION,
        .next = s_next,
        .interrupt = s_interrupt,
        .fd = s_fd,
        .close = s_scanner_close,
};
