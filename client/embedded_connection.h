#pragma once
// The embedded: transport: a Connection to a broker that runs in this process, on a thread of
// its own, with no sockets and no frames. `embedded:` names the process's default broker and
// `embedded:NAME` another one; each is created when its first connection opens and stops when
// its last connection is gone. Every connection opens one core Channel on it, as a depotd
// session does, so acks, prefetch, exclusive queues and close behave as over TCP.

#include "client/connection.h"

#include <memory>

namespace depot::client {

std::shared_ptr<Connection> openEmbeddedConnection(const BrokerUrl& url,
                                                   const ConnectionOptions& options);

} // namespace depot::client
