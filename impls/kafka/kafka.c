/* SPDX-License-Identifier: MIT */
/*
 * impls/kafka/kafka.c: the Kafka backend ("kafka"), on librdkafka 2.0.
 *
 * Mapping.  A channel is the topic "<kafkawal.topic_prefix><channel>",
 * partition 0 (other partitions, if the topic has any, are never used).  A
 * message is one record: the payload is the record value and every property
 * is a record header, so `kcat -C` shows plain payloads and readable headers.
 * The envelope (utility/envelope.h: type, properties, vchannel, time tick,
 * term, last-confirmed ID, transaction fields) is the record key, in one of
 * two layouts whose format is at the top of kafka-key.c: a message with a
 * property, a vchannel or a transaction field carries the 4-byte magic
 * "\0wal" and the protobuf envelope; any other (the usual data message)
 * the compact layout, "\0wal" and the marker byte 0x07 (which a libwal
 * from before the compact layout refuses as an envelope, loudly, rather
 * than reading the record as something else), a head byte for the type
 * and which fields follow, the tick as 8 fixed bytes, the term and
 * last-confirmed ID as varints: 18 bytes where the protobuf one took 26.
 * Both layouts read back forever, and so do compact keys under their
 * first prefix, "\0wk".  Properties are thus carried twice (as headers for
 * other Kafka clients, inside the envelope for us), and a reader trusts the
 * envelope.  Why the key and not a header: librdkafka 2.0.2 copies the key
 * into the record's own allocation, while every header costs it a header
 * list and entries to allocate, write and free; on the mock cluster one
 * 24-byte header cost 2.5x the CPU per 100-B record (1180 vs 470 ns), a
 * 26-byte key about 10 % (bench-kafka).  A message without properties
 * therefore carries no header at all.  Partitioning is unaffected (we
 * always produce to partition 0); a WAL topic must not be compacted
 * (cleanup.policy=compact would drop records with equal keys).  Records
 * written before the key layout carry the envelope in the header "_wal"
 * instead and still read back as what they were.  The record's timestamp
 * (CreateTime) is the time tick's wall-clock milliseconds (tick >> 18), so
 * Kafka's time-based retention and tools see the WAL's time; a message
 * without a tick gets the time of producing, read by librdkafka (passing
 * it saves librdkafka a clock read per record, about 40 ns here).  The
 * envelope still carries the whole tick.  The message ID is the
 * record offset: WAL_MSGID(0, offset).  A record with neither (written by
 * another client; its key, if any, lacks the magic) reads back as a plain
 * data message whose properties are its headers (values cut at the first
 * NUL).
 *
 * Properties.  Every set "kafka.<p>" is handed to librdkafka as "<p>", for
 * the producer and for every scanner's consumer alike (librdkafka ignores,
 * with a log line, a producer property on a consumer and vice versa), after
 * our defaults, so the user has the last word.  The backend's own properties
 * live under "kafkawal." (table below) so they can never collide with a
 * librdkafka name.  Producer defaults favour durability and latency:
 * enable.idempotence=true, acks=all, socket.nagle.disable=true (librdkafka
 * 2.0.2 still has Nagle on), linger.ms=5.  Consumer defaults:
 * enable.auto.commit=false, auto.offset.reset=error, group.id from
 * kafkawal.group_id (assign() needs one; nothing is ever committed),
 * fetch.wait.max.ms=100.  Both reconnect quickly after a broker restart
 * (reconnect.backoff.ms=20, reconnect.backoff.max.ms=1000, as Milvus does
 * with a 5 s ceiling): a WAL would rather retry than sit idle.  Refused:
 * kafka.transactional.id (the shared producer must stay idempotent, not
 * transactional) and kafka.test.mock.num.brokers (librdkafka would give the
 * producer and every scanner each a private mock cluster; host one with
 * kafka_mock_host_start() or `walctl mock-kafka` instead).
 *
 * Writing.  One idempotent producer per opener, shared by every channel.
 * append() takes the wal's next pending-append slot (chunks of
 * KAFKA_CHUNK_SLOTS owned by the wal, taken in order under the wal's own
 * append lock, which only appenders take: no allocation and no shared
 * lock per append), then produces: the key is
 * encoded on the stack and copied by librdkafka, headers are built only
 * for properties; a payload of up to 4 KiB is copied into the record and
 * the wal_msg released at once, a larger one is borrowed (the wal_msg
 * reference is held until the delivery report); with fencing on, a per-wal
 * fence thread checks the term first (see Fencing).  A dedicated poll thread
 * serves the producer's main queue through the event API: each delivery
 * report event carries a batch of records, which it settles without a
 * lock (KAFKA_DR_BATCH at a time; a slot leaves "in flight" by one
 * compare-and-swap, against close's cancellation), running their
 * completions with the offset as the ID (with fencing on, a written
 * record's completion runs on the fence thread once its term is confirmed;
 * see Fencing).  The served event itself, which holds the records' memory,
 * is destroyed by the next thread that produces (kafka_deferred_destroy):
 * librdkafka allocates a record on the producing thread, and freeing it on
 * the poll thread made the two fight over one malloc arena on nearly every
 * record.  Queue full is back-pressure: append waits for a delivery report
 * (or 10 ms) and tries again, until the opener fails fatally.  IDs follow
 * produce order: one partition and the idempotent producer keep order
 * through retries.  A broker lost mid-stream is librdkafka's to retry (for
 * up to message.timeout.ms, 5 minutes by default); only a delivery that
 * finally fails, or a fatal producer error, reaches a completion.  A fatal
 * error (an error event marked fatal, e.g. an idempotence sequence gap)
 * makes the opener unavailable: every later append and RW open fails with
 * that error, -EIO, or -ESTALE when librdkafka says fenced.
 *
 * wal.flush (kafka_flush) waits for the appends made before it and skips
 * linger.ms meanwhile (librdkafka's flush, which sends at once while it
 * runs), so a blocking append through the adaptor (append, then flush)
 * no longer waits out linger.ms: bench-api --workload sync on `walctl
 * mock-kafka`, fencing on, p50 5.6 ms -> 0.33-0.46 ms.
 *
 * Closing a wal waits up to kafkawal.close_timeout for its deliveries, then
 * completes the rest with -ECANCELED (their outcome is unknown: they may
 * still be written); the delivery report that comes later only finishes
 * their slots.  Close finds them in the wal's chunks; chunks still holding
 * records librdkafka has not reported pass to the opener (orphans), so the
 * wal can be freed while librdkafka still holds a cancelled record.
 * With the brokers away and fencing on, close takes up to close_timeout
 * and 50 ms (the fence thread's pause between register reads that failed;
 * a read in flight is abandoned).  While
 * they are away appends queue up (librdkafka's queue, or the wal's fence
 * queue of at most kafkawal.fence_queue, 65 536 by default) and then
 * block: back-pressure, as above.
 *
 * Reading.  A scanner is its own consumer, assigned partition 0 at an exact
 * offset; no consumer-group commit ever happens.  ALL starts at the low
 * watermark read when read() runs (not OFFSET_BEGINNING, whose lookup makes
 * librdkafka's first fetch wait 500 ms at times), or, if that record is
 * deleted before anything was delivered, at OFFSET_BEGINNING; LATEST at the high watermark read when read() runs (so
 * every message appended after read returns is seen); START_FROM x at x and
 * START_AFTER x at x+1; a start below the low watermark is -ERANGE at read()
 * and, because auto.offset.reset=error, a position deleted by retention
 * while reading is -ERANGE at next(): never a silent skip.  A start above
 * the high watermark is assigned at the high watermark and the records below
 * the requested offset are skipped (Kafka would call the position out of
 * range).  The pollable fd is an eventfd that librdkafka writes to when the
 * consumer queue becomes non-empty (rd_kafka_queue_io_event_enable); next()
 * drains it only when it finds nothing, then looks once more before
 * waiting, and interrupt() writes it too (a wait also wakes every 100 ms, so
 * a lost event costs latency, never a hang).  next() takes up to 256 records
 * per queue call (rd_kafka_consume_batch_queue) and hands them out one by
 * one; what it holds counts as "available" for the fd rule, since next(0)
 * delivers it.  No thread of ours is involved in reading.  read_ahead
 * becomes the consumer's queued.min.messages.
 *
 * Fencing (kafkawal.fencing=true, the default).  Each channel has a term
 * register: the committed offset of its partition 0 in the consumer group
 * "libwal-term.<topic>" (offset = term).  A read-write open refuses a lower
 * term than the registered one (-ESTALE) and registers its own.  The
 * producer stays the one shared idempotent producer; what fences is that a
 * read-write wal's appends are queued for its fence thread, which reads
 * the register once per batch before the batch may be produced: a higher
 * term fences the wal (that batch and every later append fail with -ESTALE
 * and never reach the topic).  The reads are asynchronous (the admin
 * API's ListConsumerGroupOffsets, the OffsetFetch request
 * rd_kafka_committed() sends) and settled in the order they started; one
 * at a time as a rule, another beside it (up to KAFKA_FENCE_READS) only
 * for queued appends while a flush waits (its backlog is checked at once)
 * or once the queue is half full (so an appender does not wait for room
 * while a slow read is in flight): kafka_fence_main.  Appending takes one round of the wal's own
 * lock (slot, queue, and what the fence thread left to release).  A
 * confirmed batch becomes the wal's ready list, which the next append
 * produces on its own thread (where its messages were made, and beside
 * the producing it does anyway); an append that finds the fence queue full
 * produces the ready list before it waits for room.  The fence thread
 * produces the ready list itself only when the appends stopped: when it
 * is about to sleep, or when its next register read found no new append
 * queued, so a confirmed batch waits at most one round trip more, and a
 * batch never checked is never produced; even then it gives the rest back
 * (checked every KAFKA_YIELD_EVERY records) as soon as a new append is
 * queued, and goes back to reading the register for it while the
 * appender produces.  (Producing there while appends keep coming made the
 * two threads take turns, the appender waiting for room in a full queue
 * meanwhile: measured with bench-kafka ours-fenced at 16 384 queued
 * appends, the appender waited 6-56 ms of a 90-140 ms run of 200 000
 * appends and the fence thread produced 31-59 % of the records; now,
 * with room for 65 536, 1-12 ms per run of 500 000 or 1 000 000 appends,
 * and the appender produces 84-94 % of the records, once 35 % at load 2.)
 * And a written record is acknowledged only after a register read
 * that started after its delivery report still found the wal's term (that
 * same read: one read serves the batch about to be produced and the records
 * delivered meanwhile, so there is no extra round trip per batch, only up
 * to one register round trip more of acknowledgement latency).  The exact
 * guarantee is written above kafka_register_read().  Kafka's own fencing, a transactional producer per
 * channel whose newer init_transactions bumps the epoch, was not chosen: it
 * needs one producer per channel (against the shared producer), a
 * coordinator round trip per commit, and librdkafka 2.0.2's mock cluster does
 * not enforce it (checked here: a producer whose transactional.id was
 * re-initialised by another still produces and commits), so no test here
 * could show it works.  PRODUCER_FENCED still maps to -ESTALE.  With
 * kafkawal.fencing=false appends are produced directly from append() and no
 * term is checked (one writer per channel is then the caller's business).
 *
 * What the mock cluster can and cannot check (librdkafka 2.0.2): it checks
 * produce/consume, headers, idempotent delivery through injected request
 * errors and through a broker going down and up, watermarks, assign+seek,
 * metadata (channel listing), auto-creation of topics, committed offsets
 * with metadata (so the term register and fencing by term are tested on
 * it).  It cannot check transactional epoch fencing (above), CreateTopics
 * (it never answers; use kafkawal.create=auto, the default, which relies on
 * broker auto-creation), DeleteRecords (truncate's deletion; it answers
 * _UNSUPPORTED_FEATURE, which truncate accepts as "never"), retention other
 * than its hard 5 MiB / 100 000 sets per partition cap, or read_committed.
 *
 * Truncation deletes nothing by default (retention does, as in Milvus);
 * kafkawal.truncate=delete_records asks the brokers to delete up to the ID.
 * The builder does not claim WALIMPLS_CAP_TRUNCATE: brokers may refuse, and
 * the mock cannot show that deletion happens.
 *
 * Topic creation on a read-write open: kafkawal.create=auto asks the broker
 * for the topic's metadata, which creates it where auto.create.topics.enable
 * is on (Kafka's default and the mock's); =admin uses the CreateTopics admin
 * API (1 partition, broker-default replication); =no never creates.  A
 * read-only open of a missing topic is -ENOENT.
 *
 * Threads: the opener's poll thread (delivery reports, hence completions),
 * one fence thread per read-write wal when fencing is on (it waits in its
 * register handle's answer queue while a read is in flight, and is woken
 * there by rd_kafka_queue_yield when it may start another), and
 * librdkafka's own.  Locks: kafka_opener.lock guards every wal's chunk list, the
 * opener's orphan and spare chunks, the fatal message and the waits of
 * back-pressure and close (completion counts are atomics); it is taken
 * once per chunk of appends.  kafka_wal.alock guards the wal's current
 * chunk and its count of accepted appends, and with fencing its produce
 * queue, its confirm list and the messages left for the appender to
 * release: appenders take it once per append, the fence thread once per
 * batch (and waits on it), the poll thread only to hand written records
 * to the fence thread (once per delivery-report batch), close too.
 * kafka_wal.plock (producing the ready list, in order) is taken before
 * alock, alock before opener.lock, never the other way.  No lock is held
 * while a completion runs: appends that fail while the ready list is
 * being produced (fenced, closed, refused by librdkafka) are collected
 * and completed after plock is released, so a completion may append to
 * the same wal, even wait for that append (not on the fence thread,
 * which must confirm it).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include <walimpls/walimpls.h>
#include <wal/wal-log.h>
#include <wal/wal-registry.h>
#include "utility/envelope.h"
#include "utility/walu.h"
#include "kafka-internal.h"

/* The record header that carried the envelope before it moved to the key;
 * still read, never written. */
#define KAFKA_ENVELOPE_HEADER "_wal"
/* Keys up to this size are encoded on the producing thread's stack. */
#define KAFKA_KEY_INLINE 96
/* Values up to this size are copied into the record (kafka_produce). */
#define KAFKA_COPY_MAX 4096
/* Records a scanner takes from its consumer queue per call. */
#define KAFKA_SCAN_BATCH 256
/* A fence thread producing checks every this many records whether an
 * append came (kafka_batch_finish). */
#define KAFKA_YIELD_EVERY 256
/* Kafka's longest topic name. */
#define KAFKA_TOPIC_MAX 249
/* Pending appends per chunk (struct kafka_chunk). */
#define KAFKA_CHUNK_SLOTS 256
/* Retired chunks the opener keeps for reuse; more go back to malloc. */
#define KAFKA_CHUNK_SPARE 16
/* A time tick is (wall-clock ms << 18 | logical) (wal/wal-message.h). */
#define KAFKA_TICK_LOGICAL_BITS 18
/* Term-register reads a fence thread has in flight at most. */
#define KAFKA_FENCE_READS 4
/* Delivery reports the poll thread settles together. */
#define KAFKA_DR_BATCH 1024
/* Served delivery-report events left for a producing thread to destroy. */
#define KAFKA_DEFER_MAX 64

enum kafka_create_mode {
        KAFKA_CREATE_AUTO,
        KAFKA_CREATE_ADMIN,
        KAFKA_CREATE_NO,
};

/* ---- Objects ---- */

/*
 * An append accepted and not yet completed: a slot of a chunk that belongs
 * to its wal (struct kafka_chunk).  Appends take a wal's slots in order, so
 * the appending thread writes them, and the poll thread reads them, front
 * to back; the record's key and headers are made when it is produced,
 * straight into librdkafka's own copy.
 */
enum kafka_slot_state {
        KAFKA_SLOT_QUEUED,      /* fencing: in the wal's produce queue */
        KAFKA_SLOT_INFLIGHT,    /* produced; its delivery report has not come */
        KAFKA_SLOT_WRITTEN,     /* fencing: delivered, in the wal's confirm list */
        KAFKA_SLOT_SETTLED,     /* its completion is the reporter's or has run */
        KAFKA_SLOT_CANCELLED,   /* completed by close with -ECANCELED while in
                                   flight: its report only finishes the slot */
};

struct kafka_pending {
        struct kafka_chunk *chunk;         /* where it lives (fixed) */
        walimpls_append_done_fn *done;
        void *arg;
        wal_msg *msg;                      /* one reference while the fence queue holds
                                              it, or while librdkafka borrows its
                                              payload (> KAFKA_COPY_MAX); else NULL */
        struct kafka_pending *qnext;       /* fencing: in the wal's produce queue, then,
                                              once delivered, in its confirm list */
        int64_t offset;                    /* fencing: where it was written */
        wal_error *ferr;                   /* fencing: never produced, to fail with
                                              @fcode and this (kafka_failed_complete) */
        int fcode;
        atomic_int state;                  /* enum kafka_slot_state; INFLIGHT leaves it
                                              by one compare-and-swap: the report's
                                              or close's, whichever comes first */
};

/*
 * KAFKA_CHUNK_SLOTS pending appends of one wal, in one allocation.  The
 * wal's appenders take its slots in order (kafka_slot_take, under the
 * wal's alock); every slot is finished exactly once, when nothing will
 * touch it again (its report came, or it was never produced, and its
 * completion ran or was handed on), and the thread whose finish makes
 * @ndone reach KAFKA_CHUNK_SLOTS retires the chunk (slots never taken are
 * finished by whoever stops taking them: the last take or close).  A
 * chunk outlives its wal while librdkafka holds records of it; it is then
 * an orphan of the opener.
 */
