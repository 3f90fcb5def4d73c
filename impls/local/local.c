/* SPDX-License-Identifier: MIT */
/*
 * impls/local/local.c: the local backend: a durable segmented log on local
 * disk, written through io_uring with group commit.  The file format and the
 * recovery algorithm are described at the top of local-format.c.
 *
 * Objects.  A process-wide table maps a channel directory to one `chan`
 * shared by every wal open on it in this process (any opener): its segment
 * list, how far the log is durable, its scanners, and at most one writer.
 * The first read-write open starts the writer (flock on <chan>/lock, so a
 * second writer process gets -EBUSY); later read-write opens with a higher
 * term only raise the recorded term, which fences the older wals (their
 * appends fail -ESTALE) while the writer keeps going for the newest.
 *
 * Group commit.  append() checksums its record outside any lock, then under
 * the queue lock takes the next LSN, places the frame in the segment (rolling
 * to a new segment when it does not fit) and copies it into the open batch.
 * It wakes the writer thread only if that thread said it was idle: no
 * per-record wake-up.  The writer seals whatever accumulated into a batch
 * (at most local.batch_bytes) and keeps up to local.inflight batches in
 * flight through io_uring, each one write linked (IOSQE_IO_LINK) to an
 * fdatasync, each batch in flight through its own open file on the segment
 * (w->ufd: a write-back error is reported once per open file, so on a
 * shared one a later batch's fdatasync could take the error of an earlier
 * batch's pages, and the earlier one return 0).  Batches complete strictly
 * in order: a later batch's fdatasync proves nothing about an earlier
 * batch's write, so a batch's callbacks run only when it and every batch
 * before it are durable.  A short write breaks
 * the link (the fdatasync completes -ECANCELED, which is not durability): the
 * remainder is written again with a new linked fdatasync; a whole write with
 * a cancelled fdatasync gets a new fdatasync.  Before the first write into a
 * new segment every earlier batch must be durable, so only the last segment
 * can end torn.
 *
 * Blocking appends (wal.flush after append).  A flush() caller that finds
 * the writer idle, no other caller waiting and a one-record last batch (a
 * lone blocking appender) writes the queued batches up to its own with
 * pwrite + fdatasync on its own thread and runs their completions there: no
 * hand-off to the writer thread and back, and its appends do not wake the
 * writer thread, which sleeps until there is work; they only push its timer
 * forward, so an append never flushed still completes (writer_defer).
 * Otherwise it sleeps on a per-batch futex word that the batch's completion
 * bumps, one wake for all its waiters, and the writer thread gathers the
 * woken appenders' next records for up to 50 us before taking a batch
 * (writer_gather).  The writer thread or one lone flush() caller owns the
 * I/O; batches complete in order whoever writes them (writer_complete).
 * Not under local.io=uring.  See local_flush().
 *
 * Early wake (local.early_wake, default 8 per online CPU).  Waking the
 * sleepers of a completed batch is the largest part of the gap between
 * two fdatasyncs at 16 blocking writers: one FUTEX_WAKE of 14-15 waiters
 * took 59-61 us in the waker (about 4 us each, one after the other), and
 * the other vCPU, halted during the fdatasync, took another 20-25 us to
 * run its first one.  So when the writer thread writes a batch inline and
 * at most that many callers sleep on it, it wakes one of them between the
 * write and the fdatasync; that one wakes the others, and they poll for
 * the batch's completion (sched_yield) instead of sleeping, for at most
 * twice the average fdatasync; the completion then wakes nobody, and they
 * come back together (the next batch gathers them all).  Early poll: while
 * that is in use, at most that many callers are inside flush() and the last
 * batch held at most that many records, a caller polls from the start
 * instead of sleeping first (early_poll): no futex sleep and wake-up per
 * record at all (the gap between two fdatasyncs at 16 writers fell by
 * about 15 us at p10, 55-61 to 39-46 us).
 * Since such callers come straight back, the writer thread waits for the
 * first of them from the moment the batch completes, yielding its CPU to
 * them, instead of first spinning (local.spin_us) for an append (a trace
 * showed that spin keeping the pollers on its own CPU from running for
 * 50 us per cycle), then gathers the rest for the usual time.
 * This burns CPU time during the fdatasync, which pays only when the CPUs
 * would otherwise be idle: it is used only while the rest of the machine
 * used less than a quarter of a CPU in the last 250 ms (early_room, from
 * /proc/stat).  Figures in tools/bench/local-notes.md.
 *
 * Second lane (local.lanes=2; the default is 1).  While the writer thread
 * writes a batch inline, one flush() caller at a time takes the queued
 * batches up to its own and writes them with pwrite + fdatasync through its
 * own file descriptor on the segment, so two fdatasyncs are in flight
 * (lane_run, which states the rules that keep it correct).  Off by default
 * because on the machine it was built on it lost: the blocked appenders
 * split into two smaller batches (records per fdatasync at 16 writers
 * 8.9-12.1 against 13.6-14.4 with one lane) and the disk does not overlap
 * two fdatasyncs of adjacent ranges of one file well enough to make up for
 * it (adjacent batches share a 4 KiB page, whose write-back the second
 * fdatasync waits for); figures in tools/bench/local-notes.md.
 *
 * Adaptive path (local.io=auto, the default).  A lone batch (nothing in
 * flight, nothing queued behind it) is written inline by the writer thread
 * with pwrite + fdatasync: io_uring buys overlap only when there is a next
 * batch to overlap, and at queue depth one it costs two more thread hops
 * (buffered ext4 writes and every fsync are punted to io-wq workers).
 * Measured with tools/bench (bench-local --workload writers --writers 1,
 * 100-byte records, alternating, 4 pairs, 2 s each, on a busy 2-vCPU VM):
 * auto p50 106-135 us, 6.4-8.0 k appends/s; forced io_uring p50 132-168 us,
 * 5.4-6.0 k/s; REF-SYNC (bare pwrite+fdatasync) p50 84-101 us.  Under load
 * (many writers, async appenders) batches queue up and go through io_uring.
 * local.io=uring forces io_uring for every batch (tests use it to reach the
 * link-chain paths).  An idle writer with nothing in flight watches the
 * queue for local.spin_us (default 50) before sleeping, to save a wake-up
 * when a blocking appender comes straight back ("spin briefly, then park",
 * perf-anchors.md section 1).  Its effect could not be separated from the
 * noise of the shared build machine (spin 50 vs 0, 1 writer, 4 pairs at load
 * 7-10: no consistent difference); set 0 where CPU is scarcer than latency.
 *
 * Why buffered writes + linked fdatasync, not O_DIRECT + RWF_DSYNC: records
 * are small and unaligned; O_DIRECT would need every batch padded to 4 KiB
 * and the partial last block rewritten by the next batch, and two batches in
 * flight would then write the same block concurrently.  On this machine class
 * a small write+fdatasync costs the same through io_uring as through plain
 * syscalls (perf-anchors.md sections 3-4); the gain comes from overlapping
 * batch N+1's write with batch N's flush, which linked pairs give.  (Not
 * measured against an O_DIRECT implementation: there is none.)
 *
 * Segments are created when the first record that does not fit is written
 * (fallocate, header, fdatasync, directory fsync: about three flushes once
 * per local.segment_bytes), not ahead of time.  The new header carries a
 * summary of the segment before it (end, last LSN, sparse index), so an open
 * need not read sealed segments (local-format.c).  With local.prepare=zero
 * (the default) a preparer thread writes zeros over the blocks ahead of the
 * write head and fdatasyncs them, so the writer's fdatasyncs find written
 * blocks and commit no extent conversion to the journal (see "Writer:
 * preparing blocks" below, which states the rules that keep it correct).
 *
 * Failure.  A failed write (-ENOSPC...) or fdatasync (-EIO) makes the channel
 * unavailable for good (fsyncgate: a failed fsync is never retried, its pages
 * may already be marked clean): every pending and later append fails with
 * that error and a message naming the file, until the wal is closed and
 * reopened (which re-runs recovery from disk).
 *
 * Fallback.  When io_uring cannot be set up (disabled by sysctl or seccomp),
 * the writer does plain pwrite + fdatasync, one batch at a time, and says so
 * once through walu_log().  local.io=uring|sync forces either path.
 *
 * Readers.  A scanner reads segments with large preads (1 MiB) from a
 * position found through each segment's sparse index, and sees only records
 * the writer has published as durable.  Frames are checked in runs (several
 * CRC chains side by side); next() then decodes one message per call,
 * next_batch() walks the frames of the buffer in one pass
 * (local_frames_scan: header, LSN and CRC) and hands them out as views into
 * it (no allocation or copy per record: the replay path).  mmap of sealed
 * segments instead of pread was measured slower here, twice: the page
 * faults cost more than the copy they save (tools/bench/local-notes.md).
 * A scanner reading a segment sequentially (two full chunks in a row with
 * more durable data ahead) starts a read-ahead helper thread: it preads the
 * next chunks into spare buffers and checks their frames (header, LSN, CRC)
 * while the scanner hands out the current one, so the page-cache copy and
 * the checks run beside the envelope reads on a second CPU; the scanner
 * hands out only frames checked by the helper or by itself, and checks
 * itself whatever the helper has not reached (see "Read-ahead" below).
 * When one of the two waits for the other (about once per chunk), it
 * watches for the other's move for up to local.read_spin_us before it
 * sleeps, so that an idle vCPU need not halt and be woken in the middle of
 * a replay (ra_watch).
 * At the head it waits on its notifier,
 * which the writer signals after each durable batch, only for scanners that
 * asked.  Without a writer in this process (read-only opens beside a writer
 * process) a watcher thread re-reads the tail of the last segment every
 * 10 ms while scanners exist: the bounded-period re-check; records seen that
 * way are whole (CRC-valid) but may not be durable yet.
 *
 * Locks, outermost first: chan.open_lock (opens and closes), chan.lock
 * (segment list, durable position, scanners), writer.qlock (the append
 * queue), a scanner's notifier lock.  The channel table's reg_lock is taken
 * alone.  Completion callbacks run on the writer thread with no lock held.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <poll.h>
#include <sched.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/futex.h>
#include <limits.h>
#include <dirent.h>
#include <unistd.h>

#include <walimpls/walimpls.h>
#include <wal/wal-log.h>
#include <wal/wal-registry.h>
#include "utility/crc32c.h"
#include "utility/envelope.h"
#include "utility/walu.h"
#include "local.h"

#define MiB (1024ull * 1024)
#define GiB (1024ull * MiB)

#define LOCAL_DURABILITY "fdatasync"
#define LOCAL_QUEUE_MAX (64ull * MiB)   /* queued bytes before append waits */
#define LOCAL_WATCH_MS 10               /* read-only re-check period */
#define LOCAL_INFLIGHT_MAX 16
#define TAG_EFD 1ull                    /* user_data of the eventfd read */
#define TAG_SYNC 2ull                   /* low bit set on a batch's fdatasync */
#define LOCAL_FLUSH_SLOTS 64            /* wait words of flush() callers */

enum io_mode { IO_AUTO, IO_URING, IO_SYNC };

/* ---- Properties ---- */

static const struct wal_property local_properties[] = {
        { "local.dir", WAL_PROP_STRING, "./wal-data", 1, 0, NULL, 0,
          "Directory holding one subdirectory per channel." },
        { "local.segment_bytes", WAL_PROP_SIZE, "64m", 64 * 1024, 16 * (int64_t)GiB, NULL, 0,
          "Size of each segment file, preallocated with fallocate when created." },
        { "local.io", WAL_PROP_ENUM, "auto", 1, 0, "auto|uring|sync", 0,
          "Write path: io_uring (linked write+fdatasync), plain pwrite+fdatasync, or auto "
          "(io_uring when it can be set up)." },
        { "local.inflight", WAL_PROP_INT, "4", 1, LOCAL_INFLIGHT_MAX, NULL, 0,
          "Batches kept in flight through io_uring (each a write linked to an fdatasync)." },
        { "local.batch_bytes", WAL_PROP_SIZE, "4m", 4096, 256 * (int64_t)MiB, NULL, 0,
          "Largest write the writer issues for one batch of records." },
        { "local.spin_us", WAL_PROP_INT, "50", 0, 1000, NULL, 0,
          "Microseconds the idle writer watches for the next append before it sleeps "
          "(0: sleep at once)." },
        { "local.read_spin_us", WAL_PROP_INT, "50", 0, 1000, NULL, 0,
          "Microseconds a replaying scanner and its read-ahead helper watch for each other "
          "(a chunk read, a chunk queued) before they sleep (0: sleep at once)." },
        { "local.lanes", WAL_PROP_INT, "1", 1, 2, NULL, 0,
          "Blocking appenders (append, then wal.flush): 2 lets a flush() caller write and "
          "fdatasync later records through its own file descriptor while the writer thread's "
          "fdatasync is in flight; 1 keeps one fdatasync at a time." },
        { "local.early_wake", WAL_PROP_INT, "8", 0, 64, NULL, 0,
          "Blocking appenders (append, then wal.flush) waiting for a batch written inline are "
          "woken when its fdatasync starts and poll for its end, if they number at most this "
          "many per online CPU (0: off; they then sleep until the batch is durable)." },
        { "local.prepare", WAL_PROP_ENUM, "zero", 1, 0, "zero|off", 0,
          "zero: a helper thread writes zeros over the preallocated blocks ahead of the write "
          "head (and fdatasyncs them), so appends overwrite written blocks and their "
          "fdatasyncs commit no extent conversion; off: appends write into fallocate()d "
          "(unwritten) space." },
        { "local.open_check", WAL_PROP_ENUM, "tail", 1, 0, "tail|all", 0,
          "What opening a channel checks: tail = every frame of the last segment and the "
          "frame headers of the others (their CRCs are checked as they are read); all = "
          "every frame's CRC (as walctl verify)." },
        { NULL, 0, NULL, 0, 0, NULL, 0, NULL },
};

/* ---- Types ---- */

struct rec_done {
        walimpls_append_done_fn *fn;
        void *arg;
};

struct batch {
        struct batch *next;
        uint8_t *buf;                /* frames, contiguous in the file */
        size_t len, cap;
        struct rec_done *dones;      /* one per record, in LSN order */
        size_t n, cap_dones;
        uint64_t first_lsn;
        uint64_t bseq;               /* batch sequence number, from 1 */
        uint64_t off;                /* file offset of buf[0] */
        uint64_t seg_first;          /* segment the batch belongs to */
        uint64_t seg_size;           /* its size, for a new segment */
        bool new_seg;                /* create that segment first */
        /* I/O state, writer thread only */
        size_t written;              /* bytes confirmed written */
        int ops;                     /* completions outstanding */
        int last_write;              /* result of the last write completion */
        int write_err;
        int sync_res;
        bool io_done;                /* under qlock: completions may be run by either lane */
        bool lane2;                  /* written by lane 2 (a flush() caller's fd) */
        bool woken_early;            /* its waiters were woken as its fdatasync began */
        int ufd_slot;                /* io_uring: which of w->ufd its ops use */
        int err;
};

struct local_scanner;
struct chan;

struct writer {
        struct chan *c;
        pthread_t thread;
        bool thread_started;
        bool uring;
        bool adaptive;               /* local.io=auto: lone batches go inline */
        bool caller_io;              /* flush() callers may write (not local.io=uring) */
        bool lane2;                  /* local.lanes=2: lane_run beside the writer thread */
        struct io_uring ring;
        int efd;
        int tfd;                     /* timerfd: deadline of deferred appends */
        int inflight_max;
        size_t batch_bytes;
        uint64_t seg_bytes;
        uint64_t spin_ns;

        pthread_mutex_t qlock;       /* everything down to `completed_lsn` */
        pthread_cond_t qcond;        /* back-pressure and flush waiters */
        struct batch *open;          /* being filled by appenders */
        struct batch *ready_head, *ready_tail;   /* sealed, not submitted */
        struct batch *free_list;
        size_t queued_bytes;
        uint64_t next_lsn;           /* next LSN to assign */
        uint64_t tail_off;           /* end of the last placed frame */
        uint64_t tail_seg_first, tail_seg_size;
        bool pending_new_seg;
        _Atomic uint64_t appended;   /* records ever queued (read without qlock) */
        uint64_t last_bseq;          /* sequence number of the newest batch made */
        uint64_t tail_bseq;          /* batch holding the newest record (0: none) */
        /*
         * Who does the I/O (takes batches, writes, completes them): nobody,
         * the writer thread (from its first take until nothing is in flight)
         * or a flush() caller writing its own batches.  Exclusive, so
         * batches complete in order whoever writes them.
         */
        enum { OWNER_NONE, OWNER_THREAD, OWNER_CALLER } io_owner;
        _Atomic int flushers;        /* threads inside local_flush */
        uint64_t last_flush_ns;      /* when local_flush last began */
        size_t last_batch_n;         /* records in the last batch completed */
        size_t gather_n;             /* records the next batch should gather (gather_want) */
        bool gather_early;           /* the last batch's waiters were polling: they come
                                        back at once, gather before the first is back */
        bool gather_first;           /* writer_gather is waiting for the first of them */
        /*
         * Early wake (see local_flush): the newest batch whose waiters were
         * woken as its fdatasync began (written by the writer thread, read
         * without a lock), how many sleepers that is done for at most
         * (local.early_wake per online CPU, 0: off), and a running average
         * of the inline fdatasync's duration, which bounds the polling.
         */
        _Atomic uint64_t early_bseq;
        unsigned early_max;
        _Atomic uint64_t sync_avg_ns;
        /* Whether the CPUs have room for polling (early_room), writer
         * thread only: when it was last looked at, the machine's busy time
         * and this process's CPU time then. */
        _Atomic bool room;           /* also read by flush() callers */
        uint64_t room_at, room_busy_ns, room_self_ns;
        uint64_t timer_at;           /* tfd armed for this time (0: not armed) */
        bool sleeping;
        bool closing;
        int failed;                  /* sticky: 0 or the negative errno */
        char failmsg[512];
        uint64_t completed_lsn;      /* callbacks ran up to here */
        /* Batches up to this one have completed (callbacks ran); written
         * under qlock, read without. */
        _Atomic uint64_t done_bseq;
        /* flush() callers sleep on the word of the slot of the batch they
         * wait for (bseq % LOCAL_FLUSH_SLOTS); completing a batch bumps its
         * slot's word and wakes that slot's sleepers with one futex call. */
        struct flush_slot {
                _Atomic uint32_t word;
                _Atomic uint32_t sleepers;
                _Atomic uint32_t pollers;    /* polling instead (early_poll) */
        } slots[LOCAL_FLUSH_SLOTS];

        /*
         * Batches in flight, in LSN order, and how many: under qlock (the
         * writer thread, a flush() caller writing alone, or lane 2 push
         * onto it when they take batches; whoever holds `completing` pops
         * from its head).
         */
        struct batch *fl_head, *fl_tail;
        int n_inflight;
        bool completing;             /* someone runs completions (writer_complete) */
        /*
         * The second lane (see lane_run): while the writer thread writes a
         * batch inline (thread_inline), one flush() caller at a time may
         * take later batches and write them with pwrite + fdatasync through
         * its own file descriptor on the segment, lane_fd.  Under qlock,
         * except lane_fd and lane_fd_seg (the lane holder's, and close's).
         */
        bool thread_inline;          /* the thread writes one batch inline, no segment roll */
        bool lane_busy;              /* a flush() caller holds lane 2 */
        int lane_inflight;           /* lane 2's batches not yet completed */
        size_t thread_last_n;        /* records the thread took last time */
        size_t lane_last_n;          /* records lane 2 took last time */
        uint64_t lane_last_ns;       /* when lane 2 last took batches */
        int lane_fd;                 /* lane 2's own fd on lane_fd_seg's file (-1: none) */
        uint64_t lane_fd_seg;
        /* writer thread (or the flush() caller owning the I/O) only */
        int uring_inflight;          /* batches in flight through io_uring */
        /*
         * One open file per io_uring batch in flight (a write-back error is
         * reported once per open file: two fdatasyncs in flight on one fd
         * could let the later one take the error of the earlier batch's
         * pages and the earlier one return 0).  ufd[0] is active_fd; the
         * others are opened on the active segment with it (ufd_open); a
         * batch holds slot ufd_slot from submission to settlement.
         */
        int ufd[LOCAL_INFLIGHT_MAX];
        int ufd_n;                   /* slots usable: 1 + extra files opened */
        unsigned ufd_used;           /* bit per slot held by a batch */
        int active_fd;
        struct local_seg *active;    /* the last segment (in c->segs) */
        /*
         * The preparer (local.prepare=zero, see prep_main): under qlock.
         * It writes zeros over [prep_lo, ...) of segment prep_seg while
         * prep_lo != 0 (a claim), and has written and fdatasynced them up
         * to prep_end; no frame is placed at or past prep_lo meanwhile.
         */
        bool prep_on;                /* local.prepare=zero */
        bool prep_started;           /* prep_thread runs (started lazily) */
        bool prep_stop;              /* writer_stop: the preparer exits */
        bool prep_sleeping;          /* waits on prep_cond */
        bool prep_seg_done;          /* nothing more to prepare in prep_seg */
        pthread_t prep_thread;
        pthread_cond_t prep_cond;
        uint64_t prep_seg;           /* first LSN of the segment it prepares (0: none) */
        uint64_t prep_end;           /* its blocks are zero-written up to here */
        uint64_t prep_lo;            /* claim in progress from this offset (0: none) */
        uint64_t prep_kick;          /* wake the preparer when the head passes this */
};

struct chan {
        struct chan *next_reg;
        int refs;                    /* under reg_lock */
        char *dir;                   /* <local.dir>/<channel> */
        const struct local_io_ops *io;

        pthread_mutex_t open_lock;   /* serialises opens and closes */
        pthread_mutex_t lock;        /* segs, durable_lsn, scanners */
        struct local_seg **segs;
        size_t n_segs, cap_segs;
        bool loaded;
        _Atomic uint64_t seg_gen;    /* bumped when segments are removed or replaced */
        uint64_t durable_lsn;        /* readers see LSNs <= this */
        _Atomic int64_t owner_term;
        int n_rw;
        struct local_scanner *scanners;
        struct writer *w;            /* NULL: no writer in this process */
        int lock_fd;

        pthread_t watcher;
        bool watcher_started, watcher_stop;
        pthread_cond_t watch_cond;
};

struct local_opener {
        struct walimpls_opener base;
        char *dir;
        uint64_t seg_bytes;
        enum io_mode io;
        int inflight;
        size_t batch_bytes;
        int spin_us;
        int read_spin_us;
        int lanes;
        int early_wake;
        bool prepare;
        enum local_scan_mode open_check;
};

struct local_wal {
        struct walimpls_wal base;
        struct chan *c;
        uint64_t read_spin_ns;           /* local.read_spin_us, for its scanners */
};

