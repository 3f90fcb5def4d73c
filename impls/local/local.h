/* SPDX-License-Identifier: MIT */
/*
 * impls/local/local.h: internals of the local backend shared with its tests,
 * the fuzz target and walctl verify/repair (not installed).
 *
 * Four things live here:
 *   - the injectable I/O layer (struct local_io_ops): every system call the
 *     backend makes on its files goes through one table, so tests can fail
 *     the Nth fsync with -EIO, a write with -ENOSPC, or shorten a write;
 *   - the frame codec, a pure function over a byte buffer (fuzzable);
 *   - verify and repair of a channel directory, for walctl;
 *   - the segment scan that recovery, verify and read-only opens share.
 *
 * The file format itself is written out at the top of local-format.c.
 */
#ifndef LOCAL_H
#define LOCAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <wal/wal-error.h>

/* ---- Format constants (see local-format.c) ---- */

#define LOCAL_SEG_MAGIC "LWALSEG1"
#define LOCAL_SEG_VERSION 1u
#define LOCAL_SEG_HDR_SIZE 4096u          /* first frame starts here */
#define LOCAL_FRAME_HDR_SIZE 24u
#define LOCAL_FRAME_ALIGN 8u
#define LOCAL_FRAME_MAX_BODY (256u << 20) /* 256 MiB: larger is corrupt */
#define LOCAL_SEG_SUFFIX ".seg"
#define LOCAL_SEG_NAME_LEN 24             /* 20 digits + ".seg" */

static inline uint64_t local_frame_size(uint64_t body_len)
{
        return (LOCAL_FRAME_HDR_SIZE + body_len + LOCAL_FRAME_ALIGN - 1) &
               ~(uint64_t)(LOCAL_FRAME_ALIGN - 1);
}

/* ---- I/O layer ---- */

/* What a io_uring completion was for (local_io_ops.uring_result). */
enum local_io_kind {
        LOCAL_IO_WRITE = 1,
        LOCAL_IO_FDATASYNC = 2,
};

/*
 * Every call returns >= 0 on success or a negative errno (never -1 + errno).
 * @ctx is the table's own ctx field.  The default table calls the kernel.
 */
struct local_io_ops {
        int (*open)(void *ctx, const char *path, int flags, mode_t mode);
        int (*close)(void *ctx, int fd);
        ssize_t (*pread)(void *ctx, int fd, void *buf, size_t len, off_t off);
        ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t len, off_t off);
        int (*fdatasync)(void *ctx, int fd);
        int (*fsync)(void *ctx, int fd);                /* directories, term file */
        int (*fallocate)(void *ctx, int fd, off_t off, off_t len);
        int (*ftruncate)(void *ctx, int fd, off_t len);
        int (*rename)(void *ctx, const char *from, const char *to);
        int (*unlink)(void *ctx, const char *path);
        /*
         * Optional.  Under io_uring the kernel does the write and the
         * fdatasync itself; this hook sees each completion's result @res
         * (bytes written, or 0/-errno for a fdatasync) before the writer
         * does and returns the result the writer should act on, so a test
         * can turn a completion into a short write, -ENOSPC or -EIO.
         */
        int (*uring_result)(void *ctx, enum local_io_kind kind, int fd, size_t len, int res);
        /*
         * Optional.  Asked before io_uring is set up: a negative errno makes
         * the writer behave as if io_uring were unavailable (disabled by
         * sysctl or seccomp), so tests reach the fallback path under
         * local.io=auto.  NULL: try the real thing.
         */
        int (*uring_probe)(void *ctx);
        void *ctx;
};

/* The kernel-backed table. */
const struct local_io_ops *local_io_default_ops(void);

/*
 * Test hook: make every channel opened from now on use @ops (borrowed: must
 * outlive those channels; NULL restores the default).  Channels already open
 * keep the table they started with.  Not for production use.
 */
void local_io_set_ops(const struct local_io_ops *ops);
const struct local_io_ops *local_io_current_ops(void);

/* fsync the directory @dir (borrowed) through @io: after a segment or the
 * term file is created, renamed or removed.  0 or a negative errno. */
int local_io_fsync_dir(const struct local_io_ops *io, const char *dir);

/* pwrite all of @buf (borrowed, @len bytes) at @off of @fd through @io,
 * continuing after short writes.  0 or a negative errno (-EIO when the
 * kernel makes no progress). */
int local_io_write_full(const struct local_io_ops *io, int fd, const void *buf, size_t len,
                        uint64_t off);

/*
 * Test hook: with @on, a replaying scanner takes a read-ahead chunk only once
 * the helper thread has checked all of it, so every damaged frame in such a
 * chunk is found by the helper (local.c "Read-ahead").  Not for production.
 */