struct kafka_chunk {
        struct kafka_chunk *prev, *next;   /* in its wal's chunk list, the opener's
                                              orphans or spares; opener.lock */
        struct kafka_wal *w;               /* owner; NULL once it closed (opener.lock;
                                              stable for a slot in flight) */
        bool fencing;                      /* the owner's fencing, for reports that may
                                              not touch a closed owner */
        unsigned used;                     /* slots taken; owner's alock */
        atomic_uint ndone;                 /* slots finished */
        struct kafka_pending slots[KAFKA_CHUNK_SLOTS];
};

/* A delivery report as the poll thread gathers it (kafka_event_serve). */
struct kafka_dr {
        struct kafka_pending *p;
        int64_t offset;
        rd_kafka_resp_err_t err;
};

struct kafka_opener {
        struct walimpls_opener base;   /* must be first */
        rd_kafka_t *rk;                /* the shared idempotent producer */
        rd_kafka_queue_t *mainq;       /* its main queue: delivery reports, errors */
        char **pt_keys, **pt_vals;     /* kafka.* pass-through, prefix stripped */
        size_t n_pt;
        char *bootstrap;               /* for messages; "" if unset */
        char *topic_prefix;
        char *group_id;
        int64_t open_timeout_ms;
        int64_t close_timeout_ms;
        enum kafka_create_mode create;
        bool fencing;                  /* kafkawal.fencing */
        size_t queue_max;              /* kafkawal.fence_queue */
        bool delete_records;           /* kafkawal.truncate=delete_records */
        pthread_t poll_thread;
        bool poll_started;
        atomic_bool stop;
        pthread_mutex_t lock;
        pthread_cond_t cond;           /* deliveries: close waits and back-pressure */
        atomic_uint bp_waiters;        /* appends waiting for queue space */
        atomic_int fatal;              /* 0, or the errno every append now gets */
        atomic_uint close_waiters;     /* wal closes and flushes waiting for
                                          completions */
        atomic_uint flushers;          /* wal flushes in progress: the poll thread
                                          then frees served records at once */
        char fatal_msg[512];           /* under lock */
        /* Chunks of pending appends not owned by an open wal, under lock: */
        struct kafka_chunk *orphans;   /* of closed wals, records still in librdkafka */
        struct kafka_chunk *spares;    /* retired, kept for reuse */
        size_t nspares;
        /* Delivery reports gathered by the poll thread, settled in batches: */
        struct kafka_dr drs[KAFKA_DR_BATCH];
        size_t ndr;
        /* Served delivery-report events whose records a producing thread
         * frees (kafka_deferred_destroy), under lock: */
        rd_kafka_event_t *deferred[KAFKA_DEFER_MAX];
        atomic_uint ndeferred;
};

struct kafka_wal {
        struct walimpls_wal base;      /* must be first */
        struct kafka_opener *o;
        char *topic;
        rd_kafka_topic_t *rkt;         /* producer topic handle; RW only */
        pthread_mutex_t alock;         /* appenders (and close): cur, appended */
        struct kafka_chunk *cur;       /* the chunk appends take slots from; NULL when
                                          none (or it was used up) */
        uint64_t appended;             /* appends accepted (returned 0) */
        atomic_uint_least64_t ncompleted; /* of those, completed: their done returned
                                             (or never produced nor completed) */
        struct kafka_chunk *chunks;    /* its chunks not yet retired; opener.lock */
        /* Fencing (RW with kafkawal.fencing only): */
        rd_kafka_t *reg;               /* consumer handle of the term register group */
        char *reg_group;               /* that group's name */
        rd_kafka_queue_t *fq;          /* answers to the fence thread's register reads */
        atomic_bool fpolling;          /* the fence thread waits in @fq (set under
                                          alock): wake it with rd_kafka_queue_yield */
        pthread_t fence_thread;
        bool fence_started;
        pthread_cond_t qcond;          /* (with alock) the fence thread waits */
        pthread_cond_t qspace;         /* (with alock) appends wait for room */
        struct kafka_pending *qhead, *qtail; /* appended, not yet produced; alock */
        atomic_size_t qlen;            /* entries in that queue: written under alock,
                                          read without it by a fence thread producing */
        bool qstop;                    /* the fence thread must exit */
        unsigned nqwaiting;            /* appends waiting for room (qspace); alock */
        atomic_bool fenced;            /* a higher term owns the channel */
        atomic_llong owner_term;       /* the higher term, once fenced */
        bool fencing;                  /* set at open, never changed: the above apply */
        struct kafka_pending *chead, *ctail; /* delivered, their term not yet confirmed;
                                                alock */
        atomic_size_t nconfirm;        /* entries in that list (0 means empty) */
        pthread_mutex_t plock;         /* producing the ready list, in order */
        struct kafka_pending *rhead, *rtail; /* confirmed by a register read, not yet
                                                produced; plock */
        atomic_size_t nready;          /* entries in that list (0 means empty) */
        wal_msg **spent;               /* produced by the fence thread, to be released
                                          by the next append (kafka_spent_take) */
        size_t nspent, capspent;       /* under alock */
        /* Counts for the debug line at close (the fence thread's): */
        uint64_t nreads;               /* register reads that found a term */
        uint64_t noverlap;             /* reads started while another was in flight */
        uint64_t nchecked;             /* appends those reads let be produced */
        atomic_uint_least64_t nprod_app;   /* of those, produced by an appender */
        uint64_t nqwait, qwait_ns;     /* appends that waited for queue room; alock */
        uint64_t nqwait_read;          /* of those, while the fence thread waited for
                                          a read's answer; alock */
        uint64_t read_ns, read_max_ns; /* register reads' time (the fence thread's) */
};

struct kafka_scanner {
        struct walimpls_scanner base;  /* must be first */
        struct kafka_wal *w;
        rd_kafka_t *rk;                /* this scanner's consumer */
        rd_kafka_queue_t *q;           /* its consumer queue (io event source) */
        int efd;                       /* the pollable fd */
        atomic_bool interrupted;
        int64_t skip_below;            /* deliver only offsets >= this */
        bool from_earliest;            /* ALL, not yet delivered anything: a start
                                          deleted meanwhile restarts at the earliest */
        int failed;                    /* sticky error, 0 if none */
        char failed_msg[512];
        rd_kafka_message_t *batch[KAFKA_SCAN_BATCH]; /* taken, not yet handled */
        size_t bpos, blen;             /* batch[bpos..blen) are still ours */
};

static const struct walimpls_opener_ops kafka_opener_ops;
static const struct walimpls_wal_ops kafka_wal_ops;
static const struct walimpls_scanner_ops kafka_scanner_ops;
static walimpls_build_fn kafka_build;
static int kafka_register_read(struct kafka_wal *w, int64_t *ret, wal_error **reterr);
static int kafka_register_write(struct kafka_wal *w, int64_t term, wal_error **reterr);
static void *kafka_fence_main(void *arg);
static void kafka_ready_finish(struct kafka_wal *w, int r, bool appender, bool wait);

static const struct wal_property kafka_properties[] = {
        { "kafka.", WAL_PROP_STRING, NULL, 1, 0, NULL, WAL_PROP_PREFIX,
          "Any librdkafka property, passed through without the \"kafka.\" prefix "
          "(kafka.bootstrap.servers is required)." },
        { "kafkawal.topic_prefix", WAL_PROP_STRING, "wal-", 1, 0, NULL, 0,
          "Prefix of the Kafka topic of each channel: topic = prefix + channel "
          "(characters [A-Za-z0-9._-])." },
        { "kafkawal.open_timeout", WAL_PROP_DURATION, "10s", 1, 3600000, NULL, 0,
          "How long building an opener, opening a channel or starting a scanner waits "
          "for the brokers before failing." },
        { "kafkawal.close_timeout", WAL_PROP_DURATION, "10s", 0, 3600000, NULL, 0,
          "How long closing a channel waits for its appends in flight before "
          "completing them with -ECANCELED." },
        { "kafkawal.create", WAL_PROP_ENUM, "auto", 1, 0, "auto|admin|no", 0,
          "Topic creation on a read-write open: auto (broker auto-creation through a "
          "metadata request), admin (CreateTopics, 1 partition) or no." },
        { "kafkawal.group_id", WAL_PROP_STRING, "libwal-scanner", 1, 0, NULL, 0,
          "group.id given to scanner consumers (assign() needs one; offsets are "
          "never committed)." },
        { "kafkawal.truncate", WAL_PROP_ENUM, "retention", 1, 0, "retention|delete_records", 0,
          "What truncate does: retention (nothing; the topic's retention deletes) or "
          "delete_records (ask the brokers to delete up to the ID with DeleteRecords)." },
        { "kafkawal.fencing", WAL_PROP_BOOL, "true", 1, 0, NULL, 0,
          "Fence older terms: check the channel's term register before producing each "
          "batch (one offset-fetch round trip per batch)." },
        { "kafkawal.fence_queue", WAL_PROP_INT, "65536", 1, 16777216, NULL, 0,
          "With fencing: appends a channel holds while its term register is being read "
          "before append() waits for room (back-pressure)." },
        { NULL, 0, NULL, 0, 0, NULL, 0, NULL },
};

static const struct walimpls_builder walimpls_kafka = {
        .version = WALIMPLS_VERSION,
        .name = "kafka",
        .description = "Kafka through librdkafka: a channel is a topic (partition 0), "
                       "idempotent producer with acks=all",
        .caps = WALIMPLS_CAP_PERSISTENT | WALIMPLS_CAP_FENCING | WALIMPLS_CAP_LIST,
        .properties = kafka_properties,
        .build = kafka_build,
};
WAL_REGISTER_BACKEND(walimpls_kafka);

/* ---- Errors ---- */

int kafka_err_to_errno(int rd_kafka_err)
{
        switch ((rd_kafka_resp_err_t)rd_kafka_err) {
        case RD_KAFKA_RESP_ERR_NO_ERROR:
                return 0;
        case RD_KAFKA_RESP_ERR__TIMED_OUT:
        case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
        case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
        case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
                return -ETIMEDOUT;
        case RD_KAFKA_RESP_ERR__TRANSPORT:
        case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
                return -ECONNRESET;
        case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
                return -ECONNREFUSED;
        case RD_KAFKA_RESP_ERR__RESOLVE:
                return -EHOSTUNREACH;
        case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
        case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
        case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
        case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
        case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
        case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
                return -EAGAIN;
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
                return -EMSGSIZE;
        case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
        case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
                return -ENOENT;
        case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
        case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET:
                return -ERANGE;
        case RD_KAFKA_RESP_ERR__FENCED:
        case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
        case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
                return -ESTALE;
        case RD_KAFKA_RESP_ERR__AUTHENTICATION:
        case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
        case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
                return -EACCES;
        case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
        case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
        case RD_KAFKA_RESP_ERR__DESTROY:
                return -ECANCELED;
        case RD_KAFKA_RESP_ERR__INVALID_ARG:
        case RD_KAFKA_RESP_ERR__INVALID_TYPE:
        case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
        case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
                return -EINVAL;
        case RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED:
        case RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE:
        case RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION:
                return -EOPNOTSUPP;
        case RD_KAFKA_RESP_ERR__BAD_MSG:
        case RD_KAFKA_RESP_ERR_INVALID_MSG:
        case RD_KAFKA_RESP_ERR_INVALID_RECORD:
                return -EBADMSG;
        default:
                return -EIO;
        }
}

bool kafka_err_is_retriable(int rd_kafka_err)
{
        switch (kafka_err_to_errno(rd_kafka_err)) {
        case -ETIMEDOUT:
        case -ECONNRESET:
        case -ECONNREFUSED:
        case -EHOSTUNREACH:
        case -EAGAIN:
                return true;
        default:
                return false;
        }
}

/* Report a librdkafka error: the code comes from kafka_err_to_errno(), the
 * message is the formatted context followed by librdkafka's text. */
static int kafka_fail(wal_error **reterr, rd_kafka_resp_err_t err, const char *fmt, ...)
        WAL_PRINTF(3, 4);
static int kafka_fail(wal_error **reterr, rd_kafka_resp_err_t err, const char *fmt, ...)
{
        char ctx[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx, sizeof(ctx), fmt, ap);
        va_end(ap);
        int code = kafka_err_to_errno(err);
        if (code == 0)
                code = -EIO;
        return wal_error_set(reterr, code, kafka_err_is_retriable(err) ? WAL_ERROR_RETRIABLE : 0,
                             "%s: %s (%s)", ctx, rd_kafka_err2str(err), rd_kafka_err2name(err));
}

/* ---- librdkafka configuration ---- */

/* librdkafka's log lines, at its syslog level mapped to ours, except a
 * broker connection that failed (facility FAIL, which librdkafka logs as an
 * error): librdkafka retries it, so no call failed of it and it is a
 * warning; and a producer's failure also comes as an error event, which
 * kafka_error_cb() logs as a warning, so there the log line is only debug
 * detail (an unreachable broker printed each failure twice, as an error). */
static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
        int lv = level <= 3 ? WAL_LOG_ERROR : level <= 5 ? WAL_LOG_WARNING :
                 level == 6 ? WAL_LOG_INFO : WAL_LOG_DEBUG;
        if (lv < WAL_LOG_WARNING && strcmp(fac, "FAIL") == 0)
                lv = rd_kafka_type(rk) == RD_KAFKA_PRODUCER ? WAL_LOG_DEBUG : WAL_LOG_WARNING;
        walu_log(lv, "kafka: %s: %s: %s", rd_kafka_name(rk), fac, buf);
}

struct kafka_kv {
        const char *key, *value;
};

static const struct kafka_kv producer_defaults[] = {
        { "enable.idempotence", "true" },
        { "acks", "all" },
        { "socket.nagle.disable", "true" },
        { "linger.ms", "5" },
        { "reconnect.backoff.ms", "20" },
        { "reconnect.backoff.max.ms", "1000" },
        { NULL, NULL },
};

static const struct kafka_kv consumer_defaults[] = {
        { "enable.auto.commit", "false" },
        { "enable.auto.offset.store", "false" },
        { "auto.offset.reset", "error" },
        { "enable.partition.eof", "false" },
        { "socket.nagle.disable", "true" },
        { "fetch.wait.max.ms", "100" },
        { "reconnect.backoff.ms", "20" },
        { "reconnect.backoff.max.ms", "1000" },
        { NULL, NULL },
};

/*
 * Make a librdkafka configuration: our defaults for @type, then every
 * kafka.* pass-through value of @o.  *ret is owned by the caller (and
 * consumed by a successful rd_kafka_new()).  0 or -EINVAL naming the key.
 */
static int kafka_conf_make(struct kafka_opener *o, rd_kafka_type_t type, rd_kafka_conf_t **ret,
                           wal_error **reterr)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        if (!conf)
                return wal_error_set(reterr, -ENOMEM, 0, "kafka: out of memory");
        char errstr[512];
        const struct kafka_kv *defs = type == RD_KAFKA_PRODUCER ? producer_defaults
                                                                 : consumer_defaults;
        for (; defs->key; defs++) {
                if (rd_kafka_conf_set(conf, defs->key, defs->value, errstr, sizeof(errstr)) !=
                    RD_KAFKA_CONF_OK) {
                        rd_kafka_conf_destroy(conf);
                        return wal_error_set(reterr, -EINVAL, 0, "kafka: default %s=%s refused: %s",
                                             defs->key, defs->value, errstr);
                }
        }
        if (type == RD_KAFKA_CONSUMER &&
            rd_kafka_conf_set(conf, "group.id", o->group_id, errstr, sizeof(errstr)) !=
                    RD_KAFKA_CONF_OK) {
                rd_kafka_conf_destroy(conf);
                return wal_error_set(reterr, -EINVAL, 0,
                                     "kafka: kafkawal.group_id=%s refused: %s", o->group_id, errstr);
        }
        for (size_t i = 0; i < o->n_pt; i++) {
                if (rd_kafka_conf_set(conf, o->pt_keys[i], o->pt_vals[i], errstr,
                                      sizeof(errstr)) != RD_KAFKA_CONF_OK) {
                        rd_kafka_conf_destroy(conf);
                        return wal_error_set(reterr, -EINVAL, 0, "kafka: kafka.%s=%s refused: %s",
                                             o->pt_keys[i], o->pt_vals[i], errstr);
                }
        }
        rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
        *ret = conf;
        return 0;
}

/* ---- Chunks of pending appends ---- */

static void kafka_chunk_unlink(struct kafka_chunk **head, struct kafka_chunk *c)
{
        if (c->prev)
                c->prev->next = c->next;
        else
                *head = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
}

static void kafka_chunk_push(struct kafka_chunk **head, struct kafka_chunk *c)
{
        c->prev = NULL;
        c->next = *head;
        if (*head)
                (*head)->prev = c;
        *head = c;
}

/* A chunk for @w (a spare or a new one), in @w's list; NULL when out of
 * memory.  Takes opener.lock. */
static struct kafka_chunk *kafka_chunk_new(struct kafka_wal *w)
{
        struct kafka_opener *o = w->o;
        pthread_mutex_lock(&o->lock);
        struct kafka_chunk *c = o->spares;
        if (c) {
                kafka_chunk_unlink(&o->spares, c);
                o->nspares--;
        }
        pthread_mutex_unlock(&o->lock);
        if (!c) {
                if (!(c = malloc(sizeof(*c))))
                        return NULL;
                for (size_t i = 0; i < KAFKA_CHUNK_SLOTS; i++)
                        c->slots[i].chunk = c;
        }
        c->w = w;
        c->fencing = w->fencing;
        c->used = 0;
        atomic_init(&c->ndone, 0);
        pthread_mutex_lock(&o->lock);
        kafka_chunk_push(&w->chunks, c);
        pthread_mutex_unlock(&o->lock);
        return c;
}

