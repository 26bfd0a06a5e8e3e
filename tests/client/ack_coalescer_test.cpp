// client/ack_coalescer.h: acks made in delivery order become one "ack multiple"; anything
// else goes out as it is, after the pending multiple ack, so the broker settles exactly what
// the application settled, in the order it did.

#include "client/ack_coalescer.h"

#include <doctest/doctest.h>

using depot::client::AckCoalescer;

TEST_CASE("ack coalescer: acks in delivery order share one multiple ack") {
    AckCoalescer acks;
    for (std::uint64_t tag = 1; tag <= 5; ++tag)
        acks.delivered(tag);
    CHECK(acks.ack(1, false));
    CHECK(acks.ack(2, false));
    CHECK(acks.ack(3, false));
    CHECK(acks.takePending() == 3);
    CHECK_FALSE(acks.hasPending());
    CHECK(acks.ack(4, false));
    CHECK(acks.takePending() == 4);
    CHECK(acks.takePending() == 0);
}

TEST_CASE("ack coalescer: an ack out of order is sent as it is, and unblocks nothing") {
    AckCoalescer acks;
    for (std::uint64_t tag = 1; tag <= 4; ++tag)
        acks.delivered(tag);
    CHECK_FALSE(acks.ack(3, false)); // 1 and 2 still held: 3 alone
    CHECK_FALSE(acks.hasPending());
    CHECK(acks.ack(1, false));
    CHECK(acks.ack(2, false));
    CHECK(acks.takePending() == 2); // not 3: it was sent already, and 4 is still held
    CHECK(acks.ack(4, false));
    CHECK(acks.takePending() == 4);
}

TEST_CASE("ack coalescer: nacks and rejects leave the pending ack below them") {
    AckCoalescer acks;
    for (std::uint64_t tag = 1; tag <= 6; ++tag)
        acks.delivered(tag);
    CHECK(acks.ack(1, false));
    acks.settledOtherwise(2, false); // a reject of 2: the caller sends the pending ack first
    CHECK(acks.takePending() == 1);
    CHECK(acks.ack(3, false));      // 2 is settled: 3 is now the oldest
    acks.settledOtherwise(5, true); // nack multiple up to 5 settles 4 and 5
    CHECK(acks.takePending() == 3);
    CHECK(acks.ack(6, false));
    CHECK(acks.takePending() == 6);
}

TEST_CASE("ack coalescer: an application's multiple ack joins the pending one") {
    AckCoalescer acks;
    for (std::uint64_t tag = 1; tag <= 5; ++tag)
        acks.delivered(tag);
    CHECK(acks.ack(3, true));
    CHECK(acks.ack(4, false));
    CHECK(acks.takePending() == 4);
    CHECK_FALSE(acks.ack(0, true)); // "all outstanding": sent as it is
    acks.delivered(6);
    CHECK(acks.ack(6, false)); // 5 was covered by the multiple ack of 0
    CHECK(acks.takePending() == 6);
}

TEST_CASE("ack coalescer: an unknown tag goes to the broker, which says what is wrong") {
    AckCoalescer acks;
    acks.delivered(1);
    CHECK_FALSE(acks.ack(7, false));
    CHECK(acks.ack(1, false));
    acks.reset(); // a new link
    CHECK_FALSE(acks.hasPending());
    CHECK_FALSE(acks.ack(1, false));
}