void local_readahead_wait_checks(bool on);

/*
 * Test hooks: with @on, the read-ahead helper checks no frame (the scanner
 * checks every one; the helper only walks to the frame cut by each chunk's
 * end, from the chunk's last indexed frame when it has one); and the number
 * of times, ever, the helper walked from such a hint.  Not for production.
 */
void local_readahead_skip_checks(bool on);
uint64_t local_readahead_hint_jumps(void);

/*
 * Counters of the read-ahead's hand-offs since the process started, per
 * side ([0]: the helper waiting for a chunk to read, [1]: the scanner
 * waiting for a chunk to be read): how often that side found nothing to
 * do (waits), how often its bounded watch (local.read_spin_us) saw the
 * other side's move (spun), and how often it slept on its condition
 * variable (sleeps); the time it spent waiting (wait_ns, from finding
 * nothing to do to going on) and those waits by length (hist: under 10,
 * 25, 50, 100, 200, 500 and 1000 us, and longer).  For tests and
 * tools/bench; not for production.
 */
struct local_ra_handoffs {
        uint64_t waits[2], spun[2], sleeps[2], wait_ns[2], hist[2][8];
};
void local_readahead_handoffs(struct local_ra_handoffs *ret);

/*
 * Test hooks of the early wake (local.c, early_wake): with @on, the writer
 * takes the CPUs to have room for polling waiters whatever the rest of the
 * machine does (so tests reach that path on a busy machine), and
 * local_early_wakes() counts the batches whose waiters were woken early,
 * process-wide.  Not for production.
 */
void local_early_wake_always(bool on);
uint64_t local_early_wakes(void);

/* ---- Frame codec (pure) ---- */

struct local_frame {
        uint64_t lsn;
        const uint8_t *env;       /* points into the decoded buffer */
        uint32_t env_len;
        const uint8_t *payload;   /* points into the decoded buffer */
        uint32_t payload_len;
        uint64_t size;            /* bytes the frame occupies, padding included */
};

/*
 * Decode the frame at the start of @buf (borrowed, @len bytes).
 * @returns > 0 the frame is valid (CRC checked); the value is its size with
 *          padding, also in ret->size;
 *          0 end of data (an all-zero frame header: preallocated space);
 *          -EAGAIN @len is shorter than the header or the frame it declares;
 *          -EBADMSG the header is impossible or the CRC does not match.
 * @ret is set only when > 0 is returned.  Never reads past @len.
 */
int local_frame_decode(const uint8_t *buf, size_t len, struct local_frame *ret);

/*
 * local_frame_decode without the CRC check: the header's own checks only.
 * Same results otherwise (ret is required).  A frame is valid only once
 * local_frames_check_crc has passed it too.
 */
int local_frame_peek(const uint8_t *buf, size_t len, struct local_frame *ret);

/*
 * Check the CRCs of the @n peeked frames @f (in their buffers), several at
 * once (walu_crc32c_batch).  @returns how many, from the first, passed: n,
 * or the index of the first that failed.
 */
#define LOCAL_CRC_BATCH 32
size_t local_frames_check_crc(const struct local_frame *f, size_t n);

/*
 * The valid frames at the start of @buf (borrowed, @len bytes), in one
 * pass: the first must carry LSN @lsn, each next one LSN + 1; at most @max.
 * Each is header-checked as local_frame_peek does and CRC-checked (several
 * at once), except the frames lying wholly in the first @checked bytes,
 * which passed before.  Stops before the first frame that is not whole in
 * @buf, has an impossible header or another LSN, or fails its CRC (the
 * caller reads that one again with local_frame_decode to tell which).
 * @out  receives the frames (@max entries).
 * @used receives the bytes they take, padding included (the last frame's
 *       padding may end past @len).
 * @returns how many frames passed.
 */
size_t local_frames_scan(const uint8_t *buf, size_t len, uint64_t lsn, size_t max,
                         size_t checked, struct local_frame *out, size_t *used);

/*
 * local_frames_scan without the frames: how many frames at the start of
 * @buf pass (the same checks, in the same walk), and in *@used the bytes
 * they take.  With @crc false only the headers and the LSN sequence are
 * checked: the walk of frames someone else checks (it finds where the frame
 * cut by a buffer's end begins).  The read-ahead helper's check.
 */
size_t local_frames_check(const uint8_t *buf, size_t len, uint64_t lsn, size_t max, bool crc,
                          size_t *used);

/*
 * Write the header of a frame of @lsn whose body (envelope then payload,
 * @env_len + @payload_len bytes) is already at hdr + LOCAL_FRAME_HDR_SIZE,
 * and zero its padding.  @body_crc is walu_crc32c(0, body, body_len).
 */
