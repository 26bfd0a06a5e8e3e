#pragma once
// Where the business's point-to-point messages go: the queues named in protocol/delivery.capnp
// (a command or request is sent to the queue of the service that does the work). Events need
// no address: each goes to the exchange named after its type.

namespace depot::delivery {

inline constexpr const char* ORDERS_QUEUE = "orders";     // PlaceOrder
inline constexpr const char* PRICING_QUEUE = "pricing";   // QuoteRequest -> Quote
inline constexpr const char* TRACKING_QUEUE = "tracking"; // TrackRequest -> TrackReply

} // namespace depot::delivery
