/* SPDX-License-Identifier: MIT */
/*
 * wal/message-internal.h: what the adaptor asks of a message beyond the
 * public header (not installed).
 */
#ifndef WAL_MESSAGE_INTERNAL_H
#define WAL_MESSAGE_INTERNAL_H

#include <stdbool.h>

#include <wal/wal-message.h>

/* Whether the caller's reference to @m (borrowed) is the only one: then no
 * other thread can see @m, and the holder may change it without a copy.
 * Another holder dropping its reference meanwhile only turns a true answer
 * into a late false one. */
bool wal_msg_is_sole(const wal_msg *m);

/*
 * Arenas: storage for messages the library keeps per record, in chunks
 * faulted in ahead of use (wal/message.c says how).  Thread-safe.
 */
struct wal_msg_arena;

/* A new, empty arena (*@ret owned by the caller: wal_msg_arena_free()).
 * 0, -EINVAL or -ENOMEM.  No memory is mapped before the first copy. */
int wal_msg_arena_new(struct wal_msg_arena **ret);

/* Free @a (owned; NULL is a no-op).  Messages carved from it stay valid:
 * each chunk goes when its last message does. */
void wal_msg_arena_free(struct wal_msg_arena *a);

/* As wal_msg_copy(), with the copy carved from @a (borrowed; NULL means
 * plain wal_msg_copy()) when it fits; a transaction unit, or a message too
 * large for a chunk, or a chunk the system refuses, gets a plain copy.
 * @m borrowed; *@ret a new mutable message with one reference, owned by the
 * caller.  0, -EINVAL or -ENOMEM. */
int wal_msg_copy_in(struct wal_msg_arena *a, const wal_msg *m, wal_msg **ret);

/* Whether @a (borrowed; NULL: false) would like its next chunk made
 * ahead: its current chunk is past half and no spare is ready.  A cheap
 * load, for the copying threads to decide whether to ask for
 * wal_msg_arena_fill_spare(). */
bool wal_msg_arena_wants_spare(struct wal_msg_arena *a);

/* If @a (borrowed; NULL is a no-op) wants a spare, map one and fault it in
 * (about 0.65 ms for 2 MiB here), without holding up copies meanwhile.
 * For a background thread; any thread may call it, while @a lives.  Out of
 * memory leaves @a without a spare (a copy then maps its chunk itself). */
void wal_msg_arena_fill_spare(struct wal_msg_arena *a);

/* How many arena chunks the process has mapped now, every arena together
 * (for tests: chunks go when their arena and last message do). */
size_t wal_msg_arena_chunks_mapped(void);

#endif /* WAL_MESSAGE_INTERNAL_H */
