@0xfab18494ab841697;
# Depot's wire protocol: what a client and depotd say to each other over TCP.
#
# A connection is a stream of frames in both directions. Each frame is one Cap'n Proto message
# in the standard stream framing (segment count - 1 as UInt32 LE, each segment's size in words as
# UInt32 LE, padding to 8 bytes, then the segments), whose root is a Frame. docs/protocol.md
# describes the conversation: the handshake, which frame answers which, limits and errors.
#
# Evolution: fields and union members are only ever added, with new ordinals; a peer ignores
# fields it does not know. depotd answers a frame type it does not know with a non-fatal
# notImplemented error (echoing the requestId) and carries on.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("depot::wire");

const protocolVersion :UInt32 = 1;

struct Frame {
  requestId @0 :UInt64;
  # Set by the client on a request that wants an answer; the answer carries the same id.
  # 0 means "no answer wanted" (a publish without confirm, an ack) or "not an answer" (a
  # delivery, a server-sent cancel, an error about a frame that had no id).

  union {
    # --- connection ---
    hello @1 :Hello;              # client -> server, the first frame; answered by helloOk or error
    helloOk @2 :HelloOk;
    heartbeat @3 :Void;           # either way, when the link has been idle; never answered
    close @4 :Close;              # either way; the receiver answers closeOk. depotd closes the
                                  # socket once its own close (on shutdown) is written
    closeOk @5 :Void;
    error @6 :Error;              # server -> client: the answer to a failed request, or a fault
    ok @7 :Void;                  # server -> client: success, for requests with nothing to say
    blocked @8 :Text;             # server -> client: publishes are paused (memory alarm); why
    unblocked @9 :Void;           # server -> client: publishes flow again

    # --- topology (each answered by ok, or the typed answer named, or error) ---
    declareExchange @10 :DeclareExchange;
    deleteExchange @11 :DeleteExchange;
    declareQueue @12 :DeclareQueue;   # answered by declareQueueOk
    declareQueueOk @13 :DeclareQueueOk;
    deleteQueue @14 :DeleteQueue;     # answered by messageCount (messages deleted with it)
    purge @15 :Text;                  # the queue's name; answered by messageCount
    messageCount @16 :UInt64;
    bind @17 :Binding;
    unbind @18 :Binding;

    # --- messages ---
    publish @19 :Publish;         # with requestId: answered by confirm (or error), or only
                                  # when refused (Publish.refusalsOnly); without: silent
    confirm @20 :Confirm;
    returned @21 :Returned;       # server -> client: a mandatory publish that reached no queue
    qos @22 :Qos;                 # answered by ok
    consume @23 :Consume;         # answered by consumeOk
    consumeOk @24 :Text;          # the consumer tag (the broker's choice when consume gave none)
    cancel @25 :Text;             # client -> server: a consumer tag; answered by ok
    cancelled @26 :Text;          # server -> client: the broker ended this consumer (queue gone)
    deliver @27 :Deliver;         # server -> client: a message for a consumer
    ack @28 :Ack;                 # never answered unless it fails
    nack @29 :Nack;
    reject @30 :Reject;
    get @31 :Get;                 # answered by getOk
    getOk @32 :GetOk;
    recover @33 :Void;            # requeue every unacked delivery of this connection; answered by ok

    # --- management (what depotctl needs) ---
    list @34 :ListKind;           # answered by listOk
    listOk @35 :ListOk;
  }
}

# --- connection ---

struct Hello {
  protocolVersion @0 :UInt32;   # the client's; the server refuses a version it does not speak
  clientName @1 :Text;          # shown by `depotctl list connections`
  username @2 :Text;
  password @3 :Text;
  vhost @4 :Text;               # "" means "/"
  heartbeatSeconds @5 :UInt32;  # what the client would like; 0 = the server's choice
}

struct HelloOk {
  protocolVersion @0 :UInt32;
  serverName @1 :Text;          # "depotd <version>"
  heartbeatSeconds @2 :UInt32;  # agreed: the lower non-zero of both; 0 = no heartbeats
  maxFrameBytes @3 :UInt64;     # a larger frame closes the connection with frameError
  connectionName @4 :Text;      # how the server names this connection ("127.0.0.1:53120")
}

struct Close {
  reason @0 :Text;
}

