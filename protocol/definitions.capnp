@0xc5875db162ead057;
# depotd's durable definitions on disk (<data-dir>/definitions): the durable exchanges, queues
# and bindings of every vhost, rewritten whole and replaced atomically whenever they change.
# The entries reuse the wire protocol's listing structs; counters in them are not used.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("depot::wire");

using Wire = import "wire.capnp";

struct Definitions {
  formatVersion @0 :UInt32;   # 1
  vhosts @1 :List(VhostDefinitions);
}

struct VhostDefinitions {
  name @0 :Text;
  exchanges @1 :List(Wire.ExchangeInfo);
  queues @2 :List(Wire.QueueInfo);
  bindings @3 :List(Wire.Binding);   # both ends durable
}
