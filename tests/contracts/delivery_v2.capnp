@0xaccd6c5b25773434;
# A later version of one contract, as a service upgraded before the others would have it: the
# same struct with fields added. tests/client/bus_test.cpp reads each version with the other.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("depot::contracts::v2");

using import "../../protocol/envelope.capnp".Meta;
using import "../../protocol/delivery.capnp".Speed;

struct OrderPlaced {
  meta @0 :Meta;
  orderId @1 :Text;
  trackingId @2 :Text;
  customer @3 :Text;
  fromRegion @4 :Text;
  toRegion @5 :Text;
  weightGrams @6 :UInt32;
  speed @7 :Speed;
  priceCents @8 :UInt64;
  insuredCents @9 :UInt64;   # new in v2
  giftNote @10 :Text;        # new in v2
}
