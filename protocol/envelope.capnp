@0xd9db36abbee3f1bf;
# What every business message carries besides its content, whatever the business: the typed bus
# (client/bus.h) fills it in and reads it, and requires each contract struct to have a field
# `meta @0 :Meta`. The same values travel as AMQP properties (message-id, correlation-id,
# timestamp, type), so tools that do not read Cap'n Proto still see them.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("depot::contracts");

struct Meta {
  messageId @0 :Text;
  # Unique per message, and the same when the same input is handled again: a message published
  # while handling another gets an id derived from that message's id, so that a redelivered
  # input produces the same ids and consumers can drop the duplicates.

  correlationId @1 :Text;
  # The conversation: every message caused, directly or not, by one message shares its
  # correlation id (an order's whole life shares the order's).

  causationId @2 :Text;
  # The message id of the message whose handling published this one ("" for a first message).

  timestampMicros @3 :Int64;
  # When the message was first published, in microseconds since the Unix epoch.
}