struct local_scanner {
        struct walimpls_scanner base;
        struct chan *c;
        struct local_scanner *next_s;    /* c->scanners, under c->lock */
        bool want_signal;                /* under c->lock */
        struct walimpls_notifier nt;
        uint64_t next_lsn;
        int sticky;
        char *sticky_msg;
        /* read position */
        uint64_t seg_first;              /* segment of fd, 0 none */
        char *seg_path;                  /* its path (owned), for I/O and messages */
        uint64_t fast_until;             /* LSNs up to here are durable in fd's segment */
        uint64_t fast_limit;             /* and end before this offset */
        uint64_t fast_gen;               /* c->seg_gen when those were taken */
        int fd;
        uint64_t off;                    /* offset of frame next_lsn in fd */
        bool positioned;
        uint8_t *buf;                    /* bytes from buf_off: in mem or a read-ahead buffer */
        uint8_t *mem;                    /* the scanner's own read buffer (cap bytes) */
        size_t cap;
        uint64_t buf_off;
        size_t buf_len;
        uint64_t verified_end;           /* frames in buf from off up to this passed
                                            their header, LSN and CRC checks */
        unsigned ra_streak;              /* full chunks read in a row with more ahead */
        uint64_t spin_ns;                /* local.read_spin_us of its wal (read-ahead) */
        struct readahead *ra;            /* NULL until a long sequential read */
        struct ra_slot *vslot;           /* the read-ahead slot buf is in while its
                                            helper checks frames ahead of off */
        struct local_index_entry *ix;    /* owned: the sparse index of seg_first as
                                            it was at the open (read-ahead hints) */
        size_t n_ix;
};

static const struct walimpls_opener_ops local_opener_ops;
static const struct walimpls_wal_ops local_wal_ops;
static const struct walimpls_scanner_ops local_scanner_ops;
const struct walimpls_builder walimpls_local;

/* ---- Small helpers ---- */

static char *path_join(const char *a, const char *b)
{
        size_t n = strlen(a) + strlen(b) + 2;
        char *p = malloc(n);
        if (p)
                snprintf(p, n, "%s/%s", a, b);
        return p;
}

/*
 * Is @p path (borrowed) a channel's directory?  It is once a writer opened
 * it (a term or lock file) or when it holds a segment; an empty directory,
 * or one with other files only, is not.  Listing and read-only opens agree
 * on this one rule.  A directory that cannot be read counts, so that opening
 * it reports why.
 */
static bool is_channel_dir(const char *path)
{
        DIR *d = opendir(path);
        if (!d)  /* unreadable: say yes, so that opening it names the error */
                return errno != ENOENT && errno != ENOTDIR;
        bool is = false;
        struct dirent *de;
        uint64_t first;
        while (!is && (de = readdir(d)))
                is = strcmp(de->d_name, "term") == 0 || strcmp(de->d_name, "lock") == 0 ||
                     local_seg_name_parse(de->d_name, &first);
        closedir(d);
        return is;
}

static int mkdir_p(const char *path)
{
        char tmp[4096];
        if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
                return -ENAMETOOLONG;
        for (char *p = tmp + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* Per-thread scratch buffer for encoding a record outside the queue lock. */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

struct scratch {
        uint8_t *p;
        size_t cap;
};

static void scratch_free(void *p)
{
        struct scratch *s = p;
        if (s)
                free(s->p);
        free(s);
}

static void scratch_init(void)
{
        (void)pthread_key_create(&scratch_key, scratch_free);
}

static uint8_t *scratch_get(size_t n)
{
        pthread_once(&scratch_once, scratch_init);
        struct scratch *s = pthread_getspecific(scratch_key);
        if (!s) {
                s = calloc(1, sizeof(*s));
                if (!s || pthread_setspecific(scratch_key, s) != 0) {
                        free(s);
                        return NULL;
                }
        }
        if (s->cap < n) {
                size_t cap = WALU_MAX(n, (size_t)4096);
                uint8_t *np = realloc(s->p, cap);
                if (!np)
                        return NULL;
                s->p = np;
                s->cap = cap;
        }
        return s->p;
}

/* ---- Channel table ---- */

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct chan *reg_head;

static struct chan *chan_get(const char *dir)
{
        pthread_mutex_lock(&reg_lock);
        struct chan *c;
        for (c = reg_head; c; c = c->next_reg)
                if (strcmp(c->dir, dir) == 0)
                        break;
        if (c) {
                c->refs++;
                pthread_mutex_unlock(&reg_lock);
                return c;
        }
        c = calloc(1, sizeof(*c));
        if (c)
                c->dir = strdup(dir);
        if (!c || !c->dir) {
                if (c)
                        free(c->dir);
                free(c);
                pthread_mutex_unlock(&reg_lock);
                return NULL;
        }
        c->refs = 1;
        c->io = local_io_current_ops();
        c->lock_fd = -1;
        atomic_init(&c->owner_term, -1);
        atomic_init(&c->seg_gen, 0);
        pthread_mutex_init(&c->open_lock, NULL);
        pthread_mutex_init(&c->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&c->watch_cond, &ca);
        pthread_condattr_destroy(&ca);
        c->next_reg = reg_head;
        reg_head = c;
        pthread_mutex_unlock(&reg_lock);
        return c;
}

static void chan_free_segs(struct chan *c)
{
        atomic_fetch_add_explicit(&c->seg_gen, 1, memory_order_release);
        for (size_t i = 0; i < c->n_segs; i++)
                local_seg_free(c->segs[i]);
        free(c->segs);
        c->segs = NULL;
        c->n_segs = c->cap_segs = 0;
}

static void chan_put(struct chan *c)
{
        pthread_mutex_lock(&reg_lock);
        if (--c->refs > 0) {
                pthread_mutex_unlock(&reg_lock);
                return;
        }
        for (struct chan **pp = &reg_head; *pp; pp = &(*pp)->next_reg) {
                if (*pp == c) {
                        *pp = c->next_reg;
                        break;
                }
        }
        pthread_mutex_unlock(&reg_lock);
        if (c->watcher_started) {
                pthread_mutex_lock(&c->lock);
                c->watcher_stop = true;
                pthread_cond_broadcast(&c->watch_cond);
                pthread_mutex_unlock(&c->lock);
                pthread_join(c->watcher, NULL);
        }
        chan_free_segs(c);
        if (c->lock_fd >= 0)
                c->io->close(c->io->ctx, c->lock_fd);
        pthread_mutex_destroy(&c->open_lock);
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->watch_cond);
        free(c->dir);
        free(c);
}

/* Append a segment to c->segs.  Caller holds c->lock. */
static int chan_push_seg(struct chan *c, struct local_seg *s)
{
        if (c->n_segs == c->cap_segs) {
                size_t cap = c->cap_segs ? c->cap_segs * 2 : 16;
                struct local_seg **ns = realloc(c->segs, cap * sizeof(*ns));
                if (!ns)
                        return -ENOMEM;
                c->segs = ns;
                c->cap_segs = cap;
        }
        c->segs[c->n_segs++] = s;
        return 0;
}

/* Index of the segment holding @lsn (the last with first_lsn <= lsn);
 * SIZE_MAX if none.  Caller holds c->lock. */
static size_t chan_find_seg(struct chan *c, uint64_t lsn)
{
        size_t lo = 0, hi = c->n_segs;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (c->segs[mid]->first_lsn <= lsn)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo == 0 ? SIZE_MAX : lo - 1;
}

static uint64_t chan_first_lsn(struct chan *c)
{
        return c->n_segs ? c->segs[0]->first_lsn : 1;
}

/* Wake every scanner that asked.  Caller holds c->lock. */
static void chan_signal_scanners(struct chan *c)
{
        for (struct local_scanner *s = c->scanners; s; s = s->next_s) {
                if (s->want_signal) {
                        s->want_signal = false;
                        walimpls_notifier_signal(&s->nt);
                }
        }
}

/*
 * Without a writer in this process: pick up what another process appended
 * since the last look (new frames in the last segment, new segments).
 * Caller holds c->lock.  Frames are taken while they validate; the scan
 * stops quietly at anything else (a frame being written).
 */
static void chan_refresh(struct chan *c)
{
        if (c->w || !c->loaded)
                return;
        const struct local_io_ops *io = c->io;
        bool grew = false;
        /* Segments the writer truncated away (never the last one). */
        size_t gone = 0;
        struct stat gst;
        while (gone + 1 < c->n_segs && stat(c->segs[gone]->path, &gst) < 0 && errno == ENOENT)
                gone++;
        if (gone) {
                for (size_t i = 0; i < gone; i++)
                        local_seg_free(c->segs[i]);
                memmove(c->segs, c->segs + gone, (c->n_segs - gone) * sizeof(*c->segs));
                c->n_segs -= gone;
                atomic_fetch_add_explicit(&c->seg_gen, 1, memory_order_release);
        }
        for (;;) {
                if (c->n_segs == 0) {
                        /* A writer may have created the first segment. */
                        struct local_chan_scan sc;
                        if (local_chan_scan(io, c->dir, LOCAL_SCAN_OPEN, &sc, NULL) < 0)
                                break;
                        if (sc.n_segs == 0) {
                                local_chan_scan_done(&sc);
                                break;
                        }
                        chan_free_segs(c);
                        c->segs = sc.segs;
                        c->n_segs = c->cap_segs = sc.n_segs;
                        c->durable_lsn = c->segs[c->n_segs - 1]->last_lsn;
                        grew = true;
                        break;
                }
                struct local_seg *s = c->segs[c->n_segs - 1];
                int fd = io->open(io->ctx, s->path, O_RDONLY, 0);
                if (fd < 0)
                        break;
                struct stat st;
                if (fstat(fd, &st) == 0) {
                        uint64_t before = s->last_lsn;
                        s->size = (uint64_t)st.st_size;
                        (void)local_seg_scan(io, fd, s, s->size, true);
                        if (s->last_lsn != before)
                                grew = true;
                }
                io->close(io->ctx, fd);
                c->durable_lsn = s->last_lsn;
                /* Has the writer moved on to a next segment?  (Only after a
                 * non-empty one: an empty segment's successor would have its
                 * own name.) */
                if (s->last_lsn < s->first_lsn)
                        break;
                struct local_seg *n = local_seg_new(c->dir, s->last_lsn + 1);
                if (!n)
                        break;
                uint8_t hdr[64];
                fd = io->open(io->ctx, n->path, O_RDONLY, 0);
                uint64_t first = 0;
                bool ok = fd >= 0 && io->pread(io->ctx, fd, hdr, sizeof(hdr), 0) == sizeof(hdr) &&
                          local_seg_header_check(hdr, sizeof(hdr), &first) == 0 &&
                          first == n->first_lsn;
                if (fd >= 0)
                        io->close(io->ctx, fd);
                if (!ok || chan_push_seg(c, n) < 0) {
                        local_seg_free(n);
                        break;
                }
        }
        if (grew)
                chan_signal_scanners(c);
}

static void *watcher_main(void *arg)
{
        struct chan *c = arg;
        pthread_mutex_lock(&c->lock);
        while (!c->watcher_stop) {
                struct timespec dl = walu_deadline(LOCAL_WATCH_MS);
                pthread_cond_timedwait(&c->watch_cond, &c->lock, &dl);
                if (c->watcher_stop)
                        break;
                bool wanted = false;
                for (struct local_scanner *s = c->scanners; s; s = s->next_s)
                        wanted |= s->want_signal;
                if (wanted)
                        chan_refresh(c);
        }
        pthread_mutex_unlock(&c->lock);
        return NULL;
}

/* ---- Writer: batches ---- */

static struct batch *batch_get(struct writer *w)
{
        struct batch *b = w->free_list;
        if (b) {
                w->free_list = b->next;
        } else {
                b = calloc(1, sizeof(*b));
                if (!b)
                        return NULL;
        }
        b->next = NULL;
        b->len = 0;
        b->n = 0;
        b->new_seg = false;
        b->written = 0;
        b->ops = 0;
        b->last_write = 0;
        b->write_err = 0;
        b->sync_res = 0;
        b->io_done = false;
        b->lane2 = false;
        b->woken_early = false;
        b->ufd_slot = 0;
        b->err = 0;
        return b;
}

static void batch_put(struct writer *w, struct batch *b)
{
        /* Keep buffers of a reasonable size for reuse. */
        if (b->cap > 2 * w->batch_bytes) {
                free(b->buf);
                b->buf = NULL;
                b->cap = 0;
        }
        b->next = w->free_list;
        w->free_list = b;
}

static void batch_destroy(struct batch *b)
{
        free(b->buf);
        free(b->dones);
        free(b);
}

static long futex_op(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *ts)
{
        return syscall(SYS_futex, (uint32_t *)word, op, val, ts, NULL, 0);
}

/* Batch @bseq has completed: wake the flush() callers waiting for it (and
 * any of a batch LOCAL_FLUSH_SLOTS later, which look again and sleep on). */
static void flush_wake(struct writer *w, uint64_t bseq)
{
        struct flush_slot *sl = &w->slots[bseq % LOCAL_FLUSH_SLOTS];
        atomic_fetch_add(&sl->word, 1);
        if (atomic_load(&sl->sleepers))
                (void)futex_op(&sl->word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
}

/* Run @b's callbacks with @err (0: success). */
static void batch_callbacks(struct writer *w, struct batch *b, int err)
{
        wal_error *e = NULL;
        if (err) {
                pthread_mutex_lock(&w->qlock);
                e = wal_error_new(err, WAL_ERROR_FATAL, "%s",
                                  w->failmsg[0] ? w->failmsg : wal_strerror(err));
                pthread_mutex_unlock(&w->qlock);
        }
        for (size_t i = 0; i < b->n; i++) {
                struct wal_msgid id = err ? WAL_MSGID_NONE : WAL_MSGID(0, b->first_lsn + i);
                b->dones[i].fn(b->dones[i].arg, err, id, e);
        }
        wal_error_free(e);
}

/* @b's callbacks have run: record it and recycle it.  Caller holds qlock,
 * and calls flush_wake() with the returned batch number after unlocking. */
static uint64_t batch_retire(struct writer *w, struct batch *b)
{
        uint64_t bseq = b->bseq;
        if (b->n && b->first_lsn + b->n - 1 > w->completed_lsn)
                w->completed_lsn = b->first_lsn + b->n - 1;
        w->last_batch_n = b->n;
        /* Waiters woken early come back at once: gather them all, with
         * the records already queued behind the batch (writer_gather). */
        w->gather_n = b->woken_early ? b->n + (w->open ? w->open->n : 0) : b->n;
        w->gather_early = b->woken_early;
        if (bseq > atomic_load_explicit(&w->done_bseq, memory_order_relaxed))
                atomic_store(&w->done_bseq, bseq);
        batch_put(w, b);
        pthread_cond_broadcast(&w->qcond);
        return bseq;
}

/* Run @b's callbacks with @err (0: success) and recycle it (a batch that
 * was never in flight). */
static void batch_finish(struct writer *w, struct batch *b, int err)
{
        batch_callbacks(w, b, err);
        pthread_mutex_lock(&w->qlock);
        uint64_t bseq = batch_retire(w, b);
        pthread_mutex_unlock(&w->qlock);
        flush_wake(w, bseq);
}

/* Make the channel unavailable (sticky).  Logs once. */
static void writer_fail(struct writer *w, int err, const char *fmt, ...) WAL_PRINTF(3, 4);
static void writer_fail(struct writer *w, int err, const char *fmt, ...)
{
        pthread_mutex_lock(&w->qlock);
        bool first = w->failed == 0;
        if (first) {
                w->failed = err;
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(w->failmsg, sizeof(w->failmsg), fmt, ap);
                va_end(ap);
        }
        pthread_cond_broadcast(&w->qcond);
        pthread_mutex_unlock(&w->qlock);
        if (first)
                walu_log(WAL_LOG_ERROR, "%s; channel unavailable until reopened", w->failmsg);
}

/* ---- Writer: segments ---- */

/* Open the extra files of the io_uring slots on the active segment (at
 * start and after each roll, when no io_uring batch is in flight), closing
 * those of the previous segment.  A slot that cannot be opened is left out:
 * fewer batches go in flight at once. */
static void ufd_open(struct writer *w)
{
        const struct local_io_ops *io = w->c->io;
        WAL_ASSERT(w->ufd_used == 0);
        for (int i = 1; i < LOCAL_INFLIGHT_MAX; i++) {
                if (w->ufd[i] >= 0)
                        io->close(io->ctx, w->ufd[i]);
                w->ufd[i] = -1;
        }
        w->ufd[0] = w->active_fd;
        w->ufd_n = 1;
        if (!w->uring)
                return;
        while (w->ufd_n < w->inflight_max) {
                int fd = io->open(io->ctx, w->active->path, O_RDWR, 0);
                if (fd < 0)
                        break;
                w->ufd[w->ufd_n++] = fd;
        }
}

/* Create the segment for @b (every earlier batch is durable).  Runs on the
 * writer thread with no lock held. */
static int writer_new_segment(struct writer *w, struct batch *b)
{
        struct chan *c = w->c;
        const struct local_io_ops *io = c->io;
        struct local_seg *s = local_seg_new(c->dir, b->seg_first);
        if (!s) {
                writer_fail(w, -ENOMEM, "local: out of memory creating a segment in %s", c->dir);
                return -ENOMEM;
        }
        s->size = b->seg_size;
        const char *step = "create";
        uint8_t *hdr = NULL;
        int fd = io->open(io->ctx, s->path, O_RDWR | O_CREAT | O_EXCL, 0644);
        int r = fd < 0 ? fd : 0;
        if (r == 0) {
                step = "fallocate";
                r = io->fallocate(io->ctx, fd, 0, (off_t)s->size);
        }
        if (r == 0) {
                step = "write header of";
                hdr = malloc(LOCAL_SEG_HDR_SIZE);
                if (!hdr) {
                        r = -ENOMEM;
                } else {
                        local_seg_header_encode(hdr, s->first_lsn, s->size);
                        /* Every batch of the previous segment is durable:
                         * its summary lets opens skip reading it. */
                        if (w->active && w->active->last_lsn + 1 == s->first_lsn)
                                local_seg_header_add_prev(hdr, w->active);
                        r = local_io_write_full(io, fd, hdr, LOCAL_SEG_HDR_SIZE, 0);
                }
        }
        if (r == 0) {
                step = "fdatasync";
                r = io->fdatasync(io->ctx, fd);
        }
        if (r == 0) {
                step = "fsync the directory of";
                r = local_io_fsync_dir(io, c->dir);
        }
        free(hdr);
        if (r < 0) {
                if (fd >= 0) {
                        io->close(io->ctx, fd);
                        /* Leave no half-made segment for recovery. */
                        if (strcmp(step, "create") != 0) {
                                io->unlink(io->ctx, s->path);
                                (void)local_io_fsync_dir(io, c->dir);
                        }
                }
                writer_fail(w, r, "local: cannot %s segment %s: %s", step, s->path,
                            strerror(-r));
                local_seg_free(s);
                return r;
        }
        pthread_mutex_lock(&c->lock);
        r = chan_push_seg(c, s);
        pthread_mutex_unlock(&c->lock);
        if (r < 0) {
                io->close(io->ctx, fd);
                writer_fail(w, r, "local: out of memory adding segment %s", s->path);
                local_seg_free(s);
                return r;
        }
        /* Under qlock: lane 2 reads w->active there (lane_run). */
        pthread_mutex_lock(&w->qlock);
        int old = w->active_fd;
        w->active_fd = fd;
        w->active = s;
        if (w->prep_sleeping)
                pthread_cond_signal(&w->prep_cond);
        pthread_mutex_unlock(&w->qlock);
        if (old >= 0)
                io->close(io->ctx, old);
        ufd_open(w);
        return 0;
}

/* ---- Writer: preparing blocks ahead of the head (local.prepare=zero) ----
 *
 * Segments are fallocate()d: their blocks are allocated but unwritten, and
 * the first write-back into an unwritten block converts its extent, which
 * ext4 commits to the journal in that fdatasync.  With batches of 1-2 KiB
 * about every other fdatasync of the writer paid for such a journal commit.
 * The preparer thread writes zeros over the blocks ahead of the write head,
 * in chunks of LOCAL_PREP_CHUNK, and fdatasyncs them through its own file
 * descriptor (converting the extents in one commit per chunk), so that the
 * writer's fdatasyncs write data into blocks already written: no metadata,
 * no journal commit.  Measured (tools/bench/local-notes.md): one thread's
 * pwrite of 1.8 KiB + fdatasync, 7.0-7.5 k fdatasyncs/s on zero-written
 * blocks against 4.4-5.3 k on fallocate()d ones.
 *
 * Rules that keep it correct:
 *   - zeros only, only at offsets at or past the placement head +
 *     LOCAL_PREP_MARGIN (page-aligned), taken under qlock as a claim
 *     [prep_lo, ...);
 *     an append that would place a frame at or past prep_lo waits (on
 *     qcond) until the claim's writes have returned, so every byte of a
 *     frame reaches the page cache after the zeros under it: a frame is
 *     never overwritten by zeros;
 *   - the zeros are plain buffered writes, so the pages stay in the page
 *     cache (O_DIRECT would drop them, and the writer's first partial write
 *     into each 4 KiB page would then read the block from the disk first).
 *     Their cost: the writer's fdatasync covers the whole file, so it also
 *     writes back (or waits for) zero pages not yet synced by the preparer;
 *     measured against zeros written before the run, no difference showed
 *     (tools/bench/local-notes.md);
 *   - its failures never fail an append by themselves: the preparer logs
 *     once and stops (the blocks stay fallocate()d, as with prepare=off).
 *     A write-back error of its zero pages is the file's error, and the
 *     writer's own fdatasync reports it like any other (errseq per open
 *     file), failing the channel as usual;
 *   - zeros read as the end of data (an all-zero frame header), whether the
 *     preparer wrote them or the blocks are still unwritten (local-format.c);
 *     a read-write open cuts the last segment at its end of data and
 *     reallocates the rest, and the preparer starts over there.
 * It starts lazily, when a segment's head first passes LOCAL_PREP_START
 * (channels that hold a few records never start it), keeps the blocks
 * written up to LOCAL_PREP_AHEAD past the head, and gives up on a segment
 * whose head overtakes it (1 MiB appends at disk speed: zeroing ahead would
 * double the bytes written for no gain, the conversion costs little per
 * large write).  Stopped and joined by writer_stop; read-only opens have no
 * writer and so no preparer.
 */
#define LOCAL_PREP_START (128u << 10)
#define LOCAL_PREP_MARGIN (128u << 10)
#define LOCAL_PREP_CHUNK (1u << 20)
#define LOCAL_PREP_PIECE (256u << 10)  /* one pwrite: short holds of the inode lock */
#define LOCAL_PREP_AHEAD (8u << 20)

static inline uint64_t page_up(uint64_t x)
{
        return (x + 4095u) & ~(uint64_t)4095u;
}

/* Does placing a frame of @fsize bytes at the head reach a claim in
 * progress?  Caller holds qlock. */
static inline bool prep_blocks(const struct writer *w, size_t fsize)
{
        return w->prep_lo && w->tail_seg_first == w->prep_seg &&
               w->tail_off + fsize > w->prep_lo;
}

static void *prep_main(void *arg)
{
        struct writer *w = arg;
        pthread_setname_np(pthread_self(), "wal-local-prep");
        const struct local_io_ops *io = w->c->io;
        uint8_t *zero = calloc(1, LOCAL_PREP_PIECE);
        int fd = -1;
        uint64_t fd_seg = 0;
        char *path = NULL;
        pthread_mutex_lock(&w->qlock);
        while (zero && !w->prep_stop && !w->closing && !w->failed) {
                uint64_t seg = w->tail_seg_first;
                /* The segment the head is in exists once the writer has
                 * rolled to it. */
                bool ready = w->active && w->active->first_lsn == seg;
                if (ready && w->prep_seg != seg) {
                        w->prep_seg = seg;
                        w->prep_end = 0;
                        w->prep_seg_done = false;
                }
                uint64_t head = w->tail_off;
                uint64_t lim = w->tail_seg_size & ~(uint64_t)4095u;
                uint64_t lo = WALU_MAX(w->prep_end, page_up(head + LOCAL_PREP_MARGIN));
                if (ready && w->prep_end && head > w->prep_end)
                        w->prep_seg_done = true;        /* overtaken */
                bool ahead = w->prep_end >= head + LOCAL_PREP_AHEAD;
                if (!ready || w->prep_seg_done || lo >= lim || ahead) {
                        /* Appends wake it when the head nears prep_end,
                         * the writer when it rolls. */
                        w->prep_kick = ready && ahead && !w->prep_seg_done && lo < lim
                                               ? w->prep_end - LOCAL_PREP_AHEAD + LOCAL_PREP_CHUNK
                                               : UINT64_MAX;
                        w->prep_sleeping = true;
                        pthread_cond_wait(&w->prep_cond, &w->qlock);
                        w->prep_sleeping = false;
                        continue;
                }
                uint64_t hi = WALU_MIN(lo + LOCAL_PREP_CHUNK, lim);
                if (fd_seg != seg) {
                        free(path);
                        path = strdup(w->active->path);
                        if (!path)
                                break;
                }
                w->prep_lo = lo;
                pthread_mutex_unlock(&w->qlock);

                const char *step = "open";
                int r = 0;
                if (fd_seg != seg) {
                        if (fd >= 0)
                                io->close(io->ctx, fd);
                        fd = io->open(io->ctx, path, O_RDWR, 0);
                        fd_seg = fd < 0 ? 0 : seg;
                        r = fd < 0 ? fd : 0;
                }
                uint64_t off = lo;
                if (r == 0)
                        step = "write zeros to";
                while (r == 0 && off < hi) {
                        size_t n = (size_t)WALU_MIN((uint64_t)LOCAL_PREP_PIECE, hi - off);
                        r = local_io_write_full(io, fd, zero, n, off);
                        off += n;
                }
                pthread_mutex_lock(&w->qlock);
                w->prep_lo = 0;
                pthread_cond_broadcast(&w->qcond);
                pthread_mutex_unlock(&w->qlock);
                if (r == 0) {
                        step = "fdatasync";
                        r = io->fdatasync(io->ctx, fd);
                }
                pthread_mutex_lock(&w->qlock);
                if (r < 0) {
                        walu_log(WAL_LOG_WARNING, "local: preparing %s: cannot %s it at offset %"
                                 PRIu64 ": %s; blocks are no longer prepared ahead (appends "
                                 "go on into the preallocated space)", path, step, lo,
                                 strerror(-r));
                        break;
                }
                if (w->prep_seg == seg)
                        w->prep_end = hi;
        }
        w->prep_lo = 0;
        w->prep_sleeping = false;
        pthread_cond_broadcast(&w->qcond);
        pthread_mutex_unlock(&w->qlock);
        if (fd >= 0)
                io->close(io->ctx, fd);
        free(path);
        free(zero);
        return NULL;
}

/* Start the preparer (caller holds qlock; once). */
static void prep_start(struct writer *w)
{
        w->prep_started = true;
        if (pthread_create(&w->prep_thread, NULL, prep_main, w) != 0) {
                w->prep_started = false;
                w->prep_on = false;
                walu_log(WAL_LOG_WARNING, "local: %s: cannot start the preparer thread; "
                         "appends write into preallocated space", w->c->dir);
        }
}

/* Stop and join the preparer (writer_stop; no lock held). */
static void prep_stop(struct writer *w)
{
        pthread_mutex_lock(&w->qlock);
        bool started = w->prep_started;
        w->prep_stop = true;
        pthread_cond_signal(&w->prep_cond);
        pthread_mutex_unlock(&w->qlock);
        if (started)
                pthread_join(w->prep_thread, NULL);
        w->prep_started = false;
}

/* ---- Writer: I/O ---- */

/* Put @b (just taken from the queue) at the end of the in-flight list.
 * Caller holds qlock, so batches enter it in LSN order whichever lane took
 * them. */
static void fl_push(struct writer *w, struct batch *b)
{
        b->next = NULL;
        if (w->fl_tail)
                w->fl_tail->next = b;
        else
                w->fl_head = b;
        w->fl_tail = b;
        w->n_inflight++;
}

/* Queue the write of what is left of @b, linked to an fdatasync. */
static void uring_submit_batch(struct writer *w, struct batch *b)
{
        struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
        if (!sqe) {
                io_uring_submit(&w->ring);
                sqe = io_uring_get_sqe(&w->ring);
        }
        WAL_ASSERT(sqe);
        int fd = w->ufd[b->ufd_slot];
        io_uring_prep_write(sqe, fd, b->buf + b->written,
                            (unsigned)(b->len - b->written), b->off + b->written);
        sqe->flags |= IOSQE_IO_LINK;
        io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)b);
        sqe = io_uring_get_sqe(&w->ring);
        if (!sqe) {
                /* Never split a link across submits: the ring is sized for
                 * two entries per batch, so this cannot happen. */
                WAL_BUG("local: io_uring submission queue full");
        }
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)b | TAG_SYNC);
        b->ops = 2;
        b->write_err = 0;
        b->sync_res = 0;
}

