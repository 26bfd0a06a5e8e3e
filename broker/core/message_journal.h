#pragma once
// What a vhost tells an owner that keeps messages on disk (depotd --data-dir): each persistent
// message as it enters a durable queue, and as it leaves it for good (acked, rejected without
// requeue, taken by a no-ack consumer or get, expired, dropped by a length limit, purged,
// dead-lettered), and each durable queue deleted. A message that is delivered and not yet acked
// has not left; a requeued one never left. The core itself does no I/O: this is the seam.
//
// A journal that gives a message a handle (Message::journalHandle, set in enqueued) can take it
// back: a queue then keeps only the handle of a message far from its head (paged out, see
// QueueOptions' in-memory limits) and asks for the contents again (reload) when it comes near
// the consumers.
//
// Called in the middle of core operations: an implementation records and returns, and must not
// call back into the core.

#include "broker/core/message.h"

#include <cstdint>
#include <span>

namespace depot::core {

class Queue;

class MessageJournal {
public:
    virtual ~MessageJournal() = default;
    virtual void enqueued(const Queue& queue, const MessageRef& message) = 0;
    // `handle` is the message's journalHandle when it was enqueued (0 when none was given).
    virtual void removed(const Queue& queue, std::uint64_t handle) = 0;
    virtual void queueDeleted(const Queue& queue) = 0;
    // Paged-out messages' contents again (out[i] for handles[i]), each with its journalHandle
    // set; nullptr for one that cannot be had (an I/O error): the queue then skips it without
    // calling removed(), so the journal still holds it (depotd delivers it again after a
    // restart). Several at once: the queue reads ahead, and a store reads neighbours together.
    virtual void reload(std::span<const std::uint64_t> handles, std::span<MessageRef> out) = 0;
};

} // namespace depot::core