/* @c has every slot finished: off its list, kept as a spare or freed.
 * Takes opener.lock. */
static void kafka_chunk_retire(struct kafka_opener *o, struct kafka_chunk *c)
{
        pthread_mutex_lock(&o->lock);
        kafka_chunk_unlink(c->w ? &c->w->chunks : &o->orphans, c);
        bool keep = o->nspares < KAFKA_CHUNK_SPARE;
        if (keep) {
                kafka_chunk_push(&o->spares, c);
                o->nspares++;
        }
        pthread_mutex_unlock(&o->lock);
        if (!keep)
                free(c);
}

/* Finish @n slots of @c (see struct kafka_chunk); @c may be gone after. */
static void kafka_chunk_finish(struct kafka_opener *o, struct kafka_chunk *c, unsigned n)
{
        if (n && atomic_fetch_add(&c->ndone, n) + n == KAFKA_CHUNK_SLOTS)
                kafka_chunk_retire(o, c);
}

/* The next slot of @w (under w->alock), its state set to @state; NULL when
 * out of memory.  Counts the append as accepted. */
static struct kafka_pending *kafka_slot_take(struct kafka_wal *w, walimpls_append_done_fn *done,
                                             void *arg, enum kafka_slot_state state)
{
        struct kafka_chunk *c = w->cur;
        if (!c && !(c = w->cur = kafka_chunk_new(w)))
                return NULL;
        struct kafka_pending *p = &c->slots[c->used++];
        if (c->used == KAFKA_CHUNK_SLOTS)
                w->cur = NULL;   /* used up: never read again from here */
        p->done = done;
        p->arg = arg;
        p->msg = NULL;
        p->qnext = NULL;
        p->offset = -1;
        p->ferr = NULL;
        p->fcode = 0;
        atomic_store_explicit(&p->state, state, memory_order_relaxed);
        w->appended++;
        return p;
}

/* Count @n more of @w's accepted appends as completed (their done has
 * returned); @w may be freed by close as soon as this returns. */
static void kafka_completed(struct kafka_wal *w, uint64_t n)
{
        struct kafka_opener *o = w->o;
        atomic_fetch_add(&w->ncompleted, n);
        if (atomic_load(&o->close_waiters)) {
                pthread_mutex_lock(&o->lock);
                pthread_cond_broadcast(&o->cond);
                pthread_mutex_unlock(&o->lock);
        }
}

/* ---- Producer callbacks (poll thread) ---- */

/* Wake what waits for deliveries (back-pressure, close).  Waiters also
 * poll, so a broadcast is only worth its lock when someone waits. */
static void kafka_wake_waiters(struct kafka_opener *o)
{
        if (atomic_load(&o->bp_waiters) || atomic_load(&o->close_waiters)) {
                pthread_mutex_lock(&o->lock);
                pthread_cond_broadcast(&o->cond);
                pthread_mutex_unlock(&o->lock);
        }
}

/* Run the completion of the delivered append @p (offset or error as the
 * report said); @p is no longer in any list. */
static void kafka_dr_complete(struct kafka_wal *w, walimpls_append_done_fn *done, void *arg,
                              const struct kafka_dr *d)
{
        if (d->err) {
                wal_error *e = NULL;
                int code = kafka_fail(&e, d->err, "kafka: append to topic %s failed", w->topic);
                done(arg, code, WAL_MSGID_NONE, e);
                wal_error_free(e);
        } else if (d->offset < 0) {
                wal_error *e = NULL;
                int code = wal_error_set(&e, -EIO, 0,
                                         "kafka: topic %s: the broker reported no offset "
                                         "(is kafka.acks=0?)", w->topic);
                done(arg, code, WAL_MSGID_NONE, e);
                wal_error_free(e);
        } else {
                done(arg, 0, WAL_MSGID(0, (uint64_t)d->offset), NULL);
        }
}

/* Hand @head..@tail (written appends of @w, linked by qnext) to @w's
 * fence thread, to be acknowledged once the term is confirmed. */
static void kafka_confirm_queue(struct kafka_wal *w, struct kafka_pending *head,
                                struct kafka_pending *tail, size_t n)
{
        pthread_mutex_lock(&w->alock);
        if (w->ctail)
                w->ctail->qnext = head;
        else
                w->chead = head;
        w->ctail = tail;
        /* Only an empty list can have the fence thread asleep.  One
         * waiting for a read's answer starts another for these if it may
         * (kafka_fence_may_read): wake it then. */
        if (atomic_fetch_add(&w->nconfirm, n) == 0)
                pthread_cond_signal(&w->qcond);
        if (atomic_load(&w->fpolling) && (!w->qhead || atomic_load(&w->o->flushers)))
                rd_kafka_queue_yield(w->fq);
        pthread_mutex_unlock(&w->alock);
}

/*
 * Settle the gathered delivery reports, with no lock held.  Each slot
 * leaves INFLIGHT by a compare-and-swap that close's cancellation may have
 * won (then the report only finishes the slot, and the wal, maybe gone, is
 * not touched).  Won: its completion runs here, or, with fencing, the
 * written ones go to the wal's confirm list for the fence thread.  A wal
 * cannot finish closing before its completions are counted, which happens
 * per run of consecutive reports of one wal, after their completions ran;
 * slots are finished per run of one chunk.
 */
static void kafka_dr_settle(struct kafka_opener *o)
{
        size_t n = o->ndr;
        struct kafka_wal *rw = NULL;       /* the run of completions being counted */
        uint64_t rn = 0;
        struct kafka_chunk *rc = NULL;     /* the run of finished slots */
        unsigned rcn = 0;
        struct kafka_wal *cw = NULL;       /* the run of written slots to confirm */
        struct kafka_pending *chead = NULL, *ctail = NULL;
        size_t cn = 0;
        /* One run of completions for the caller (it may publish once). */
        walimpls_done_batch_begin();
        for (size_t i = 0; i < n; i++) {
                const struct kafka_dr *d = &o->drs[i];
                struct kafka_pending *p = d->p;
                struct kafka_chunk *c = p->chunk;
                /* librdkafka is done with a borrowed value (and a written
                 * record's value is no longer needed for a retry). */
                wal_msg *msg = p->msg;
                p->msg = NULL;
                bool written = c->fencing && !d->err && d->offset >= 0;
                int expect = KAFKA_SLOT_INFLIGHT;
                bool won = atomic_compare_exchange_strong(
                        &p->state, &expect, written ? KAFKA_SLOT_WRITTEN : KAFKA_SLOT_SETTLED);
                struct kafka_wal *w = won ? c->w : NULL;
                if (written && won) {
                        p->offset = d->offset;
                        p->qnext = NULL;
                        if (cw != w && chead) {
                                kafka_confirm_queue(cw, chead, ctail, cn);
                                chead = NULL;
                                cn = 0;
                        }
                        cw = w;
                        if (chead)
                                ctail->qnext = p;
                        else
                                chead = p;
                        ctail = p;
                        cn++;
                        wal_msg_unref(msg);
                        continue;   /* finished by whoever completes it */
                }
                if (won) {
                        if (rw != w && rn) {
                                /* Counted only once the caller's put-off
                                 * work for them is done (it may use the
                                 * caller's wal, freed after our close). */
                                walimpls_done_batch_end();
                                kafka_completed(rw, rn);
                                rn = 0;
                                walimpls_done_batch_begin();
                        }
                        rw = w;
                        kafka_dr_complete(w, p->done, p->arg, d);
                        rn++;
                }
                wal_msg_unref(msg);
                if (rc != c && rcn) {
                        kafka_chunk_finish(o, rc, rcn);
                        rcn = 0;
                }
                rc = c;
                rcn++;
        }
        if (chead)
                kafka_confirm_queue(cw, chead, ctail, cn);
        /* Before the counts: what the bracket put off may use the wal. */
        walimpls_done_batch_end();
        if (rn)
                kafka_completed(rw, rn);
        if (rcn)
                kafka_chunk_finish(o, rc, rcn);
        o->ndr = 0;
        kafka_wake_waiters(o);
}

static void kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
        struct kafka_opener *o = opaque;
        if (err != RD_KAFKA_RESP_ERR__FATAL) {
                /* Transient (a broker went away, ...): librdkafka retries. */
                walu_log(WAL_LOG_WARNING, "kafka: producer: %s: %s",
                         rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
                return;
        }
        char buf[256];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));
        int code = kafka_err_to_errno(orig) == -ESTALE ? -ESTALE : -EIO;
        pthread_mutex_lock(&o->lock);
        snprintf(o->fatal_msg, sizeof(o->fatal_msg),
                 "kafka: the producer failed fatally and this opener is unavailable: %s (%s)",
                 buf, rd_kafka_err2name(orig));
        atomic_store(&o->fatal, code);
        pthread_cond_broadcast(&o->cond);
        pthread_mutex_unlock(&o->lock);
        walu_log(WAL_LOG_ERROR, "kafka: fatal producer error: %s: %s",
                 rd_kafka_err2name(orig), buf);
}

/*
 * Destroy the delivery-report events the poll thread left (their records'
 * memory).  Called by the threads that produce: librdkafka allocates a
 * record on the producing thread, and freeing it there rather than on the
 * poll thread keeps the two off each other's malloc arena (with a free on
 * the poll thread, the arena lock was contended on nearly every record:
 * about 0.08 futex calls per record, bench-kafka ours).  Also called by the
 * poll thread when idle, so nothing waits for an append that never comes.
 */
static void kafka_deferred_destroy(struct kafka_opener *o)
{
        if (!atomic_load_explicit(&o->ndeferred, memory_order_relaxed))
                return;
        rd_kafka_event_t *ev[KAFKA_DEFER_MAX];
        pthread_mutex_lock(&o->lock);
        unsigned n = atomic_load(&o->ndeferred);
        memcpy(ev, o->deferred, n * sizeof(ev[0]));
        atomic_store(&o->ndeferred, 0);
        pthread_mutex_unlock(&o->lock);
        for (unsigned i = 0; i < n; i++)
                rd_kafka_event_destroy(ev[i]);
}

/* Serve one event of the producer's main queue (poll thread). */
static void kafka_event_serve(struct kafka_opener *o, rd_kafka_event_t *ev)
{
        switch (rd_kafka_event_type(ev)) {
        case RD_KAFKA_EVENT_DR: {
                const rd_kafka_message_t *ms[KAFKA_DR_BATCH];
                size_t n;
                while ((n = rd_kafka_event_message_array(ev, ms, KAFKA_DR_BATCH)) > 0) {
                        for (size_t i = 0; i < n; i++)
                                if (ms[i]->_private)
                                        o->drs[o->ndr++] = (struct kafka_dr){
                                                ms[i]->_private, ms[i]->offset, ms[i]->err };
                        kafka_dr_settle(o);
                }
                /* The records stay valid until the event is destroyed;
                 * leave that to a producing thread (kafka_deferred_destroy). */
                pthread_mutex_lock(&o->lock);
                unsigned nd = atomic_load(&o->ndeferred);
                /* Not while a flush waits: librdkafka counts a record as
                 * outstanding until it is freed, and its flush waits for
                 * that count to reach zero. */
                if (nd < KAFKA_DEFER_MAX && !atomic_load(&o->flushers)) {
                        o->deferred[nd] = ev;
                        atomic_store(&o->ndeferred, nd + 1);
                        ev = NULL;
                }
                pthread_mutex_unlock(&o->lock);
                break;
        }
        case RD_KAFKA_EVENT_ERROR:
                kafka_error_cb(o->rk, rd_kafka_event_error_is_fatal(ev) ?
                               RD_KAFKA_RESP_ERR__FATAL : rd_kafka_event_error(ev),
                               rd_kafka_event_error_string(ev), o);
                break;
        default:
                break;
        }
        if (ev)
                rd_kafka_event_destroy(ev);
}

static void *kafka_poll_main(void *arg)
{
        struct kafka_opener *o = arg;
        while (!atomic_load(&o->stop)) {
                bool deferred = atomic_load_explicit(&o->ndeferred, memory_order_relaxed);
                rd_kafka_event_t *ev = rd_kafka_queue_poll(o->mainq, deferred ? 10 : 100);
                if (ev)
                        kafka_event_serve(o, ev);
                else
                        kafka_deferred_destroy(o);
        }
        return NULL;
}

/* The opener's fatal state as an error: 0 if healthy. */
static int kafka_check_fatal(struct kafka_opener *o, wal_error **reterr)
{
        int code = atomic_load(&o->fatal);
        if (!code)
                return 0;
        pthread_mutex_lock(&o->lock);
        char msg[sizeof(o->fatal_msg)];
        memcpy(msg, o->fatal_msg, sizeof(msg));
        pthread_mutex_unlock(&o->lock);
        return wal_error_set(reterr, code, WAL_ERROR_FATAL, "%s", msg);
}

/* ---- Builder and opener ---- */

static bool kafka_topic_chars_valid(const char *s)
{
        for (; *s; s++) {
                char c = *s;
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
                        return false;
        }
        return true;
}

static int kafka_collect_pt(void *arg, const char *key, const char *value)
{
        struct kafka_opener *o = arg;
        const char *k = key + strlen("kafka.");
        char **nk = realloc(o->pt_keys, (o->n_pt + 1) * sizeof(*nk));
        if (!nk)
                return -ENOMEM;
        o->pt_keys = nk;
        char **nv = realloc(o->pt_vals, (o->n_pt + 1) * sizeof(*nv));
        if (!nv)
                return -ENOMEM;
        o->pt_vals = nv;
        char *kk = strdup(k), *vv = strdup(value);
        if (!kk || !vv) {
                free(kk);
                free(vv);
                return -ENOMEM;
        }
        if (strcmp(k, "bootstrap.servers") == 0 || strcmp(k, "metadata.broker.list") == 0) {
                free(o->bootstrap);
                o->bootstrap = strdup(value);
                if (!o->bootstrap) {
                        free(kk);
                        free(vv);
                        return -ENOMEM;
                }
        }
        /* A key set twice keeps its latest value in place. */
        for (size_t i = 0; i < o->n_pt; i++) {
                if (strcmp(o->pt_keys[i], kk) == 0) {
                        free(kk);
                        free(o->pt_vals[i]);
                        o->pt_vals[i] = vv;
                        return 0;
                }
        }
        o->pt_keys[o->n_pt] = kk;
        o->pt_vals[o->n_pt] = vv;
        o->n_pt++;
        return 0;
}

static void kafka_poll_stop(struct kafka_opener *o)
{
        if (o->poll_started) {
                atomic_store(&o->stop, true);
                pthread_join(o->poll_thread, NULL);
                o->poll_started = false;
        }
}

static void kafka_opener_free(struct kafka_opener *o)
{
        if (!o)
                return;
        kafka_poll_stop(o);
        kafka_deferred_destroy(o);
        if (o->mainq)
                rd_kafka_queue_destroy(o->mainq);
        if (o->rk)
                rd_kafka_destroy(o->rk);
        /* Orphans left only if librdkafka dropped records unreported. */
        for (struct kafka_chunk **l = &o->orphans; l != NULL;
             l = l == &o->orphans ? &o->spares : NULL) {
                while (*l) {
                        struct kafka_chunk *c = *l;
                        *l = c->next;
                        free(c);
                }
        }
        for (size_t i = 0; i < o->n_pt; i++) {
                free(o->pt_keys[i]);
                free(o->pt_vals[i]);
        }
        free(o->pt_keys);
        free(o->pt_vals);
        free(o->bootstrap);
        free(o->topic_prefix);
        free(o->group_id);
        pthread_cond_destroy(&o->cond);
        pthread_mutex_destroy(&o->lock);
        free(o);
}

static int kafka_get_string(const wal_config *cfg, const char *key, char **ret,
                            wal_error **reterr)
{
        const char *v = cfg ? wal_config_get(cfg, key) : NULL;
        if (!v) {
                for (const struct wal_property *p = kafka_properties; p->name; p++)
                        if (strcmp(p->name, key) == 0)
                                v = p->def;
        }
        *ret = strdup(v ? v : "");
        return *ret ? 0 : wal_error_set(reterr, -ENOMEM, 0, "kafka: out of memory");
}

static int kafka_get_duration(const wal_config *cfg, const char *key, int64_t def,
                              int64_t *ret)
{
        int64_t v = def;
        if (cfg && wal_config_get_duration_ms(cfg, key, &v) < 0)
                v = def;
        *ret = v;
        return 0;
}

/*
 * Build an opener: read the properties (@cfg borrowed), make the producer,
 * start its poll thread and check that a broker answers within
 * kafkawal.open_timeout.
 */