/* Both completions of @b are in: decide durable, retry or fail. */
static void uring_settle(struct writer *w, struct batch *b)
{
        const char *path = w->active ? w->active->path : w->c->dir;
        if (b->write_err) {
                b->err = b->write_err;
                writer_fail(w, b->err, "local: write to %s at offset %" PRIu64 " failed: %s",
                            path, b->off + b->written, strerror(-b->err));
        } else if (b->sync_res < 0 && b->sync_res != -ECANCELED) {
                b->err = -EIO;
                writer_fail(w, -EIO, "local: fdatasync of %s failed: %s", path,
                            strerror(-b->sync_res));
        } else if (b->written < b->len) {
                if (b->last_write == 0) {
                        b->err = -EIO;
                        writer_fail(w, -EIO, "local: write to %s at offset %" PRIu64
                                    " made no progress", path, b->off + b->written);
                } else {
                        /* Short write: the chain broke, the fdatasync was
                         * cancelled.  Write the rest and sync again. */
                        uring_submit_batch(w, b);
                        return;
                }
        } else if (b->sync_res == -ECANCELED) {
                /* Whole write, cancelled sync: sync again (linked to an
                 * empty remainder is pointless; a lone fsync suffices since
                 * the write has completed). */
                struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
                if (!sqe) {
                        io_uring_submit(&w->ring);
                        sqe = io_uring_get_sqe(&w->ring);
                }
                WAL_ASSERT(sqe);
                io_uring_prep_fsync(sqe, w->ufd[b->ufd_slot], IORING_FSYNC_DATASYNC);
                io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)b | TAG_SYNC);
                b->ops = 1;
                b->sync_res = 0;
                return;
        }
        w->uring_inflight--;
        w->ufd_used &= ~(1u << b->ufd_slot);
        pthread_mutex_lock(&w->qlock);
        b->io_done = true;
        pthread_mutex_unlock(&w->qlock);
}

static void writer_kick(struct writer *w)
{
        uint64_t one = 1;
        while (write(w->efd, &one, sizeof(one)) < 0 && errno == EINTR)
                ;
}

static void writer_drain_efd(struct writer *w)
{
        uint64_t v;
        while (read(w->efd, &v, sizeof(v)) < 0 && errno == EINTR)
                ;
}

/* Nothing in flight: wait for an appender's kick or the deferred appends'
 * timer the cheapest way, a plain poll on both fds, whatever the write
 * path.  (BENCHMARKS.md, run of 14:39: with this wait the only difference,
 * 1 writer was 0.80x REF-SYNC under local.io=auto waiting in io_uring and
 * 0.95x under local.io=sync.)  @returns false if only the timer ended the
 * wait. */
static bool writer_idle(struct writer *w)
{
        struct pollfd p[2] = { { .fd = w->efd, .events = POLLIN },
                               { .fd = w->tfd, .events = POLLIN } };
        int n;
        while ((n = poll(p, 2, -1)) < 0 && errno == EINTR)
                ;
        if (n > 0 && (p[1].revents & POLLIN)) {
                uint64_t v;
                while (read(w->tfd, &v, sizeof(v)) < 0 && errno == EINTR)
                        ;
                pthread_mutex_lock(&w->qlock);
                if (w->timer_at <= walu_monotonic_ns())
                        w->timer_at = 0;
                pthread_mutex_unlock(&w->qlock);
        }
        if (n > 0 && (p[0].revents & POLLIN)) {
                writer_drain_efd(w);
                return true;
        }
        return false;
}

/*
 * Deferred appends.  An append from a thread that flushed after its previous
 * append on this writer does not kick a sleeping writer thread: its own
 * flush() will most likely write it (see local_flush), and a kick would wake
 * the writer thread for nothing on every record.  In case that flush never
 * comes, the append makes sure the writer's timer (w->tfd, polled beside the
 * eventfd) fires at most LOCAL_DEFER_NS after it; the timer is re-armed only
 * when less than half of that is left, so a lone blocking appender pays one
 * timerfd_settime() per LOCAL_DEFER_NS / 2 at most and the writer thread
 * sleeps without a timeout until there is work.  Caller holds qlock.
 */