enum ErrorCode {
  # AMQP 0-9-1's reply codes, by name. The number in a comment is AMQP's.
  unknown @0;
  accessRefused @1;       # 403
  notFound @2;            # 404
  resourceLocked @3;      # 405
  preconditionFailed @4;  # 406
  frameError @5;          # 501: a frame that cannot be decoded, too large, or missing (no hello
                          #      within the handshake timeout)
  syntaxError @6;         # 502: a field's value is invalid
  commandInvalid @7;      # 503: a request that makes no sense
  unexpectedFrame @8;     # 505: a frame that is valid but not here (before hello, or server-only)
  resourceError @9;       # 506: the broker is out of a resource
  notAllowed @10;         # 530
  notImplemented @11;     # 540: a frame or feature this server does not have
  internalError @12;      # 541
}

struct Error {
  code @0 :ErrorCode;
  message @1 :Text;       # "NOT_FOUND - no queue 'q' in vhost '/'", RabbitMQ's shape
  fatal @2 :Bool;         # the server closes the connection after sending this
}

# --- field tables (message headers, x-arguments) ---

struct Value {
  union {
    void @0 :Void;
    bool @1 :Bool;
    int @2 :Int64;
    float @3 :Float64;
    text @4 :Text;
  }
}

struct Field {
  name @0 :Text;
  value @1 :Value;
}

# --- topology ---

enum ExchangeType {
  direct @0;
  fanout @1;
  topic @2;
  headers @3;
}

struct DeclareExchange {
  name @0 :Text;
  type @1 :ExchangeType;
  passive @2 :Bool;       # only check that it exists (type and flags are ignored)
  durable @3 :Bool;
  autoDelete @4 :Bool;
  internal @5 :Bool;
  arguments @6 :List(Field);  # e.g. alternate-exchange
}

struct DeleteExchange {
  name @0 :Text;
  ifUnused @1 :Bool;
}

struct DeclareQueue {
  name @0 :Text;          # "" lets the broker choose ("amq.gen-...")
  passive @1 :Bool;
  durable @2 :Bool;
  exclusive @3 :Bool;     # owned by this connection, deleted when it closes
  autoDelete @4 :Bool;
  arguments @5 :List(Field);  # x-message-ttl, x-expires, x-max-length, x-dead-letter-exchange...
}

struct DeclareQueueOk {
  name @0 :Text;
  messageCount @1 :UInt64;
  consumerCount @2 :UInt64;
}

struct DeleteQueue {
  name @0 :Text;
  ifUnused @1 :Bool;
  ifEmpty @2 :Bool;
}

struct Binding {
  source @0 :Text;              # an exchange
  destination @1 :Text;         # a queue, or an exchange when toExchange
  toExchange @2 :Bool;
  key @3 :Text;
  arguments @4 :List(Field);    # x-match and the matched headers, for headers exchanges
}

# --- messages ---

struct Properties {
  contentType @0 :Text;
  contentEncoding @1 :Text;
  headers @2 :List(Field);
  persistent @3 :Bool;          # AMQP delivery-mode 2
  priority @4 :UInt8;
  correlationId @5 :Text;
  replyTo @6 :Text;
  expiration :union {           # per-message TTL
    none @7 :Void;
    milliseconds @8 :UInt64;
  }
  messageId @9 :Text;
  timestamp @10 :Int64;         # seconds since the Unix epoch, as the publisher set it
  type @11 :Text;
  userId @12 :Text;
  appId @13 :Text;
}

enum DeathReason {
  rejected @0;
  expired @1;
  maxlen @2;
}

struct Death {
  # One entry of RabbitMQ's x-death history: where and why the message was dead-lettered.
  queue @0 :Text;
  reason @1 :DeathReason;
  count @2 :UInt64;
  exchange @3 :Text;
  routingKeys @4 :List(Text);
  timeMs @5 :Int64;             # the broker's clock, milliseconds (monotonic, not wall time)
  originalExpiration :union {   # the message's own TTL when it died (x-death's
    none @6 :Void;              # original-expiration); its copy has none
    milliseconds @7 :UInt64;
  }
}

struct Publish {
  exchange @0 :Text;
  routingKey @1 :Text;
  mandatory @2 :Bool;
  properties @3 :Properties;
  body @4 :Data;
  refusalsOnly @5 :Bool;
  # With a requestId: the server answers only a refusal (a nacking confirm, or an error), never
  # an acking confirm. For a publish whose success shows some other way, such as an RPC request
  # (its reply): a refused request still fails at once, and a granted one costs no answer. A
  # server that predates this field answers every publish; a client drops what it no longer
  # waits for.
}