static int kafka_build(const wal_config *cfg, struct walimpls_opener **ret, wal_error **reterr)
{
        if (!ret)
                return wal_error_set(reterr, -EINVAL, 0, "kafka: build: NULL ret");
        struct kafka_opener *o = calloc(1, sizeof(*o));
        if (!o)
                return wal_error_set(reterr, -ENOMEM, 0, "kafka: out of memory");
        o->base.ops = &kafka_opener_ops;
        o->base.builder = &walimpls_kafka;
        pthread_mutex_init(&o->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&o->cond, &ca);
        pthread_condattr_destroy(&ca);

        int r;
        char *create = NULL, *trunc = NULL;
        if ((r = kafka_get_string(cfg, "kafkawal.truncate", &trunc, reterr)) < 0)
                goto fail;
        o->delete_records = strcmp(trunc, "delete_records") == 0;
        free(trunc);
        if ((r = kafka_get_string(cfg, "kafkawal.topic_prefix", &o->topic_prefix, reterr)) < 0 ||
            (r = kafka_get_string(cfg, "kafkawal.group_id", &o->group_id, reterr)) < 0 ||
            (r = kafka_get_string(cfg, "kafkawal.create", &create, reterr)) < 0)
                goto fail;
        o->fencing = true;
        if (cfg)
                (void)wal_config_get_bool(cfg, "kafkawal.fencing", &o->fencing);
        int64_t qmax = 65536;
        if (cfg)
                (void)wal_config_get_int(cfg, "kafkawal.fence_queue", &qmax);
        o->queue_max = qmax > 0 ? (size_t)qmax : 1;
        kafka_get_duration(cfg, "kafkawal.open_timeout", 10000, &o->open_timeout_ms);
        kafka_get_duration(cfg, "kafkawal.close_timeout", 10000, &o->close_timeout_ms);
        o->create = strcmp(create, "admin") == 0 ? KAFKA_CREATE_ADMIN :
                    strcmp(create, "no") == 0 ? KAFKA_CREATE_NO : KAFKA_CREATE_AUTO;
        free(create);
        if (!kafka_topic_chars_valid(o->topic_prefix) || strlen(o->topic_prefix) > 40) {
                r = wal_error_set(reterr, -EINVAL, 0,
                                  "kafka: kafkawal.topic_prefix \"%s\" must be at most 40 "
                                  "characters of [A-Za-z0-9._-]", o->topic_prefix);
                goto fail;
        }
        if (cfg && (r = wal_config_foreach_set(cfg, "kafka.", kafka_collect_pt, o)) != 0) {
                r = wal_error_set(reterr, r < 0 ? r : -EIO, 0,
                                  "kafka: cannot collect the kafka.* properties");
                goto fail;
        }
        for (size_t i = 0; i < o->n_pt; i++) {
                if (strcmp(o->pt_keys[i], "test.mock.num.brokers") == 0) {
                        r = wal_error_set(reterr, -EINVAL, 0,
                                          "kafka: kafka.test.mock.num.brokers is not supported: "
                                          "every librdkafka handle (producer, each scanner) "
                                          "would get its own private mock cluster; host one "
                                          "(walctl mock-kafka) and set kafka.bootstrap.servers");
                        goto fail;
                }
                if (strcmp(o->pt_keys[i], "transactional.id") == 0) {
                        r = wal_error_set(reterr, -EINVAL, 0,
                                          "kafka: kafka.transactional.id is not supported: the "
                                          "shared producer is idempotent, not transactional "
                                          "(fencing is kafkawal.fencing)");
                        goto fail;
                }
        }
        if (!o->bootstrap) {
                r = wal_error_set(reterr, -EINVAL, 0,
                                  "kafka: kafka.bootstrap.servers is not set (the broker list, "
                                  "host:port[,host:port...])");
                goto fail;
        }

        rd_kafka_conf_t *conf = NULL;
        if ((r = kafka_conf_make(o, RD_KAFKA_PRODUCER, &conf, reterr)) < 0)
                goto fail;
        rd_kafka_conf_set_opaque(conf, o);
        /* Delivery reports and errors as events of the main queue, which
         * the poll thread serves (kafka_event_serve). */
        rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR);
        char errstr[512];
        o->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!o->rk) {
                rd_kafka_conf_destroy(conf);
                r = wal_error_set(reterr, -EINVAL, 0, "kafka: cannot make the producer: %s",
                                  errstr);
                goto fail;
        }
        o->mainq = rd_kafka_queue_get_main(o->rk);
        if ((r = -pthread_create(&o->poll_thread, NULL, kafka_poll_main, o)) < 0) {
                r = wal_error_set(reterr, r, 0, "kafka: cannot start the poll thread");
                goto fail;
        }
        o->poll_started = true;
        pthread_setname_np(o->poll_thread, "wal-kafka-poll");

        /* A metadata request for no topic: answers only if a broker does. */
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(o->rk, 0, NULL, &md,
                                                    (int)o->open_timeout_ms);
        if (err) {
                r = kafka_fail(reterr, err,
                               "kafka: no broker answered within %" PRId64 " ms "
                               "(kafka.bootstrap.servers=%s)", o->open_timeout_ms, o->bootstrap);
                if (r == -ECONNRESET || r == -ECONNREFUSED || r == -EIO)
                        r = -ETIMEDOUT;
                if (reterr && *reterr && wal_error_code(*reterr) != r) {
                        /* Keep the message, report the documented code. */
                        wal_error *e = wal_error_new(r, WAL_ERROR_RETRIABLE, "%s",
                                                     wal_error_message(*reterr));
                        wal_error_free(*reterr);
                        *reterr = e;
                }
                goto fail;
        }
        rd_kafka_metadata_destroy(md);
        *ret = &o->base;
        return 0;
fail:
        kafka_opener_free(o);
        return r;
}

static struct kafka_opener *kafka_opener_from_base(struct walimpls_opener *b)
{
        WAL_ASSERT(b && b->ops == &kafka_opener_ops);
        return (struct kafka_opener *)b;
}

static void kafka_opener_close(struct walimpls_opener *base)
{
        struct kafka_opener *o = kafka_opener_from_base(base);
        /* Only records of wals closed with -ECANCELED can remain: drop them
         * and let their delivery reports, served by the poll thread, give
         * their slots back (flush waits for that). */
        if (rd_kafka_outq_len(o->rk) > 0) {
                rd_kafka_purge(o->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
                rd_kafka_flush(o->rk, 2000);
        }
        kafka_opener_free(o);
}

/*
 * Look @topic up in the brokers' metadata.  @create: ask for it by name (a
 * metadata request that auto-creates where the broker allows); otherwise
 * list every topic so nothing is created.  *exists is set on success.
 */
static int kafka_topic_lookup(struct kafka_opener *o, const char *topic, bool create,
                              bool *exists, wal_error **reterr)
{
        rd_kafka_topic_t *rkt = NULL;
        if (create) {
                rkt = rd_kafka_topic_new(o->rk, topic, NULL);
                if (!rkt)
                        return kafka_fail(reterr, rd_kafka_last_error(),
                                          "kafka: cannot make a handle for topic %s", topic);
        }
        uint64_t deadline = walu_monotonic_ns() + (uint64_t)o->open_timeout_ms * 1000000u;
        int r;
        for (;;) {
                int64_t left = (int64_t)(deadline - walu_monotonic_ns()) / 1000000;
                if ((int64_t)(deadline - walu_monotonic_ns()) <= 0)
                        left = 0;
                const struct rd_kafka_metadata *md = NULL;
                rd_kafka_resp_err_t err = rd_kafka_metadata(o->rk, create ? 0 : 1, rkt, &md,
                                                            left > 0 ? (int)left : 1);
                if (err) {
                        r = kafka_fail(reterr, err,
                                       "kafka: metadata for topic %s: no answer within %" PRId64
                                       " ms (kafka.bootstrap.servers=%s)",
                                       topic, o->open_timeout_ms, o->bootstrap);
                        break;
                }
                rd_kafka_resp_err_t terr = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
                bool has_p0 = false;
                int partitions = 0;
                for (int i = 0; i < md->topic_cnt; i++) {
                        if (strcmp(md->topics[i].topic, topic) != 0)
                                continue;
                        terr = md->topics[i].err;
                        partitions = md->topics[i].partition_cnt;
                        for (int j = 0; j < md->topics[i].partition_cnt; j++)
                                if (md->topics[i].partitions[j].id == 0)
                                        has_p0 = true;
                }
                rd_kafka_metadata_destroy(md);
                if (terr == RD_KAFKA_RESP_ERR_NO_ERROR && has_p0) {
                        /* Other clients (kcat -P without -p, a keyed
                         * producer) may write to the other partitions,
                         * which no scanner reads: say so once per open. */
                        if (partitions > 1)
                                walu_log(WAL_LOG_WARNING,
                                         "kafka: topic %s has %d partitions; a channel is "
                                         "partition 0 only, records produced to the others "
                                         "are never read (produce to partition 0, e.g. "
                                         "kcat -P -p 0)",
                                         topic, partitions);
                        *exists = true;
                        r = 0;
                        break;
                }
                if (terr == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART && !create) {
                        *exists = false;
                        r = 0;
                        break;
                }
                /* Being created, leader election: ask again shortly. */
                if (left <= 0) {
                        r = kafka_fail(reterr, terr ? terr : RD_KAFKA_RESP_ERR__TIMED_OUT,
                                       "kafka: topic %s not usable within %" PRId64 " ms",
                                       topic, o->open_timeout_ms);
                        break;
                }
                usleep(20000);
        }
        if (rkt)
                rd_kafka_topic_destroy(rkt);
        return r;
}

/* CreateTopics with one partition and the broker's replication factor. */
static int kafka_topic_create_admin(struct kafka_opener *o, const char *topic,
                                    wal_error **reterr)
{
        char errstr[512];
        rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, 1, -1, errstr, sizeof(errstr));
        if (!nt)
                return wal_error_set(reterr, -EINVAL, 0, "kafka: CreateTopics %s: %s", topic,
                                     errstr);
        rd_kafka_queue_t *q = rd_kafka_queue_new(o->rk);
        rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(o->rk,
                                                                  RD_KAFKA_ADMIN_OP_CREATETOPICS);
        rd_kafka_AdminOptions_set_request_timeout(opts, (int)o->open_timeout_ms, errstr,
                                                  sizeof(errstr));
        rd_kafka_CreateTopics(o->rk, &nt, 1, opts, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, (int)o->open_timeout_ms + 1000);
        int r = 0;
        if (!ev) {
                r = wal_error_set(reterr, -ETIMEDOUT, WAL_ERROR_RETRIABLE,
                                  "kafka: CreateTopics %s: no answer within %" PRId64 " ms",
                                  topic, o->open_timeout_ms);
        } else if (rd_kafka_event_error(ev)) {
                r = kafka_fail(reterr, rd_kafka_event_error(ev), "kafka: CreateTopics %s",
                               topic);
        } else {
                size_t n = 0;
                const rd_kafka_topic_result_t **res = rd_kafka_CreateTopics_result_topics(
                        rd_kafka_event_CreateTopics_result(ev), &n);
                for (size_t i = 0; i < n; i++) {
                        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
                        if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                                r = kafka_fail(reterr, e, "kafka: CreateTopics %s", topic);
                }
        }
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_AdminOptions_destroy(opts);
        rd_kafka_queue_destroy(q);
        rd_kafka_NewTopic_destroy(nt);
        return r;
}

/* Stop the fence thread, if any; what it never took stays queued. */
static void kafka_fence_stop(struct kafka_wal *w)
{
        if (!w->fence_started)
                return;
        pthread_mutex_lock(&w->alock);
        __atomic_store_n(&w->qstop, true, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&w->qcond);
        pthread_cond_broadcast(&w->qspace);
        if (atomic_load(&w->fpolling))
                rd_kafka_queue_yield(w->fq);
        pthread_mutex_unlock(&w->alock);
        pthread_join(w->fence_thread, NULL);
        w->fence_started = false;
}

/* Free a wal with nothing in flight (also a half-made one). */
static void kafka_wal_free(struct kafka_wal *w)
{
        kafka_fence_stop(w);
        for (size_t i = 0; i < w->nspent; i++)
                wal_msg_unref(w->spent[i]);
        free(w->spent);
        if (w->fq)
                rd_kafka_queue_destroy(w->fq);
        if (w->reg)
                rd_kafka_destroy(w->reg);
        free(w->reg_group);
        if (w->rkt)
                rd_kafka_topic_destroy(w->rkt);
        pthread_cond_destroy(&w->qcond);
        pthread_cond_destroy(&w->qspace);
        pthread_mutex_destroy(&w->alock);
        pthread_mutex_destroy(&w->plock);
        walimpls_wal_done(&w->base);
        free(w->topic);
        free(w);
}

/*
 * Take ownership of the channel at w->base.term through its term register
 * (see "Fencing" below) and start the fence thread.  -ESTALE if a higher
 * term owns it.
 */
/* Make w->reg, the consumer handle of the term register's group. */
static int kafka_register_handle(struct kafka_wal *w, wal_error **reterr)
{
        struct kafka_opener *o = w->o;
        rd_kafka_conf_t *conf = NULL;
        int r = kafka_conf_make(o, RD_KAFKA_CONSUMER, &conf, reterr);
        if (r < 0)
                return r;
        char errstr[512], group[KAFKA_TOPIC_MAX + 32];
        snprintf(group, sizeof(group), "libwal-term.%s", w->topic);
        if (rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
                rd_kafka_conf_destroy(conf);
                return wal_error_set(reterr, -EINVAL, 0, "kafka: group.id %s: %s", group, errstr);
        }
        if (!(w->reg_group = strdup(group))) {
                rd_kafka_conf_destroy(conf);
                return wal_error_set(reterr, -ENOMEM, 0, "kafka: out of memory");
        }
        w->reg = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
        if (!w->reg) {
                rd_kafka_conf_destroy(conf);
                return wal_error_set(reterr, -EINVAL, 0, "kafka: cannot make the term register "
                                     "handle: %s", errstr);
        }
        return 0;
}

static int kafka_fence_start(struct kafka_wal *w, wal_error **reterr)
{
        int r = kafka_register_handle(w, reterr);
        if (r < 0)
                return r;
        int64_t term = w->base.term, reg = -1;
        if ((r = kafka_register_read(w, &reg, reterr)) < 0)
                return r;
        if (reg < term) {
                if ((r = kafka_register_write(w, term, reterr)) < 0 ||
                    (r = kafka_register_read(w, &reg, reterr)) < 0)
                        return r;
        }
        if (reg > term)
                return wal_error_set(reterr, -ESTALE, WAL_ERROR_FATAL,
                                     "kafka: channel %s is owned by term %" PRId64 "; cannot "
                                     "write at term %" PRId64, w->base.channel, reg, term);
        if (!(w->fq = rd_kafka_queue_new(w->reg)))
                return wal_error_set(reterr, -ENOMEM, 0, "kafka: cannot make the fence queue");
        if ((r = -pthread_create(&w->fence_thread, NULL, kafka_fence_main, w)) < 0)
                return wal_error_set(reterr, r, 0, "kafka: cannot start the fence thread");
        w->fence_started = true;
        pthread_setname_np(w->fence_thread, "wal-kafka-fence");
        return 0;
}

static int kafka_open(struct walimpls_opener *base, const struct walimpls_open_opts *opts,
                      struct walimpls_wal **ret, wal_error **reterr)
{
        struct kafka_opener *o = kafka_opener_from_base(base);
        if (!opts || !ret || !opts->channel)
                return wal_error_set(reterr, -EINVAL, 0, "kafka: open: NULL argument");
        if (!walimpls_channel_name_valid(opts->channel))
                return wal_error_set(reterr, -EINVAL, 0, "kafka: invalid channel name \"%s\"",
                                     opts->channel);
        bool rw = opts->access == WAL_ACCESS_RW;
        int r;
        if (rw && (r = kafka_check_fatal(o, reterr)) < 0)
                return r;
        size_t tlen = strlen(o->topic_prefix) + strlen(opts->channel);
        if (tlen > KAFKA_TOPIC_MAX)
                return wal_error_set(reterr, -EINVAL, 0,
                                     "kafka: topic name %s%s is longer than %d characters",
                                     o->topic_prefix, opts->channel, KAFKA_TOPIC_MAX);
        char *topic = malloc(tlen + 1);
        if (!topic)
                return wal_error_set(reterr, -ENOMEM, 0, "kafka: out of memory");
        size_t plen = strlen(o->topic_prefix);
        memcpy(topic, o->topic_prefix, plen);
        memcpy(topic + plen, opts->channel, tlen - plen + 1);

        bool exists = false;
        bool auto_create = rw && o->create == KAFKA_CREATE_AUTO;
        r = kafka_topic_lookup(o, topic, auto_create, &exists, reterr);
        if (r == 0 && !exists && rw && o->create == KAFKA_CREATE_ADMIN) {
                r = kafka_topic_create_admin(o, topic, reterr);
                if (r == 0)
                        r = kafka_topic_lookup(o, topic, true, &exists, reterr);
        }
        if (r == 0 && !exists)
                r = wal_error_set(reterr, -ENOENT, 0, "kafka: no topic %s%s", topic,
                                  rw ? " and kafkawal.create=no" : "");
        if (r < 0) {
                /* The library's open adds 'opening "X": ' above this. */
                free(topic);
                return r;
        }

        struct kafka_wal *w = calloc(1, sizeof(*w));
        if (!w || walimpls_wal_init(&w->base, &kafka_wal_ops, base, opts) < 0) {
                free(w);
                free(topic);
                return wal_error_set(reterr, -ENOMEM, 0, "kafka: out of memory");
        }
        w->o = o;
        w->topic = topic;
        pthread_mutex_init(&w->alock, NULL);
        pthread_mutex_init(&w->plock, NULL);
        pthread_cond_init(&w->qcond, NULL);
        pthread_cond_init(&w->qspace, NULL);
        if (rw) {
                w->rkt = rd_kafka_topic_new(o->rk, topic, NULL);
                if (!w->rkt) {
                        r = kafka_fail(reterr, rd_kafka_last_error(),
                                       "kafka: cannot make a handle for topic %s", topic);
                        goto fail;
                }
                w->fencing = o->fencing;
                if (o->fencing && (r = kafka_fence_start(w, reterr)) < 0)
                        goto fail;
        }
        *ret = &w->base;
        return 0;
fail:
        kafka_wal_free(w);
        return r;
}

