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

#endif /* WAL_MESSAGE_INTERNAL_H */
