/* SPDX-License-Identifier: MIT */
/*
 * tools/bench/ref-handoff.c: REF-SPIN and REF-FUTEX, the in-process handoff
 * references (perf-anchors §9.3) for the adaptor's append-to-delivery
 * latency.
 *
 * Two threads, pinned to CPU 0 and CPU 1 when there are two, ping-pong one
 * atomic int: the pinger stores 1 and waits for 0, the ponger waits for 1
 * and stores 0.  One-way latency is half of each round trip, so no clock is
 * read on the receiving side.  --mode spin waits by spinning on the int
 * (acquire loads, release stores): the fastest a writer can hand a record
 * to an active reader.  --mode futex waits with FUTEX_WAIT_PRIVATE and
 * every store is followed by FUTEX_WAKE_PRIVATE: the cost of waking a
 * parked reader, which bench-api's "parked" workload is compared to.
 *
 * --pace-us N (the parked-reader goal's reference in run-all.sh, paced as
 * bench-api's parked workload is): the pinger sleeps N
 * microseconds before each store, stamps the time, and the ponger reads the
 * clock when it wakes, so the one-way figure is that of a reader that has
 * been parked for about N microseconds, measured the way bench-api's parked
 * workload measures (clock at the sender before the store, clock at the
 * receiver after the wake-up).  On the 2-vCPU VMs a paced wake-up costs
 * more than a ping-pong one (the idle vCPU must be woken first).
 *
 * --mode msg (information, the floor under bench-api's deliver workload):
 * the writer stamps the time into a freshly allocated message (a block the
 * size of a wal_msg with a 100-byte payload: a reference count, a type, the
 * header, the payload), publishes it through a slot {sequence, pointer},
 * and waits for the reader's acknowledgement with sched_yield() as
 * bench-api's writer does; the reader spins on the slot, takes a reference
 * (an atomic add on the message), checks the type and reads the time from
 * the payload.  One-way: the reader's clock minus the stamp.  No locks, no
 * copies, no time tick, no cache: what handing a message object to a
 * spinning reader on the other CPU costs at the least, several cache lines
 * (slot, header, payload) crossing instead of REF-SPIN's one.  The
 * messages are kept until the end, as the memory backend's log keeps them.
 *
 * --mode msg-warm (information, the same floor with warm memory): as msg,
 * but the blocks are carved one after another from one mapping faulted in
 * before the first timed hand-off (MAP_POPULATE), as the library's arenas
 * keep the records it holds: no hand-off takes a first-touch page fault,
 * which msg's fresh malloc() memory takes about once every 13 records.
 *
 * --mode lines --lines N [--chain 0|1] (information: what one cache line
 * costs to move between the two CPUs here, for counting the lines a
 * hand-off moves): REF-SPIN's ping-pong, but before each store of the flag
 * the pinger writes N cache lines of its own (one word each), and the
 * ponger, once it sees the flag, reads all N before it answers.  --chain 1
 * makes each line hold the address of the next, so the ponger's N reads
 * are one after another (a pointer chase, as a reader following slot ->
 * message -> payload); --chain 0 (default) reads them by index, so the
 * CPU may fetch them together.  One-way as REF-SPIN's (half the round
 * trip); the slope over N is the cost per line moved (pinger's write to a
 * line the ponger holds, and the ponger's read of it).  No hardware
 * counters are exposed to this guest, so this is how lines are priced.
 *
 * Usage: ref-handoff --mode spin|futex|msg|msg-warm|lines [--count N] [--pace-us N]
 *        [--lines N] [--chain 0|1]
 *        (default 200000 spin and lines, 20000 futex, msg and msg-warm; 1000
 *        untimed round trips first)
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bench-report.h"

#define WARMUP 1000

static _Atomic int flag;
static bool use_futex;
static long total;      /* round trips, warm-up included */
static long pace_us;    /* --pace-us: the pinger sleeps this long before each store */
static _Atomic uint64_t sent_ns;        /* paced: when the pinger stored */
static struct bench_lat paced_lat;      /* paced: one-way, measured by the ponger */