void local_frame_seal(uint8_t *hdr, uint64_t lsn, uint32_t env_len, uint32_t payload_len,
                      uint32_t body_crc);

/* Segment header: encode into @buf (LOCAL_SEG_HDR_SIZE bytes) / check one.
 * local_seg_header_check returns 0 and the first LSN, -EBADMSG or -EPROTO
 * (a valid header of an unknown version). */
void local_seg_header_encode(uint8_t *buf, uint64_t first_lsn, uint64_t seg_size);
int local_seg_header_check(const uint8_t *buf, size_t len, uint64_t *first_lsn);

/*
 * The summary of the previous segment that a segment's header page carries
 * (local-format.c): that segment's LSN range, end of data and sparse index.
 */
#define LOCAL_PREV_MAGIC "LWALPRV1"
#define LOCAL_PREV_OFF 64u
#define LOCAL_PREV_INDEX_MAX 248u

struct local_seg;
struct local_index_entry {
        uint64_t lsn;
        uint64_t off;
};

struct local_prev {
        uint64_t first_lsn, last_lsn;   /* of the previous segment */
        uint64_t end;                   /* its end of data */
        size_t n_index;
        struct local_index_entry index[LOCAL_PREV_INDEX_MAX];
};

/* Add the summary of @prev (complete and durable; NULL or empty: nothing)
 * to the header page @buf encoded by local_seg_header_encode(). */
void local_seg_header_add_prev(uint8_t *buf, const struct local_seg *prev);
/* Read the summary from the header page @buf (@len bytes, the whole page).
 * @returns 1 present (*ret filled), 0 absent, -EBADMSG damaged. */
int local_seg_header_prev(const uint8_t *buf, size_t len, struct local_prev *ret);

/* "%020llu.seg" into @buf (at least LOCAL_SEG_NAME_LEN + 1 bytes). */
void local_seg_name(char *buf, uint64_t first_lsn);
/* Parse a segment file name; true and *first_lsn if it is one. */
bool local_seg_name_parse(const char *name, uint64_t *first_lsn);

/* ---- Channel scan: recovery, verify, repair ---- */

enum local_fault_kind {
        LOCAL_FAULT_NONE = 0,
        LOCAL_FAULT_TORN_TAIL,    /* last segment ends in a partly written frame */
        LOCAL_FAULT_BAD_FRAME,    /* bad CRC/header with valid data after it */
        LOCAL_FAULT_BAD_HEADER,   /* a segment header that does not validate */
        LOCAL_FAULT_LSN_GAP,      /* a segment missing, or LSNs out of sequence */
        LOCAL_FAULT_BAD_TERM,     /* the frames are intact but the term file is not */
};

struct local_fault {
        enum local_fault_kind kind;
        char segment[LOCAL_SEG_NAME_LEN + 1]; /* file name inside the channel dir */
        uint64_t offset;                      /* byte offset in that file */
        uint64_t lsn;                         /* LSN expected there */
        uint64_t first_lsn, last_lsn;         /* valid records before the fault
                                                 (last < first: none) */
        uint64_t segments;                    /* segment files seen */
};

/* @returns a short name for @k ("none", "torn-tail", ...). */
const char *local_fault_kind_name(enum local_fault_kind k);

/*
 * The term of the last record of the channel in @chan_dir (borrowed), read
 * as a read-write open would find the log: *@ret -1 when it holds no
 * record, or when the log is damaged before its end (the open reports
 * that).  For a channel whose term file is missing: a local log's terms
 * never decrease, so its owner's term is at least this one.
 * @returns 0, or a negative errno (a read failed, the last frame does not
 *          decode).
 */
int local_last_term(const struct local_io_ops *io, const char *chan_dir, int64_t *ret,
                    wal_error **reterr);

/*
 * Check every frame of the channel in @chan_dir (borrowed path of the
 * channel's directory, e.g. "<local.dir>/<channel>") without changing it.
 * @ret (borrowed, filled) describes the first fault, kind NONE if clean.
 * @returns 0 when the scan ran (clean or not), or a negative errno when it
 *          could not (-ENOENT no such channel, -EIO a read failed).
 */
int local_verify(const char *chan_dir, struct local_fault *ret, wal_error **reterr);

/*
 * Cut the channel at its first fault: copy the bytes cut from the faulty
 * segment to "<segment>.cut-<offset>" (fsynced), truncate the segment there,
 * move every later segment aside to "<name>.cut", fsync the directory.
 * Takes the channel's writer lock: -EBUSY while a writer has it open.
 * @ret (borrowed, filled) is the fault that was repaired (NONE: nothing to do).
 * @returns 0, -EBUSY, -ENOENT, -EIO.
 */