struct Confirm {
  # The answer to a publish with a requestId: the message is in every queue it routed to (ack),
  # or a queue refused it (nack, x-overflow reject-publish). A mandatory publish that routed
  # nowhere gets its returned frame first, then an ack, as in RabbitMQ.
  ack @0 :Bool;
  routedQueues @1 :UInt32;
  reason @2 :Text;              # why, for a nack
}

struct Returned {
  replyCode @0 :UInt16;         # 312
  replyText @1 :Text;           # "NO_ROUTE"
  exchange @2 :Text;
  routingKey @3 :Text;
  properties @4 :Properties;
  body @5 :Data;
  requestId @6 :UInt64;         # the publish's requestId, if it had one
}

struct Qos {
  prefetchCount @0 :UInt32;     # for consumers started after this on the connection; 0 = no limit
}

struct Consume {
  queue @0 :Text;
  consumerTag @1 :Text;         # "" lets the broker choose ("amq.ctag-...")
  noAck @2 :Bool;
  exclusive @3 :Bool;
  prefetchCount @4 :UInt32;     # 0: the connection's qos
}

struct Message {
  exchange @0 :Text;
  routingKey @1 :Text;
  redelivered @2 :Bool;
  deliveryTag @3 :UInt64;       # per connection, from 1; what ack, nack and reject name
  properties @4 :Properties;
  deaths @5 :List(Death);       # newest first; empty unless dead-lettered
  body @6 :Data;
  storedAtMillis @7 :Int64;     # depotd's message store only (0 on the wire): when the message
                                # was first written, Unix ms, so that a TTL keeps counting
                                # across a restart
}

struct Deliver {
  consumerTag @0 :Text;
  message @1 :Message;
}

struct Ack {
  deliveryTag @0 :UInt64;
  multiple @1 :Bool;            # every unacked delivery up to and including deliveryTag
}

struct Nack {
  deliveryTag @0 :UInt64;
  multiple @1 :Bool;
  requeue @2 :Bool;             # false: dead-letter (or drop)
}

struct Reject {
  deliveryTag @0 :UInt64;
  requeue @1 :Bool;
}

struct Get {
  queue @0 :Text;
  noAck @1 :Bool;
}

struct GetOk {
  union {
    empty @0 :Void;
    message @1 :Message;
  }
  messageCount @2 :UInt64;      # ready messages left in the queue
}

# --- management ---

enum ListKind {
  exchanges @0;
  queues @1;
  bindings @2;
  connections @3;
  consumers @4;
}

struct ListOk {
  union {
    exchanges @0 :List(ExchangeInfo);
    queues @1 :List(QueueInfo);
    bindings @2 :List(Binding);
    connections @3 :List(ConnectionInfo);
    consumers @4 :List(ConsumerInfo);
  }
}

struct ExchangeInfo {
  name @0 :Text;
  type @1 :ExchangeType;
  durable @2 :Bool;
  autoDelete @3 :Bool;
  internal @4 :Bool;
  arguments @5 :List(Field);
}

struct QueueInfo {
  name @0 :Text;
  durable @1 :Bool;
  exclusive @2 :Bool;
  autoDelete @3 :Bool;
  arguments @4 :List(Field);
  ready @5 :UInt64;
  readyBytes @6 :UInt64;
  unacked @7 :UInt64;
  consumers @8 :UInt64;
  pagedOut @9 :UInt64;          # ready messages kept on disk only (see docs/architecture.md)
}

struct ConnectionInfo {
  name @0 :Text;                # peer address
  clientName @1 :Text;
  username @2 :Text;
  vhost @3 :Text;
  connectedSeconds @4 :UInt64;
  framesIn @5 :UInt64;
  framesOut @6 :UInt64;
  unacked @7 :UInt64;
  consumers @8 :UInt64;
  blocked @9 :Bool;
  flow @10 :Bool;               # held by flow control: not read until a queue it fills drains
}

struct ConsumerInfo {
  queue @0 :Text;
  consumerTag @1 :Text;
  connection @2 :Text;
  noAck @3 :Bool;
  exclusive @4 :Bool;
  prefetchCount @5 :UInt32;
  unacked @6 :UInt64;
}