static void futex_wait(_Atomic int *addr, int val)
{
        syscall(SYS_futex, (int *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic int *addr)
{
        syscall(SYS_futex, (int *)addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
}

/* Store @val, wake the other side if it may be parked. */
static void post(int val)
{
        atomic_store_explicit(&flag, val, memory_order_release);
        if (use_futex)
                futex_wake(&flag);
}

/* Wait until the flag is @want (it is !@want until then). */
static void await(int want)
{
        while (atomic_load_explicit(&flag, memory_order_acquire) != want) {
                if (use_futex)
                        futex_wait(&flag, !want);
                else
                        cpu_relax();
        }
}

/* --mode lines: the pinger's lines, one word used in each.  Each line
 * sits in a page of its own, at a different place in its page, and the
 * chain visits them in a scrambled order, so neither the adjacent-line nor
 * the stride prefetcher fetches the next one ahead of the ponger's read. */
#define LINES_MAX 64
struct line {
        alignas(64) _Atomic(struct line *) next;        /* --chain 1: the next line */
        _Atomic long value;
};
static struct line *lines[LINES_MAX];
static int n_lines;
static bool chain;
static _Atomic long lines_sum;      /* keeps the ponger's reads */

static void lines_write(long i)
{
        for (int k = 0; k < n_lines; k++)
                atomic_store_explicit(&lines[k]->value, i, memory_order_relaxed);
}

static void lines_read(void)
{
        long sum = 0;
        if (chain) {
                for (struct line *l = n_lines ? lines[0] : NULL; l;
                     l = atomic_load_explicit(&l->next, memory_order_relaxed))
                        sum += atomic_load_explicit(&l->value, memory_order_relaxed);
        } else {
                for (int k = 0; k < n_lines; k++)
                        sum += atomic_load_explicit(&lines[k]->value, memory_order_relaxed);
        }
        atomic_store_explicit(&lines_sum, sum, memory_order_relaxed);
}

static void *ponger(void *arg)
{
        (void)arg;
        bench_pin(1);
        for (long i = 0; i < total; i++) {
                await(1);
                lines_read();
                if (pace_us && i >= WARMUP)
                        bench_lat_add(&paced_lat, bench_now_ns() - atomic_load(&sent_ns));
                post(0);
        }
        return NULL;
}

/* ---- --mode msg ---- */

struct msg_block {
        atomic_uint refs;
        int type;
        unsigned char header[152];   /* the rest of a wal_msg's header */
        size_t len;
        unsigned char payload[];
};

static struct {
        _Atomic uint64_t seq;        /* the message's number, 1.. */
        _Atomic(struct msg_block *) msg;
} slot;
static _Atomic long msg_seen;        /* the reader's acknowledgement */
static struct bench_lat msg_lat;

static void *msg_reader(void *arg)
{
        (void)arg;
        bench_pin(1);
        for (long i = 1; i <= total; i++) {
                while (atomic_load_explicit(&slot.seq, memory_order_acquire) != (uint64_t)i)
                        cpu_relax();
                struct msg_block *m = atomic_load_explicit(&slot.msg, memory_order_relaxed);
                atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
                uint64_t sent;
                memcpy(&sent, m->payload, sizeof(sent));
                uint64_t now = bench_now_ns();
                if (m->type != 1)
                        bench_die("msg: bad type", EINVAL);
                if (i > WARMUP)
                        bench_lat_add(&msg_lat, now - sent);
                atomic_store_explicit(&msg_seen, i, memory_order_release);
        }
        return NULL;
}

static int run_msg(bool warm)
{
        enum { PAYLOAD = 100 };
        /* msg-warm: every block's place, faulted in now */
        const size_t carve = (sizeof(struct msg_block) + PAYLOAD + 1 + 15) & ~(size_t)15;
        size_t region_len = warm ? carve * (size_t)total : 0;
        unsigned char *region = NULL;
        if (warm) {
                region = mmap(NULL, region_len, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
                if (region == MAP_FAILED)
                        bench_die("mmap", errno);
        }
        struct msg_block **kept = warm ? NULL : calloc((size_t)total, sizeof(*kept));
        if (!warm && !kept)
                bench_die("calloc", ENOMEM);
        pthread_t th;
        if (pthread_create(&th, NULL, msg_reader, NULL) != 0)
                bench_die("pthread_create", errno);
        bench_pin(0);
        unsigned char payload[PAYLOAD] = { 0 };
        uint64_t start = 0;
        for (long i = 1; i <= total; i++) {
                if (i == WARMUP + 1)
                        start = bench_now_ns();
                uint64_t t = bench_now_ns();
                memcpy(payload, &t, sizeof(t));
                struct msg_block *m = warm ? (struct msg_block *)(region + carve * (size_t)(i - 1))
                                           : malloc(sizeof(*m) + PAYLOAD + 1);
                if (!m)
                        bench_die("malloc", ENOMEM);
                memset(m, 0, sizeof(*m));
                atomic_init(&m->refs, 1);
                m->type = 1;
                m->len = PAYLOAD;
                memcpy(m->payload, payload, PAYLOAD);
                if (!warm)
                        kept[i - 1] = m;
                atomic_store_explicit(&slot.msg, m, memory_order_relaxed);
                atomic_store_explicit(&slot.seq, (uint64_t)i, memory_order_release);
                while (atomic_load_explicit(&msg_seen, memory_order_acquire) < i)
                        sched_yield();
        }
        uint64_t stop = bench_now_ns();
        pthread_join(th, NULL);
        struct bench_result res = {
                .program = "ref-handoff", .workload = warm ? "msg-warm" : "msg",
                .records = (uint64_t)(total - WARMUP), .bytes = (uint64_t)(total - WARMUP) * PAYLOAD,
                .seconds = (double)(stop - start) / 1e9, .writers = 1,
                .record_bytes = PAYLOAD, .lat = &msg_lat,
        };
        bench_report(&res);
        for (long i = 0; !warm && i < total; i++)
                free(kept[i]);
        free(kept);
        if (warm)
                munmap(region, region_len);
        free(msg_lat.v);
        return 0;
}

int main(int argc, char **argv)
{
        const char *mode = bench_arg(argc, argv, "mode", "spin");
        bool warm = strcmp(mode, "msg-warm") == 0;
        if (strcmp(mode, "spin") != 0 && strcmp(mode, "futex") != 0 &&
            strcmp(mode, "msg") != 0 && strcmp(mode, "lines") != 0 && !warm) {
                fprintf(stderr, "ref-handoff: --mode spin|futex|msg|msg-warm|lines\n");
                return 2;
        }
        if (strcmp(mode, "msg") == 0 || warm) {
                long count = atol(bench_arg(argc, argv, "count", "20000"));
                if (count < 1 || atol(bench_arg(argc, argv, "pace-us", "0")) != 0) {
                        fprintf(stderr, "ref-handoff: --mode %s: --count >= 1, no --pace-us\n",
                                mode);
                        return 2;
                }
                total = count + WARMUP;
                return run_msg(warm);
        }
        if (strcmp(mode, "lines") == 0) {
                n_lines = atoi(bench_arg(argc, argv, "lines", "1"));
                chain = atoi(bench_arg(argc, argv, "chain", "0")) != 0;
                if (n_lines < 0 || n_lines > LINES_MAX) {
                        fprintf(stderr, "ref-handoff: --lines 0..%d\n", LINES_MAX);
                        return 2;
                }
                /* The chain's links are written once, before the timing:
                 * the ponger's copies of them stay valid, only the value
                 * word in each line is rewritten per round trip, and it
                 * shares the line with the link. */
                struct line *pages = mmap(NULL, (size_t)LINES_MAX * 4096, PROT_READ | PROT_WRITE,
                                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
                if (pages == MAP_FAILED)
                        bench_die("mmap", errno);
                /* Line k: page (k * 37) % 64, line (k * 23) % 64 of it. */
                for (int k = 0; k < n_lines; k++)
                        lines[k] = pages + (size_t)((k * 37) % LINES_MAX) * 64 + (size_t)((k * 23) % 64);
                for (int k = 0; k + 1 < n_lines; k++)
                        atomic_init(&lines[k]->next, lines[k + 1]);
        }
        use_futex = strcmp(mode, "futex") == 0;
        long count = atol(bench_arg(argc, argv, "count", use_futex ? "20000" : "200000"));
        if (count < 1) {
                fprintf(stderr, "ref-handoff: --count >= 1\n");
                return 2;
        }
        total = count + WARMUP;
        pace_us = atol(bench_arg(argc, argv, "pace-us", "0"));
        if (pace_us < 0 || (pace_us && !use_futex)) {
                fprintf(stderr, "ref-handoff: --pace-us >= 0, with --mode futex only\n");
                return 2;
        }
        struct timespec pace = { pace_us / 1000000, (pace_us % 1000000) * 1000 };

        pthread_t th;
        if (pthread_create(&th, NULL, ponger, NULL) != 0)
                bench_die("pthread_create", errno);
        bench_pin(0);
        struct bench_lat lat = { 0 };
        uint64_t start = 0;
        for (long i = 0; i < total; i++) {
                if (i == WARMUP)
                        start = bench_now_ns();
                if (pace_us) {
                        nanosleep(&pace, NULL);
                        atomic_store(&sent_ns, bench_now_ns());
                        post(1);
                        await(0);
                        continue;
                }
                uint64_t t0 = bench_now_ns();
                lines_write(i);
                post(1);
                await(0);
                if (i >= WARMUP)
                        bench_lat_add(&lat, (bench_now_ns() - t0) / 2);
        }
        uint64_t stop = bench_now_ns();
        pthread_join(th, NULL);

        char lines_wl[40] = "";
        if (strcmp(mode, "lines") == 0)
                snprintf(lines_wl, sizeof(lines_wl), "lines-%s%d", chain ? "chain-" : "", n_lines);
        struct bench_result res = {
                .program = use_futex ? "ref-futex" : "ref-spin",
                .workload = pace_us ? "futex-paced" : lines_wl[0] ? lines_wl : mode,
                .records = (uint64_t)count, .seconds = (double)(stop - start) / 1e9,
                .writers = 1, .lat = pace_us ? &paced_lat : &lat,
        };
        bench_report(&res);
        free(lat.v);
        free(paced_lat.v);
        return 0;
}
