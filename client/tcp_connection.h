#pragma once
// The depot:// transport: a Connection to depotd over TCP, speaking protocol/wire.capnp.

#include "client/connection.h"

#include <memory>

namespace depot::client {

std::shared_ptr<Connection> openTcpConnection(const BrokerUrl& url,
                                              const ConnectionOptions& options);

} // namespace depot::client