int local_repair(const char *chan_dir, struct local_fault *ret, wal_error **reterr);


/*
 * The term file (format at the top of local-format.c): read the recorded
 * owner term of the channel in @dir (borrowed).  @returns 0 with *ret = the
 * term, or -1 when there is no term file yet; -EBADMSG when the file does not
 * hold exactly one non-negative decimal number (and an optional newline); or
 * a negative errno from the read.
 */
int local_term_read(const struct local_io_ops *io, const char *dir, int64_t *ret);
/* Replace the term file atomically (tmp, fsync, rename, directory fsync).
 * @returns 0 or a negative errno. */
int local_term_write(const struct local_io_ops *io, const char *dir, int64_t term);

/* ---- Segment scanning (used by local.c and the functions above) ---- */

#define LOCAL_READ_CHUNK (1u << 20)        /* reads are this large */
#define LOCAL_INDEX_STRIDE (256u << 10)     /* sparse index: one entry per 256 KiB */

/* One segment file as recovery and the writer know it. */
struct local_seg {
        uint64_t first_lsn;
        uint64_t last_lsn;          /* first_lsn - 1 while empty */
        uint64_t end;               /* offset just past the last valid frame */
        uint64_t size;              /* file size */
        uint64_t created;           /* file size when created (header), 0 unknown */
        char *path;                 /* owned */
        struct local_index_entry *index;   /* owned, ascending */
        size_t n_index, cap_index;
};

struct local_seg *local_seg_new(const char *dir, uint64_t first_lsn);
void local_seg_free(struct local_seg *s);
/* Note a frame at @off; adds an index entry when the stride is passed.
 * 0 or -ENOMEM (the index is only an accelerator: callers may ignore it). */
int local_seg_index_note(struct local_seg *s, uint64_t lsn, uint64_t off);
/* Closest indexed frame at or before @lsn: its offset and LSN (the segment's
 * first frame when nothing closer is indexed). */
void local_seg_index_find(const struct local_seg *s, uint64_t lsn, uint64_t *off,
                          uint64_t *at_lsn);

/* Why a segment scan stopped. */
enum local_stop {
        LOCAL_STOP_ZERO = 1,        /* an all-zero frame header: end of data */
        LOCAL_STOP_EOF,             /* the end of the file */
        LOCAL_STOP_BAD,             /* a frame that does not validate */
};

/*
 * Scan frames of @s from s->end (expecting LSN s->last_lsn + 1) through @fd
 * up to @file_size, extending s->end, s->last_lsn and the index.  With
 * @check_crc false only the frame headers are checked (lengths, flags, the
 * LSN sequence): what opens do for sealed segments (see local-format.c).
 * @returns the stop reason (> 0) or a negative errno from a read.
 */
int local_seg_scan(const struct local_io_ops *io, int fd, struct local_seg *s,
                   uint64_t file_size, bool check_crc);

/*
 * Decide whether the invalid frame at @off in the LAST segment is a torn
 * write (1) or corruption (0): torn if no valid frame with a later LSN
 * follows it in the file, or if the damaged region before that frame holds
 * an all-zero aligned 512-byte piece (never written).  Negative errno on I/O
 * error.
 */
int local_seg_is_torn(const struct local_io_ops *io, int fd, uint64_t off,
                      uint64_t expect_lsn, uint64_t file_size);

struct local_chan_scan {
        struct local_seg **segs;    /* owned, ascending by first LSN */
        size_t n_segs;
        struct local_fault fault;   /* first fault; NONE when clean */
        bool empty_last_removed_ok; /* the last segment has a bad header but
                                       holds no frame: it may be removed */
        struct local_prev prev;     /* scratch: a header page's summary */
};

/* How much of each frame a channel scan checks. */
enum local_scan_mode {
        LOCAL_SCAN_FULL,      /* every frame's CRC (verify, repair) */
        LOCAL_SCAN_OPEN,      /* the last segment's CRCs, the others' headers
                                 (opens; scanners check the rest as they read) */
};

/*
 * Scan the channel directory @dir (borrowed) with @io: list segments, check
 * headers and LSN continuity, validate frames as @mode says, stop at the
 * first fault (classifying a fault in the last segment as torn or not).
 * On return
 * ret->segs holds the segments up to the fault (the faulty one included,
 * with end = the fault offset).  @returns 0 (look at ret->fault) or a
 * negative errno (-ENOENT no directory, -EIO); the error names the file.
 */
int local_chan_scan(const struct local_io_ops *io, const char *dir, enum local_scan_mode mode,
                    struct local_chan_scan *ret, wal_error **reterr);
void local_chan_scan_done(struct local_chan_scan *sc);

#endif /* LOCAL_H */
