@0xfbae9a8e2bb7a816;
# The package-delivery business's contracts: every command, event, request and reply its
# services exchange. Messages are contracts, not shared code: a service knows these shapes and
# the conventions in docs/delivery.md, never another service's code.
#
# Evolution, so that running services keep working while others are upgraded: fields are only
# ever added (with the next ordinal), never renamed in meaning, retyped or removed; a reader
# ignores fields it does not know and sees the default for fields an older writer did not set.
# Each struct starts with `meta @0 :Meta` (message id, correlation id, timestamp).
#
# Regions are lower-case names (north, south, east, west, central); money is in cents; weight
# in grams; distance in kilometres.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("depot::contracts");

using import "envelope.capnp".Meta;

enum Speed {
  standard @0;
  express @1;
}

# --- commands (point-to-point, to the queue of the service that does the work) ---

struct PlaceOrder {
  # To the `orders` queue.
  meta @0 :Meta;
  orderId @1 :Text;      # chosen by the customer's side; placing the same id twice is one order
  customer @2 :Text;
  fromRegion @3 :Text;
  toRegion @4 :Text;
  weightGrams @5 :UInt32;
  speed @6 :Speed;
}

# --- events (publish/subscribe; each on the topic exchange named after its type) ---

struct OrderPlaced {
  # Key: order.<fromRegion>.placed
  meta @0 :Meta;
  orderId @1 :Text;
  trackingId @2 :Text;
  customer @3 :Text;
  fromRegion @4 :Text;
  toRegion @5 :Text;
  weightGrams @6 :UInt32;
  speed @7 :Speed;
  priceCents @8 :UInt64;
}

struct OrderRejected {
  # Key: order.<fromRegion>.rejected
  meta @0 :Meta;
  orderId @1 :Text;
  customer @2 :Text;
  fromRegion @3 :Text;
  reason @4 :Text;
}

struct CourierAssigned {
  # Key: package.<fromRegion>.assigned
  meta @0 :Meta;
  trackingId @1 :Text;
  courierId @2 :Text;
  fromRegion @3 :Text;
  toRegion @4 :Text;
  customer @5 :Text;
  dispatcher @6 :Text;   # which dispatch instance decided, for operators
  speed @7 :Speed;
}

struct PackagePickedUp {
  # Key: package.<region>.picked-up
  meta @0 :Meta;
  trackingId @1 :Text;
  courierId @2 :Text;
  region @3 :Text;
}

struct PackageInTransit {
  # Key: package.<fromRegion>.in-transit
  meta @0 :Meta;
  trackingId @1 :Text;
  courierId @2 :Text;
  fromRegion @3 :Text;
  toRegion @4 :Text;
  etaMinutes @5 :UInt32;
}

struct PackageDelivered {
  # Key: package.<region>.delivered
  meta @0 :Meta;
  trackingId @1 :Text;
  courierId @2 :Text;
  region @3 :Text;
  customer @4 :Text;
  attempt @5 :UInt32;    # 1 for a first-time delivery
}

struct DeliveryFailed {
  # Key: package.<region>.failed
  meta @0 :Meta;
  trackingId @1 :Text;
  courierId @2 :Text;
  region @3 :Text;
  customer @4 :Text;
  attempt @5 :UInt32;
  reason @6 :Text;
  final @7 :Bool;        # no attempt follows: the package goes back to the sender
}

struct InvoiceIssued {
  # Key: invoice.<region>.issued
  meta @0 :Meta;
  invoiceId @1 :Text;
  trackingId @2 :Text;
  customer @3 :Text;
  region @4 :Text;
  amountCents @5 :UInt64;
}

struct EmailSent {
  # Key: email.<kind>.sent, kind one of order-placed, order-rejected, delivered, failed, invoice
  meta @0 :Meta;
  customer @1 :Text;
  subject @2 :Text;
  kind @3 :Text;
  trackingId @4 :Text;   # "" for a rejected order
  orderId @5 :Text;
}

# --- request/reply (RPC over the broker; the request goes to the serving queue) ---

struct QuoteRequest {
  # To the `pricing` queue.
  meta @0 :Meta;
  weightGrams @1 :UInt32;
  distanceKm @2 :UInt32;
  speed @3 :Speed;
}

struct Quote {
  meta @0 :Meta;
  accepted @1 :Bool;
  priceCents @2 :UInt64;
  reason @3 :Text;       # why not, when not accepted
}

struct TrackRequest {
  # To the `tracking` queue.
  meta @0 :Meta;
  trackingId @1 :Text;
}

struct TrackReply {
  meta @0 :Meta;
  trackingId @1 :Text;
  found @2 :Bool;
  status @3 :Text;       # the latest step: placed, assigned, picked-up, in-transit, delivered, failed
  history @4 :List(TrackEvent);
}

struct TrackEvent {
  timestampMicros @0 :Int64;
  step @1 :Text;
  detail @2 :Text;
}
