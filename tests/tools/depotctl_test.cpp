// depotctl against a real depotd: every command, its output, its errors and exit codes.

#include "tests/support/process.h"

#include <doctest/doctest.h>

#include <algorithm>

using namespace depot::tests;

namespace {

const std::string DEPOTCTL = std::string(DEPOT_BINARY_DIR) + "/depotctl";

struct Result {
    int code;
    std::string out;
    std::string err;
};

Result ctl(const DepotdProcess& depotd, std::vector<std::string> args, const std::string& in = "") {
    args.insert(args.begin(), {"--url", depotd.url()});
    Process p(DEPOTCTL, args, in);
    const int code = p.wait();
    return Result{code, p.out(), p.err()};
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

} // namespace

TEST_CASE("depotctl declares, publishes, lists, gets and purges") {
    DepotdProcess depotd;
    CHECK(ctl(depotd, {"declare", "queue", "jobs", "--arg", "x-max-length=100"}).code == 0);
    Result published = ctl(depotd, {"publish", "", "jobs", "--body", "hello"});
    CHECK(published.code == 0);
    CHECK(contains(published.out, "routed to 1 queue"));
    CHECK(ctl(depotd, {"publish", "", "jobs"}, "from stdin").code == 0);

    Result queues = ctl(depotd, {"--json", "list", "queues"});
    REQUIRE(queues.code == 0);
    CHECK(contains(queues.out, "\"name\": \"jobs\""));
    CHECK(contains(queues.out, "\"messages_ready\": 2"));
    CHECK(contains(queues.out, "x-max-length=100"));

    Result text = ctl(depotd, {"list", "queues"});
    CHECK(contains(text.out, "messages_ready"));
    CHECK(contains(text.out, "jobs"));

    // get --requeue shows distinct messages and puts them back in order.
    Result peek = ctl(depotd, {"get", "jobs", "--count", "5", "--requeue"});
    REQUIRE(peek.code == 0);
    const auto first = peek.out.find("body: hello");
    const auto second = peek.out.find("body: from stdin");
    CHECK(first != std::string::npos);
    CHECK(second != std::string::npos);
    CHECK(first < second);
    CHECK(contains(ctl(depotd, {"--json", "list", "queues"}).out, "\"messages_ready\": 2"));

    // get without --requeue acks: the first message is gone, and it was redelivered.
    Result taken = ctl(depotd, {"--json", "get", "jobs"});
    CHECK(contains(taken.out, "\"body\": \"hello\""));
    CHECK(contains(taken.out, "\"redelivered\": true"));
    Result purged = ctl(depotd, {"purge", "jobs"});
    CHECK(contains(purged.out, "purged 1 messages"));
    CHECK(ctl(depotd, {"delete", "queue", "jobs"}).code == 0);
    CHECK_FALSE(contains(ctl(depotd, {"list", "queues"}).out, "jobs"));
}

TEST_CASE("depotctl binds and unbinds, to queues and exchanges") {
    DepotdProcess depotd;
    CHECK(ctl(depotd, {"declare", "exchange", "events", "--type", "topic"}).code == 0);
    CHECK(ctl(depotd, {"declare", "exchange", "audit", "--type", "fanout"}).code == 0);
    CHECK(ctl(depotd, {"declare", "queue", "eu"}).code == 0);
    CHECK(ctl(depotd, {"bind", "events", "eu", "--key", "eu.#"}).code == 0);
    CHECK(ctl(depotd, {"bind", "events", "audit", "--to-exchange", "--key", "#"}).code == 0);
    Result bindings = ctl(depotd, {"--json", "list", "bindings"});
    CHECK(contains(bindings.out, "\"routing_key\": \"eu.#\""));
    CHECK(contains(bindings.out, "\"destination_type\": \"exchange\""));
    CHECK(contains(ctl(depotd, {"publish", "events", "eu.parcel"}, "x").out, "routed to 1 queue"));
    CHECK(ctl(depotd, {"unbind", "events", "eu", "--key", "eu.#"}).code == 0);
    CHECK(contains(ctl(depotd, {"publish", "events", "eu.parcel"}, "x").out, "routed to 0 queues"));
    Result exchanges = ctl(depotd, {"list", "exchanges"});
    CHECK(contains(exchanges.out, "amq.topic"));
    CHECK(contains(exchanges.out, "events"));
}

TEST_CASE("depotctl consume prints and acks N messages") {
    DepotdProcess depotd;
    CHECK(ctl(depotd, {"declare", "queue", "q"}).code == 0);
    for (const char* body : {"one", "two", "three"})
        CHECK(ctl(depotd, {"publish", "", "q", "--body", body}).code == 0);
    Result consumed = ctl(depotd, {"consume", "q", "--count", "2"});
    CHECK(consumed.code == 0);
    CHECK(contains(consumed.out, "body: one"));
    CHECK(contains(consumed.out, "body: two"));
    CHECK_FALSE(contains(consumed.out, "body: three"));
    CHECK(contains(ctl(depotd, {"--json", "list", "queues"}).out, "\"messages_ready\": 1"));
}

TEST_CASE("depotctl reports broker errors in one line with exit code 1") {
    DepotdProcess depotd;
    Result missing = ctl(depotd, {"bind", "nowhere", "q"});
    CHECK(missing.code == 1);
    CHECK(contains(missing.err, "NOT_FOUND"));
    CHECK(std::count(missing.err.begin(), missing.err.end(), '\n') == 1);

    CHECK(ctl(depotd, {"declare", "queue", "d", "--durable"}).code == 0);
    Result inequivalent = ctl(depotd, {"declare", "queue", "d"});
    CHECK(inequivalent.code == 1);
    CHECK(contains(inequivalent.err, "PRECONDITION_FAILED"));

    Result returned =
        ctl(depotd, {"publish", "amq.direct", "nobody", "--body", "x", "--mandatory"});
    CHECK(returned.code == 1);
    CHECK(contains(returned.err, "returned"));
}

TEST_CASE("depotctl usage errors exit 2, and an unreachable broker exits 1") {
    DepotdProcess depotd;
    CHECK(ctl(depotd, {"declare", "exchange", "x", "--type", "sideways"}).code == 2);
    CHECK(ctl(depotd, {"declare", "queue", "q", "--arg", "novalue"}).code == 2);
    CHECK(ctl(depotd, {"frobnicate"}).code == 2);
    Process unreachable(DEPOTCTL, {"--url", "depot://guest:guest@127.0.0.1:1/", "list", "queues"});
    CHECK(unreachable.wait() == 1);
    CHECK(contains(unreachable.err(), "127.0.0.1:1"));
    Process badUrl(DEPOTCTL, {"--url", "http://x", "list", "queues"});
    CHECK(badUrl.wait() == 2);
}

TEST_CASE("depotctl lists connections and consumers") {
    DepotdProcess depotd;
    CHECK(ctl(depotd, {"declare", "queue", "q"}).code == 0);
    Process consumer(DEPOTCTL, {"--url", depotd.url(), "consume", "q", "--count", "1"});
    // The consumer shows up once it has connected.
    std::string consumers;
    for (int i = 0; i < 400 && !contains(consumers, "\"queue\": \"q\""); ++i) {
        consumers = ctl(depotd, {"--json", "list", "consumers"}).out;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(contains(consumers, "\"queue\": \"q\""));
    CHECK(contains(ctl(depotd, {"list", "connections"}).out, "depotctl"));
    CHECK(ctl(depotd, {"publish", "", "q", "--body", "done"}).code == 0);
    CHECK(consumer.wait() == 0);
    CHECK(contains(consumer.out(), "body: done"));
}