static int kafka_list_channels(struct walimpls_opener *base, walimpls_channel_fn *fn, void *arg,
                               wal_error **reterr)
{
        struct kafka_opener *o = kafka_opener_from_base(base);
        if (!fn)
                return wal_error_set(reterr, -EINVAL, 0, "kafka: list_channels: NULL callback");
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(o->rk, 1, NULL, &md, (int)o->open_timeout_ms);
        if (err)
                return kafka_fail(reterr, err, "kafka: listing topics (kafka.bootstrap.servers=%s)",
                                  o->bootstrap);
        size_t plen = strlen(o->topic_prefix);
        int r = 0;
        for (int i = 0; i < md->topic_cnt && r == 0; i++) {
                const char *t = md->topics[i].topic;
                if (md->topics[i].err || strncmp(t, o->topic_prefix, plen) != 0)
                        continue;
                if (!walimpls_channel_name_valid(t + plen))
                        continue;
                r = fn(arg, t + plen);
        }
        rd_kafka_metadata_destroy(md);
        return r;
}

static const struct walimpls_opener_ops kafka_opener_ops = {
        .version = WALIMPLS_VERSION,
        .open = kafka_open,
        .list_channels = kafka_list_channels,
        .close = kafka_opener_close,
};

/* ---- WAL ---- */

static struct kafka_wal *kafka_wal_from_base(struct walimpls_wal *b)
{
        WAL_ASSERT(b && b->ops == &kafka_wal_ops);
        return (struct kafka_wal *)b;
}

/*
 * The record key of @m (borrowed), in @buf (KAFKA_KEY_INLINE bytes) when
 * it fits, else in *ret allocated here (free() it when *ret != @buf): the
 * compact layout when @m has no property, vchannel or transaction field,
 * else KAFKA_KEY_MAGIC followed by the envelope (kafka-key.c).  0, -ENOMEM
 * or the envelope encoder's error.
 */
static int kafka_key_make(const wal_msg *m, uint8_t *buf, uint8_t **ret, size_t *ret_len)
{
        _Static_assert(KAFKA_KEY_INLINE >= KAFKA_KEY_COMPACT_MAX, "compact key fits inline");
        size_t clen = kafka_key_compact(m, buf);
        if (clen) {
                *ret = buf;
                *ret_len = clen;
                return 0;
        }
        /* One encoding pass when the envelope fits (the usual case); a
         * larger one is measured, then encoded into its own buffer. */
        uint8_t *key = buf;
        int len = walu_envelope_encode(m, key + KAFKA_KEY_MAGIC_LEN,
                                       KAFKA_KEY_INLINE - KAFKA_KEY_MAGIC_LEN);
        if (len == -ENOSPC) {
                size_t elen = walu_envelope_size(m);
                if (!(key = malloc(KAFKA_KEY_MAGIC_LEN + elen)))
                        return -ENOMEM;
                len = walu_envelope_encode(m, key + KAFKA_KEY_MAGIC_LEN, elen);
        }
        if (len < 0) {
                if (key != buf)
                        free(key);
                return len;
        }
        memcpy(key, KAFKA_KEY_MAGIC, KAFKA_KEY_MAGIC_LEN);
        *ret = key;
        *ret_len = KAFKA_KEY_MAGIC_LEN + (size_t)len;
        return 0;
}

/* The record headers of @m (borrowed): its properties, or NULL if it has
 * none (which spares librdkafka a header list per record). */
static rd_kafka_headers_t *kafka_headers_make(const wal_msg *m)
{
        size_t n = wal_msg_prop_count(m);
        if (n == 0)
                return NULL;
        rd_kafka_headers_t *h = rd_kafka_headers_new(n);
        for (size_t i = 0; i < n; i++) {
                const char *k, *v;
                if (wal_msg_prop_at(m, i, &k, &v) == 0)
                        rd_kafka_header_add(h, k, -1, v, -1);
        }
        return h;
}

/*
 * Produce @msg (borrowed) as the record of @p.  The key and headers are
 * made here; a value of up to KAFKA_COPY_MAX bytes is copied into the
 * record (as the key is), a larger one is borrowed: @p then holds a
 * reference to @msg until the delivery report.  Queue full is
 * back-pressure: wait for a delivery report (or 10 ms) and try again,
 * until the opener fails fatally or the wal's fence thread is told to stop
 * (then RD_KAFKA_RESP_ERR__DESTROY).  On success @p belongs to the delivery
 * report, which may settle it before this even returns: it is not touched
 * after; a reference @p held (the fence queue's) that the record no longer
 * needs is handed to the caller in *ret_spent (else NULL).  On failure @p
 * is as it was; RD_KAFKA_RESP_ERR__FAIL stands for "could not make the
 * record" (*ret_code says why).
 */
static rd_kafka_resp_err_t kafka_produce(struct kafka_wal *w, struct kafka_pending *p,
                                         wal_msg *msg, int *ret_code, wal_msg **ret_spent)
{
        *ret_spent = NULL;
        struct kafka_opener *o = w->o;
        kafka_deferred_destroy(o);
        uint8_t kbuf[KAFKA_KEY_INLINE], *key = NULL;
        size_t klen = 0;
        int r = kafka_key_make(msg, kbuf, &key, &klen);
        if (r < 0) {
                *ret_code = r;
                return RD_KAFKA_RESP_ERR__FAIL;
        }
        rd_kafka_headers_t *hdrs = kafka_headers_make(msg);
        size_t plen = 0;
        const void *payload = wal_msg_payload(msg, &plen);
        bool copy = plen <= KAFKA_COPY_MAX;
        wal_msg *held = p->msg;   /* the fence queue's reference, or NULL */
        wal_msg *borrowed = NULL;
        if (copy)
                p->msg = NULL;
        else if (!held)
                p->msg = borrowed = wal_msg_ref(msg);
        int flags = copy ? RD_KAFKA_MSG_F_COPY : 0;
        /* The record's timestamp (CreateTime) is the time tick's wall-clock
         * milliseconds; 0 (no tick) lets librdkafka read the clock. */
        int64_t stamp = (int64_t)(wal_msg_time_tick(msg) >> KAFKA_TICK_LOGICAL_BITS);
        rd_kafka_resp_err_t err;
        for (;;) {
                if (hdrs)
                        err = rd_kafka_producev(o->rk,
                                                RD_KAFKA_V_RKT(w->rkt),
                                                RD_KAFKA_V_PARTITION(0),
                                                RD_KAFKA_V_VALUE((void *)payload, plen),
                                                RD_KAFKA_V_KEY(key, klen),
                                                RD_KAFKA_V_HEADERS(hdrs),
                                                RD_KAFKA_V_TIMESTAMP(stamp),
                                                RD_KAFKA_V_MSGFLAGS(flags),
                                                RD_KAFKA_V_OPAQUE(p),
                                                RD_KAFKA_V_END);
                else
                        err = rd_kafka_producev(o->rk,
                                                RD_KAFKA_V_RKT(w->rkt),
                                                RD_KAFKA_V_PARTITION(0),
                                                RD_KAFKA_V_VALUE((void *)payload, plen),
                                                RD_KAFKA_V_KEY(key, klen),
                                                RD_KAFKA_V_TIMESTAMP(stamp),
                                                RD_KAFKA_V_MSGFLAGS(flags),
                                                RD_KAFKA_V_OPAQUE(p),
                                                RD_KAFKA_V_END);
                if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        break;
                if (atomic_load(&o->ndeferred)) {
                        /* Records served but not yet freed count as queued. */
                        kafka_deferred_destroy(o);
                        continue;
                }
                pthread_mutex_lock(&o->lock);
                if (atomic_load(&o->fatal)) {
                        pthread_mutex_unlock(&o->lock);
                        break;
                }
                atomic_fetch_add(&o->bp_waiters, 1);
                struct timespec ts = walu_deadline(10);
                pthread_cond_timedwait(&o->cond, &o->lock, &ts);
                atomic_fetch_sub(&o->bp_waiters, 1);
                pthread_mutex_unlock(&o->lock);
                if (w->fence_started && __atomic_load_n(&w->qstop, __ATOMIC_ACQUIRE)) {
                        err = RD_KAFKA_RESP_ERR__DESTROY;
                        break;
                }
        }
        if (key != kbuf)
                free(key);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                if (hdrs)   /* refused: still ours */
                        rd_kafka_headers_destroy(hdrs);
                wal_msg_unref(borrowed);
                p->msg = held;
        } else if (copy) {
                *ret_spent = held;
        }
        return err;
}

/* Finish the slot of an append whose record was never produced. */
static void kafka_pending_drop(struct kafka_wal *w, struct kafka_pending *p)
{
        wal_msg *msg = p->msg;
        p->msg = NULL;
        atomic_store(&p->state, KAFKA_SLOT_SETTLED);
        kafka_chunk_finish(w->o, p->chunk, 1);
        wal_msg_unref(msg);
}

/* Complete an append that was accepted but never produced, then drop it. */
static void kafka_pending_fail(struct kafka_wal *w, struct kafka_pending *p, int code,
                               const wal_error *e)
{
        p->done(p->arg, code, WAL_MSGID_NONE, e);
        kafka_pending_drop(w, p);
        kafka_completed(w, 1);
}

/*
 * The messages the fence thread has produced are released by the thread
 * that appended them, at its next append (or by the fence thread when no
 * append comes for 10 ms): a message is allocated by the appending thread,
 * and releasing it on the fence thread made the two fight over one malloc
 * arena on every record (as kafka_deferred_destroy says of librdkafka's
 * records).  Take them (under the wal's alock), then release them without it.
 */
static wal_msg **kafka_spent_take(struct kafka_wal *w, size_t *ret_n)
{
        wal_msg **v = w->spent;
        *ret_n = w->nspent;
        w->spent = NULL;
        w->nspent = w->capspent = 0;
        return v;
}

static void kafka_spent_release(wal_msg **v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                wal_msg_unref(v[i]);
        free(v);
}

/* Hand @v[0..n) (allocated, taken over) to the next append; under the
 * wal's alock. */
static void kafka_spent_give(struct kafka_wal *w, wal_msg **v, size_t n, size_t cap)
{
        if (!w->spent) {
                w->spent = v;
                w->nspent = n;
                w->capspent = cap;
                return;
        }
        if (w->nspent + n > w->capspent) {
                size_t ncap = WALU_MAX(w->capspent * 2, w->nspent + n);
                wal_msg **nv = realloc(w->spent, ncap * sizeof(*nv));
                if (!nv) {
                        kafka_spent_release(v, n);   /* here, then */
                        return;
                }
                w->spent = nv;
                w->capspent = ncap;
        }
        memcpy(w->spent + w->nspent, v, n * sizeof(*v));
        w->nspent += n;
        free(v);
}

/* The errno for a produce refusal @err, given the opener's state. */
static int kafka_refusal_errno(struct kafka_opener *o, rd_kafka_resp_err_t err)
{
        int fatal = atomic_load(&o->fatal);
        if (fatal && (err == RD_KAFKA_RESP_ERR__QUEUE_FULL || err == RD_KAFKA_RESP_ERR__FATAL))
                return fatal;
        if (err == RD_KAFKA_RESP_ERR__FATAL)
                return -EIO;
        return kafka_err_to_errno(err);
}

static int kafka_append(struct walimpls_wal *base, wal_msg *msg, walimpls_append_done_fn *done,
                        void *arg)
{
        struct kafka_wal *w = kafka_wal_from_base(base);
        struct kafka_opener *o = w->o;
        if (!msg || !done)
                return -EINVAL;
        if (w->base.access != WAL_ACCESS_RW)
                return -EROFS;
        int r = atomic_load(&o->fatal);
        if (r)
                return r;
        if (atomic_load(&w->fenced))
                return -ESTALE;

        /* Take a slot before producing: the delivery report may run at
         * once.  With fencing the fence thread checks the term, then
         * produces, in order. */
        if (!w->fence_started) {
                pthread_mutex_lock(&w->alock);
                struct kafka_pending *p = kafka_slot_take(w, done, arg, KAFKA_SLOT_INFLIGHT);
                pthread_mutex_unlock(&w->alock);
                if (!p)
                        return -ENOMEM;
                wal_msg *spent = NULL;   /* stays NULL: p held no reference */
                rd_kafka_resp_err_t err = kafka_produce(w, p, msg, &r, &spent);
                if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
                        return 0;
                /* Refused: the report never comes; done must not run. */
                kafka_pending_drop(w, p);
                pthread_mutex_lock(&w->alock);
                w->appended--;
                pthread_mutex_unlock(&w->alock);
                return err == RD_KAFKA_RESP_ERR__FAIL ? r : kafka_refusal_errno(o, err);
        }
        /* One round of the wal's own lock: room, slot, queue, and the
         * messages the fence thread produced meanwhile. */
        pthread_mutex_lock(&w->alock);
        while (atomic_load_explicit(&w->qlen, memory_order_relaxed) >= o->queue_max &&
               !w->qstop) {
                if (atomic_load(&w->nready)) {
                        /* Full: produce what is confirmed rather than
                         * wait idle for the fence thread to. */
                        pthread_mutex_unlock(&w->alock);
                        kafka_ready_finish(w, 0, true, true);
                        pthread_mutex_lock(&w->alock);
                        continue;
                }
                uint64_t t0 = walu_monotonic_ns();
                w->nqwaiting++;
                if (atomic_load(&w->fpolling)) {
                        w->nqwait_read++;
                        rd_kafka_queue_yield(w->fq);   /* it may start a read */
                }
                pthread_cond_wait(&w->qspace, &w->alock);
                w->nqwaiting--;
                w->nqwait++;
                w->qwait_ns += walu_monotonic_ns() - t0;
        }
        struct kafka_pending *p = kafka_slot_take(w, done, arg, KAFKA_SLOT_QUEUED);
        if (!p) {
                pthread_mutex_unlock(&w->alock);
                return -ENOMEM;
        }
        p->msg = wal_msg_ref(msg);
        if (w->qtail)
                w->qtail->qnext = p;
        else
                w->qhead = p;
        w->qtail = p;
        /* Only an empty queue can have the fence thread asleep; one
         * waiting for a read's answer starts another once the queue is
         * half full (kafka_fence_may_read). */
        size_t qlen = atomic_fetch_add_explicit(&w->qlen, 1, memory_order_relaxed);
        if (qlen == 0)
                pthread_cond_signal(&w->qcond);
        if (qlen + 1 == (o->queue_max + 1) / 2 && atomic_load(&w->fpolling))
                rd_kafka_queue_yield(w->fq);
        size_t nspent = 0;
        wal_msg **spent = w->nspent ? kafka_spent_take(w, &nspent) : NULL;
        pthread_mutex_unlock(&w->alock);
        if (spent)
                kafka_spent_release(spent, nspent);
        /* Produce what the fence thread confirmed meanwhile, here. */
        if (atomic_load_explicit(&w->nready, memory_order_relaxed))
                kafka_ready_finish(w, 0, true, false);
        return 0;
}

/* ---- Fencing: the term register ----
 *
 * The register of a channel is the committed offset of partition 0 of its
 * topic in the consumer group "libwal-term.<topic>": offset = the owning
 * term, metadata = "libwal term register".  Nobody consumes with that group.
 * A read-write open at term T reads it: a higher term is -ESTALE; a lower
 * one (or none) is replaced by T, then read back to catch a concurrent open.
 * Before producing each batch, the wal's fence thread reads it again; a
 * higher term fences the wal: the batch and every later append fail with
 * -ESTALE and nothing of them reaches the topic.
 *
 * Guarantee: a newer term's open returns only after its term is
 * registered, so every batch an older writer checks afterwards is refused
 * before it is produced.  A batch checked just before the newer term
 * registered may still land after it (it waits up to one register round
 * trip in the ready list, librdkafka holds it for linger.ms, retries it, a
 * broker is slow; its ticks were all taken before that read started),
 * possibly after the newer term's first
 * record, the adaptor's anchor: with time ticks below the anchor's, adaptor
 * scanners drop such a record as a fenced writer's straggler
 * (adaptor/scanner.c).  So no record is acknowledged on its delivery report
 * alone: the fence thread acknowledges it only once a register read that
 * started after that report found this wal's term still registered, which
 * proves the record was written before the newer term registered, hence
 * before its anchor, hence readable.  Otherwise it completes with -ESTALE
 * (the test older_terms_batch_landing_after_the_anchor_is_not_acknowledged
 * holds a batch in librdkafka past a newer open).  With reads overlapping,
 * "started after" is kept by construction: a read takes the delivered
 * records it settles when it starts, and no other answer settles them (the
 * test a_register_read_started_before_a_delivery_report_does_not_
 * acknowledge_it holds an earlier read's answer past a delivery report).  Every acknowledged record
 * is thus readable by every scanner; the converse has one exception: a
 * record refused this way that landed between the newer term's registration
 * and its anchor is in the topic and scanners deliver it (an -ESTALE append
 * on Kafka means "not acknowledged", as a timeout does, not "absent").
 * Kafka's own fencing (transactional.id epochs) would stop the late batch
 * at the broker but costs a transactional producer per channel, and
 * librdkafka 2.0.2's mock cluster does not enforce it (checked: a producer
 * whose transactional.id was taken over still produces and commits), so it
 * could not be tested here.
 */

static rd_kafka_topic_partition_list_t *kafka_register_list(const char *topic)
{
        rd_kafka_topic_partition_list_t *pl = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(pl, topic, 0);
        return pl;
}

/* Read the registered term into *ret (-1 if none). */
static int kafka_register_read(struct kafka_wal *w, int64_t *ret, wal_error **reterr)
{
        rd_kafka_topic_partition_list_t *pl = kafka_register_list(w->topic);
        rd_kafka_resp_err_t err = rd_kafka_committed(w->reg, pl, (int)w->o->open_timeout_ms);
        if (!err)
                err = pl->elems[0].err;
        int64_t off = pl->elems[0].offset;
        rd_kafka_topic_partition_list_destroy(pl);
        if (err)
                return kafka_fail(reterr, err, "kafka: reading the term register of channel %s",
                                  w->base.channel);
        *ret = off >= 0 ? off : -1;
        return 0;
}