#define LOCAL_DEFER_NS 2000000ull
static void writer_defer(struct writer *w)
{
        uint64_t now = walu_monotonic_ns();
        if (w->timer_at > now + LOCAL_DEFER_NS / 2)
                return;
        uint64_t at = now + LOCAL_DEFER_NS;
        struct itimerspec its = {
                .it_value = { .tv_sec = (time_t)(at / 1000000000u),
                              .tv_nsec = (long)(at % 1000000000u) },
        };
        if (timerfd_settime(w->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) {
                /* Cannot happen with a valid fd and time; wake it instead. */
                w->sleeping = false;
                writer_kick(w);
                return;
        }
        w->timer_at = at;
}

static void uring_arm_efd(struct writer *w)
{
        struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
        if (!sqe) {
                io_uring_submit(&w->ring);
                sqe = io_uring_get_sqe(&w->ring);
        }
        WAL_ASSERT(sqe);
        /* A one-shot poll, not a read: it leaves the counter alone, so the
         * idle writer can also wait on the eventfd directly (writer_idle). */
        io_uring_prep_poll_add(sqe, w->efd, POLLIN);
        io_uring_sqe_set_data64(sqe, TAG_EFD);
}

static void uring_reap(struct writer *w)
{
        struct io_uring_cqe *cqe;
        const struct local_io_ops *io = w->c->io;
        while (io_uring_peek_cqe(&w->ring, &cqe) == 0) {
                uint64_t ud = io_uring_cqe_get_data64(cqe);
                int res = cqe->res;
                io_uring_cqe_seen(&w->ring, cqe);
                if (ud == TAG_EFD) {
                        writer_drain_efd(w);
                        uring_arm_efd(w);
                        continue;
                }
                struct batch *b = (struct batch *)(uintptr_t)(ud & ~TAG_SYNC);
                if (ud & TAG_SYNC) {
                        if (io->uring_result)
                                res = io->uring_result(io->ctx, LOCAL_IO_FDATASYNC,
                                                       w->ufd[b->ufd_slot], 0, res);
                        b->sync_res = res;
                } else {
                        size_t want = b->len - b->written;
                        if (io->uring_result)
                                res = io->uring_result(io->ctx, LOCAL_IO_WRITE,
                                                       w->ufd[b->ufd_slot], want, res);
                        if (res < 0) {
                                b->write_err = res;
                        } else {
                                if ((size_t)res > want)
                                        res = (int)want;
                                b->written += (size_t)res;
                                b->last_write = res;
                        }
                }
                if (--b->ops == 0)
                        uring_settle(w, b);
        }
}

#define LOCAL_ROOM_NS 250000000ull

/* The machine's busy CPU time so far (user, nice, system, irq, softirq of
 * all CPUs, from /proc/stat), in ns; 0 if it cannot be read. */
static uint64_t machine_busy_ns(void)
{
        char buf[256];
        int fd = open("/proc/stat", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n < 5 || memcmp(buf, "cpu ", 4) != 0)
                return 0;
        buf[n] = '\0';
        /* cpu  user nice system idle iowait irq softirq steal ... */
        unsigned long long v[7] = { 0 };
        char *p = buf + 4, *end;
        for (int i = 0; i < 7; i++, p = end) {
                v[i] = strtoull(p, &end, 10);
                if (end == p)
                        return 0;
        }
        unsigned long long ticks = v[0] + v[1] + v[2] + v[5] + v[6];
        long hz = sysconf(_SC_CLK_TCK);
        return hz > 0 ? (uint64_t)ticks * (1000000000ull / (uint64_t)hz) : 0;
}

/* Test hooks (local.h). */
static _Atomic bool g_early_always;
static _Atomic uint64_t g_early_wakes;

void local_early_wake_always(bool on)
{
        atomic_store(&g_early_always, on);
}

uint64_t local_early_wakes(void)
{
        return atomic_load(&g_early_wakes);
}

/*
 * Do the CPUs have room for polling waiters?  Polling burns CPU time that
 * would otherwise be idle during the fdatasync; when other processes want
 * the CPUs it is taken from them, and (with the scheduler's per-session
 * groups) from this process's own share, so the writer thread itself gets
 * the CPU later: measured on the shared 2-vCPU VM, early wake-ups lost
 * 5-45 % of the 16-writer throughput while other engineers' builds ran
 * (load average 7-9).  So, at most every LOCAL_ROOM_NS, compare the
 * machine's busy time with this process's CPU time: if the rest of the
 * machine used more than a quarter of a CPU meanwhile, no early wake-ups
 * until the next look.  Unreadable /proc/stat: none.
 */
static bool early_room(struct writer *w)
{
        if (atomic_load_explicit(&g_early_always, memory_order_relaxed))
                return true;
        uint64_t now = walu_monotonic_ns();
        if (w->room_at && now - w->room_at < LOCAL_ROOM_NS)
                return atomic_load_explicit(&w->room, memory_order_relaxed);
        struct timespec ts;
        uint64_t self = clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0
                                ? (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec
                                : 0;
        uint64_t busy = machine_busy_ns();
        bool room = false;
        if (w->room_at && busy && w->room_busy_ns && busy >= w->room_busy_ns) {
                uint64_t all = busy - w->room_busy_ns;
                uint64_t ours = self - w->room_self_ns;
                uint64_t others = all > ours ? all - ours : 0;
                room = others < (now - w->room_at) / 4;
        }
        w->room_at = now;
        w->room_busy_ns = busy;
        w->room_self_ns = self;
        atomic_store_explicit(&w->room, room, memory_order_relaxed);
        return room;
}

/*
 * Early wake (local.early_wake), called by the writer thread between a
 * batch's write and its fdatasync: if blocking appenders sleep on the batch
 * and there are at most w->early_max of them, wake one; it wakes the others
 * (local_flush), and they poll for the batch's completion instead of
 * sleeping until it.  So the wake-ups (about 4 us each on the 2-vCPU VMs,
 * one after the other in the waker) overlap the fdatasync instead of
 * following it, and the completion needs no futex wake at all.
 */
static void early_wake(struct writer *w, struct batch *b)
{
        struct flush_slot *sl = &w->slots[b->bseq % LOCAL_FLUSH_SLOTS];
        uint32_t n = atomic_load(&sl->sleepers);
        uint32_t polling = atomic_load(&sl->pollers);
        if (!w->early_max || (!n && !polling) || n > w->early_max || !early_room(w))
                return;
        /* Its waiters come back at once (batch_retire, writer_gather). */
        b->woken_early = true;
        atomic_fetch_add_explicit(&g_early_wakes, 1, memory_order_relaxed);
        if (!n)
                return;
        atomic_store(&w->early_bseq, b->bseq);
        (void)futex_op(&sl->word, FUTEX_WAKE_PRIVATE, 1, NULL);
}

/* May flush() callers poll rather than sleep (early_poll)?  The writer
 * thread's last look (early_room), read without a lock. */
static bool early_room_seen(struct writer *w)
{
        return atomic_load_explicit(&g_early_always, memory_order_relaxed) ||
               atomic_load_explicit(&w->room, memory_order_relaxed);
}

/* Plain pwrite + fdatasync of @b through @fd (on the file @path, borrowed:
 * for messages), through the I/O table.  Sets b->err on failure (after
 * writer_fail, so a batch completed after this one sees the failure); the
 * caller marks it io_done under qlock.  @early: the writer thread's
 * inline write (early_wake, and the average fdatasync time). */
static void sync_write_batch(struct writer *w, struct batch *b, int fd, const char *path,
                             bool early)
{
        const struct local_io_ops *io = w->c->io;
        while (b->written < b->len) {
                ssize_t n = io->pwrite(io->ctx, fd, b->buf + b->written, b->len - b->written,
                                       (off_t)(b->off + b->written));
                if (n <= 0) {
                        int e = n < 0 ? (int)n : -EIO;
                        writer_fail(w, e, "local: write to %s at offset %" PRIu64
                                    " failed: %s", path, b->off + b->written,
                                    n < 0 ? strerror((int)-n) : "no progress");
                        b->err = e;
                        return;
                }
                b->written += (size_t)n;
        }
        uint64_t t0 = 0;
        if (early) {
                early_wake(w, b);
                t0 = walu_monotonic_ns();
        }
        int r = io->fdatasync(io->ctx, fd);
        if (early) {
                uint64_t d = walu_monotonic_ns() - t0;
                uint64_t avg = atomic_load_explicit(&w->sync_avg_ns, memory_order_relaxed);
                avg = avg ? avg - avg / 8 + d / 8 : d;
                atomic_store_explicit(&w->sync_avg_ns, avg, memory_order_relaxed);
        }
        if (r < 0) {
                writer_fail(w, -EIO, "local: fdatasync of %s failed: %s", path, strerror(-r));
                b->err = -EIO;
        }
}

/*
 * Complete in-flight batches from the head while their I/O is over: a
 * batch completes only after every batch before it, and with the channel's
 * failure if any batch before it (or it) failed.  Either lane may call this
 * after marking its batches io_done (@mine, if not NULL, is marked here,
 * and @inline_over ends the writer thread's inline write, both in the same
 * lock round); one caller at a time completes (`completing`), and it looks
 * at the head again after each batch, so a batch marked done meanwhile by
 * the other lane is not left behind.
 */
static void writer_complete(struct writer *w, struct batch *mine, bool inline_over)
{
        struct chan *c = w->c;
        pthread_mutex_lock(&w->qlock);
        if (mine)
                mine->io_done = true;
        if (inline_over)
                w->thread_inline = false;
        if (w->completing) {
                pthread_mutex_unlock(&w->qlock);
                return;
        }
        w->completing = true;
        while (w->fl_head && w->fl_head->io_done) {
                struct batch *b = w->fl_head;
                w->fl_head = b->next;
                if (!w->fl_head)
                        w->fl_tail = NULL;
                bool lane2 = b->lane2;
                int err = b->err ? b->err : w->failed;
                pthread_mutex_unlock(&w->qlock);
                if (!err) {
                        pthread_mutex_lock(&c->lock);
                        struct local_seg *s = w->active;
                        (void)local_seg_index_note(s, b->first_lsn, b->off);
                        s->end = b->off + b->len;
                        s->last_lsn = b->first_lsn + b->n - 1;
                        c->durable_lsn = s->last_lsn;
                        chan_signal_scanners(c);
                        pthread_mutex_unlock(&c->lock);
                }
                batch_callbacks(w, b, err);
                pthread_mutex_lock(&w->qlock);
                uint64_t bseq = batch_retire(w, b);
                /* Counted in flight until completed: a segment roll waits
                 * for n_inflight 0, and this batch's segment is w->active
                 * until then. */
                w->n_inflight--;
                if (lane2)
                        w->lane_inflight--;
                bool more = w->fl_head && w->fl_head->io_done;
                if (!more)
                        w->completing = false;
                pthread_mutex_unlock(&w->qlock);
                flush_wake(w, bseq);
                if (!more)
                        return;
                pthread_mutex_lock(&w->qlock);
        }
        w->completing = false;
        pthread_mutex_unlock(&w->qlock);
}

/* ---- Writer thread ---- */

/*
 * Before the writer sleeps with nothing in flight, it watches the queue for
 * a short while: a blocking appender woken by the last completion appends
 * again within microseconds, and catching that without a sleep saves a
 * wake-up (16-21 us on the 2-vCPU VMs, perf-anchors.md section 1), a sixth
 * of a whole fdatasync.  Bounded, so an idle channel costs nothing.
 */

#if defined(__x86_64__) || defined(__i386__)
#  define cpu_relax() __builtin_ia32_pause()
#else
#  define cpu_relax() atomic_signal_fence(memory_order_seq_cst)
#endif

static bool writer_spin(struct writer *w, uint64_t seen)
{
        uint64_t until = walu_monotonic_ns() + w->spin_ns;
        do {
                for (int i = 0; i < 64; i++) {
                        if (atomic_load_explicit(&w->appended, memory_order_acquire) != seen)
                                return true;
                        cpu_relax();
                }
        } while (walu_monotonic_ns() < until);
        return false;
}

/*
 * How many records a batch taken for blocking appenders should hold
 * (caller holds qlock): as many as the last one completed; while lane 2 is
 * in use (it took batches in the last millisecond), half of the two lanes'
 * last batches together, so the blocked appenders split into two groups
 * whose fdatasyncs overlap instead of one large batch and a straggler.
 */
static size_t gather_want(const struct writer *w, uint64_t now)
{
        if (w->lane_last_ns && now - w->lane_last_ns < 1000000u)
                return WALU_MAX((size_t)1, (w->thread_last_n + w->lane_last_n + 1) / 2);
        return w->gather_n;
}

/*
 * Gathering (caller holds qlock; nothing in flight but lane 2's).  Blocking appenders
 * woken by the last completion come back one by one (16 or 64 threads on 2
 * vCPUs take tens of microseconds); taking the batch as soon as the first
 * is back would flush it nearly alone and leave the rest for the next
 * fdatasync.  So while blocking appenders are active (a flush() in the last
 * millisecond) and the open batch holds fewer records than the last one
 * completed, wait for the difference, at most LOCAL_GATHER_NS after the
 * first look, yielding the CPU to them meanwhile.  If the last batch's
 * waiters were polling (gather_early), wait (at most LOCAL_GATHER_NS) for
 * the first of them to be back too, and count the gathering time from it;
 * a wait that runs out ends that.
 * @returns true to wait (*need records more, until *until).
 */
#define LOCAL_GATHER_NS 50000ull
static bool writer_gather(struct writer *w, uint64_t *until, uint64_t *need)
{
        bool lane_only = w->io_owner == OWNER_THREAD && w->n_inflight == w->lane_inflight;
        size_t have = w->open ? w->open->n : 0;
        if ((w->io_owner != OWNER_NONE && !lane_only) || w->failed || w->closing ||
            w->ready_head || (!have && !w->gather_early))
                return false;
        uint64_t now = walu_monotonic_ns();
        size_t want = gather_want(w, now);
        if (have >= want)
                return false;
        if (now - w->last_flush_ns > 1000000u)
                return false;
        /* Polled callers not back yet: wait for the first (at most
         * LOCAL_GATHER_NS), then gather for the usual time from it. */
        if (!have != w->gather_first) {
                w->gather_first = !have;
                *until = 0;
        }
        if (!*until)
                *until = now + LOCAL_GATHER_NS;
        if (now >= *until) {
                w->gather_early = false;
                return false;
        }
        *need = have ? want - have : 1;
        return true;
}

static void *writer_main(void *arg)
{
        struct writer *w = arg;
        pthread_setname_np(pthread_self(), "wal-local-write");
        if (w->uring) {
                uring_arm_efd(w);
                io_uring_submit(&w->ring);
        }
        bool napped = false;     /* the last sleep ended by the timer */
        uint64_t gather_until = 0;
        for (;;) {
                struct batch *take[LOCAL_INFLIGHT_MAX];
                int nt = 0;
                struct batch *fail_list = NULL;
                int fail_err = 0;
                bool exit_now = false;

                pthread_mutex_lock(&w->qlock);
                if (w->io_owner == OWNER_THREAD && w->n_inflight == 0)
                        w->io_owner = OWNER_NONE;
                /* A flush() caller writing its batches owns the queue's
                 * head; it kicks this thread when it leaves work behind. */
                bool caller_io = w->io_owner == OWNER_CALLER;
                uint64_t gather_need = 0;
                if (!caller_io && writer_gather(w, &gather_until, &gather_need)) {
                        uint64_t seen0 = atomic_load(&w->appended);
                        pthread_mutex_unlock(&w->qlock);
                        while (atomic_load(&w->appended) - seen0 < gather_need &&
                               walu_monotonic_ns() < gather_until)
                                sched_yield();
                        continue;
                }
                gather_until = 0;
                /* While lane 2 is in use, this thread writes one batch at a
                 * time inline too: the lanes' batches then overlap as two
                 * plain fdatasyncs (no io_uring beside lane 2). */
                bool lane_on = w->lane_busy || w->lane_inflight > 0;
                int thread_max = lane_on ? 1 : WALU_MIN(w->inflight_max, w->ufd_n);
                bool inline_take = false;
                if (caller_io) {
                        /* nothing to take */
                } else if (w->failed && w->n_inflight > 0) {
                        /* Complete what is in flight first (in order),
                         * then fail the queue. */
                } else if (w->failed) {
                        /* Fail everything queued. */
                        fail_err = w->failed;
                        if (w->open && w->open->n) {
                                if (w->ready_tail)
                                        w->ready_tail->next = w->open;
                                else
                                        w->ready_head = w->open;
                                w->ready_tail = w->open;
                                w->open = NULL;
                        }
                        fail_list = w->ready_head;
                        w->ready_head = w->ready_tail = NULL;
                        w->queued_bytes = 0;
                        pthread_cond_broadcast(&w->qcond);
                } else {
                        while (w->n_inflight - w->lane_inflight + nt < thread_max) {
                                struct batch *b = w->ready_head;
                                if (b) {
                                        if (b->new_seg && w->n_inflight + nt > 0)
                                                break;  /* drain before rolling */
                                        w->ready_head = b->next;
                                        if (!w->ready_head)
                                                w->ready_tail = NULL;
                                } else if (w->open && w->open->n) {
                                        b = w->open;
                                        if (b->new_seg && w->n_inflight + nt > 0)
                                                break;
                                        w->open = NULL;
                                } else {
                                        break;
                                }
                                w->queued_bytes -= b->len;
                                take[nt++] = b;
                                if (b->new_seg)
                                        break;
                        }
                        bool queue_empty = !w->ready_head && !(w->open && w->open->n);
                        /* A lone batch with nothing in flight and nothing
                         * behind it gains nothing from io_uring: write it
                         * inline (so with lane 2 in use). */
                        bool lone = nt == 1 && w->uring_inflight == 0 &&
                                    (queue_empty || lane_on);
                        inline_take = !w->uring || (w->adaptive && lone);
                        if (nt) {
                                size_t n = 0;
                                for (int i = 0; i < nt; i++) {
                                        fl_push(w, take[i]);
                                        n += take[i]->n;
                                }
                                w->thread_last_n = n;
                                /* Lane 2 may write behind an inline write
                                 * in the current segment only. */
                                w->thread_inline = inline_take && nt == 1 &&
                                                   !take[0]->new_seg && w->caller_io;
                                w->io_owner = OWNER_THREAD;
                                pthread_cond_broadcast(&w->qcond);
                        }
                }
                bool queue_empty = !w->ready_head && !(w->open && w->open->n);
                /* The in-flight list is shared with lane 2 and a flush()
                 * caller owning the I/O, under qlock. */
                bool own = w->io_owner == OWNER_THREAD;
                if (w->closing && queue_empty && !own && !caller_io && !fail_list)
                        exit_now = true;
                bool did_work = nt > 0 || fail_list != NULL;
                uint64_t seen = atomic_load_explicit(&w->appended, memory_order_acquire);
                bool spin = w->spin_ns && !did_work && !exit_now && !own && !w->failed &&
                            !w->closing && !caller_io && !napped;
                /* About to sleep (the ring wait covers completions; with
                 * nothing in flight, writer_idle() until an append kicks
                 * it, a deferred append's timer fires or close). */
                if (!did_work && !exit_now && !spin)
                        w->sleeping = true;
                pthread_mutex_unlock(&w->qlock);
                if (spin) {
                        /* Nothing in flight: watch for work, then sleep
                         * unless some arrived meanwhile. */
                        if (writer_spin(w, seen))
                                continue;
                        pthread_mutex_lock(&w->qlock);
                        bool more = w->ready_head || (w->open && w->open->n) || w->closing;
                        if (!more)
                                w->sleeping = true;
                        pthread_mutex_unlock(&w->qlock);
                        if (more)
                                continue;
                }

                while (fail_list) {
                        struct batch *b = fail_list;
                        fail_list = b->next;
                        batch_finish(w, b, fail_err);
                }
                if (exit_now)
                        break;

                for (int i = 0; i < nt; i++) {
                        struct batch *b = take[i];
                        if (b->new_seg && writer_new_segment(w, b) < 0) {
                                b->err = w->failed ? w->failed : -EIO;
                                writer_complete(w, b, false);
                                continue;
                        }
                        if (inline_take) {
                                sync_write_batch(w, b, w->active_fd, w->active->path, true);
                                writer_complete(w, b, true);
                        } else {
                                /* A free slot: at most ufd_n batches are
                                 * in flight (the take above). */
                                int slot = 0;
                                while (w->ufd_used & (1u << slot))
                                        slot++;
                                WAL_ASSERT(slot < w->ufd_n);
                                w->ufd_used |= 1u << slot;
                                b->ufd_slot = slot;
                                w->uring_inflight++;
                                uring_submit_batch(w, b);
                        }
                }
                napped = false;
                if (!did_work && (!own || w->uring_inflight == 0)) {
                        napped = !writer_idle(w);
                        if (w->uring)
                                uring_reap(w);
                } else if (w->uring) {
                        /* Sleep only when this round did nothing: the
                         * eventfd poll (appenders) or a completion wakes it. */
                        if (did_work)
                                io_uring_submit(&w->ring);
                        else
                                io_uring_submit_and_wait(&w->ring, 1);
                        uring_reap(w);
                }
                /* (An inline write completed itself above.) */
                if (own && !(inline_take && nt))
                        writer_complete(w, NULL, false);
        }
        return NULL;
}

static void writer_stop(struct writer *w)
{
        if (!w)
                return;
        if (w->thread_started) {
                pthread_mutex_lock(&w->qlock);
                w->closing = true;
                pthread_mutex_unlock(&w->qlock);
                writer_kick(w);
                pthread_join(w->thread, NULL);
        }
        prep_stop(w);
        if (w->uring)
                io_uring_queue_exit(&w->ring);
        if (w->efd >= 0)
                close(w->efd);
        if (w->tfd >= 0)
                close(w->tfd);
        if (w->active_fd >= 0)
                w->c->io->close(w->c->io->ctx, w->active_fd);
        if (w->lane_fd >= 0)
                w->c->io->close(w->c->io->ctx, w->lane_fd);
        for (int i = 1; i < LOCAL_INFLIGHT_MAX; i++)
                if (w->ufd[i] >= 0)
                        w->c->io->close(w->c->io->ctx, w->ufd[i]);
        while (w->free_list) {
                struct batch *b = w->free_list;
                w->free_list = b->next;
                batch_destroy(b);
        }
        if (w->open)
                batch_destroy(w->open);
        pthread_mutex_destroy(&w->qlock);
        pthread_cond_destroy(&w->qcond);
        pthread_cond_destroy(&w->prep_cond);
        free(w);
}

static atomic_bool fallback_logged;

static int writer_start(struct chan *c, const struct local_opener *o, wal_error **reterr)
{
        struct writer *w = calloc(1, sizeof(*w));
        if (!w)
                return wal_error_set(reterr, -ENOMEM, 0, "local: out of memory");
        w->c = c;
        w->efd = -1;
        w->tfd = -1;
        w->active_fd = -1;
        w->lane_fd = -1;
        for (int i = 0; i < LOCAL_INFLIGHT_MAX; i++)
                w->ufd[i] = -1;
        w->inflight_max = o->inflight;
        w->batch_bytes = o->batch_bytes;
        w->seg_bytes = o->seg_bytes;
        w->spin_ns = (uint64_t)o->spin_us * 1000u;
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        w->early_max = (unsigned)o->early_wake * (unsigned)(ncpu > 0 ? ncpu : 1);
        w->caller_io = o->io != IO_URING;
        w->lane2 = o->lanes > 1;
        w->prep_on = o->prepare;
        pthread_mutex_init(&w->qlock, NULL);
        pthread_cond_init(&w->qcond, NULL);
        pthread_cond_init(&w->prep_cond, NULL);

        /* The last segment is the active one. */
        struct local_seg *s = c->segs[c->n_segs - 1];
        int fd = c->io->open(c->io->ctx, s->path, O_RDWR, 0);
        if (fd < 0) {
                writer_stop(w);
                return wal_error_set(reterr, fd, 0, "local: cannot open segment %s: %s",
                                     s->path, strerror(-fd));
        }
        w->active_fd = fd;
        w->active = s;
        w->next_lsn = s->last_lsn + 1;
        w->completed_lsn = s->last_lsn;
        w->tail_off = s->end;
        w->tail_seg_first = s->first_lsn;
        w->tail_seg_size = s->size;

        w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->efd < 0) {
                int e = -errno;
                writer_stop(w);
                return wal_error_set(reterr, e, 0, "local: eventfd: %s", strerror(-e));
        }
        w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (w->tfd < 0) {
                int e = -errno;
                writer_stop(w);
                return wal_error_set(reterr, e, 0, "local: timerfd: %s", strerror(-e));
        }
        if (o->io != IO_SYNC) {
                unsigned entries = 4;
                while (entries < (unsigned)(2 * o->inflight + 4))
                        entries *= 2;
                int r = c->io->uring_probe ? c->io->uring_probe(c->io->ctx) : 0;
                if (r == 0)
                        r = io_uring_queue_init(entries, &w->ring, 0);
                if (r == 0) {
                        w->uring = true;
                        w->adaptive = o->io == IO_AUTO;
                } else if (o->io == IO_URING) {
                        writer_stop(w);
                        return wal_error_set(reterr, r, 0,
                                             "local: io_uring setup failed (%s) and local.io=uring",
                                             strerror(-r));
                } else if (!atomic_exchange(&fallback_logged, true)) {
                        walu_log(WAL_LOG_WARNING,
                                 "local: io_uring unavailable (%s): writing with pwrite+fdatasync",
                                 strerror(-r));
                }
        }
        if (!w->uring)
                w->inflight_max = 1;
        if (w->uring)
                walu_log(WAL_LOG_INFO, "local: %s writes with io_uring (%u entries%s)", c->dir,
                         w->ring.sq.ring_entries, w->adaptive ? ", adaptive" : "");
        else
                walu_log(WAL_LOG_INFO, "local: %s writes with pwrite+fdatasync (%s)", c->dir,
                         o->io == IO_SYNC ? "local.io=sync" : "io_uring unavailable");
        ufd_open(w);
        int r = pthread_create(&w->thread, NULL, writer_main, w);
        if (r != 0) {
                writer_stop(w);
                return wal_error_set(reterr, -r, 0, "local: cannot start writer thread: %s",
                                     strerror(r));
        }
        w->thread_started = true;
        c->w = w;
        return 0;
}

/* ---- Append ---- */

static struct local_wal *wal_from_base(struct walimpls_wal *b)
{
        WAL_ASSERT(b->ops == &local_wal_ops);
        return (struct local_wal *)b;
}

/* The writer a flush() caller is writing batches for on this thread. */
static _Thread_local struct writer *tls_leading;
/* The writer this thread last called flush() on, and whether it did after
 * this thread's last append (to it). */
static _Thread_local struct writer *tls_flusher;
static _Thread_local bool tls_flushed;

/* Seal the open batch onto the ready list.  Caller holds qlock. */
static void seal_open(struct writer *w)
{
        struct batch *b = w->open;
        if (!b)
                return;
        w->open = NULL;
        if (!b->n) {
                batch_put(w, b);
                return;
        }
        if (w->ready_tail)
                w->ready_tail->next = b;
        else
                w->ready_head = b;
        w->ready_tail = b;
}

static int local_append(struct walimpls_wal *base, wal_msg *msg, walimpls_append_done_fn *done,
                        void *arg)
{
        WAL_ASSERT_RETURN(base && msg && done, -EINVAL);
        struct local_wal *lw = wal_from_base(base);
        struct chan *c = lw->c;
        if (base->access != WAL_ACCESS_RW)
                return -EROFS;
        if (atomic_load(&c->owner_term) > base->term)
                return -ESTALE;
        struct writer *w = c->w;
        WAL_ASSERT(w);

        size_t plen = 0;
        const void *payload = wal_msg_payload(msg, &plen);
        size_t elen = walu_envelope_size(msg);
        if (elen > WALU_ENVELOPE_MAX || plen > LOCAL_FRAME_MAX_BODY ||
            elen + plen > LOCAL_FRAME_MAX_BODY)
                return -EMSGSIZE;
        size_t body = elen + plen;
        size_t fsize = (size_t)local_frame_size(body);
        /* Only the envelope is staged; the CRC chains over envelope then
         * payload, and the payload is copied once, into the batch. */
        uint8_t *env = scratch_get(elen ? elen : 1);
        if (!env)
                return -ENOMEM;
        int n = walu_envelope_encode(msg, env, elen);
        if (n < 0)
                return n;
        WAL_ASSERT((size_t)n == elen);
        uint32_t crc = walu_crc32c(0, env, elen);
        if (plen)
                crc = walu_crc32c(crc, payload, plen);

        pthread_mutex_lock(&w->qlock);
        /* Back-pressure, except on the thread doing the I/O (an append
         * from a completion callback must not wait for its own thread). */
        while (!w->failed && !w->closing && w->queued_bytes > LOCAL_QUEUE_MAX &&
               !pthread_equal(pthread_self(), w->thread) && tls_leading != w)
                pthread_cond_wait(&w->qcond, &w->qlock);
        /* Never place a frame where the preparer is writing zeros (any
         * thread may wait: the preparer waits for nothing). */
        while (!w->failed && !w->closing && prep_blocks(w, fsize))
                pthread_cond_wait(&w->qcond, &w->qlock);
        if (w->failed || w->closing) {
                int r = w->failed ? w->failed : -ESHUTDOWN;
                pthread_mutex_unlock(&w->qlock);
                return r;
        }
        if (atomic_load(&c->owner_term) > base->term) {
                pthread_mutex_unlock(&w->qlock);
                return -ESTALE;
        }
        /* Place the frame: roll to a new segment when it does not fit. */
        if (w->tail_off + fsize > w->tail_seg_size && w->tail_off > LOCAL_SEG_HDR_SIZE) {
                seal_open(w);
                w->tail_seg_first = w->next_lsn;
                w->tail_seg_size = WALU_MAX(w->seg_bytes, LOCAL_SEG_HDR_SIZE + (uint64_t)fsize);
                w->tail_off = LOCAL_SEG_HDR_SIZE;
                w->pending_new_seg = true;
        } else if (w->open && w->open->len && w->open->len + fsize > w->batch_bytes) {
                seal_open(w);
        }
        struct batch *b = w->open;
        if (!b) {
                b = batch_get(w);
                if (!b) {
                        pthread_mutex_unlock(&w->qlock);
                        return -ENOMEM;
                }
                b->first_lsn = w->next_lsn;
                b->bseq = ++w->last_bseq;
                b->off = w->tail_off;
                b->seg_first = w->tail_seg_first;
                b->seg_size = w->tail_seg_size;
                b->new_seg = w->pending_new_seg;
                w->pending_new_seg = false;
                w->open = b;
        }
        if (b->len + fsize > b->cap) {
                size_t cap = WALU_MAX(b->cap * 2, b->len + fsize);
                cap = WALU_MAX(cap, (size_t)64 * 1024);
                uint8_t *nb = realloc(b->buf, cap);
                if (!nb) {
                        pthread_mutex_unlock(&w->qlock);
                        return -ENOMEM;
                }
                b->buf = nb;
                b->cap = cap;
        }
        if (b->n == b->cap_dones) {
                size_t cap = b->cap_dones ? b->cap_dones * 2 : 64;
                struct rec_done *nd = realloc(b->dones, cap * sizeof(*nd));
                if (!nd) {
                        pthread_mutex_unlock(&w->qlock);
                        return -ENOMEM;
                }
                b->dones = nd;
                b->cap_dones = cap;
        }
        uint8_t *dst = b->buf + b->len;
        memcpy(dst + LOCAL_FRAME_HDR_SIZE, env, elen);
        if (plen)
                memcpy(dst + LOCAL_FRAME_HDR_SIZE + elen, payload, plen);
        local_frame_seal(dst, w->next_lsn, (uint32_t)elen, (uint32_t)plen, crc);
        b->len += fsize;
        b->dones[b->n++] = (struct rec_done){ done, arg };
        w->tail_bseq = b->bseq;
        w->next_lsn++;
        w->tail_off += fsize;
        w->queued_bytes += fsize;
        if (w->prep_on && w->tail_off >= w->prep_kick) {
                if (!w->prep_started) {
                        if (w->tail_off >= LOCAL_PREP_START)
                                prep_start(w);
                } else if (w->prep_sleeping) {
                        w->prep_kick = UINT64_MAX;
                        pthread_cond_signal(&w->prep_cond);
                }
        }
        atomic_fetch_add_explicit(&w->appended, 1, memory_order_release);
        /* A thread that flushed after its last append will most likely
         * write this itself (or kick the writer from flush): no wake-up
         * now, only the timer (see writer_defer). */
        bool defer = tls_flusher == w && tls_flushed;
        tls_flushed = false;
        bool kick = false;
        if (w->sleeping) {
                if (defer) {
                        writer_defer(w);
                } else {
                        kick = true;
                        w->sleeping = false;
                }
        }
        pthread_mutex_unlock(&w->qlock);
        if (kick)
                writer_kick(w);
        return 0;
}

/* Wait until every append accepted so far has completed. */
static void writer_flush(struct writer *w)
{
        pthread_mutex_lock(&w->qlock);
        uint64_t upto = w->next_lsn - 1;
        while (w->completed_lsn < upto) {
                bool kick = w->sleeping;
                w->sleeping = false;
                if (kick) {
                        pthread_mutex_unlock(&w->qlock);
                        writer_kick(w);
                        pthread_mutex_lock(&w->qlock);
                        continue;
                }
                pthread_cond_wait(&w->qcond, &w->qlock);
        }
        pthread_mutex_unlock(&w->qlock);
}

/*
 * Flush: a blocking appender writes its own batch.
 *
 * A flush() caller that finds nobody doing I/O (the writer thread idle,
 * nothing in flight) and no other flush() caller waiting takes the queued
 * batches up to the one holding the newest record and writes each with
 * pwrite + fdatasync on its own thread, then runs their completions there.
 * A lone blocking appender thus pays no thread hand-off at all: no wake-up
 * of the writer thread to write, none of the appending thread to complete
 * (two futex round trips of 16-21 us each on the 2-vCPU VMs, against a
 * 90-140 us fdatasync).  With other callers waiting, the writer thread
 * keeps the I/O (several batches in flight through io_uring) and the
 * callers sleep on their batch's slot word: one futex wake per batch for
 * all of its waiters, instead of one per record from the callbacks.
 */

/* Write and complete, on this thread, the queued batches up to @target.
 * Called with qlock held and io_owner NONE; returns with qlock held.
 * @returns false if there was nothing to take. */
static bool flush_lead(struct writer *w, uint64_t target)
{
        struct batch *take = NULL, **tail = &take;
        while (w->ready_head && w->ready_head->bseq <= target) {
                struct batch *b = w->ready_head;
                w->ready_head = b->next;
                if (!w->ready_head)
                        w->ready_tail = NULL;
                w->queued_bytes -= b->len;
                *tail = b;
                tail = &b->next;
        }
        if (!w->ready_head && w->open && w->open->n && w->open->bseq <= target) {
                struct batch *b = w->open;
                w->open = NULL;
                w->queued_bytes -= b->len;
                *tail = b;
                tail = &b->next;
        }
        *tail = NULL;
        if (!take)
                return false;
        w->io_owner = OWNER_CALLER;
        struct batch *mine[LOCAL_FLUSH_SLOTS];
        int nm = 0;
        while (take && nm < LOCAL_FLUSH_SLOTS) {
                struct batch *b = take;
                take = b->next;
                fl_push(w, b);
                mine[nm++] = b;
        }
        /* (More than LOCAL_FLUSH_SLOTS queued batches up to ours cannot
         * happen: each holds at least one record of a waiting caller, and
         * only one caller is waiting.  Put any back all the same.) */
        if (take) {
                struct batch *last = take;
                while (last->next)
                        last = last->next;
                last->next = w->ready_head;
                if (!w->ready_head)
                        w->ready_tail = last;
                w->ready_head = take;
                for (struct batch *b = take; b; b = b->next)
                        w->queued_bytes += b->len;
        }
        pthread_cond_broadcast(&w->qcond);
        pthread_mutex_unlock(&w->qlock);

        tls_leading = w;
        for (int i = 0; i < nm; i++) {
                struct batch *b = mine[i];
                pthread_mutex_lock(&w->qlock);
                int failed = w->failed;
                pthread_mutex_unlock(&w->qlock);
                if (failed)
                        b->err = failed;
                else if (b->new_seg && writer_new_segment(w, b) < 0)
                        b->err = w->failed ? w->failed : -EIO;
                else
                        sync_write_batch(w, b, w->active_fd, w->active->path, false);
                writer_complete(w, b, false);
        }
        tls_leading = NULL;

        pthread_mutex_lock(&w->qlock);
        w->io_owner = OWNER_NONE;
        /* Work left behind (appends after ours, or a failure to spread):
         * the writer thread's. */
        if ((w->ready_head || (w->open && w->open->n) || w->failed) && w->sleeping) {
                w->sleeping = false;
                writer_kick(w);
        }
        return true;
}

/*
 * Lane 2 (local.lanes=2).  While the writer thread writes a batch inline
 * (pwrite + fdatasync on its own thread), a flush() caller whose record is
 * still queued takes the queued batches up to its own and writes them with
 * pwrite + fdatasync on its thread, through its own file descriptor on the
 * segment: two fdatasyncs in flight at once, where the writer thread alone
 * would sync them one after the other.  Built because concurrent
 * fdatasyncs of disjoint writes overlap on the development VM's disk (1
 * thread 8.4 k fdatasyncs/s, 2 threads 12.9 k); off by default because
 * for the log's adjacent batches they did not overlap enough to pay for
 * the smaller batches (tools/bench/local-notes.md).
 *
 * Why a flush() caller and not a second writer thread or two io_uring
 * chains: the caller would sleep until its batch is durable anyway, so
 * using it costs no thread hand-off; io_uring punts buffered writes and
 * every fsync to io-wq workers and was measured slower for blocking
 * appenders than the inline path (local-notes.md).
 *
 * Rules that keep it correct:
 *  - order: lane 2 takes batches from the head of the queue under qlock and
 *    puts them on the in-flight list there, so that list stays in LSN
 *    order; a batch completes only when its I/O and that of every batch
 *    before it is over (writer_complete, whoever runs it), and with the
 *    channel's failure if any of them failed: a batch of lane 2 whose
 *    fdatasync returned 0 still fails if the thread's earlier batch failed,
 *    and the thread's batch fails if lane 2's failed first;
 *  - one file descriptor per lane: a write-back error is reported once per
 *    open file (each struct file keeps its own errseq cursor), so on a
 *    shared fd one lane's fdatasync could take the error of pages the
 *    other lane's fdatasync then reports clean;
 *  - segments: lane 2 takes only batches of the segment being written
 *    (w->active) and never a batch that starts a new one; a roll waits
 *    until nothing is in flight, lane 2's batches included (n_inflight);
 *  - close: the writer thread does not exit while lane 2's batches are in
 *    flight (they count in n_inflight), and lane 2 wakes it when it leaves.
 *
 * Gathering: lane 2 waits, yielding, for gather_want() records in its
 * batch (at most LOCAL_GATHER_NS), as the writer thread does.
 *
 * Called with qlock held, lane 2 free and the thread writing inline;
 * returns with qlock held.  @returns false if it took nothing.
 */
static bool lane_run(struct writer *w, uint64_t target)
{
        const struct local_io_ops *io = w->c->io;
        w->lane_busy = true;
        uint64_t until = walu_monotonic_ns() + LOCAL_GATHER_NS;
        for (;;) {
                struct batch *o = w->open;
                if (w->failed || w->closing || w->ready_head || !o || o->bseq != target)
                        break;
                uint64_t now = walu_monotonic_ns();
                if (o->n >= gather_want(w, now) || now >= until)
                        break;
                pthread_mutex_unlock(&w->qlock);
                sched_yield();
                pthread_mutex_lock(&w->qlock);
        }
        uint64_t seg = w->active->first_lsn;
        if (!w->failed && !w->closing && (w->lane_fd < 0 || w->lane_fd_seg != seg)) {
                /* Our own open file on the segment (rare: once per segment). */
                if (w->lane_fd >= 0)
                        io->close(io->ctx, w->lane_fd);
                w->lane_fd = io->open(io->ctx, w->active->path, O_RDWR, 0);
                w->lane_fd_seg = seg;
        }
        struct batch *take[LOCAL_INFLIGHT_MAX];
        int nt = 0;
        size_t n = 0;
        while (!w->failed && !w->closing && w->lane_fd >= 0 && nt < LOCAL_INFLIGHT_MAX) {
                struct batch *b = w->ready_head;
                if (b) {
                        if (b->bseq > target || b->new_seg || b->seg_first != seg)
                                break;
                        w->ready_head = b->next;
                        if (!w->ready_head)
                                w->ready_tail = NULL;
                } else if (w->open && w->open->n && w->open->bseq <= target &&
                           !w->open->new_seg && w->open->seg_first == seg) {
                        b = w->open;
                        w->open = NULL;
                } else {
                        break;
                }
                w->queued_bytes -= b->len;
                fl_push(w, b);
                b->lane2 = true;
                w->lane_inflight++;
                n += b->n;
                take[nt++] = b;
        }
        if (!nt) {
                w->lane_busy = false;
                return false;
        }
        w->lane_last_n = n;
        w->lane_last_ns = walu_monotonic_ns();
        pthread_cond_broadcast(&w->qcond);
        int fd = w->lane_fd;
        /* Stays valid: the segment cannot roll while these are in flight. */
        const char *path = w->active->path;
        pthread_mutex_unlock(&w->qlock);

        tls_leading = w;
        int err = 0;
        for (int i = 0; i < nt; i++) {
                if (err)
                        take[i]->err = err;
                else
                        sync_write_batch(w, take[i], fd, path, false);
                err = take[i]->err;
        }
        pthread_mutex_lock(&w->qlock);
        for (int i = 0; i < nt; i++)
                take[i]->io_done = true;
        w->lane_busy = false;
        pthread_mutex_unlock(&w->qlock);
        writer_complete(w, NULL, false);
        tls_leading = NULL;

        pthread_mutex_lock(&w->qlock);
        /* The thread may sleep waiting for these to leave the in-flight
         * list (a roll, close, a failure to spread): let it look. */
        if (w->sleeping) {
                w->sleeping = false;
                writer_kick(w);
        }
        return true;
}

#define LOCAL_POLL_MIN_NS 50000ull
#define LOCAL_POLL_MAX_NS 1000000ull

/*
 * Early poll: while the CPUs have room (early_room_seen), at most early_max
 * callers are inside flush() and the last batch completed held at most
 * early_max records, a caller whose batch is not complete polls for it from
 * the start (as one woken early does) instead of sleeping until the writer
 * thread wakes it between the write and the fdatasync.  (The count inside
 * flush() alone is not enough: at 64 blocking writers, the first callers
 * back from a batch of 50 find only the 14 left behind in flush(), and
 * polling them cost that row half its throughput in a loaded run.)  Caller
 * holds qlock.
 */
static bool early_poll(struct writer *w)
{
        return w->early_max && (unsigned)atomic_load(&w->flushers) <= w->early_max &&
               w->last_batch_n <= w->early_max && early_room_seen(w);
}

static int local_flush(struct walimpls_wal *base, int timeout_ms, wal_error **reterr)
{
        WAL_ASSERT_RETURN(base, -EINVAL);
        struct chan *c = wal_from_base(base)->c;
        struct writer *w = c->w;
        if (base->access != WAL_ACCESS_RW || !w)
                return 0;
        uint64_t deadline = timeout_ms >= 0 ? walu_monotonic_ns() +
                                              (uint64_t)timeout_ms * 1000000u : 0;
        int r = 0;
        tls_flusher = w;
        tls_flushed = true;
        pthread_mutex_lock(&w->qlock);
        uint64_t target = w->tail_bseq;
        w->last_flush_ns = walu_monotonic_ns();
        atomic_fetch_add(&w->flushers, 1);
        bool polled = false;
        while (atomic_load(&w->done_bseq) < target) {
                if (w->caller_io && w->io_owner == OWNER_NONE &&
                    atomic_load(&w->flushers) == 1 &&
                    w->last_batch_n <= 1 && !w->failed &&
                    !w->closing && flush_lead(w, target))
                        continue;
                /* The writer thread is busy with an earlier batch: write
                 * ours beside it (lane 2). */
                if (w->lane2 && w->io_owner == OWNER_THREAD && w->thread_inline &&
                    !w->lane_busy && !w->failed && !w->closing && lane_run(w, target))
                        continue;
                /* Not writing it ourselves: make sure the writer thread
                 * will (our append may not have kicked it).  Not while
                 * it waits for its io_uring batches, nor while a flush()
                 * caller owns the I/O (it kicks the thread when it leaves
                 * work behind). */
                if (w->sleeping && (w->io_owner == OWNER_NONE ||
                                    (w->io_owner == OWNER_THREAD &&
                                     w->n_inflight == w->lane_inflight))) {
                        w->sleeping = false;
                        writer_kick(w);
                }
                struct flush_slot *sl = &w->slots[target % LOCAL_FLUSH_SLOTS];
                /* Woken early (early_wake): wake the batch's other
                 * sleepers, then poll for its completion, yielding the
                 * CPU, for at most twice the average fdatasync (once per
                 * call); sleep as usual if it has not completed by then. */
                bool woken = !polled && atomic_load(&w->early_bseq) >= target;
                if (woken || (!polled && early_poll(w))) {
                        polled = true;
                        atomic_fetch_add(&sl->pollers, 1);
                        pthread_mutex_unlock(&w->qlock);
                        if (woken && atomic_load(&sl->sleepers))
                                (void)futex_op(&sl->word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
                        uint64_t avg = atomic_load_explicit(&w->sync_avg_ns,
                                                            memory_order_relaxed);
                        /* Not written yet: its gathering comes first. */
                        uint64_t extra = woken ? 0 : LOCAL_GATHER_NS;
                        uint64_t until = walu_monotonic_ns() +
                                         WALU_MAX(LOCAL_POLL_MIN_NS,
                                                  WALU_MIN(2 * avg + extra, LOCAL_POLL_MAX_NS));
                        if (timeout_ms >= 0 && deadline < until)
                                until = deadline;
                        while (atomic_load(&w->done_bseq) < target &&
                               walu_monotonic_ns() < until)
                                sched_yield();
                        atomic_fetch_sub(&sl->pollers, 1);
                        if (atomic_load(&w->done_bseq) >= target) {
                                atomic_fetch_sub(&w->flushers, 1);
                                return 0;
                        }
                        pthread_mutex_lock(&w->qlock);
                        continue;
                }
                atomic_fetch_add(&sl->sleepers, 1);
                uint32_t seen = atomic_load(&sl->word);
                pthread_mutex_unlock(&w->qlock);
                struct timespec ts, *tsp = NULL;
                if (timeout_ms >= 0) {
                        uint64_t now = walu_monotonic_ns();
                        uint64_t left = deadline > now ? deadline - now : 0;
                        ts.tv_sec = (time_t)(left / 1000000000u);
                        ts.tv_nsec = (long)(left % 1000000000u);
                        tsp = &ts;
                }
                if (atomic_load(&w->done_bseq) < target &&
                    (!tsp || tsp->tv_sec || tsp->tv_nsec))
                        (void)futex_op(&sl->word, FUTEX_WAIT_PRIVATE, seen, tsp);
                atomic_fetch_sub(&sl->sleepers, 1);
                /* Woken with the batch's other waiters: leave without
                 * queueing on qlock behind them when it is done. */
                if (atomic_load(&w->done_bseq) >= target) {
                        atomic_fetch_sub(&w->flushers, 1);
                        return 0;
                }
                pthread_mutex_lock(&w->qlock);
                if (timeout_ms >= 0 && atomic_load(&w->done_bseq) < target &&
                    walu_monotonic_ns() >= deadline) {
                        r = wal_error_set(reterr, -ETIMEDOUT, WAL_ERROR_RETRIABLE,
                                          "local: flush of %s: not complete within %d ms",
                                          c->dir, timeout_ms);
                        break;
                }
        }
        atomic_fetch_sub(&w->flushers, 1);
        pthread_mutex_unlock(&w->qlock);
        return r;
}

/* ---- Open ---- */

/* One info line (walctl -v) with what an open found on disk: segments, LSN
 * range, and a torn tail (cut by a read-write open, not read by a
 * read-only one).  Once per open, never per record. */
static void log_loaded(const struct chan *c, const struct local_chan_scan *sc, bool rw,
                       bool torn_cut)
{
        size_t n = sc->n_segs;
        uint64_t first = n ? sc->segs[0]->first_lsn : 0;
        uint64_t last = n ? sc->segs[n - 1]->last_lsn : 0;
        const struct local_fault *f = &sc->fault;
        char torn[512] = "";
        if (f->kind == LOCAL_FAULT_TORN_TAIL && !sc->empty_last_removed_ok)
                snprintf(torn, sizeof(torn), "; torn tail at %s offset %" PRIu64 " %s",
                         f->segment, f->offset, torn_cut ? "cut off" : "not read");
        if (n == 0 || last < first)
                walu_log(WAL_LOG_INFO, "local: recovered %s (%s): %zu segment%s, no records%s",
                         c->dir, rw ? "read-write" : "read-only", n, n == 1 ? "" : "s", torn);
        else
                walu_log(WAL_LOG_INFO, "local: recovered %s (%s): %zu segment%s, LSN %" PRIu64
                         "..%" PRIu64 "%s", c->dir, rw ? "read-write" : "read-only", n,
                         n == 1 ? "" : "s", first, last, torn);
}

/* Load the channel from disk for a read-write open: recover (cutting a torn
 * tail), create the first segment if there is none.  Caller holds
 * c->open_lock and the flock. */
static int chan_recover_rw(struct chan *c, const struct local_opener *o, wal_error **reterr)
{
        const struct local_io_ops *io = c->io;
        struct local_chan_scan sc;
        int r = local_chan_scan(io, c->dir, o->open_check, &sc, reterr);
        if (r < 0)
                return r;
        struct local_fault *f = &sc.fault;
        if (f->kind != LOCAL_FAULT_NONE && f->kind != LOCAL_FAULT_TORN_TAIL) {
                r = wal_error_set(reterr, -EBADMSG, WAL_ERROR_FATAL,
                                  "local: channel %s is corrupt: %s in segment %s at offset %"
                                  PRIu64 " (expected LSN %" PRIu64 "); run `walctl verify`/"
                                  "`walctl repair`",
                                  c->dir, local_fault_kind_name(f->kind), f->segment, f->offset,
                                  f->lsn);
                local_chan_scan_done(&sc);
                return r;
        }
        if (f->kind == LOCAL_FAULT_TORN_TAIL && sc.empty_last_removed_ok) {
                struct local_seg *s = sc.segs[--sc.n_segs];
                walu_log(WAL_LOG_WARNING, "local: removing %s: torn while being created",
                         s->path);
                r = io->unlink(io->ctx, s->path);
                if (r == 0)
                        r = local_io_fsync_dir(io, c->dir);
                if (r < 0) {
                        r = wal_error_set(reterr, r, 0, "local: removing %s: %s", s->path,
                                          strerror(-r));
                        local_seg_free(s);
                        local_chan_scan_done(&sc);
                        return r;
                }
                local_seg_free(s);
        } else if (f->kind == LOCAL_FAULT_TORN_TAIL) {
                walu_log(WAL_LOG_WARNING, "local: %s/%s: torn frame at offset %" PRIu64
                         " cut off (records up to LSN %" PRIu64 " kept)",
                         c->dir, f->segment, f->offset, f->last_lsn);
        }
        if (sc.n_segs > 0) {
                /* Make the end of data permanent: nothing after it may ever
                 * be mistaken for a frame. */
                struct local_seg *s = sc.segs[sc.n_segs - 1];
                int fd = io->open(io->ctx, s->path, O_RDWR, 0);
                r = fd < 0 ? fd : 0;
                uint64_t size = WALU_MAX(s->size, s->end);
                if (r == 0)
                        r = io->ftruncate(io->ctx, fd, (off_t)s->end);
                if (r == 0 && size > s->end)
                        r = io->fallocate(io->ctx, fd, (off_t)s->end, (off_t)(size - s->end));
                if (r == 0)
                        r = io->fdatasync(io->ctx, fd);
                if (fd >= 0)
                        io->close(io->ctx, fd);
                if (r < 0) {
                        r = wal_error_set(reterr, r, 0, "local: preparing %s for writing: %s",
                                          s->path, strerror(-r));
                        local_chan_scan_done(&sc);
                        return r;
                }
                s->size = size;
        } else {
                /* A new channel (or one repaired down to nothing). */
                struct local_seg *s = local_seg_new(c->dir, 1);
                uint8_t *hdr = malloc(LOCAL_SEG_HDR_SIZE);
                r = !s || !hdr ? -ENOMEM : 0;
                int fd = -1;
                if (r == 0) {
                        s->size = o->seg_bytes;
                        fd = io->open(io->ctx, s->path, O_RDWR | O_CREAT | O_TRUNC, 0644);
                        r = fd < 0 ? fd : 0;
                }
                if (r == 0)
                        r = io->fallocate(io->ctx, fd, 0, (off_t)s->size);
                if (r == 0) {
                        local_seg_header_encode(hdr, 1, s->size);
                        r = local_io_write_full(io, fd, hdr, LOCAL_SEG_HDR_SIZE, 0);
                }
                if (r == 0)
                        r = io->fdatasync(io->ctx, fd);
                if (r == 0)
                        r = local_io_fsync_dir(io, c->dir);
                if (fd >= 0)
                        io->close(io->ctx, fd);
                free(hdr);
                if (r < 0) {
                        if (fd >= 0) {
                                io->unlink(io->ctx, s->path);
                                (void)local_io_fsync_dir(io, c->dir);
                        }
                        r = wal_error_set(reterr, r, 0, "local: creating segment %s: %s",
                                          s ? s->path : c->dir, strerror(-r));
                        local_seg_free(s);
                        local_chan_scan_done(&sc);
                        return r;
                }
                free(sc.segs);
                sc.segs = malloc(sizeof(*sc.segs));
                if (!sc.segs) {
                        local_seg_free(s);
                        return wal_error_set(reterr, -ENOMEM, 0, "local: out of memory");
                }
                sc.segs[0] = s;
                sc.n_segs = 1;
        }
        log_loaded(c, &sc, true, true);
        pthread_mutex_lock(&c->lock);
        chan_free_segs(c);
        c->segs = sc.segs;
        c->n_segs = c->cap_segs = sc.n_segs;
        c->durable_lsn = c->segs[c->n_segs - 1]->last_lsn;
        c->loaded = true;
        pthread_mutex_unlock(&c->lock);
        return 0;
}

/* Load the channel for reading only (no writer in this process). */
static int chan_load_ro(struct chan *c, const struct local_opener *o, wal_error **reterr)
{
        struct local_chan_scan sc;
        int r = local_chan_scan(c->io, c->dir, o->open_check, &sc, reterr);
        if (r < 0)
                return r;
        struct local_fault *f = &sc.fault;
        if (f->kind != LOCAL_FAULT_NONE && f->kind != LOCAL_FAULT_TORN_TAIL) {
                r = wal_error_set(reterr, -EBADMSG, WAL_ERROR_FATAL,
                                  "local: channel %s is corrupt: %s in segment %s at offset %"
                                  PRIu64 " (expected LSN %" PRIu64 ")",
                                  c->dir, local_fault_kind_name(f->kind), f->segment, f->offset,
                                  f->lsn);
                local_chan_scan_done(&sc);
                return r;
        }
        if (f->kind == LOCAL_FAULT_TORN_TAIL && sc.empty_last_removed_ok && sc.n_segs > 0)
                local_seg_free(sc.segs[--sc.n_segs]);
        log_loaded(c, &sc, false, false);
        pthread_mutex_lock(&c->lock);
        chan_free_segs(c);
        c->segs = sc.segs;
        c->n_segs = c->cap_segs = sc.n_segs;
        c->durable_lsn = sc.n_segs ? c->segs[c->n_segs - 1]->last_lsn : 0;
        c->loaded = true;
        pthread_mutex_unlock(&c->lock);
        return 0;
}

static int local_open(struct walimpls_opener *base, const struct walimpls_open_opts *opts,
                      struct walimpls_wal **ret, wal_error **reterr)
{
        WAL_ASSERT_RETURN(base && opts && ret,
                          wal_error_set(reterr, -EINVAL, 0, "local: open: NULL argument"));
        WAL_ASSERT_RETURN(base->ops == &local_opener_ops,
                          wal_error_set(reterr, -EINVAL, 0, "local: open: not a local opener"));
        struct local_opener *o = (struct local_opener *)base;
        if (!walimpls_channel_name_valid(opts->channel))
                return wal_error_set(reterr, -EINVAL, 0, "local: invalid channel name '%s'",
                                     opts->channel ? opts->channel : "(null)");
        if (opts->term < 0)
                return wal_error_set(reterr, -EINVAL, 0, "local: negative term %" PRId64,
                                     opts->term);
        if (opts->access != WAL_ACCESS_RO && opts->access != WAL_ACCESS_RW)
                return wal_error_set(reterr, -EINVAL, 0, "local: bad access mode %d",
                                     (int)opts->access);
        bool rw = opts->access == WAL_ACCESS_RW;
        char *dir = path_join(o->dir, opts->channel);
        if (!dir)
                return wal_error_set(reterr, -ENOMEM, 0, "local: out of memory");
        if (rw) {
                int r = mkdir_p(dir);
                if (r < 0) {
                        r = wal_error_set(reterr, r, 0, "local: cannot create %s: %s", dir,
                                          strerror(-r));
                        free(dir);
                        return r;
                }
        } else if (!is_channel_dir(dir)) {
                int r = wal_error_set(reterr, -ENOENT, 0, "local: channel '%s' does not exist "
                                      "in %s", opts->channel, o->dir);
                free(dir);
                return r;
        }
        struct chan *c = chan_get(dir);
        free(dir);
        if (!c)
                return wal_error_set(reterr, -ENOMEM, 0, "local: out of memory");
        struct local_wal *w = calloc(1, sizeof(*w));
        if (!w || walimpls_wal_init(&w->base, &local_wal_ops, base, opts) < 0) {
                free(w);
                chan_put(c);
                return wal_error_set(reterr, -ENOMEM, 0, "local: out of memory");
        }
        w->c = c;
        w->read_spin_ns = (uint64_t)o->read_spin_us * 1000u;

        int r = 0;
        pthread_mutex_lock(&c->open_lock);
        if (rw && !c->w) {
                const struct local_io_ops *io = c->io;
                char *lp = path_join(c->dir, "lock");
                int lfd = lp ? io->open(io->ctx, lp, O_RDWR | O_CREAT, 0644) : -ENOMEM;
                free(lp);
                if (lfd < 0) {
                        r = wal_error_set(reterr, lfd, 0, "local: cannot open the lock file of "
                                          "%s: %s", c->dir, strerror(-lfd));
                        goto out;
                }
                if (flock(lfd, LOCK_EX | LOCK_NB) < 0) {
                        int e = errno;
                        io->close(io->ctx, lfd);
                        r = wal_error_set(reterr, e == EWOULDBLOCK ? -EBUSY : -e, 0,
                                          "local: channel '%s' is open for writing by another "
                                          "process (lock %s/lock held)", opts->channel, c->dir);
                        goto out;
                }
                int64_t recorded;
                r = local_term_read(io, c->dir, &recorded);
                if (r == -EBADMSG) {
                        io->close(io->ctx, lfd);
                        r = wal_error_set(reterr, r, 0, "local: %s/term is damaged: it does "
                                          "not hold the channel's owner term (a non-negative "
                                          "decimal number)", c->dir);
                        goto out;
                }
                if (r < 0) {
                        io->close(io->ctx, lfd);
                        r = wal_error_set(reterr, r, 0, "local: cannot read %s/term: %s",
                                          c->dir, strerror(-r));
                        goto out;
                }
                if (opts->term < recorded) {
                        io->close(io->ctx, lfd);
                        r = wal_error_set(reterr, -ESTALE, WAL_ERROR_FATAL,
                                          "local: channel '%s' is owned by term %" PRId64
                                          ", newer than %" PRId64, opts->channel, recorded,
                                          opts->term);
                        goto out;
                }
                /* No term file, yet records (it was deleted: the file is
                 * written before the first record): the owner's term is at
                 * least the last record's, or an older term could write
                 * after a newer one. */
                bool term_missing = recorded < 0;
                if (term_missing) {
                        r = local_last_term(io, c->dir, &recorded, reterr);
                        if (r == 0 && opts->term < recorded)
                                r = wal_error_set(reterr, -ESTALE, WAL_ERROR_FATAL,
                                                  "local: channel '%s' has no term file, and "
                                                  "its last record was written by term %"
                                                  PRId64 ", newer than %" PRId64,
                                                  opts->channel, recorded, opts->term);
                        if (r < 0) {
                                io->close(io->ctx, lfd);
                                goto out;
                        }
                }
                r = chan_recover_rw(c, o, reterr);
                if (r == 0 && (opts->term > recorded || term_missing)) {
                        r = local_term_write(io, c->dir, opts->term);
                        if (r < 0)
                                wal_error_set(reterr, r, 0, "local: recording term in %s/term: "
                                              "%s", c->dir, strerror(-r));
                }
                if (r == 0)
                        r = writer_start(c, o, reterr);
                if (r < 0) {
                        io->close(io->ctx, lfd);
                        goto out;
                }
                c->lock_fd = lfd;
                atomic_store(&c->owner_term, opts->term);
        } else if (rw) {
                int64_t cur = atomic_load(&c->owner_term);
                if (opts->term < cur) {
                        r = wal_error_set(reterr, -ESTALE, WAL_ERROR_FATAL,
                                          "local: channel '%s' is owned by term %" PRId64
                                          ", newer than %" PRId64, opts->channel, cur,
                                          opts->term);
                        goto out;
                }
                if (opts->term > cur) {
                        r = local_term_write(c->io, c->dir, opts->term);
                        if (r < 0) {
                                wal_error_set(reterr, r, 0, "local: recording term in %s/term: "
                                              "%s", c->dir, strerror(-r));
                                goto out;
                        }
                        /* Fences every wal of a lower term. */
                        atomic_store(&c->owner_term, opts->term);
                }
        } else if (!c->loaded) {
                r = chan_load_ro(c, o, reterr);
                if (r == 0) {
                        int64_t recorded;
                        if (local_term_read(c->io, c->dir, &recorded) == 0)
                                atomic_store(&c->owner_term, recorded);
                }
        }
        if (r == 0 && rw)
                c->n_rw++;
out:
        pthread_mutex_unlock(&c->open_lock);
        if (r < 0) {
                walimpls_wal_done(&w->base);
                free(w);
                chan_put(c);
                return r;
        }
        *ret = &w->base;
        return 0;
}

/* ---- WAL methods ---- */

static int local_truncate(struct walimpls_wal *base, struct wal_msgid id, wal_error **reterr)
{
        WAL_ASSERT_RETURN(base, -EINVAL);
        struct local_wal *lw = wal_from_base(base);
        struct chan *c = lw->c;
        if (base->access != WAL_ACCESS_RW)
                return wal_error_set(reterr, -EROFS, 0, "local: truncate on a read-only wal");
        if (atomic_load(&c->owner_term) > base->term)
                return wal_error_set(reterr, -ESTALE, WAL_ERROR_FATAL,
                                     "local: fenced by term %" PRId64,
                                     atomic_load(&c->owner_term));
        if (wal_msgid_is_none(id))
                return wal_error_set(reterr, -EINVAL, 0, "local: truncate to no ID");
        uint64_t upto = id.hi ? UINT64_MAX : id.lo;
        pthread_mutex_lock(&c->lock);
        size_t k = 0;
        /* Whole segments entirely at or below @upto; never the last. */
        while (k + 1 < c->n_segs && c->segs[k + 1]->first_lsn - 1 <= upto)
                k++;
        struct local_seg **gone = NULL;
        if (k) {
                gone = malloc(k * sizeof(*gone));
                if (!gone) {
                        pthread_mutex_unlock(&c->lock);
                        return wal_error_set(reterr, -ENOMEM, 0, "local: out of memory");
                }
                memcpy(gone, c->segs, k * sizeof(*gone));
                memmove(c->segs, c->segs + k, (c->n_segs - k) * sizeof(*c->segs));
                c->n_segs -= k;
                atomic_fetch_add_explicit(&c->seg_gen, 1, memory_order_release);
        }
        pthread_mutex_unlock(&c->lock);
        int r = 0;
        for (size_t i = 0; i < k; i++) {
                int e = c->io->unlink(c->io->ctx, gone[i]->path);
                if (e < 0 && e != -ENOENT && r == 0)
                        r = wal_error_set(reterr, e, 0, "local: removing %s: %s", gone[i]->path,
                                          strerror(-e));
                local_seg_free(gone[i]);
        }
        free(gone);
        if (k) {
                int e = local_io_fsync_dir(c->io, c->dir);
                if (e < 0 && r == 0)
                        r = wal_error_set(reterr, e, 0, "local: fsync of directory %s: %s",
                                          c->dir, strerror(-e));
        }
        return r;
}

static int local_info(struct walimpls_wal *base, struct walimpls_info *ret, wal_error **reterr)
{
        WAL_ASSERT_RETURN(base && ret,
                          wal_error_set(reterr, -EINVAL, 0, "local: info: NULL argument"));
        struct chan *c = wal_from_base(base)->c;
        pthread_mutex_lock(&c->lock);
        chan_refresh(c);
        uint64_t first = chan_first_lsn(c), last = c->durable_lsn;
        int64_t bytes = 0;
        for (size_t i = 0; i < c->n_segs; i++)
                bytes += (int64_t)(c->segs[i]->end - LOCAL_SEG_HDR_SIZE);
        pthread_mutex_unlock(&c->lock);
        int64_t count = last >= first ? (int64_t)(last - first + 1) : 0;
        *ret = (struct walimpls_info){
                .first_id = count ? WAL_MSGID(0, first) : WAL_MSGID_NONE,
                .last_id = last ? WAL_MSGID(0, last) : WAL_MSGID_NONE,
                .count = count,
                .bytes = bytes,
                .term = atomic_load(&c->owner_term),
                .durability = LOCAL_DURABILITY,
        };
        return 0;
}

static void local_wal_close(struct walimpls_wal *base)
{
        if (!base)
                return;
        struct local_wal *lw = wal_from_base(base);
        struct chan *c = lw->c;
        pthread_mutex_lock(&c->open_lock);
        if (base->access == WAL_ACCESS_RW) {
                if (c->w)
                        writer_flush(c->w);
                if (--c->n_rw == 0 && c->w) {
                        struct writer *w = c->w;
                        writer_stop(w);
                        pthread_mutex_lock(&c->lock);
                        c->w = NULL;
                        /* Remaining scanners now follow other processes'
                         * writes through the watcher. */
                        if (c->scanners && !c->watcher_started) {
                                c->watcher_stop = false;
                                if (pthread_create(&c->watcher, NULL, watcher_main, c) == 0)
                                        c->watcher_started = true;
                        }
                        pthread_mutex_unlock(&c->lock);
                        if (c->lock_fd >= 0) {
                                c->io->close(c->io->ctx, c->lock_fd);
                                c->lock_fd = -1;
                        }
                }
        }
        pthread_mutex_unlock(&c->open_lock);
        walimpls_wal_done(&lw->base);
        free(lw);
        chan_put(c);
}

/* ---- Scanner ---- */

static struct local_scanner *scanner_from_base(struct walimpls_scanner *b)
{
        WAL_ASSERT(b->ops == &local_scanner_ops);
        return (struct local_scanner *)b;
}

static int local_read(struct walimpls_wal *base, const struct walimpls_read_opts *opts,
                      struct walimpls_scanner **ret, wal_error **reterr)
{
        WAL_ASSERT_RETURN(base && opts && ret,
                          wal_error_set(reterr, -EINVAL, 0, "local: read: NULL argument"));
        struct chan *c = wal_from_base(base)->c;
        struct local_scanner *s = calloc(1, sizeof(*s));
        if (!s)
                return wal_error_set(reterr, -ENOMEM, 0, "local: out of memory");
        s->fd = -1;
        s->spin_ns = wal_from_base(base)->read_spin_ns;
        if (walimpls_scanner_init(&s->base, &local_scanner_ops, base, opts->name) < 0) {
                free(s);
                return wal_error_set(reterr, -ENOMEM, 0, "local: out of memory");
        }
        int r = walimpls_notifier_init(&s->nt);
        if (r < 0) {
                walimpls_scanner_done(&s->base);
                free(s);
                return wal_error_set(reterr, r, 0, "local: notifier: %s", strerror(-r));
        }
        s->c = c;
        pthread_mutex_lock(&c->lock);
        chan_refresh(c);
        uint64_t first = chan_first_lsn(c);
        const struct wal_deliver *d = &opts->deliver;
        switch (d->policy) {
        case WAL_DELIVER_ALL:
                s->next_lsn = first;
                break;
        case WAL_DELIVER_LATEST:
                /* After every append accepted so far, durable or not. */
                s->next_lsn = c->durable_lsn + 1;
                if (c->w) {
                        pthread_mutex_lock(&c->w->qlock);
                        s->next_lsn = c->w->next_lsn;
                        pthread_mutex_unlock(&c->w->qlock);
                }
                break;
        case WAL_DELIVER_START_FROM:
        case WAL_DELIVER_START_AFTER:
                if (wal_msgid_is_none(d->id)) {
                        r = wal_error_set(reterr, -EINVAL, 0, "local: %s needs an ID",
                                          wal_deliver_policy_name(d->policy));
                        break;
                }
                if (d->id.hi)
                        s->next_lsn = UINT64_MAX;   /* after every local ID */
                else if (d->policy == WAL_DELIVER_START_FROM)
                        s->next_lsn = d->id.lo ? d->id.lo : 1;
                else
                        s->next_lsn = d->id.lo == UINT64_MAX ? UINT64_MAX : d->id.lo + 1;
                if (s->next_lsn < first)
                        r = wal_error_set(reterr, -ERANGE, 0,
                                          "local: LSN %" PRIu64 " of channel '%s' was truncated "
                                          "away; the first retained is %" PRIu64,
                                          s->next_lsn, base->channel, first);
                break;
        default:
                r = wal_error_set(reterr, -EINVAL, 0, "local: unsupported deliver policy %d",
                                  (int)d->policy);
        }
        if (r == 0) {
                s->next_s = c->scanners;
                c->scanners = s;
                if (!c->w && !c->watcher_started) {
                        c->watcher_stop = false;
                        if (pthread_create(&c->watcher, NULL, watcher_main, c) == 0)
                                c->watcher_started = true;
                }
        }
        pthread_mutex_unlock(&c->lock);
        if (r < 0) {
                walimpls_notifier_done(&s->nt);
                walimpls_scanner_done(&s->base);
                free(s);
                return r;
        }
        *ret = &s->base;
        return 0;
}

static int scanner_fail(struct local_scanner *s, int code, wal_error **reterr,
                        const char *fmt, ...) WAL_PRINTF(4, 5);
static int scanner_fail(struct local_scanner *s, int code, wal_error **reterr,
                        const char *fmt, ...)
{
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        s->sticky = code;
        free(s->sticky_msg);
        s->sticky_msg = strdup(msg);
        return wal_error_set(reterr, code, WAL_ERROR_FATAL, "%s", msg);
}

/*
 * Read-ahead.  A scanner that has read LOCAL_RA_AFTER full chunks in a row
 * with more durable data ahead in the segment (a replay) starts one helper
 * thread with LOCAL_RA_SLOTS buffers.  From then on, after each refill, the
 * scanner queues the chunks that follow the buffer (LOCAL_READ_CHUNK each,
 * contiguous, never past the durable end known then) into the free
 * buffers, up to LOCAL_RA_SLOTS - 1 ahead, and the helper preads them in
 * order while the scanner hands out the current one.
 *
 * The helper also checks frames, so that the checks are split between two
 * CPUs.  It walks the frames of its chunks in sequence: it carries the
 * offset and LSN of the frame cut by a chunk's end from one chunk to the
 * next (the first chunk after a start: from the scanner's position, by a
 * walk of the scanner's buffer's headers), copies that frame's start in
 * front of the next chunk (at most LOCAL_RA_HEAD bytes), and once the chunk
 * is read, marks it ready and checks its frames (header, LSN sequence and
 * CRC: local_frames_check, the walk of local_frames_scan) in groups of
 * LOCAL_RA_GROUP frames or about LOCAL_RA_GROUP_BYTES, publishing after each
 * group how far it got (ra_slot.vword); from a frame larger than that on it
 * only walks the headers (the scanner checks large frames), and so it does
 * while another chunk waits to be read (reading comes first: the helper
 * checks only when it is ahead of the scanner).  A walk that checks nothing
 * is there only to find the frame cut by the chunk's end, so it starts at
 * the chunk's last frame in the segment's sparse index when there is one
 * (ra_hint: the scanner copies the index when it opens the segment and
 * passes the entry with each queued chunk) instead of at every header; a
 * wrong entry could only make the helper carry a wrong frame into the next
 * chunk, which the scanner then does not trust (below).
 * The scanner hands out frames below that point without checking them again
 * (local_frames_view) and checks the rest itself as before.  When the
 * scanner catches up with the helper in a chunk it takes the chunk's checks
 * over (one compare-and-swap on vword: the helper's group in progress, if
 * any, is thrown away) and the helper only walks the remaining headers to
 * find the next cut frame.  A chunk's frames are trusted only when the
 * chunk starts where the scanner stands and with the LSN it expects; the
 * bytes of a slot are written only by the helper, before it marks the slot
 * ready, and stay until the scanner has moved past it.  A frame the helper
 * refuses ends its walk (the scanner checks from there, finds the same frame
 * and names it as the synchronous path does), and so does a frame larger
 * than LOCAL_RA_HEAD.
 *
 * Anything else (a read error or a short read, a jump, a larger frame)
 * cancels what is queued, waits for the helper to leave its slot and reads
 * synchronously as before, so errors are found and named by the same code.
 * The helper's reads go through the same I/O layer (c->io->pread).  The fd
 * it reads and the scanner's buffer it may walk are never closed or changed
 * while it has a slot (readahead_drop() before every close or synchronous
 * read).  A scanner that reaches the head stops its helper
 * (readahead_release()): a tailing scanner holds no thread or buffers of its
 * replay.
 *
 * Hand-offs.  The helper waits for a queued chunk, the scanner for a chunk
 * to be read, on condition variables; before sleeping, each watches for the
 * other side's move for at most local.read_spin_us (ra_watch, which says
 * when; a bounded pause loop, with a back-off after watches that saw
 * nothing, and never at the durable end).  local_readahead_handoffs()
 * counts the waits, the watches that saw the move and the sleeps.
 */
#ifndef LOCAL_RA_AFTER
#define LOCAL_RA_AFTER 2u
#endif
#ifndef LOCAL_RA_SLOTS
#define LOCAL_RA_SLOTS 4u
#endif
#define LOCAL_RA_HEAD (256u << 10)
#define LOCAL_RA_BUF (LOCAL_RA_HEAD + LOCAL_READ_CHUNK)
/* Frames (and about the bytes) the helper checks between two looks at
 * vword. */
#define LOCAL_RA_GROUP 256u
#define LOCAL_RA_GROUP_BYTES (64u << 10)
/* vword: (offset the helper's checks reached) << 1 | LOCAL_RA_TAKEN */
#define LOCAL_RA_TAKEN 1u

enum ra_state { RA_IDLE, RA_QUEUED, RA_BUSY, RA_DONE };

/* One side's watches (ra_watch): after a watch that saw nothing, the next
 * 2^k - 1 waits sleep at once (k: watches missed in a row, at most 5). */
struct ra_backoff {
        unsigned skip, miss;
};

struct ra_slot {
        uint8_t *mem;                    /* LOCAL_RA_BUF bytes, data at + LOCAL_RA_HEAD */
        /* under the lock */
        enum ra_state state;             /* BUSY: the helper reads or checks it */
        _Atomic bool ready;              /* read: the scanner may take it (written under
                                            the lock, watched without it: ra_watch) */
        bool taken;                      /* taken while BUSY: IDLE when the helper is done */
        uint64_t off;                    /* the read: [off, off + len) of the fd */
        size_t len;
        ssize_t got;                     /* bytes read, or a negative errno */
        uint64_t hint_off, hint_lsn;     /* an indexed frame in the chunk (0: none) */
        bool vok;                        /* the helper walks frames from vstart */
        uint64_t vstart;                 /* offset of the first frame (off - vstart bytes
                                            copied in front of the data) */
        uint64_t vlsn;                   /* its LSN */
        /* shared without the lock */
        _Atomic uint64_t vword;          /* the helper's checks reached this << 1, and
                                            LOCAL_RA_TAKEN once the scanner checks */
};

struct readahead {
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t wake;             /* the helper waits here for work */
        pthread_cond_t done;             /* the scanner waits here for a read */
        pthread_cond_t left;             /* and here for the helper to leave a slot
                                            (readahead_drop, the wait_checks hook): a
                                            condition of its own, so that the end of a
                                            walk does not wake a scanner waiting for
                                            the next read */
        const struct local_io_ops *io;
        struct ra_slot slot[LOCAL_RA_SLOTS];
        /* under the lock */
        bool stop;
        int fd;                          /* every queued read is of this fd */
        unsigned next_read;              /* the slot the helper reads next */
        bool seed;                       /* the scanner's buffer, for the first chunk: */
        const uint8_t *seed_p;           /* the bytes of [seed_at, seed_end) of the fd, */
        uint64_t seed_at, seed_end;      /* a frame at seed_at */
        /* the helper's walk: the frame at w_at (LSN w_lsn, bytes at w_p) is cut
         * by the end (w_end) of the chunk it checked last; under the lock or
         * while the helper has a slot BUSY */
        bool w_valid;
        uint64_t w_at, w_lsn, w_end;
        const uint8_t *w_p;
        _Atomic bool cancel;             /* readahead_drop(): leave the slot now */
        _Atomic unsigned pending;        /* slots queued and not yet being read */
        _Atomic bool more;               /* the scanner will queue more: the durable end
                                            known at its last queue is past what it queued */
        uint64_t spin_ns;                /* how long each side watches before it sleeps */
        /* the scanner's alone */
        struct ra_backoff sback;         /* its watches (ra_watch) */
        unsigned take;                   /* the slot the next refill takes */
        unsigned queued;                 /* slots queued, read or being read, not taken */
        uint64_t queued_end;             /* the offset after the last one queued */
        /* s->buf may point into slot take - 1 (the last taken), which the
         * ring leaves alone: at most LOCAL_RA_SLOTS - 1 are queued. */
};

/* Test hook (local.h): the scanner takes a slot only once the helper is done
 * with it, so every frame it can check is checked by the helper. */
static _Atomic bool g_ra_wait_checks;

void local_readahead_wait_checks(bool on)
{
        atomic_store(&g_ra_wait_checks, on);
}

/* Test hooks (local.h): the helper checks nothing (only walks, from the
 * index's hints), and how often it took a hint. */
static _Atomic bool g_ra_skip_checks;
static _Atomic uint64_t g_ra_hint_jumps;

void local_readahead_skip_checks(bool on)
{
        atomic_store(&g_ra_skip_checks, on);
}

uint64_t local_readahead_hint_jumps(void)
{
        return atomic_load(&g_ra_hint_jumps);
}

/* Test hooks (local.h): the read-ahead's hand-offs, per side (0: the
 * helper waiting for a chunk to read, 1: the scanner waiting for a chunk to
 * be read): how often one found nothing to do, how often its watch saw the
 * other side's move, and how often it slept on the condition variable. */
static _Atomic uint64_t g_ra_waits[2], g_ra_spun[2], g_ra_sleeps[2], g_ra_wait_ns[2];
static _Atomic uint64_t g_ra_hist[2][8];

void local_readahead_handoffs(struct local_ra_handoffs *ret)
{
        for (int i = 0; i < 2; i++) {
                ret->waits[i] = atomic_load(&g_ra_waits[i]);
                ret->spun[i] = atomic_load(&g_ra_spun[i]);
                ret->sleeps[i] = atomic_load(&g_ra_sleeps[i]);
                ret->wait_ns[i] = atomic_load(&g_ra_wait_ns[i]);
                for (int j = 0; j < 8; j++)
                        ret->hist[i][j] = atomic_load(&g_ra_hist[i][j]);
        }
}

static void ra_waited(int side, uint64_t t0)
{
        uint64_t d = walu_monotonic_ns() - t0;
        atomic_fetch_add_explicit(&g_ra_wait_ns[side], d, memory_order_relaxed);
        int b = d < 10000 ? 0 : d < 25000 ? 1 : d < 50000 ? 2 : d < 100000 ? 3 : d < 200000 ? 4
              : d < 500000 ? 5 : d < 1000000 ? 6 : 7;
        atomic_fetch_add_explicit(&g_ra_hist[side][b], 1, memory_order_relaxed);
}

static bool ra_watch_for(_Atomic unsigned *count, _Atomic bool *flag, _Atomic bool *stop,
                         uint64_t ns)
{
        uint64_t until = walu_monotonic_ns() + ns;
        do {
                for (int i = 0; i < 64; i++) {
                        if (count && atomic_load_explicit(count, memory_order_acquire))
                                return true;
                        if (flag && atomic_load_explicit(flag, memory_order_acquire))
                                return true;
                        if (stop && atomic_load_explicit(stop, memory_order_relaxed))
                                return false;
                        cpu_relax();
                }
        } while (walu_monotonic_ns() < until);
        return false;
}

/*
 * The hand-off between scanner and helper (about one per 1 MiB chunk each
 * way) sleeps on a condition variable when one side waits for the other.
 * On a VM whose idle vCPU halts at once, waking it costs tens of
 * microseconds on the critical path; so before sleeping each side watches
 * for the other's move for at most local.read_spin_us (a pause loop, the
 * clock read every 64 turns): the helper for a queued chunk (@count non-zero)
 * and only while the scanner says it will queue more (ra->more: not at the
 * durable end, so a scanner tailing an idle channel makes nobody spin; it
 * stops its helper at the head anyway), the scanner for the chunk it needs
 * (@flag), which the helper has queued and reads next.  @stop: leave at
 * once.  true if the move was seen.
 *
 * A watch that sees nothing was CPU time thrown away, and on a busy machine
 * (the other side waits for a CPU, not for work) most do: so after each
 * miss a side sleeps at once for the next 1, 3, 7, 15, then 31 waits
 * (ra_backoff), and a watch that sees the move lets it watch every time
 * again.  A missed watch costs at most local.read_spin_us.
 */
static bool ra_watch(_Atomic unsigned *count, _Atomic bool *flag, _Atomic bool *stop,
                     uint64_t ns, struct ra_backoff *b)
{
        if (b->skip) {
                b->skip--;
                return false;
        }
        bool seen = ra_watch_for(count, flag, stop, ns);
        if (seen) {
                b->miss = 0;
        } else {
                b->miss += b->miss < 5;
                b->skip = (1u << b->miss) - 1;
        }
        return seen;
}

/* Whether the frame at @p (@left bytes to the end of the chunk) is cut by
 * the end rather than whole. */
static bool ra_cut(const uint8_t *p, size_t left)
{
        return left < LOCAL_FRAME_HDR_SIZE ||
               (uint64_t)walu_get_be32(p) > left - LOCAL_FRAME_HDR_SIZE;
}

/*
 * The helper's work on slot @sl, read into @dst (@got bytes of @len), with
 * the frame cut by the previous chunk's end at @at (LSN @lsn, bytes at @from;
 * @valid false: unknown).  Called and returns without the lock.  Sets the
 * slot's walk fields, marks it ready, checks it, and leaves the walk state
 * for the next chunk in *@ws.
 */
struct ra_walk {
        bool valid;
        uint64_t at, lsn, end;
        const uint8_t *p;
};

static void readahead_check(struct readahead *ra, struct ra_slot *sl, uint8_t *dst, ssize_t got,
                            struct ra_walk *ws)
{
        uint64_t off = sl->off;
        bool vok = ws->valid && got == (ssize_t)sl->len && ws->at <= off &&
                   off - ws->at <= LOCAL_RA_HEAD;
        uint64_t at = ws->at, lsn = ws->lsn;
        if (vok) {
                memcpy(dst - (off - at), ws->p, (size_t)(off - at));
                atomic_store_explicit(&sl->vword, at << 1, memory_order_relaxed);
        }
        ws->valid = false;
        pthread_mutex_lock(&ra->lock);
        sl->got = got;
        sl->vok = vok;
        sl->vstart = at;
        sl->vlsn = lsn;
        sl->ready = true;
        pthread_cond_broadcast(&ra->done);
        pthread_mutex_unlock(&ra->lock);
        if (!vok)
                return;
        const uint8_t *p = dst - (off - at), *end = dst + got;
        bool crc = !atomic_load_explicit(&g_ra_skip_checks, memory_order_relaxed);
        uint64_t hint_off = sl->hint_off, hint_lsn = sl->hint_lsn;
        for (;;) {
                if (atomic_load_explicit(&ra->cancel, memory_order_relaxed))
                        return;
                uint64_t w = atomic_load_explicit(&sl->vword, memory_order_acquire);
                if (w & LOCAL_RA_TAKEN)
                        crc = false;
                /* Reading comes first: with a chunk waiting to be read the
                 * helper leaves the rest of this one to the scanner (only
                 * walks its headers), so it checks only when it is ahead. */
                if (atomic_load_explicit(&ra->pending, memory_order_relaxed) &&
                    !atomic_load_explicit(&g_ra_wait_checks, memory_order_relaxed))
                        crc = false;
                /* Not checking any more: only the frame cut by the chunk's
                 * end is wanted (for the next chunk), so walk from the
                 * chunk's last indexed frame instead of every header.
                 * Trusted no more than the walk: the scanner uses the
                 * helper's checks only from where it stands itself, with
                 * the LSN it expects (readahead_take). */
                if (!crc && hint_off > at && hint_off < off + (uint64_t)got) {
                        p = dst + (hint_off - off);
                        at = hint_off;
                        lsn = hint_lsn;
                        hint_off = 0;
                        atomic_fetch_add_explicit(&g_ra_hint_jumps, 1, memory_order_relaxed);
                }
                /* a group is at most LOCAL_RA_GROUP frames or about
                 * LOCAL_RA_GROUP_BYTES, so a takeover wastes little.  A
                 * frame larger than that is left to the scanner, and so is
                 * the rest of the chunk: for such frames the helper's CRC
                 * measured slower (it delays the next read, and the scanner
                 * has little else to do; tools/bench/local-notes.md). */
                size_t left = (size_t)(end - p), used;
                size_t n = local_frames_check(p, WALU_MIN(left, (size_t)LOCAL_RA_GROUP_BYTES),
                                              lsn, LOCAL_RA_GROUP, crc, &used);
                if (n == 0 && left > LOCAL_RA_GROUP_BYTES) {
                        crc = false;
                        n = local_frames_check(p, left, lsn, 1, false, &used);
                }
                if (crc && n &&
                    !atomic_compare_exchange_strong_explicit(&sl->vword, &w,
                                                             (at + used) << 1,
                                                             memory_order_release,
                                                             memory_order_relaxed))
                        crc = false;    /* taken over meanwhile: the scanner checks */
                if (used > (size_t)(end - p))
                        return;         /* padding past the end: not a chunk we cut */
                p += used;
                at += used;
                lsn += n;
                if (n == 0)
                        break;
        }
        /* A frame that does not pass ends the walk; one cut by the end of the
         * chunk is carried into the next. */
        if (!ra_cut(p, (size_t)(end - p)))
                return;
        *ws = (struct ra_walk){ .valid = true, .at = at, .lsn = lsn, .end = off + (uint64_t)got,
                                .p = p };
}

static void *readahead_main(void *arg)
{
        struct readahead *ra = arg;
        pthread_setname_np(pthread_self(), "wal-local-ra");
        bool idle = false;
        uint64_t idle_t0 = 0;
        struct ra_backoff hback = { 0, 0 };
        pthread_mutex_lock(&ra->lock);
        for (;;) {
                struct ra_slot *sl = &ra->slot[ra->next_read];
                if (ra->stop)
                        break;
                if (sl->state != RA_QUEUED) {
                        /* Nothing to read: watch for the scanner's next chunk
                         * for a while (only while it says it will queue one)
                         * before sleeping (see ra_watch). */
                        if (!idle) {
                                idle = true;
                                idle_t0 = walu_monotonic_ns();
                                atomic_fetch_add_explicit(&g_ra_waits[0], 1,
                                                          memory_order_relaxed);
                                if (ra->spin_ns &&
                                    atomic_load_explicit(&ra->more, memory_order_relaxed)) {
                                        pthread_mutex_unlock(&ra->lock);
                                        bool got = ra_watch(&ra->pending, NULL, &ra->cancel,
                                                            ra->spin_ns, &hback);
                                        pthread_mutex_lock(&ra->lock);
                                        if (got)
                                                atomic_fetch_add_explicit(&g_ra_spun[0], 1,
                                                                          memory_order_relaxed);
                                        continue;
                                }
                        }
                        atomic_fetch_add_explicit(&g_ra_sleeps[0], 1, memory_order_relaxed);
                        pthread_cond_wait(&ra->wake, &ra->lock);
                        continue;
                }
                if (idle)
                        ra_waited(0, idle_t0);
                idle = false;
                sl->state = RA_BUSY;
                atomic_fetch_sub_explicit(&ra->pending, 1, memory_order_relaxed);
                int fd = ra->fd;
                uint64_t off = sl->off;
                size_t len = sl->len;
                uint8_t *dst = sl->mem + LOCAL_RA_HEAD;
                /* where the walk into this chunk starts: the helper's own, or
                 * the scanner's buffer after a start */
                struct ra_walk ws = { .valid = ra->w_valid && ra->w_end == off, .at = ra->w_at,
                                      .lsn = ra->w_lsn, .p = ra->w_p };
                bool seed = !ws.valid && ra->seed && ra->seed_end == off;
                const uint8_t *seed_p = ra->seed_p;
                uint64_t seed_at = ra->seed_at;
                ra->seed = false;
                ra->w_valid = false;
                pthread_mutex_unlock(&ra->lock);
                if (seed && off - seed_at >= LOCAL_FRAME_HDR_SIZE) {
                        /* headers only: the scanner checks these frames */
                        uint64_t lsn = walu_get_be64(seed_p + 8);
                        size_t used;
                        size_t n = local_frames_check(seed_p, (size_t)(off - seed_at), lsn,
                                                      SIZE_MAX, false, &used);
                        if (used <= off - seed_at &&
                            ra_cut(seed_p + used, (size_t)(off - seed_at) - used))
                                ws = (struct ra_walk){ .valid = true, .at = seed_at + used,
                                                       .lsn = lsn + n, .p = seed_p + used };
                }
                ssize_t got = 0;
                while ((size_t)got < len) {
                        ssize_t n = ra->io->pread(ra->io->ctx, fd, dst + got, len - (size_t)got,
                                                  (off_t)(off + (uint64_t)got));
                        if (n <= 0) {
                                if (n < 0)
                                        got = n;
                                break;
                        }
                        got += n;
                }
                readahead_check(ra, sl, dst, got, &ws);
                pthread_mutex_lock(&ra->lock);
                if (ws.valid) {
                        ra->w_valid = true;
                        ra->w_at = ws.at;
                        ra->w_lsn = ws.lsn;
                        ra->w_end = ws.end;
                        ra->w_p = ws.p;
                }
                sl->state = sl->taken ? RA_IDLE : RA_DONE;
                ra->next_read = (ra->next_read + 1) % LOCAL_RA_SLOTS;
                pthread_cond_broadcast(&ra->left);
        }
        pthread_mutex_unlock(&ra->lock);
        return NULL;
}

static void readahead_free(struct readahead *ra)
{
        for (unsigned i = 0; i < LOCAL_RA_SLOTS; i++)
                free(ra->slot[i].mem);
        free(ra);
}

/* Start the helper; false (and no read-ahead for this scanner) if it cannot. */
static bool readahead_start(struct local_scanner *s)
{
        struct readahead *ra = calloc(1, sizeof(*ra));
        if (!ra)
                return false;
        ra->io = s->c->io;
        atomic_init(&ra->cancel, false);
        atomic_init(&ra->pending, 0);
        atomic_init(&ra->more, false);
        ra->spin_ns = s->spin_ns;
        bool mem = true;
        /* Page-aligned: the kernel's copy into them measured faster so. */
        for (unsigned i = 0; i < LOCAL_RA_SLOTS; i++) {
                atomic_init(&ra->slot[i].vword, 0);
                atomic_init(&ra->slot[i].ready, false);
                mem = (ra->slot[i].mem = aligned_alloc(4096, LOCAL_RA_BUF)) && mem;
        }
        /* 0..5: how far the set-up got */
        int stage = !mem ? 0
                  : pthread_mutex_init(&ra->lock, NULL) != 0 ? 0
                  : pthread_cond_init(&ra->wake, NULL) != 0 ? 1
                  : pthread_cond_init(&ra->done, NULL) != 0 ? 2
                  : pthread_cond_init(&ra->left, NULL) != 0 ? 3
                  : pthread_create(&ra->thread, NULL, readahead_main, ra) != 0 ? 4 : 5;
        if (stage < 5) {
                if (stage >= 4)
                        pthread_cond_destroy(&ra->left);
                if (stage >= 3)
                        pthread_cond_destroy(&ra->done);
                if (stage >= 2)
                        pthread_cond_destroy(&ra->wake);
                if (stage >= 1)
                        pthread_mutex_destroy(&ra->lock);
                readahead_free(ra);
                return false;
        }
        s->ra = ra;
        return true;
}

/* Cancel what is queued and wait for the helper to leave its slot:
 * afterwards it touches neither the fd nor a buffer.  Before the scanner
 * closes its fd or reads synchronously (s->buf then leaves the slots). */
static void readahead_drop(struct local_scanner *s)
{
        struct readahead *ra = s->ra;
        s->vslot = NULL;
        if (!ra)
                return;
        pthread_mutex_lock(&ra->lock);
        atomic_store_explicit(&ra->cancel, true, memory_order_relaxed);
        for (;;) {
                bool busy = false;
                for (unsigned i = 0; i < LOCAL_RA_SLOTS; i++) {
                        if (ra->slot[i].state == RA_QUEUED)
                                ra->slot[i].state = RA_IDLE;
                        busy |= ra->slot[i].state == RA_BUSY;
                }
                if (!busy)
                        break;
                pthread_cond_wait(&ra->left, &ra->lock);
        }
        for (unsigned i = 0; i < LOCAL_RA_SLOTS; i++) {
                ra->slot[i].state = RA_IDLE;
                ra->slot[i].ready = false;
                ra->slot[i].taken = false;
        }
        atomic_store_explicit(&ra->pending, 0, memory_order_relaxed);
        ra->next_read = 0;
        ra->seed = false;
        ra->w_valid = false;
        atomic_store_explicit(&ra->cancel, false, memory_order_relaxed);
        pthread_mutex_unlock(&ra->lock);
        ra->take = 0;
        ra->queued = 0;
}

static void readahead_stop(struct local_scanner *s)
{
        struct readahead *ra = s->ra;
        s->vslot = NULL;
        if (!ra)
                return;
        pthread_mutex_lock(&ra->lock);
        ra->stop = true;
        atomic_store_explicit(&ra->cancel, true, memory_order_relaxed);
        pthread_cond_signal(&ra->wake);
        pthread_mutex_unlock(&ra->lock);
        pthread_join(ra->thread, NULL);
        pthread_cond_destroy(&ra->wake);
        pthread_cond_destroy(&ra->done);
        pthread_cond_destroy(&ra->left);
        pthread_mutex_destroy(&ra->lock);
        readahead_free(ra);
        s->ra = NULL;
}

/* A scanner that reached the head (it is about to wait for new records)
 * stops its helper and frees the buffers; a later sequential read of more
 * than LOCAL_RA_AFTER chunks starts another.  A buffer in a slot is
 * forgotten (the next frame is read again). */
static void readahead_release(struct local_scanner *s)
{
        if (!s->ra)
                return;
        if (s->buf != s->mem) {
                s->buf = s->mem;
                s->buf_len = 0;
                s->verified_end = 0;
        }
        readahead_stop(s);
        s->ra_streak = 0;
}

/* The last frame of the scanner's copy of the sparse index inside slot
 * @sl's chunk, for the helper's walk (readahead_check). */
static void ra_hint(const struct local_scanner *s, struct ra_slot *sl)
{
        size_t lo = 0, hi = s->n_ix;
        uint64_t end = sl->off + sl->len;
        while (lo < hi) {       /* the first entry at or past the chunk's end */
                size_t mid = lo + (hi - lo) / 2;
                if (s->ix[mid].off < end)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        sl->hint_off = sl->hint_lsn = 0;
        if (lo > 0 && s->ix[lo - 1].off > sl->off) {
                sl->hint_off = s->ix[lo - 1].off;
                sl->hint_lsn = s->ix[lo - 1].lsn;
        }
}

/* After a refill: queue the chunks that follow the buffer into the free
 * slots (all but the one s->buf points into), up to the durable end
 * @limit.  The first after a start or a drop carries the scanner's buffer
 * from s->off on, where the helper's walk begins. */
static void readahead_queue(struct local_scanner *s, uint64_t limit)
{
        struct readahead *ra = s->ra;
        if (!ra)
                return;
        bool first = ra->queued == 0;
        if (first)
                ra->queued_end = s->buf_off + s->buf_len;
        if (ra->queued >= LOCAL_RA_SLOTS - 1 || ra->queued_end >= limit)
                return;
        pthread_mutex_lock(&ra->lock);
        ra->fd = s->fd;
        if (first && s->off >= s->buf_off && s->off <= s->buf_off + s->buf_len) {
                ra->seed = true;
                ra->seed_p = s->buf + (s->off - s->buf_off);
                ra->seed_at = s->off;
                ra->seed_end = s->buf_off + s->buf_len;
        }
        while (ra->queued < LOCAL_RA_SLOTS - 1 && ra->queued_end < limit) {
                struct ra_slot *sl = &ra->slot[(ra->take + ra->queued) % LOCAL_RA_SLOTS];
                WAL_ASSERT(sl->state == RA_IDLE);
                sl->off = ra->queued_end;
                sl->len = (size_t)WALU_MIN((uint64_t)LOCAL_READ_CHUNK, limit - sl->off);
                ra_hint(s, sl);
                sl->state = RA_QUEUED;
                sl->ready = false;
                sl->taken = false;
                atomic_fetch_add_explicit(&ra->pending, 1, memory_order_release);
                ra->queued_end += sl->len;
                ra->queued++;
        }
        atomic_store_explicit(&ra->more, ra->queued_end < limit, memory_order_relaxed);
        pthread_cond_signal(&ra->wake);
        pthread_mutex_unlock(&ra->lock);
}

/*
 * Whether the read-ahead helper has checked frames past s->off in the
 * current buffer: extends s->verified_end and returns true if so; if not,
 * takes the buffer's checks over (the scanner checks the rest itself).
 */
static bool scanner_more_checked(struct local_scanner *s)
{
        struct ra_slot *sl = s->vslot;
        if (!sl)
                return false;
        uint64_t w = atomic_load_explicit(&sl->vword, memory_order_acquire);
        for (;;) {
                if (w & LOCAL_RA_TAKEN) {
                        s->vslot = NULL;
                        return false;
                }
                uint64_t v = w >> 1;
                if (v > s->off && v > s->verified_end) {
                        s->verified_end = v;
                        return true;
                }
                if (atomic_compare_exchange_weak_explicit(&sl->vword, &w, w | LOCAL_RA_TAKEN,
                                                          memory_order_acquire,
                                                          memory_order_acquire)) {
                        s->vslot = NULL;
                        return false;
                }
        }
}

/*
 * Refill from the next read-ahead slot when it continues the current
 * buffer and the unread tail fits in front of it.  @returns true when s->buf
 * now holds the bytes from s->off on; false with the read-ahead dropped
 * (the caller reads synchronously).
 */
static bool readahead_take(struct local_scanner *s)
{
        struct readahead *ra = s->ra;
        if (!ra)
                return false;
        struct ra_slot *sl = &ra->slot[ra->take];
        uint64_t end = s->buf_off + s->buf_len;
        /* sl->off is the scanner's own write, stable while queued */
        if (ra->queued == 0 || sl->off != end || s->off < s->buf_off || s->off > end ||
            end - s->off > LOCAL_RA_HEAD) {
                readahead_drop(s);
                return false;
        }
        bool wait_checks = atomic_load_explicit(&g_ra_wait_checks, memory_order_relaxed);
        uint64_t t0 = 0;
        if (!atomic_load_explicit(&sl->ready, memory_order_acquire)) {
                t0 = walu_monotonic_ns();
                /* the helper has this chunk queued or is reading it */
                atomic_fetch_add_explicit(&g_ra_waits[1], 1, memory_order_relaxed);
                if (ra->spin_ns && !wait_checks &&
                    ra_watch(NULL, &sl->ready, NULL, ra->spin_ns, &ra->sback))
                        atomic_fetch_add_explicit(&g_ra_spun[1], 1, memory_order_relaxed);
        }
        pthread_mutex_lock(&ra->lock);
        while (!sl->ready || (wait_checks && sl->state == RA_BUSY)) {
                atomic_fetch_add_explicit(&g_ra_sleeps[1], 1, memory_order_relaxed);
                /* the hook's wait ends when the helper leaves the slot,
                 * after the read */
                pthread_cond_wait(wait_checks ? &ra->left : &ra->done, &ra->lock);
        }
        if (t0)
                ra_waited(1, t0);
        ssize_t got = sl->got;
        bool vok = sl->vok;
        uint64_t vstart = sl->vstart, vlsn = sl->vlsn;
        if (sl->state == RA_DONE)
                sl->state = RA_IDLE;
        else
                sl->taken = true;       /* the helper still walks it */
        pthread_mutex_unlock(&ra->lock);
        if (got <= 0 || (size_t)got < sl->len || (vok && vstart != s->off)) {
                /* an error or a short read (the synchronous read decides), or
                 * a walk that does not meet the scanner's */
                readahead_drop(s);
                return false;
        }
        size_t tail = (size_t)(end - s->off);
        uint8_t *data = sl->mem + LOCAL_RA_HEAD;
        s->vslot = NULL;
        if (vok) {
                /* the helper copied the tail; its checks count only from the
                 * LSN the scanner expects here */
                if (vlsn == s->next_lsn)
                        s->vslot = sl;
                else
                        atomic_fetch_or_explicit(&sl->vword, LOCAL_RA_TAKEN,
                                                 memory_order_relaxed);
        } else {
                memcpy(data - tail, s->buf + (s->off - s->buf_off), tail);
        }
        s->buf = data - tail;
        s->buf_off = s->off;
        s->buf_len = tail + (size_t)got;
        s->verified_end = 0;
        ra->take = (ra->take + 1) % LOCAL_RA_SLOTS;
        ra->queued--;
        return true;
}

/* Decode the frame at s->off, reading through the buffer up to @limit. */
static int scanner_frame(struct local_scanner *s, const char *path, uint64_t limit,
                         struct local_frame *f, wal_error **reterr)
{
        const struct local_io_ops *io = s->c->io;
        for (int attempt = 0;; attempt++) {
                int r = -EAGAIN;
                if (s->off >= s->buf_off && s->off < s->buf_off + s->buf_len) {
                        const uint8_t *p = s->buf + (s->off - s->buf_off);
                        size_t avail = s->buf_len - (size_t)(s->off - s->buf_off);
                        if (s->off >= s->verified_end)
                                scanner_more_checked(s);
                        if (s->off < s->verified_end && local_frame_peek(p, avail, f) > 0)
                                return 0;
                        /* Check the CRCs of the frames ahead in the buffer
                         * together; later calls only re-read their headers
                         * (the buffer holds the same bytes until refilled). */
                        struct local_frame run[LOCAL_CRC_BATCH];
                        size_t n = 0;
                        uint64_t at = s->off;
                        while (n < LOCAL_CRC_BATCH && at < s->buf_off + s->buf_len &&
                               local_frame_peek(s->buf + (at - s->buf_off),
                                                s->buf_len - (size_t)(at - s->buf_off),
                                                &run[n]) > 0) {
                                at += run[n].size;
                                n++;
                        }
                        size_t ok = n ? local_frames_check_crc(run, n) : 0;
                        if (ok) {
                                uint64_t end = s->off;
                                for (size_t i = 0; i < ok; i++)
                                        end += run[i].size;
                                s->verified_end = end;
                                *f = run[0];
                                return 0;
                        }
                        r = local_frame_decode(p, avail, f);
                }
                if (r > 0)
                        return 0;
                if (r != -EAGAIN || attempt >= 2 || s->off + LOCAL_FRAME_HDR_SIZE > limit)
                        return scanner_fail(s, -EBADMSG, reterr,
                                            "local: corrupt frame in %s at offset %" PRIu64
                                            " (LSN %" PRIu64 ")", path, s->off, s->next_lsn);
                size_t want = LOCAL_READ_CHUNK;
                if (r == -EAGAIN && s->off >= s->buf_off &&
                    s->off + LOCAL_FRAME_HDR_SIZE <= s->buf_off + s->buf_len) {
                        uint32_t body = walu_get_be32(s->buf + (s->off - s->buf_off));
                        want = WALU_MAX(want, (size_t)local_frame_size(body));
                }
                want = (size_t)WALU_MIN((uint64_t)want, limit - s->off);
                if (attempt == 0 && readahead_take(s)) {
                        readahead_queue(s, limit);
                        continue;
                }
                /* before the buffer changes: the helper may be walking it */
                readahead_drop(s);
                if (s->cap < want) {
                        uint8_t *nb = realloc(s->mem, want);
                        if (!nb)
                                return wal_error_set(reterr, -ENOMEM, 0, "local: out of memory");
                        s->mem = nb;
                        s->cap = want;
                }
                s->buf = s->mem;
                s->buf_len = 0;
                size_t got = 0;
                while (got < want) {
                        ssize_t n = io->pread(io->ctx, s->fd, s->buf + got, want - got,
                                              (off_t)(s->off + got));
                        if (n < 0)
                                return scanner_fail(s, (int)n, reterr,
                                                    "local: reading %s at offset %" PRIu64 ": %s",
                                                    path, s->off + got, strerror((int)-n));
                        if (n == 0)
                                break;
                        got += (size_t)n;
                }
                s->buf_off = s->off;
                s->buf_len = got;
                s->verified_end = 0;
                /* A replay: read the next chunk ahead from now on. */
                if (got == LOCAL_READ_CHUNK && s->off + got < limit)
                        s->ra_streak++;
                else
                        s->ra_streak = 0;
                if (!s->ra && s->ra_streak >= LOCAL_RA_AFTER && !readahead_start(s))
                        s->ra_streak = 0;
                readahead_queue(s, limit);
        }
}

/*
 * Wait up to @timeout_ms for record s->next_lsn to be durable and position
 * the scanner on it (s->off in the open segment s->fd).  0 with *ret_path
 * (the segment's path, owned by the scanner) and *ret_limit (the end of the
 * durable frames in it), or what next() returns.
 */
static int scanner_seek(struct local_scanner *s, int timeout_ms, const char **ret_path,
                        uint64_t *ret_limit, wal_error **reterr)
{
        struct walimpls_scanner *base = &s->base;
        struct chan *c = s->c;
        if (s->sticky)
                return wal_error_set(reterr, s->sticky, WAL_ERROR_FATAL, "%s",
                                     s->sticky_msg ? s->sticky_msg : wal_strerror(s->sticky));
        uint64_t deadline = timeout_ms > 0 ? walu_monotonic_ns() +
                                             (uint64_t)timeout_ms * 1000000u : 0;
        const char *path = NULL;
        uint64_t limit, seg_first;
        bool reopen;
        /* True once the eventfd was drained during this call: every drain
         * is followed by a fresh look for data, so a signal after that look
         * leaves the fd readable (no lost wake-up for pollers). */
        bool drained = false;
        /* Fast path: still inside what the last look found durable in the
         * open segment, and no segment was removed since: no lock. */
        if (s->positioned && s->fd >= 0 && s->next_lsn <= s->fast_until &&
            !s->nt.interrupted &&
            atomic_load_explicit(&c->seg_gen, memory_order_acquire) == s->fast_gen) {
                path = s->seg_path;
                limit = s->fast_limit;
                goto decode;
        }
        for (;;) {
                if (s->nt.interrupted)
                        return -ECANCELED;
                pthread_mutex_lock(&c->lock);
                uint64_t first = chan_first_lsn(c);
                if (s->next_lsn < first) {
                        pthread_mutex_unlock(&c->lock);
                        return scanner_fail(s, -ERANGE, reterr,
                                            "local: LSN %" PRIu64 " of channel '%s' was "
                                            "truncated away; the first retained is %" PRIu64,
                                            s->next_lsn, base->wal->channel, first);
                }
                if (s->next_lsn <= c->durable_lsn) {
                        size_t i = chan_find_seg(c, s->next_lsn);
                        WAL_ASSERT(i != SIZE_MAX);
                        struct local_seg *seg = c->segs[i];
                        seg_first = seg->first_lsn;
                        limit = seg->end;
                        s->fast_until = seg->last_lsn;
                        s->fast_limit = seg->end;
                        s->fast_gen = atomic_load_explicit(&c->seg_gen, memory_order_relaxed);
                        reopen = s->fd < 0 || s->seg_first != seg_first;
                        if (reopen || !s->positioned) {
                                uint64_t at;
                                local_seg_index_find(seg, s->next_lsn, &s->off, &at);
                                s->positioned = at == s->next_lsn;
                                /* Keep the LSN the index gave in buf_off's
                                 * place: skip frames below. */
                                s->seg_first = seg_first;
                                char *np = strdup(seg->path);
                                if (reopen) {
                                        /* a copy for the read-ahead helper's
                                         * hints; none if it cannot be made */
                                        free(s->ix);
                                        s->ix = seg->n_index
                                                        ? malloc(seg->n_index * sizeof(*s->ix))
                                                        : NULL;
                                        s->n_ix = s->ix ? seg->n_index : 0;
                                        if (s->ix)
                                                memcpy(s->ix, seg->index,
                                                       s->n_ix * sizeof(*s->ix));
                                }
                                pthread_mutex_unlock(&c->lock);
                                if (!np)
                                        return wal_error_set(reterr, -ENOMEM, 0,
                                                             "local: out of memory");
                                free(s->seg_path);
                                s->seg_path = np;
                                path = np;
                                if (reopen) {
                                        readahead_drop(s);
                                        if (s->fd >= 0)
                                                c->io->close(c->io->ctx, s->fd);
                                        s->fd = c->io->open(c->io->ctx, path, O_RDONLY, 0);
                                        s->buf_len = 0;
                                        s->verified_end = 0;
                                        if (s->fd == -ENOENT)
                                                return scanner_fail(s, -ERANGE, reterr,
                                                                    "local: segment %s was "
                                                                    "truncated away", path);
                                        if (s->fd < 0)
                                                return scanner_fail(s, s->fd, reterr,
                                                                    "local: cannot open %s: %s",
                                                                    path, strerror(-s->fd));
                                }
                                /* Walk from the indexed frame to next_lsn. */
                                uint64_t lsn = at;
                                while (lsn < s->next_lsn) {
                                        struct local_frame f;
                                        int r = scanner_frame(s, path, limit, &f, reterr);
                                        if (r < 0)
                                                return r;
                                        if (f.lsn != lsn)
                                                return scanner_fail(s, -EBADMSG, reterr,
                                                                    "local: frame in %s at offset "
                                                                    "%" PRIu64 " has LSN %" PRIu64
                                                                    ", expected %" PRIu64, path,
                                                                    s->off, f.lsn, lsn);
                                        s->off += f.size;
                                        lsn++;
                                }
                                s->positioned = true;
                                break;
                        }
                        path = s->seg_path;   /* same segment as the open fd */
                        pthread_mutex_unlock(&c->lock);
                        break;
                }
                /* At the head: ask to be signalled, then wait. */
                s->want_signal = true;
                uint64_t seq = walimpls_notifier_seq(&s->nt);
                pthread_mutex_unlock(&c->lock);
                readahead_release(s);
                int wait_ms = -1;
                if (timeout_ms > 0) {
                        uint64_t now = walu_monotonic_ns();
                        wait_ms = now >= deadline ? 0
                                                  : (int)((deadline - now + 999999) / 1000000);
                } else if (timeout_ms == 0) {
                        wait_ms = 0;
                }
                if (wait_ms == 0) {
                        if (!drained) {
                                walimpls_notifier_drain(&s->nt);
                                drained = true;
                                continue;
                        }
                        return -ETIMEDOUT;
                }
                int r = walimpls_notifier_wait(&s->nt, seq, wait_ms);  /* drains */
                if (r == -ECANCELED)
                        return r;
                drained = true;
        }

decode:
        *ret_path = path;
        *ret_limit = limit;
        return 0;
}

/*
 * The start of next() and next_batch(): wait for and position at the next
 * record, read its frame (CRC checked) into @f and check it carries the
 * expected LSN.  @path and @limit: the segment file and its end of data.
 */
static int scanner_next_frame(struct local_scanner *s, int timeout_ms, const char **path,
                              uint64_t *limit, struct local_frame *f, wal_error **reterr)
{
        int r = scanner_seek(s, timeout_ms, path, limit, reterr);
        if (r < 0)
                return r;
        r = scanner_frame(s, *path, *limit, f, reterr);
        if (r < 0)
                return r;
        if (f->lsn != s->next_lsn)
                return scanner_fail(s, -EBADMSG, reterr,
                                    "local: frame in %s at offset %" PRIu64 " has LSN %" PRIu64
                                    ", expected %" PRIu64, *path, s->off, f->lsn, s->next_lsn);
        return 0;
}

static int local_next(struct walimpls_scanner *base, int timeout_ms, wal_msg **ret,
                      wal_error **reterr)
{
        WAL_ASSERT_RETURN(base && ret,
                          wal_error_set(reterr, -EINVAL, 0, "local: next: NULL argument"));
        struct local_scanner *s = scanner_from_base(base);
        const char *path;
        uint64_t limit;
        struct local_frame f;
        int r = scanner_next_frame(s, timeout_ms, &path, &limit, &f, reterr);
        if (r < 0)
                return r;
        wal_msg *m = NULL;
        wal_error *derr = NULL;
        r = walu_envelope_decode(f.env_len ? f.env : NULL, f.env_len, f.payload, f.payload_len,
                                 &m, &derr);
        if (r < 0) {
                r = scanner_fail(s, r, reterr, "local: record LSN %" PRIu64 " in %s at offset %"
                                 PRIu64 ": %s", s->next_lsn, path, s->off,
                                 wal_error_message(derr));
                wal_error_free(derr);
                return r;
        }
        r = wal_msg_freeze(m, WAL_MSGID(0, s->next_lsn));
        if (r < 0) {
                wal_msg_unref(m);
                return wal_error_set(reterr, r, 0, "local: freezing message: %s", wal_strerror(r));
        }
        s->off += f.size;
        s->next_lsn++;
        *ret = m;
        return 0;
}

/*
 * Batch read: the first record through the same path as next() (wait,
 * position, refill the buffer, CRC), then every following record that is
 * already in the read buffer, durable and in sequence: frames the
 * read-ahead helper (or an earlier check) passed are read straight into
 * views (checked_to_views), the rest are checked by local_frames_scan
 * first.  Views point into s->buf, which only the next call may
 * refill.  A record that fails a check ends the batch before it; the next
 * call reaches it through scanner_frame() and fails as next() does.
 */
/*
 * Per record of @run (@m frames from LSN @lsn, borrowed): the envelope (the
 * common ones inline), ID and payload into @views (at least @m, filled);
 * *@moved gets the bytes the viewed frames take.  Stops before the first
 * envelope that does not pass.  A function of its own so that this loop
 * keeps its values in registers (inlined into next_batch, they spilled).
 * @returns the number of views filled.
 */
static size_t __attribute__((noinline))
frames_to_views(const struct local_frame *run, size_t m, uint64_t lsn,
                struct wal_msg_view *views, uint64_t *moved)
{
        uint64_t bytes = 0;
        size_t i = 0;
        for (; i < m; i++) {
                const struct local_frame *fr = &run[i];
                struct wal_msg_view *v = &views[i];
                if (walu_envelope_view_inline(fr->env_len ? fr->env : NULL, fr->env_len, v,
                                              NULL) < 0)
                        break;
                v->id = WAL_MSGID(0, lsn + i);
                v->payload = fr->payload;
                v->payload_len = fr->payload_len;
                bytes += fr->size;
        }
        *moved = bytes;
        return i;
}

/*
 * Per frame at @p that lies wholly in the first @len bytes, which passed the
 * frame checks before (header, CRC; the read-ahead helper's or the
 * scanner's): what frames_to_views does, straight from the frame headers,
 * in one pass.  The LSN sequence from @lsn is checked again (one compare).
 * At most @max frames; *@moved gets the bytes they take; *@stopped is set
 * when a frame's LSN or envelope does not pass (the next call reports it).
 * @returns the number of views filled.
 */
#ifndef LOCAL_VIEW_PREFETCH
#define LOCAL_VIEW_PREFETCH 1024
#endif
static size_t __attribute__((noinline))
checked_to_views(const uint8_t *p, uint64_t len, uint64_t lsn, size_t max,
                 struct wal_msg_view *views, uint64_t *moved, bool *stopped)
{
        uint64_t at = 0;
        size_t i = 0;
        /* the bytes were written by the helper's CPU: ask early for every
         * line (not one address per frame, which skips lines) */
        const uint8_t *pf = (const uint8_t *)((uintptr_t)p & ~(uintptr_t)63);
        const uint8_t *pf_end = p + len;
        for (; i < max && at < len; i++) {
                const uint8_t *h = p + at;
                if (pf < h)     /* past a large frame: from this one on */
                        pf = (const uint8_t *)((uintptr_t)h & ~(uintptr_t)63);
                while (pf < h + LOCAL_VIEW_PREFETCH && pf < pf_end) {
                        __builtin_prefetch(pf);
                        pf += 64;
                }
                uint32_t body = walu_get_be32(h);
                uint32_t env = walu_get_be32(h + 4);
                struct wal_msg_view *v = &views[i];
                const uint8_t *e = h + LOCAL_FRAME_HDR_SIZE;
                if (walu_get_be64(h + 8) != lsn + i ||
                    walu_envelope_view_inline(env ? e : NULL, env, v, NULL) < 0) {
                        *stopped = true;
                        break;
                }
                v->id = WAL_MSGID(0, lsn + i);
                v->payload = e + env;
                v->payload_len = body - env;
                at += local_frame_size(body);
        }
        *moved = at;
        return i;
}

static int local_next_batch(struct walimpls_scanner *base, int timeout_ms,
                            struct wal_msg_view *views, size_t max, size_t *n,
                            wal_error **reterr)
{
        WAL_ASSERT_RETURN(base && views && n,
                          wal_error_set(reterr, -EINVAL, 0, "local: next_batch: NULL argument"));
        *n = 0;
        if (max == 0)
                return wal_error_set(reterr, -EINVAL, 0, "local: next_batch: max is 0");
        struct local_scanner *s = scanner_from_base(base);
        const char *path;
        uint64_t limit;
        struct local_frame f;
        int r = scanner_next_frame(s, timeout_ms, &path, &limit, &f, reterr);
        if (r < 0)
                return r;
        wal_error *derr = NULL;
        r = walu_envelope_view_inline(f.env_len ? f.env : NULL, f.env_len, &views[0], &derr);
        if (r < 0) {
                r = scanner_fail(s, r, reterr, "local: record LSN %" PRIu64 " in %s at offset %"
                                 PRIu64 ": %s", s->next_lsn, path, s->off,
                                 wal_error_message(derr));
                wal_error_free(derr);
                return r;
        }
        views[0].id = WAL_MSGID(0, s->next_lsn);
        views[0].payload = f.payload;
        views[0].payload_len = f.payload_len;
        s->off += f.size;
        s->next_lsn++;
        size_t k = 1;

        /* The rest of the buffer: durable frames of this segment only,
         * header- and CRC-checked in one pass (local_frames_scan). */
        uint64_t until = s->fast_until;
        uint64_t buf_end = WALU_MIN(s->buf_off + s->buf_len, limit);
        while (k < max && s->next_lsn <= until && s->off >= s->buf_off &&
               s->off + LOCAL_FRAME_HDR_SIZE <= buf_end) {
                if (s->off >= s->verified_end)
                        scanner_more_checked(s);
                if (s->off < s->verified_end) {
                        /* checked before (by the read-ahead helper, mostly) */
                        size_t want = (size_t)WALU_MIN((uint64_t)(max - k),
                                                       until - s->next_lsn + 1);
                        uint64_t moved = 0;
                        bool stopped = false;
                        size_t i = checked_to_views(s->buf + (s->off - s->buf_off),
                                                    s->verified_end - s->off, s->next_lsn,
                                                    want, &views[k], &moved, &stopped);
                        s->off += moved;
                        s->next_lsn += i;
                        k += i;
                        if (stopped) {
                                *n = k;     /* the next call reports it */
                                return 0;
                        }
                        continue;
                }
                struct local_frame run[96];     /* two of local_frames_scan's groups */
                size_t want = WALU_MIN(max - k, WALU_ARRAY_SIZE(run));
                want = (size_t)WALU_MIN((uint64_t)want, until - s->next_lsn + 1);
                size_t checked = s->verified_end > s->off ? (size_t)(s->verified_end - s->off) : 0;
                size_t used;
                size_t m = local_frames_scan(s->buf + (s->off - s->buf_off),
                                             (size_t)(buf_end - s->off), s->next_lsn, want,
                                             checked, run, &used);
                if (s->off + used > s->verified_end)
                        s->verified_end = s->off + used;
                uint64_t lsn = s->next_lsn, moved = 0;
                size_t i = frames_to_views(run, m, lsn, &views[k], &moved);
                s->off += moved;
                s->next_lsn = lsn + i;
                k += i;
                if (i < m) {
                        *n = k;     /* the next call reports it */
                        return 0;
                }
                if (m < want)
                        break;
        }
        *n = k;
        return 0;
}

static void local_interrupt(struct walimpls_scanner *base)
{
        if (!base)
                return;
        walimpls_notifier_interrupt(&scanner_from_base(base)->nt);
}

static int local_scanner_fd(struct walimpls_scanner *base)
{
        if (!base)
                return -EINVAL;
        return scanner_from_base(base)->nt.efd;
}

static void local_scanner_close(struct walimpls_scanner *base)
{
        if (!base)
                return;
        struct local_scanner *s = scanner_from_base(base);
        struct chan *c = s->c;
        pthread_mutex_lock(&c->lock);
        for (struct local_scanner **pp = &c->scanners; *pp; pp = &(*pp)->next_s) {
                if (*pp == s) {
                        *pp = s->next_s;
                        break;
                }
        }
        pthread_mutex_unlock(&c->lock);
        readahead_stop(s);
        if (s->fd >= 0)
                c->io->close(c->io->ctx, s->fd);
        walimpls_notifier_done(&s->nt);
        walimpls_scanner_done(&s->base);
        free(s->mem);
        free(s->seg_path);
        free(s->ix);
        free(s->sticky_msg);
        free(s);
}

/* ---- Opener and builder ---- */

static int local_list_channels(struct walimpls_opener *base, walimpls_channel_fn *fn, void *arg,
                               wal_error **reterr)
{
        WAL_ASSERT_RETURN(base && fn,
                          wal_error_set(reterr, -EINVAL, 0, "local: list: NULL argument"));
        struct local_opener *o = (struct local_opener *)base;
        DIR *d = opendir(o->dir);
        if (!d) {
                if (errno == ENOENT)
                        return 0;
                return wal_error_set(reterr, -errno, 0, "local: cannot list %s: %s", o->dir,
                                     strerror(errno));
        }
        int r = 0;
        struct dirent *de;
        while (r == 0 && (de = readdir(d))) {
                if (!walimpls_channel_name_valid(de->d_name))
                        continue;
                char *p = path_join(o->dir, de->d_name);
                bool is = p && is_channel_dir(p);
                free(p);
                if (is)
                        r = fn(arg, de->d_name);
        }
        closedir(d);
        return r;
}

static void local_opener_close(struct walimpls_opener *base)
{
        if (!base)
                return;
        struct local_opener *o = (struct local_opener *)base;
        free(o->dir);
        free(o);
}

static int local_build(const wal_config *cfg, struct walimpls_opener **ret, wal_error **reterr)
{
        WAL_ASSERT_RETURN(cfg && ret,
                          wal_error_set(reterr, -EINVAL, 0, "local: build: NULL argument"));
        const char *dir = wal_config_get(cfg, "local.dir");
        const char *io = wal_config_get(cfg, "local.io");
        uint64_t seg = 64 * MiB, batch = 4 * MiB;
        int64_t inflight = 4, spin_us = 50, read_spin_us = 50, lanes = 1, early_wake = 8;
        (void)wal_config_get_size(cfg, "local.segment_bytes", &seg);
        (void)wal_config_get_size(cfg, "local.batch_bytes", &batch);
        (void)wal_config_get_int(cfg, "local.inflight", &inflight);
        (void)wal_config_get_int(cfg, "local.spin_us", &spin_us);
        (void)wal_config_get_int(cfg, "local.read_spin_us", &read_spin_us);
        (void)wal_config_get_int(cfg, "local.lanes", &lanes);
        (void)wal_config_get_int(cfg, "local.early_wake", &early_wake);
        if (!dir || !*dir)
                return wal_error_set(reterr, -EINVAL, 0, "local: local.dir is empty");
        enum io_mode mode = IO_AUTO;
        if (io && strcmp(io, "uring") == 0)
                mode = IO_URING;
        else if (io && strcmp(io, "sync") == 0)
                mode = IO_SYNC;
        else if (io && strcmp(io, "auto") != 0)
                return wal_error_set(reterr, -EINVAL, 0, "local: local.io '%s' is not one of "
                                     "auto|uring|sync", io);
        const char *prep = wal_config_get(cfg, "local.prepare");
        if (prep && strcmp(prep, "zero") != 0 && strcmp(prep, "off") != 0)
                return wal_error_set(reterr, -EINVAL, 0, "local: local.prepare '%s' is not one "
                                     "of zero|off", prep);
        const char *check = wal_config_get(cfg, "local.open_check");
        enum local_scan_mode open_check = LOCAL_SCAN_OPEN;
        if (check && strcmp(check, "all") == 0)
                open_check = LOCAL_SCAN_FULL;
        else if (check && strcmp(check, "tail") != 0)
                return wal_error_set(reterr, -EINVAL, 0, "local: local.open_check '%s' is not "
                                     "one of tail|all", check);
        if (seg < 64 * 1024 || inflight < 1 || inflight > LOCAL_INFLIGHT_MAX)
                return wal_error_set(reterr, -EINVAL, 0, "local: local.segment_bytes or "
                                     "local.inflight out of range");
        if (lanes < 1 || lanes > 2)
                return wal_error_set(reterr, -EINVAL, 0, "local: local.lanes %" PRId64
                                     " is not 1 or 2", lanes);
        struct local_opener *o = calloc(1, sizeof(*o));
        if (!o)
                return wal_error_set(reterr, -ENOMEM, 0, "local: out of memory");
        /* Absolute path: channels are shared by directory within the process. */
        if (dir[0] == '/') {
                o->dir = strdup(dir);
        } else {
                char cwd[4096];
                if (getcwd(cwd, sizeof(cwd)))
                        o->dir = path_join(cwd, dir);
        }
        if (!o->dir) {
                free(o);
                return wal_error_set(reterr, -ENOMEM, 0, "local: out of memory");
        }
        size_t n = strlen(o->dir);
        while (n > 1 && o->dir[n - 1] == '/')
                o->dir[--n] = '\0';
        o->base.ops = &local_opener_ops;
        o->base.builder = &walimpls_local;
        o->seg_bytes = seg;
        o->io = mode;
        o->inflight = (int)inflight;
        o->batch_bytes = (size_t)batch;
        o->spin_us = (int)WALU_MAX(0, WALU_MIN(spin_us, 1000));
        o->read_spin_us = (int)WALU_MAX(0, WALU_MIN(read_spin_us, 1000));
        o->lanes = (int)lanes;
        o->early_wake = (int)WALU_MAX(0, WALU_MIN(early_wake, 64));
        o->open_check = open_check;
        o->prepare = !prep || strcmp(prep, "off") != 0;
        *ret = &o->base;
        return 0;
}

static const struct walimpls_opener_ops local_opener_ops = {
        .version = WALIMPLS_VERSION,
        .open = local_open,
        .list_channels = local_list_channels,
        .close = local_opener_close,
};

static const struct walimpls_wal_ops local_wal_ops = {
        .version = WALIMPLS_VERSION,
        .append = local_append,
        .read = local_read,
        .truncate = local_truncate,
        .info = local_info,
        .close = local_wal_close,
        .flush = local_flush,
};

static const struct walimpls_scanner_ops local_scanner_ops = {
        .version = WALIMPLS_VERSION,
        .next = local_next,
        .interrupt = local_interrupt,
        .fd = local_scanner_fd,
        .close = local_scanner_close,
        .next_batch = local_next_batch,
};

const struct walimpls_builder walimpls_local = {
        .version = WALIMPLS_VERSION,
        .name = "local",
        .description = "durable segmented log on local disk (io_uring group commit)",
        .caps = WALIMPLS_CAP_PERSISTENT | WALIMPLS_CAP_TRUNCATE | WALIMPLS_CAP_FENCING |
                WALIMPLS_CAP_LIST,
        .properties = local_properties,
        .build = local_build,
};

WAL_REGISTER_BACKEND(walimpls_local);
