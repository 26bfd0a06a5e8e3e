#pragma once
// The amqp:// transport: a Connection to RabbitMQ (or any AMQP 0-9-1 broker) through rabbitmq-c,
// so that services written against this library move to a RabbitMQ cluster unchanged. What has
// no AMQP equivalent says so (docs/compatibility.md): listings throw NOT_IMPLEMENTED, and a
// Confirmation carries no queue count.

#include "client/connection.h"

#include <memory>

namespace depot::client {

std::shared_ptr<Connection> openAmqpConnection(const BrokerUrl& url,
                                               const ConnectionOptions& options);

} // namespace depot::client