static int kafka_register_write(struct kafka_wal *w, int64_t term, wal_error **reterr)
{
        rd_kafka_topic_partition_list_t *pl = kafka_register_list(w->topic);
        static const char md[] = "libwal term register";
        pl->elems[0].offset = term;
        pl->elems[0].metadata = strdup(md);
        pl->elems[0].metadata_size = pl->elems[0].metadata ? sizeof(md) - 1 : 0;
        rd_kafka_resp_err_t err = rd_kafka_commit(w->reg, pl, 0);
        if (!err)
                err = pl->elems[0].err;
        rd_kafka_topic_partition_list_destroy(pl);
        if (err)
                return kafka_fail(reterr, err, "kafka: recording term %" PRId64 " for channel %s",
                                  term, w->base.channel);
        return 0;
}

/*
 * Complete the written appends of @list: successfully, with their offsets,
 * if a register read that started after they were delivered found this
 * wal's term (@code 0); else with @code and @e (-ESTALE: fenced; or the
 * reason the term could not be confirmed).  Gives their slots back.
 */
static void kafka_confirm_complete(struct kafka_wal *w, struct kafka_pending *list, int code,
                                   const wal_error *e)
{
        struct kafka_opener *o = w->o;
        size_t n = 0;
        walimpls_done_batch_begin();
        for (struct kafka_pending *p = list; p; p = p->qnext) {
                if (code == 0) {
                        p->done(p->arg, 0, WAL_MSGID(0, (uint64_t)p->offset), NULL);
                } else {
                        wal_error *pe = NULL;
                        wal_error_set(&pe, code, code == -ESTALE ? WAL_ERROR_FATAL : 0,
                                      "%s (the record is in topic %s at offset %" PRId64 ")",
                                      wal_error_message(e), w->topic, p->offset);
                        p->done(p->arg, code, WAL_MSGID_NONE, pe);
                        wal_error_free(pe);
                }
                n++;
        }
        walimpls_done_batch_end();
        if (!n)
                return;
        /* Finished per run of one chunk; then counted, after which @w may
         * be freed by close. */
        struct kafka_chunk *rc = NULL;
        unsigned rcn = 0;
        while (list) {
                struct kafka_pending *p = list;
                list = p->qnext;
                atomic_store_explicit(&p->state, KAFKA_SLOT_SETTLED, memory_order_relaxed);
                if (rc != p->chunk && rcn) {
                        kafka_chunk_finish(o, rc, rcn);
                        rcn = 0;
                }
                rc = p->chunk;
                rcn++;
        }
        kafka_chunk_finish(o, rc, rcn);
        kafka_completed(w, n);
}

/*
 * Complete the appends of @list (linked by qnext, never produced), each
 * with its fcode and ferr, and give their slots back.  Called with no lock
 * held: a completion may append to @w again.
 */
static void kafka_failed_complete(struct kafka_wal *w, struct kafka_pending *list)
{
        while (list) {
                struct kafka_pending *p = list;
                list = p->qnext;
                p->qnext = NULL;
                wal_error *e = p->ferr;
                p->ferr = NULL;
                kafka_pending_fail(w, p, p->fcode, e);
                wal_error_free(e);
        }
}

/*
 * Produce @batch (appends of @w in produce order, linked by qnext) whose
 * term a register read confirmed (@r 0), or fail it: with -ESTALE if @w is
 * fenced, else with why the term could not be confirmed (@r < 0).  On the
 * fence thread the queue's message references go to the appender
 * (kafka_spent_give); an @appender releases them itself (it allocated them).
 * What fails is not completed here (the caller may hold plock) but
 * returned, in order, for kafka_failed_complete.
 */
static struct kafka_pending *kafka_batch_finish(struct kafka_wal *w, struct kafka_pending **batchp,
                                                int r, bool appender, size_t *ret_done)
{
        struct kafka_pending *batch = *batchp, *fhead = NULL, *ftail = NULL;
        /* The fence thread producing because the appends seemed to stop
         * gives the rest back as soon as one comes: the appender produces
         * it while the fence thread reads the register for the new one. */
        bool yield = !appender && r == 0;
        size_t done = 0;
        wal_msg **spent = NULL;
        size_t nspent = 0, capspent = 0;
        while (batch) {
                if (yield && done % KAFKA_YIELD_EVERY == 0 && done &&
                    atomic_load_explicit(&w->qlen, memory_order_relaxed) &&
                    !atomic_load(&w->fenced))
                        break;
                struct kafka_pending *p = batch;
                batch = p->qnext;
                p->qnext = NULL;
                done++;
                wal_error *e = NULL;
                int code = 0;
                if (atomic_load(&w->fenced)) {
                        code = wal_error_set(&e, -ESTALE, WAL_ERROR_FATAL,
                                             "kafka: channel %s: fenced: term %lld owns "
                                             "it, this wal has term %" PRId64,
                                             w->base.channel,
                                             (long long)atomic_load(&w->owner_term),
                                             w->base.term);
                } else if (r < 0) {
                        code = kafka_check_fatal(w->o, &e);
                        if (!code)
                                code = wal_error_set(&e, -ECANCELED, 0,
                                                     "kafka: channel %s closed before "
                                                     "the append was produced",
                                                     w->base.channel);
                } else {
                        wal_msg *sp = NULL;
                        atomic_store_explicit(&p->state, KAFKA_SLOT_INFLIGHT,
                                              memory_order_relaxed);
                        rd_kafka_resp_err_t err = kafka_produce(w, p, p->msg, &code,
                                                                &sp);
                        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                                if (appender) {
                                        /* Made on this thread: released here. */
                                        wal_msg_unref(sp);
                                        continue;
                                }
                                if (sp && nspent == capspent) {
                                        size_t ncap = capspent ? capspent * 2 : 256;
                                        wal_msg **nv = realloc(spent,
                                                               ncap * sizeof(*nv));
                                        if (nv) {
                                                spent = nv;
                                                capspent = ncap;
                                        }
                                }
                                if (sp && nspent < capspent)
                                        spent[nspent++] = sp;
                                else
                                        wal_msg_unref(sp);
                                continue;
                        }
                        if (err == RD_KAFKA_RESP_ERR__FAIL) {
                                wal_error_set(&e, code, 0, "kafka: channel %s: cannot "
                                              "make the record: %s", w->base.channel,
                                              wal_strerror(code));
                        } else if (err == RD_KAFKA_RESP_ERR__DESTROY) {
                                code = kafka_refusal_errno(w->o, err);
                                wal_error_set(&e, code, 0, "kafka: channel %s closed "
                                              "before the append was produced",
                                              w->base.channel);
                        } else {
                                code = kafka_refusal_errno(w->o, err);
                                kafka_fail(&e, err, "kafka: producing to topic %s",
                                           w->topic);
                        }
                }
                p->fcode = code;
                p->ferr = e;
                if (ftail)
                        ftail->qnext = p;
                else
                        fhead = p;
                ftail = p;
        }
        if (nspent && !appender) {
                pthread_mutex_lock(&w->alock);
                kafka_spent_give(w, spent, nspent, capspent);
                pthread_mutex_unlock(&w->alock);
        } else {
                kafka_spent_release(spent, nspent);
        }
        *batchp = batch;
        if (ret_done)
                *ret_done = done;
        return fhead;
}

/*
 * Finish the ready list of @w (kafka_batch_finish with @r): what a
 * register read confirmed and nobody has produced yet.  The appender
 * produces it at its next append, on its own thread (where the messages
 * were made); the fence thread does when it is about to sleep, or when a
 * register round trip went by without an append taking it.
 */
static void kafka_ready_finish(struct kafka_wal *w, int r, bool appender, bool wait)
{
        if (!wait) {
                if (pthread_mutex_trylock(&w->plock) != 0)
                        return;   /* being produced; the rest is the next one's */
        } else {
                pthread_mutex_lock(&w->plock);
        }
        struct kafka_pending *list = w->rhead, *tail = w->rtail;
        w->rhead = w->rtail = NULL;
        size_t n = atomic_exchange(&w->nready, 0), done = 0;
        struct kafka_pending *failed = list ? kafka_batch_finish(w, &list, r, appender, &done)
                                            : NULL;
        if (appender && r == 0)
                atomic_fetch_add_explicit(&w->nprod_app, done, memory_order_relaxed);
        if (list) {
                /* Given back (an append came): the list stayed empty,
                 * only the fence thread fills it and this is that thread. */
                w->rhead = list;
                w->rtail = tail;
                atomic_fetch_add(&w->nready, n - done);
        }
        pthread_mutex_unlock(&w->plock);
        /* Not under plock: a completion may append (and produce) again. */
        kafka_failed_complete(w, failed);
}

/*
 * The fence thread's register reads are pipelined: each read is started
 * asynchronously (ListConsumerGroupOffsets, the same OffsetFetch request
 * rd_kafka_committed() sends, answered in @w->fq) for what was there when it
 * started: the appends queued (its batch) and the records delivered (its
 * written list), which it takes from the wal's lists as it starts.  Its
 * answer settles exactly those, and answers are settled in the order the
 * reads started (batches are produced in append order).  So a record is
 * only ever confirmed by a read that started after its delivery report
 * (the guarantee above kafka_register_read()), however many reads are in
 * flight.  One read at a time is the rule, as before; another starts
 * beside it (up to KAFKA_FENCE_READS) only when waiting for the one in
 * flight would cost: appends are queued and a flush is waiting for them,
 * or the queue is half full (an appender would soon wait for room).
 * Under alock.
 */
static bool kafka_fence_may_read(struct kafka_wal *w, unsigned nfl)
{
        if (!w->qhead && !w->chead)
                return false;
        if (nfl == 0)
                return true;
        if (nfl >= KAFKA_FENCE_READS)
                return false;
        /* Appends only: a read for delivered records alone waits for the
         * one in flight (starting one per delivery-report batch in the
         * tail made the register handle's and the mock's threads take the
         * CPU the poll thread needed for the backlog of reports). */
        return w->qhead && (atomic_load(&w->o->flushers) ||
                            atomic_load_explicit(&w->qlen, memory_order_relaxed) >=
                                    (w->o->queue_max + 1) / 2);
}

/* A register read of the fence thread and what its answer settles. */
struct kafka_fread {
        uint64_t seq;                      /* its request's opaque */
        struct kafka_pending *batch, *btail; /* queued appends taken as it started */
        size_t blen;
        struct kafka_pending *written;     /* delivered before it started */
        uint64_t t0;                       /* when it started */
        bool answered;
        int r;                             /* its answer: 0 with @reg, or an errno */
        int64_t reg;
        wal_error *e;
};

/* Start the register read @f (its lists are taken). */
static void kafka_fread_start(struct kafka_wal *w, struct kafka_fread *f, uint64_t seq)
{
        f->seq = seq;
        f->answered = false;
        f->r = 0;
        f->reg = -1;
        f->e = NULL;
        f->t0 = walu_monotonic_ns();
        rd_kafka_topic_partition_list_t *pl = kafka_register_list(w->topic);
        rd_kafka_ListConsumerGroupOffsets_t *req =
                rd_kafka_ListConsumerGroupOffsets_new(w->reg_group, pl);
        rd_kafka_topic_partition_list_destroy(pl);
        rd_kafka_AdminOptions_t *ao =
                rd_kafka_AdminOptions_new(w->reg, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS);
        char errstr[256];
        rd_kafka_AdminOptions_set_request_timeout(ao, (int)w->o->open_timeout_ms, errstr,
                                                  sizeof(errstr));
        /* As rd_kafka_committed() asks (isolation.level=read_committed). */
        rd_kafka_error_t *ae = rd_kafka_AdminOptions_set_require_stable_offsets(ao, 1);
        if (ae)
                rd_kafka_error_destroy(ae);
        rd_kafka_AdminOptions_set_opaque(ao, (void *)(uintptr_t)seq);
        rd_kafka_ListConsumerGroupOffsets(w->reg, &req, 1, ao, w->fq);
        rd_kafka_ListConsumerGroupOffsets_destroy(req);
        rd_kafka_AdminOptions_destroy(ao);
}

/* Read the answer @ev into @f: the registered term (-1 if none) or why
 * there is none. */
static void kafka_fread_answer(struct kafka_wal *w, struct kafka_fread *f, rd_kafka_event_t *ev)
{
        rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
        int64_t off = -1;
        if (!err) {
                const rd_kafka_ListConsumerGroupOffsets_result_t *res =
                        rd_kafka_event_ListConsumerGroupOffsets_result(ev);
                size_t n = 0;
                const rd_kafka_group_result_t **gr =
                        res ? rd_kafka_ListConsumerGroupOffsets_result_groups(res, &n) : NULL;
                const rd_kafka_topic_partition_list_t *pl =
                        n == 1 ? rd_kafka_group_result_partitions(gr[0]) : NULL;
                const rd_kafka_error_t *ge = n == 1 ? rd_kafka_group_result_error(gr[0]) : NULL;
                if (ge)
                        err = rd_kafka_error_code(ge);
                else if (!pl || pl->cnt != 1)
                        err = RD_KAFKA_RESP_ERR__BAD_MSG;
                else if (!(err = pl->elems[0].err))
                        off = pl->elems[0].offset;
        }
        uint64_t dt = walu_monotonic_ns() - f->t0;
        w->read_ns += dt;
        if (dt > w->read_max_ns)
                w->read_max_ns = dt;
        f->answered = true;
        f->reg = off >= 0 ? off : -1;
        f->r = err ? kafka_fail(&f->e, err, "kafka: reading the term register of channel %s",
                                w->base.channel) : 0;
}

/* Settle what the read @f started for, by its answer (@f->r 0: the term in
 * @f->reg) or the failure @f->r. */
static void kafka_fread_settle(struct kafka_wal *w, struct kafka_fread *f)
{
        int r = f->r;
        if (r == 0) {
                w->nreads++;
                w->nchecked += f->blen;
                if (f->reg > w->base.term) {
                        atomic_store(&w->owner_term, f->reg);
                        atomic_store(&w->fenced, true);
                }
        }
        wal_error_free(f->e);
        f->e = NULL;
        if (f->written) {
                wal_error *e = NULL;
                int code = 0;
                if (atomic_load(&w->fenced))
                        code = wal_error_set(&e, -ESTALE, WAL_ERROR_FATAL,
                                             "kafka: channel %s: fenced: term %lld "
                                             "registered before this append of term %"
                                             PRId64 " was confirmed; scanners may skip "
                                             "it", w->base.channel,
                                             (long long)atomic_load(&w->owner_term),
                                             w->base.term);
                else if (r < 0 && !(code = kafka_check_fatal(w->o, &e)))
                        code = wal_error_set(&e, -ECANCELED, 0,
                                             "kafka: channel %s closed before the "
                                             "append's term was confirmed",
                                             w->base.channel);
                kafka_confirm_complete(w, f->written, code, e);
                wal_error_free(e);
                f->written = NULL;
        }
        struct kafka_pending *batch = f->batch;
        f->batch = NULL;
        if (r < 0 || atomic_load(&w->fenced)) {
                kafka_ready_finish(w, r, false, true);
                kafka_failed_complete(w, kafka_batch_finish(w, &batch, r, false, NULL));
                return;
        }
        /* Confirmed: the batch is ready to produce, after what is left of
         * the last one.  That is the appenders' to produce while they keep
         * appending (this batch is not empty); else they stopped, and it is
         * produced here. */
        if (!batch && atomic_load(&w->nready))
                kafka_ready_finish(w, 0, false, true);
        if (batch) {
                pthread_mutex_lock(&w->plock);
                if (w->rtail)
                        w->rtail->qnext = batch;
                else
                        w->rhead = batch;
                w->rtail = f->btail;
                atomic_fetch_add(&w->nready, f->blen);
                pthread_mutex_unlock(&w->plock);
                /* A flush waiting for these produces them (and makes
                 * librdkafka send them) at once. */
                if (atomic_load(&w->o->flushers)) {
                        pthread_mutex_lock(&w->o->lock);
                        pthread_cond_broadcast(&w->o->cond);
                        pthread_mutex_unlock(&w->o->lock);
                }
        }
}

