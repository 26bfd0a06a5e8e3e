#pragma once
// What a vhost tells an owner that keeps messages on disk (depotd --data-dir): each persistent
// message as it enters a durable queue, and as it leaves it for good (acked, rejected without
// requeue, taken by a no-ack consumer or get, expired, dropped by a length limit, purged,
// dead-lettered), and each durable queue deleted. A message that is delivered and not yet acked
// has not left; a requeued one never left. The core itself does no I/O: this is the seam.
//
// Called in the middle of core operations: an implementation records and returns, and must not
// call back into the core.

#include "broker/core/message.h"

namespace depot::core {

class Queue;

class MessageJournal {
public:
    virtual ~MessageJournal() = default;
    virtual void enqueued(const Queue& queue, const MessageRef& message) = 0;
    virtual void removed(const Queue& queue, const MessageRef& message) = 0;
    virtual void queueDeleted(const Queue& queue) = 0;
};

} // namespace depot::core
