// client/pending_requests.h: what waits for an answer is found by its id, whichever order the
// answers come in, exactly once; what is left is given back in id order.

#include "client/pending_requests.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using depot::client::PendingRequests;

TEST_CASE("pending requests: answers in order") {
    PendingRequests<std::string> pending;
    CHECK(pending.empty());
    for (std::uint64_t id = 1; id <= 3; ++id)
        pending.add(id, "request " + std::to_string(id));
    CHECK(pending.size() == 3);
    CHECK(pending.take(1) == "request 1");
    CHECK(pending.take(2) == "request 2");
    CHECK(pending.take(3) == "request 3");
    CHECK(pending.empty());
    CHECK_FALSE(pending.take(3).has_value()); // answered already
}

TEST_CASE("pending requests: an answer out of order, a late one, an unknown id") {
    PendingRequests<std::string> pending;
    for (std::uint64_t id = 10; id <= 14; ++id)
        pending.add(id, "r" + std::to_string(id));
    CHECK(pending.take(13) == "r13"); // an error answered before the confirms ahead of it
    CHECK_FALSE(pending.take(13).has_value());
    CHECK_FALSE(pending.take(12345).has_value());
    CHECK_FALSE(pending.take(9).has_value());
    CHECK(pending.size() == 4);
    CHECK(pending.take(10) == "r10");
    CHECK(pending.take(11) == "r11");
    CHECK(pending.take(12) == "r12"); // 13 went before: the front moves past it
    pending.add(15, "r15");
    CHECK(pending.take(15) == "r15");
    CHECK(pending.take(14) == "r14"); // late
    CHECK(pending.empty());
}

TEST_CASE("pending requests: takeAll gives what waits in id order and leaves nothing") {
    PendingRequests<std::string> pending;
    for (std::uint64_t id = 1; id <= 5; ++id)
        pending.add(id, "r" + std::to_string(id));
    CHECK(pending.take(2) == "r2");
    CHECK(pending.take(4) == "r4");
    CHECK(pending.takeAll() == std::vector<std::string>{"r1", "r3", "r5"});
    CHECK(pending.empty());
    CHECK_FALSE(pending.take(5).has_value());
    pending.add(6, "r6"); // ids go on increasing
    CHECK(pending.take(6) == "r6");
}