static void *kafka_fence_main(void *arg)
{
        struct kafka_wal *w = arg;
        struct kafka_fread fr[KAFKA_FENCE_READS];
        unsigned head = 0, nfl = 0;        /* fr[head..head+nfl) in flight or answered */
        uint64_t seq = 0;
        bool warned = false;
        for (;;) {
                pthread_mutex_lock(&w->alock);
                bool start = false;
                while (!w->qstop && !(start = kafka_fence_may_read(w, nfl)) && !nfl) {
                        if (atomic_load(&w->nready) && !w->nqwaiting) {
                                /* Confirmed, and no append came for it (one
                                 * woken from waiting for room is coming: it
                                 * produces the list). */
                                pthread_mutex_unlock(&w->alock);
                                kafka_ready_finish(w, 0, false, true);
                                pthread_mutex_lock(&w->alock);
                                continue;
                        }
                        if (!w->nspent) {
                                pthread_cond_wait(&w->qcond, &w->alock);
                                continue;
                        }
                        /* Released here if no append comes to take them. */
                        struct timespec ts = walu_deadline(10);
                        if (pthread_cond_timedwait(&w->qcond, &w->alock, &ts) == ETIMEDOUT &&
                            !w->qhead && !w->chead) {
                                size_t n = 0;
                                wal_msg **v = kafka_spent_take(w, &n);
                                pthread_mutex_unlock(&w->alock);
                                kafka_spent_release(v, n);
                                pthread_mutex_lock(&w->alock);
                        }
                }
                if (w->qstop) {
                        pthread_mutex_unlock(&w->alock);
                        /* In order: what was answered by its answer, the
                         * rest as closed before its term was confirmed. */
                        for (; nfl; nfl--, head = (head + 1) % KAFKA_FENCE_READS) {
                                struct kafka_fread *f = &fr[head];
                                if (!f->answered) {
                                        f->r = -ECANCELED;
                                        f->answered = true;
                                }
                                kafka_fread_settle(w, f);
                        }
                        return NULL;
                }
                if (start) {
                        struct kafka_fread *f = &fr[(head + nfl) % KAFKA_FENCE_READS];
                        f->batch = w->qhead;
                        f->btail = w->qtail;
                        f->blen = atomic_load_explicit(&w->qlen, memory_order_relaxed);
                        w->qhead = w->qtail = NULL;
                        if (f->blen >= w->o->queue_max)
                                pthread_cond_broadcast(&w->qspace);
                        atomic_store_explicit(&w->qlen, 0, memory_order_relaxed);
                        /* Delivered before the register read below starts. */
                        f->written = w->chead;
                        w->chead = w->ctail = NULL;
                        atomic_store(&w->nconfirm, 0);
                        pthread_mutex_unlock(&w->alock);
                        if (nfl)
                                w->noverlap++;
                        nfl++;
                        kafka_fread_start(w, f, ++seq);
                        continue;
                }
                /* Wait for an answer; appends, delivery reports, a flush
                 * and close wake us (kafka_fence_may_read). */
                atomic_store(&w->fpolling, true);
                pthread_mutex_unlock(&w->alock);
                rd_kafka_event_t *ev = rd_kafka_queue_poll(w->fq, 100);
                atomic_store(&w->fpolling, false);
                if (ev) {
                        uint64_t id = (uint64_t)(uintptr_t)rd_kafka_event_opaque(ev);
                        for (unsigned i = 0; i < nfl; i++) {
                                struct kafka_fread *f = &fr[(head + i) % KAFKA_FENCE_READS];
                                if (f->seq == id && !f->answered) {
                                        kafka_fread_answer(w, f, ev);
                                        break;
                                }
                        }
                        rd_kafka_event_destroy(ev);
                }
                /* Settle in the order the reads started. */
                while (nfl && fr[head].answered) {
                        struct kafka_fread *f = &fr[head];
                        if (f->r < 0 && !atomic_load(&w->fenced) &&
                            !__atomic_load_n(&w->qstop, __ATOMIC_ACQUIRE) &&
                            !atomic_load(&w->o->fatal)) {
                                /* A broker that is away is waited for: the
                                 * same lists, read again (later still). */
                                if (!warned)
                                        walu_log(WAL_LOG_WARNING, "%s (retrying)",
                                                 wal_error_message(f->e));
                                warned = true;
                                wal_error_free(f->e);
                                usleep(50000);
                                kafka_fread_start(w, f, ++seq);
                                break;
                        }
                        if (f->r == 0)
                                warned = false;
                        kafka_fread_settle(w, f);
                        head = (head + 1) % KAFKA_FENCE_READS;
                        nfl--;
                }
        }
}

/*
 * Allow deletion up to and including @id.  kafkawal.truncate=retention (the
 * default): nothing to do, the topic's retention deletes, as in Milvus.
 * =delete_records: ask the brokers to delete the records before offset id+1
 * (DeleteRecords, Kafka >= 0.11); where that is unsupported (librdkafka
 * 2.0.2's mock cluster answers _UNSUPPORTED_FEATURE, and librdkafka then
 * leaks 176 bytes per call, checked with ASan) nothing is deleted and 0 is
 * returned: the contract allows "later or never".  IDs past the end are
 * clamped to the end.
 */
static int kafka_truncate(struct walimpls_wal *base, struct wal_msgid id, wal_error **reterr)
{
        struct kafka_wal *w = kafka_wal_from_base(base);
        struct kafka_opener *o = w->o;
        if (w->base.access != WAL_ACCESS_RW)
                return wal_error_set(reterr, -EROFS, 0,
                                     "kafka: truncate on read-only channel %s", w->base.channel);
        if (wal_msgid_is_none(id) || id.hi != 0 || id.lo >= (uint64_t)INT64_MAX)
                return wal_error_set(reterr, -EINVAL, 0,
                                     "kafka: truncate %s: not a Kafka offset (IDs are 0-OFFSET)",
                                     w->base.channel);
        if (!o->delete_records)
                return 0;
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(o->rk, w->topic, 0, &lo, &hi,
                                                                   (int)o->open_timeout_ms);
        if (err)
                return kafka_fail(reterr, err, "kafka: truncate %s: watermarks", w->base.channel);
        int64_t before = WALU_MIN((int64_t)id.lo + 1, hi);
        if (before <= lo)
                return 0;   /* already gone */

        rd_kafka_topic_partition_list_t *pl = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(pl, w->topic, 0)->offset = before;
        rd_kafka_DeleteRecords_t *dr = rd_kafka_DeleteRecords_new(pl);
        rd_kafka_topic_partition_list_destroy(pl);
        rd_kafka_queue_t *q = rd_kafka_queue_new(o->rk);
        char errstr[256];
        rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(o->rk,
                                                                RD_KAFKA_ADMIN_OP_DELETERECORDS);
        rd_kafka_AdminOptions_set_request_timeout(ao, (int)o->open_timeout_ms, errstr,
                                                  sizeof(errstr));
        rd_kafka_DeleteRecords(o->rk, &dr, 1, ao, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, (int)o->open_timeout_ms + 1000);
        int r = 0;
        if (!ev) {
                r = wal_error_set(reterr, -ETIMEDOUT, WAL_ERROR_RETRIABLE,
                                  "kafka: truncate %s: DeleteRecords got no answer within %"
                                  PRId64 " ms", w->base.channel, o->open_timeout_ms);
        } else if ((err = rd_kafka_event_error(ev)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
                r = kafka_fail(reterr, err, "kafka: truncate %s: DeleteRecords", w->base.channel);
        } else {
                const rd_kafka_topic_partition_list_t *res =
                        rd_kafka_DeleteRecords_result_offsets(
                                rd_kafka_event_DeleteRecords_result(ev));
                err = res && res->cnt > 0 ? res->elems[0].err : RD_KAFKA_RESP_ERR__BAD_MSG;
                if (err == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE ||
                    err == RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION) {
                        /* A warning, not a debug line: the user asked for
                         * deletion with kafkawal.truncate=delete_records. */
                        walu_log(WAL_LOG_WARNING, "kafka: truncate %s: the brokers do not "
                                 "support DeleteRecords, so nothing was deleted; the topic's "
                                 "retention will delete instead", w->base.channel);
                } else if (err) {
                        r = kafka_fail(reterr, err, "kafka: truncate %s before offset %" PRId64,
                                       w->base.channel, before);
                }
        }
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_AdminOptions_destroy(ao);
        rd_kafka_queue_destroy(q);
        rd_kafka_DeleteRecords_destroy(dr);
        return r;
}

static int kafka_info(struct walimpls_wal *base, struct walimpls_info *ret, wal_error **reterr)
{
        struct kafka_wal *w = kafka_wal_from_base(base);
        if (!ret)
                return wal_error_set(reterr, -EINVAL, 0, "kafka: info: NULL ret");
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(w->o->rk, w->topic, 0, &lo, &hi,
                                                                   (int)w->o->open_timeout_ms);
        if (err)
                return kafka_fail(reterr, err, "kafka: watermarks of topic %s", w->topic);
        /* The term register: the fence thread's handle, or, for a wal
         * without one (read-only, or fencing off), one made at the first
         * info() and kept until close. */
        int64_t term = -1;
        int r = 0;
        pthread_mutex_lock(&w->alock);
        if (!w->reg)
                r = kafka_register_handle(w, reterr);
        pthread_mutex_unlock(&w->alock);
        if (r == 0)
                r = kafka_register_read(w, &term, reterr);
        if (r < 0 && w->fence_started)
                return r;
        if (r < 0) {
                /* Only informative here: the rest is still worth having. */
                walu_log(WAL_LOG_DEBUG, "kafka: info %s: term register unread: %s",
                         w->base.channel, reterr && *reterr ? wal_error_message(*reterr) : "");
                if (reterr) {
                        wal_error_free(*reterr);
                        *reterr = NULL;
                }
                term = -1;
        }
        *ret = (struct walimpls_info){
                .first_id = hi > lo ? WAL_MSGID(0, (uint64_t)lo) : WAL_MSGID_NONE,
                .last_id = hi > lo ? WAL_MSGID(0, (uint64_t)(hi - 1)) : WAL_MSGID_NONE,
                .count = hi - lo,   /* offsets, counting transaction markers if any */
                .bytes = -1,
                .term = term,
                .durability = "acks=all: in the memory of every in-sync replica of the "
                              "partition; disk flush follows the brokers' settings",
        };
        return 0;
}

/* Wait until every accepted append of @w has completed, or @deadline
 * (CLOCK_MONOTONIC ns; 0: no limit) passes.  @returns true when they have. */
static bool kafka_wait_completed(struct kafka_wal *w, uint64_t deadline)
{
        struct kafka_opener *o = w->o;
        pthread_mutex_lock(&w->alock);
        uint64_t appended = w->appended;
        pthread_mutex_unlock(&w->alock);
        pthread_mutex_lock(&o->lock);
        while (atomic_load(&w->ncompleted) < appended &&
               (!deadline || walu_monotonic_ns() < deadline)) {
                /* Polling too: completions broadcast only when they see a
                 * close waiter. */
                struct timespec ts = walu_deadline(10);
                pthread_cond_timedwait(&o->cond, &o->lock, &ts);
        }
        pthread_mutex_unlock(&o->lock);
        return atomic_load(&w->ncompleted) >= appended;
}

/* Close: complete what is in @w's confirm list (written, but the fence
 * thread, stopped, never confirmed its term) with -ECANCELED. */
static void kafka_close_written(struct kafka_wal *w)
{
        pthread_mutex_lock(&w->alock);
        struct kafka_pending *written = w->chead;
        w->chead = w->ctail = NULL;
        atomic_store(&w->nconfirm, 0);
        pthread_mutex_unlock(&w->alock);
        if (!written)
                return;
        wal_error *e = NULL;
        int code = wal_error_set(&e, -ECANCELED, 0, "kafka: channel %s closed before the "
                                 "append's term was confirmed", w->base.channel);
        kafka_confirm_complete(w, written, code, e);
        wal_error_free(e);
}

/*
 * wal.flush: wait until every append accepted on @w before the call has
 * completed, or @timeout_ms passes (-1: no limit).  Without it a caller
 * waiting for its append (a blocking append) waits out linger.ms too:
 * librdkafka holds a record that long for more to join its batch.  Here,
 * while records are outstanding, librdkafka's own flush runs in steps of
 * KAFKA_FLUSH_STEP_MS: while it runs librdkafka sends what is queued at
 * once (for every channel of the opener: it has no flush of its own per
 * topic), and it returns as soon as nothing is outstanding, which the poll
 * thread helps by freeing served records at once while a flush waits.
 * With fencing, what the fence thread confirmed is produced here, and the
 * appends complete after its next register read (this waits for them);
 * librdkafka's flush waits until none of this wal's appends is left to
 * produce, so that it sends full batches, as after raw's last produce.
 * Completions are counted, not named: this waits until as many appends
 * have completed as had been accepted when it started (fewer if some of
 * those were refused since: their slots were counted before librdkafka
 * refused them).  That is each of them, because they complete in the order
 * they were accepted (one partition, delivery reports in order, the fence
 * thread's lists in order), with one exception: with fencing, an append
 * that fails (a delivery error, a refusal) can complete ahead of an older
 * one that was written and waits for its term to be confirmed, and flush
 * may then return that one register read early.  The adaptor, its caller
 * here, waits for its own append's completion after flushing in any case.
 */
#define KAFKA_FLUSH_STEP_MS 1

static int kafka_flush(struct walimpls_wal *base, int timeout_ms, wal_error **reterr)
{
        struct kafka_wal *w = kafka_wal_from_base(base);
        struct kafka_opener *o = w->o;
        if (w->base.access != WAL_ACCESS_RW)
                return 0;
        uint64_t deadline = timeout_ms < 0 ? 0 :
                walu_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
        pthread_mutex_lock(&w->alock);
        uint64_t target = w->appended;
        pthread_mutex_unlock(&w->alock);
        if (atomic_load(&w->ncompleted) >= target)
                return 0;
        atomic_fetch_add(&o->flushers, 1);
        atomic_fetch_add(&o->close_waiters, 1);
        if (w->fence_started) {
                /* A flush lets the fence thread start a read for what is
                 * waiting at once, beside the one in flight. */
                pthread_mutex_lock(&w->alock);
                if (atomic_load(&w->fpolling))
                        rd_kafka_queue_yield(w->fq);
                pthread_mutex_unlock(&w->alock);
        }
        int r = 0;
        for (;;) {
                pthread_mutex_lock(&w->alock);
                uint64_t want = WALU_MIN(target, w->appended);
                pthread_mutex_unlock(&w->alock);
                if (atomic_load(&w->ncompleted) >= want)
                        break;
                uint64_t now = walu_monotonic_ns();
                if (deadline && now >= deadline) {
                        r = wal_error_set(reterr, -ETIMEDOUT, 0,
                                          "kafka: channel %s: flush: appends still in flight "
                                          "after %d ms", w->base.channel, timeout_ms);
                        break;
                }
                int step = KAFKA_FLUSH_STEP_MS;
                if (deadline && deadline - now < (uint64_t)step * 1000000u)
                        step = (int)((deadline - now) / 1000000u);
                if (w->fence_started && atomic_load(&w->nready))
                        kafka_ready_finish(w, 0, true, true);
                kafka_deferred_destroy(o);
                /* librdkafka's flush only once this wal's appends are all
                 * produced (as raw's loop calls it after its last produce):
                 * while it runs, every record produced is sent at once, in
                 * batches of a few records each, which costs the broker
                 * thread and the broker per request. */
                bool unproduced = w->fence_started &&
                                  (atomic_load_explicit(&w->qlen, memory_order_relaxed) ||
                                   atomic_load(&w->nready));
                if (!unproduced && rd_kafka_outq_len(o->rk) > 0) {
                        rd_kafka_flush(o->rk, step);
                        continue;
                }
                /* Appends waiting for the fence thread's register read,
                 * or nothing outstanding in librdkafka: the completions are
                 * on their way (from the poll thread, or the fence thread
                 * after a register read); they broadcast while we wait, as
                 * the fence thread does when it confirmed a batch. */
                pthread_mutex_lock(&o->lock);
                if (atomic_load(&w->ncompleted) < want && !atomic_load(&w->nready)) {
                        struct timespec ts = walu_deadline(step);
                        pthread_cond_timedwait(&o->cond, &o->lock, &ts);
                }
                pthread_mutex_unlock(&o->lock);
        }
        atomic_fetch_sub(&o->close_waiters, 1);
        atomic_fetch_sub(&o->flushers, 1);
        return r;
}

static void kafka_wal_close(struct walimpls_wal *base)
{
        struct kafka_wal *w = kafka_wal_from_base(base);
        struct kafka_opener *o = w->o;
        /* No append runs during close, so w->appended is final. */
        atomic_fetch_add(&o->close_waiters, 1);
        kafka_wait_completed(w, walu_monotonic_ns() +
                                        (uint64_t)o->close_timeout_ms * 1000000u + 1);

        if (w->fence_started) {
                /* Stop the fence thread; what it never took is cancelled
                 * (no append runs during close: the queue is ours now). */
                kafka_fence_stop(w);
                walu_log(WAL_LOG_DEBUG, "kafka: channel %s: %" PRIu64 " appends checked by %"
                         PRIu64 " term-register reads (%.1f per read; %" PRIu64 " started "
                         "beside another), %" PRIu64 " of them "
                         "produced by the appending thread; reads %.3f ms mean, %.3f max; "
                         "%" PRIu64 " waits for queue room (%" PRIu64 " while a read was "
                         "awaited), %.3f ms in all",
                         w->base.channel, w->nchecked,
                         w->nreads, w->nreads ? (double)w->nchecked / (double)w->nreads : 0.0,
                         w->noverlap,
                         (uint64_t)atomic_load(&w->nprod_app),
                         w->nreads ? (double)w->read_ns / 1e6 / (double)w->nreads : 0.0,
                         (double)w->read_max_ns / 1e6, w->nqwait, w->nqwait_read,
                         (double)w->qwait_ns / 1e6);
                while (w->qhead) {
                        struct kafka_pending *p = w->qhead;
                        w->qhead = p->qnext;
                        wal_error *e = NULL;
                        int code = wal_error_set(&e, -ECANCELED, 0,
                                                 "kafka: channel %s closed before the append "
                                                 "was produced", w->base.channel);
                        kafka_pending_fail(w, p, code, e);
                        wal_error_free(e);
                }
                w->qtail = NULL;
                atomic_store_explicit(&w->qlen, 0, memory_order_relaxed);
                /* Confirmed but not produced: closed before it was. */
                kafka_ready_finish(w, -ECANCELED, true, true);
        }

        /*
         * What is still in flight has not reached its delivery report:
         * cancel it (its report will only finish the slot) and complete it
         * here.  Each slot's state decides, by compare-and-swap, between
         * this and a report settling it meanwhile.  The wal's chunks cannot
         * retire while opener.lock is held.  No slot of the current chunk
         * will be taken any more: they are finished here.
         */
        struct kafka_cancel {
                walimpls_append_done_fn *done;
                void *arg;
        } *cv = NULL;
        size_t n = 0, cap = 0;
        pthread_mutex_lock(&o->lock);
        for (struct kafka_chunk *c = w->chunks; c; c = c->next)
                cap += c->used;
        pthread_mutex_unlock(&o->lock);
        if (cap && !(cv = calloc(cap, sizeof(*cv))))
                WAL_BUG("kafka: out of memory cancelling up to %zu appends", cap);
        pthread_mutex_lock(&o->lock);
        for (struct kafka_chunk *c = w->chunks; c; c = c->next) {
                for (unsigned i = 0; i < c->used; i++) {
                        struct kafka_pending *p = &c->slots[i];
                        int expect = KAFKA_SLOT_INFLIGHT;
                        if (atomic_compare_exchange_strong(&p->state, &expect,
                                                           KAFKA_SLOT_CANCELLED)) {
                                WAL_ASSERT(n < cap);
                                cv[n++] = (struct kafka_cancel){ p->done, p->arg };
                        }
                }
        }
        pthread_mutex_unlock(&o->lock);
        struct kafka_chunk *cur = w->cur;
        w->cur = NULL;
        if (cur)
                kafka_chunk_finish(o, cur, KAFKA_CHUNK_SLOTS - cur->used);
        kafka_close_written(w);
        for (size_t i = 0; i < n; i++) {
                wal_error *e = NULL;
                wal_error_set(&e, -ECANCELED, 0,
                              "kafka: channel %s closed before the broker acknowledged the "
                              "append (it may still be written)", w->base.channel);
                cv[i].done(cv[i].arg, -ECANCELED, WAL_MSGID_NONE, e);
                wal_error_free(e);
        }
        free(cv);
        if (n)
                atomic_fetch_add(&w->ncompleted, n);

        /* Reports settled meanwhile finish their completions now; with
         * fencing, a report that won its slot before the cancelling above
         * may reach the confirm list only now: completed here too. */
        if (w->fencing)
                while (!kafka_wait_completed(w, walu_monotonic_ns() + 10000000u))
                        kafka_close_written(w);
        else
                kafka_wait_completed(w, 0);
        atomic_fetch_sub(&o->close_waiters, 1);

        /* The chunks still holding records librdkafka has not reported
         * become the opener's orphans. */
        pthread_mutex_lock(&o->lock);
        while (w->chunks) {
                struct kafka_chunk *c = w->chunks;
                kafka_chunk_unlink(&w->chunks, c);
                c->w = NULL;
                kafka_chunk_push(&o->orphans, c);
        }
        pthread_mutex_unlock(&o->lock);
        kafka_wal_free(w);
}

/* ---- Scanner ---- */

static struct kafka_scanner *kafka_scanner_from_base(struct walimpls_scanner *b)
{
        WAL_ASSERT(b && b->ops == &kafka_scanner_ops);
        return (struct kafka_scanner *)b;
}

/* Destroy the records taken from the queue but not yet handled. */
static void kafka_scanner_batch_drop(struct kafka_scanner *s)
{
        while (s->bpos < s->blen)
                rd_kafka_message_destroy(s->batch[s->bpos++]);
        s->bpos = s->blen = 0;
}

static void kafka_scanner_free(struct kafka_scanner *s)
{
        kafka_scanner_batch_drop(s);
        if (s->q) {
                rd_kafka_queue_io_event_enable(s->q, -1, NULL, 0);
                rd_kafka_queue_destroy(s->q);
        }
        if (s->rk) {
                rd_kafka_consumer_close(s->rk);
                rd_kafka_destroy(s->rk);
        }
        if (s->efd >= 0)
                close(s->efd);
        walimpls_scanner_done(&s->base);
        free(s);
}

static int kafka_read(struct walimpls_wal *base, const struct walimpls_read_opts *opts,
                      struct walimpls_scanner **ret, wal_error **reterr)
{
        struct kafka_wal *w = kafka_wal_from_base(base);
        struct kafka_opener *o = w->o;
        if (!opts || !ret)
                return wal_error_set(reterr, -EINVAL, 0, "kafka: read: NULL argument");
        enum wal_deliver_policy pol = opts->deliver.policy;
        struct wal_msgid id = opts->deliver.id;
        if (pol != WAL_DELIVER_ALL && pol != WAL_DELIVER_LATEST &&
            pol != WAL_DELIVER_START_FROM && pol != WAL_DELIVER_START_AFTER)
                return wal_error_set(reterr, -EINVAL, 0,
                                     "kafka: read: deliver policy %d is not supported here",
                                     (int)pol);
        if ((pol == WAL_DELIVER_START_FROM || pol == WAL_DELIVER_START_AFTER) &&
            (id.hi != 0 || id.lo >= (uint64_t)INT64_MAX))
                return wal_error_set(reterr, -EINVAL, 0,
                                     "kafka: read: %s is not a Kafka offset (IDs are 0-OFFSET)",
                                     wal_msgid_is_none(id) ? "no ID" : "this ID");

        struct kafka_scanner *s = calloc(1, sizeof(*s));
        if (!s)
                return wal_error_set(reterr, -ENOMEM, 0, "kafka: out of memory");
        s->efd = -1;
        int r = walimpls_scanner_init(&s->base, &kafka_scanner_ops, base, opts->name);
        if (r < 0) {
                free(s);
                return wal_error_set(reterr, r, 0, "kafka: out of memory");
        }
        s->w = w;

        rd_kafka_conf_t *conf = NULL;
        if ((r = kafka_conf_make(o, RD_KAFKA_CONSUMER, &conf, reterr)) < 0)
                goto fail;
        char errstr[512];
        if (opts->read_ahead > 0) {
                /* librdkafka prefetches until this many messages are queued. */
                char ra[24];
                snprintf(ra, sizeof(ra), "%u", WALU_MIN(opts->read_ahead, 10000000u));
                if (rd_kafka_conf_set(conf, "queued.min.messages", ra, errstr, sizeof(errstr)) !=
                    RD_KAFKA_CONF_OK) {
                        rd_kafka_conf_destroy(conf);
                        r = wal_error_set(reterr, -EINVAL, 0, "kafka: read_ahead %s: %s", ra,
                                          errstr);
                        goto fail;
                }
        }
        s->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
        if (!s->rk) {
                rd_kafka_conf_destroy(conf);
                r = wal_error_set(reterr, -EINVAL, 0, "kafka: cannot make a consumer: %s", errstr);
                goto fail;
        }
        rd_kafka_poll_set_consumer(s->rk);

        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(s->rk, w->topic, 0, &lo, &hi,
                                                                   (int)o->open_timeout_ms);
        if (err) {
                r = kafka_fail(reterr, err, "kafka: scanner on topic %s: watermarks", w->topic);
                goto fail;
        }
        int64_t start;
        switch (pol) {
        case WAL_DELIVER_ALL:
                /* The low watermark, not OFFSET_BEGINNING: librdkafka
                 * would look BEGINNING up again and its first fetch then
                 * often waits 500 ms (measured with bench-kafka). */
                start = lo;
                s->from_earliest = true;
                break;
        case WAL_DELIVER_LATEST:
                start = hi;
                break;
        default: {
                int64_t want = (int64_t)id.lo + (pol == WAL_DELIVER_START_AFTER ? 1 : 0);
                if (want < lo) {
                        r = wal_error_set(reterr, -ERANGE, 0,
                                          "kafka: channel %s: offset %" PRId64 " is no longer "
                                          "retained (the earliest is %" PRId64 ")",
                                          w->base.channel, want, lo);
                        goto fail;
                }
                s->skip_below = want;
                start = WALU_MIN(want, hi);
                break;
        }
        }

        s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (s->efd < 0) {
                r = wal_error_set(reterr, -errno, 0, "kafka: eventfd: %s", strerror(errno));
                goto fail;
        }
        s->q = rd_kafka_queue_get_consumer(s->rk);
        if (!s->q) {
                r = wal_error_set(reterr, -EIO, 0, "kafka: the consumer has no queue");
                goto fail;
        }
        static const uint64_t one = 1;
        rd_kafka_queue_io_event_enable(s->q, s->efd, &one, sizeof(one));

        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(parts, w->topic, 0)->offset = start;
        err = rd_kafka_assign(s->rk, parts);
        rd_kafka_topic_partition_list_destroy(parts);
        if (err) {
                r = kafka_fail(reterr, err, "kafka: scanner on topic %s: assign", w->topic);
                goto fail;
        }
        *ret = &s->base;
        return 0;
fail:
        kafka_scanner_free(s);
        return r;
}

/* Make the scanner fail for good with @code; the message is kept for later calls. */
static int kafka_scanner_fail(struct kafka_scanner *s, int code, wal_error **reterr,
                              const char *fmt, ...) WAL_PRINTF(4, 5);
static int kafka_scanner_fail(struct kafka_scanner *s, int code, wal_error **reterr,
                              const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->failed_msg, sizeof(s->failed_msg), fmt, ap);
        va_end(ap);
        s->failed = code;
        return wal_error_set(reterr, code, 0, "%s", s->failed_msg);
}

/* A record as an immutable message; 0 or -EBADMSG/-ENOMEM. */
static int kafka_decode(const rd_kafka_message_t *m, wal_msg **ret, wal_error **reterr)
{
        rd_kafka_headers_t *hdrs = NULL;
        const void *env = NULL;
        size_t env_len = 0;
        wal_msg *msg = NULL;
        const void *payload = m->payload;
        size_t plen = m->payload ? m->len : 0;
        /* Ours: the key carries the envelope (its properties are repeated
         * as headers for other clients). */
        int r = kafka_key_decode(m->key, m->key_len, payload, plen, &msg, reterr);
        if (r < 0)
                return r;
        bool have_env = r == 1;
        if (!have_env) {
                if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
                        hdrs = NULL;
                /* Ours in the earlier layout: the envelope in a header. */
                have_env = hdrs && rd_kafka_header_get_last(hdrs, KAFKA_ENVELOPE_HEADER, &env,
                                                            &env_len) ==
                                   RD_KAFKA_RESP_ERR_NO_ERROR;
                if (have_env && !env) {
                        /* A NULL-valued "_wal" header cannot be ours. */
                        return wal_error_set(reterr, -EBADMSG, 0, "empty envelope header");
                }
                r = walu_envelope_decode(have_env ? env : NULL, have_env ? env_len : 0,
                                         payload, plen, &msg, reterr);
                if (r < 0)
                        return r;
        }
        if (!have_env && hdrs) {
                /* A foreign record: its headers become properties. */
                const char *name;
                const void *val;
                size_t size;
                for (size_t i = 0;
                     rd_kafka_header_get_all(hdrs, i, &name, &val, &size) ==
                     RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
                        if (!name || !*name)
                                continue;
                        char *v = strndup(val ? val : "", val ? size : 0);
                        if (!v) {
                                wal_msg_unref(msg);
                                return wal_error_set(reterr, -ENOMEM, 0, "out of memory");
                        }
                        r = wal_msg_set_prop(msg, name, v);
                        free(v);
                        if (r < 0 && r != -EINVAL) {
                                wal_msg_unref(msg);
                                return wal_error_set(reterr, r, 0, "header %s: %s", name,
                                                     strerror(-r));
                        }
                }
        }
        if ((r = wal_msg_freeze(msg, WAL_MSGID(0, (uint64_t)m->offset))) < 0) {
                wal_msg_unref(msg);
                return wal_error_set(reterr, r, 0, "cannot freeze the message");
        }
        *ret = msg;
        return 0;
}

/* Handle one thing the consumer queue gave: 0 delivered, 1 nothing to
 * deliver (skip and go on), negative: failed. */
static int kafka_scanner_take(struct kafka_scanner *s, rd_kafka_message_t *m, wal_msg **ret,
                              wal_error **reterr)
{
        const char *topic = s->w->topic;
        if (m->err) {
                switch (m->err) {
                case RD_KAFKA_RESP_ERR__PARTITION_EOF:
                        return 1;
                case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET:
                case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
                        if (s->from_earliest) {
                                /* ALL's start was deleted before anything
                                 * was delivered: the earliest retained
                                 * record is still where ALL starts. */
                                s->from_earliest = false;
                                rd_kafka_topic_partition_list_t *pl =
                                        rd_kafka_topic_partition_list_new(1);
                                rd_kafka_topic_partition_list_add(pl, topic, 0)->offset =
                                        RD_KAFKA_OFFSET_BEGINNING;
                                rd_kafka_resp_err_t err = rd_kafka_assign(s->rk, pl);
                                rd_kafka_topic_partition_list_destroy(pl);
                                if (!err) {
                                        /* Nothing taken so far can follow. */
                                        kafka_scanner_batch_drop(s);
                                        return 1;
                                }
                        }
                        return kafka_scanner_fail(s, -ERANGE, reterr,
                                                  "kafka: channel %s: the scanner's position is "
                                                  "no longer retained (deleted by retention?): %s",
                                                  s->w->base.channel, rd_kafka_message_errstr(m));
                case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
                case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
                case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
                case RD_KAFKA_RESP_ERR__FATAL:
                case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
                case RD_KAFKA_RESP_ERR__AUTHENTICATION:
                        return kafka_scanner_fail(s, kafka_err_to_errno(m->err), reterr,
                                                  "kafka: channel %s (topic %s): %s",
                                                  s->w->base.channel, topic,
                                                  rd_kafka_message_errstr(m));
                default:
                        /* Transient (broker down, ...): librdkafka retries. */
                        walu_log(WAL_LOG_WARNING, "kafka: scanner %s on %s: %s",
                                 s->base.name, topic, rd_kafka_message_errstr(m));
                        return 1;
                }
        }
        if (m->partition != 0 || m->offset < s->skip_below)
                return 1;
        s->from_earliest = false;
        wal_error *e = NULL;
        int r = kafka_decode(m, ret, &e);
        if (r < 0) {
                r = kafka_scanner_fail(s, r, reterr, "kafka: channel %s, offset %" PRId64 ": %s",
                                       s->w->base.channel, m->offset, wal_error_message(e));
                wal_error_free(e);
                return r;
        }
        return 0;
}

static int kafka_next(struct walimpls_scanner *base, int timeout_ms, wal_msg **ret,
                      wal_error **reterr)
{
        struct kafka_scanner *s = kafka_scanner_from_base(base);
        if (!ret)
                return wal_error_set(reterr, -EINVAL, 0, "kafka: next: NULL ret");
        if (s->failed)
                return wal_error_set(reterr, s->failed, 0, "%s", s->failed_msg);
        uint64_t deadline = timeout_ms > 0 ? walu_monotonic_ns() + (uint64_t)timeout_ms * 1000000u
                                           : 0;
        /* The eventfd is drained only once the queue looks empty, then the
         * queue is polled once more before waiting: a record queued after
         * that poll writes the fd again, so no wake-up is lost, and a
         * scanner that keeps finding records makes no system call of its
         * own (the fd may stay readable meanwhile: spurious, as allowed). */
        bool drained = false;
        for (;;) {
                if (atomic_load(&s->interrupted))
                        return wal_error_set(reterr, -ECANCELED, 0, "kafka: scanner interrupted");
                if (s->bpos == s->blen) {
                        /* One queue lock for up to KAFKA_SCAN_BATCH records. */
                        ssize_t n = rd_kafka_consume_batch_queue(s->q, 0, s->batch,
                                                                 KAFKA_SCAN_BATCH);
                        s->bpos = 0;
                        s->blen = n > 0 ? (size_t)n : 0;
                }
                if (s->bpos < s->blen) {
                        rd_kafka_message_t *m = s->batch[s->bpos++];
                        int r = kafka_scanner_take(s, m, ret, reterr);
                        rd_kafka_message_destroy(m);
                        if (r <= 0)
                                return r;
                        continue;
                }
                if (!drained) {
                        uint64_t drain;
                        while (read(s->efd, &drain, sizeof(drain)) == (ssize_t)sizeof(drain))
                                ;
                        drained = true;
                        continue;
                }
                int wait_ms;
                if (timeout_ms == 0)
                        return -ETIMEDOUT;
                if (timeout_ms < 0) {
                        wait_ms = 100;
                } else {
                        int64_t left = (int64_t)(deadline - walu_monotonic_ns());
                        if (left <= 0)
                                return -ETIMEDOUT;
                        wait_ms = (int)WALU_MIN(left / 1000000 + 1, 100);
                }
                /* The io event wakes us; the 100 ms cap bounds a missed one. */
                struct pollfd pfd = { .fd = s->efd, .events = POLLIN };
                poll(&pfd, 1, wait_ms);
                drained = false;
        }
}

static void kafka_interrupt(struct walimpls_scanner *base)
{
        struct kafka_scanner *s = kafka_scanner_from_base(base);
        atomic_store(&s->interrupted, true);
        uint64_t one = 1;
        ssize_t n = write(s->efd, &one, sizeof(one));
        (void)n;
}

static int kafka_fd(struct walimpls_scanner *base)
{
        return kafka_scanner_from_base(base)->efd;
}

static void kafka_scanner_close(struct walimpls_scanner *base)
{
        kafka_scanner_free(kafka_scanner_from_base(base));
}

static const struct walimpls_wal_ops kafka_wal_ops = {
        .version = WALIMPLS_VERSION,
        .append = kafka_append,
        .read = kafka_read,
        .truncate = kafka_truncate,
        .info = kafka_info,
        .close = kafka_wal_close,
        .flush = kafka_flush,
};

static const struct walimpls_scanner_ops kafka_scanner_ops = {
        .version = WALIMPLS_VERSION,
        .next = kafka_next,
        .interrupt = kafka_interrupt,
        .fd = kafka_fd,
        .close = kafka_scanner_close,
};
