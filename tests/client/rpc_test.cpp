// Request/reply over the broker (Connection::request and serve): a private reply queue per
// connection, correlation ids, timeouts, late replies, and the responder's failures.

#include "tests/client/client_helpers.h"
#include "tests/client/test_urls.h"

#include "client/connection.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using depot::client::Connection;
using depot::client::Consumer;
using depot::client::Delivery;
using depot::client::Error;
using depot::client::ErrorKind;
using depot::client::Properties;
using depot::client::QueueDeclareOptions;
using depot::tests::errorOf;
using depot::tests::forEachUrl;
using depot::tests::Inbox;
using depot::tests::readyCount;

namespace {

std::string upper(std::string text) {
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return text;
}

Connection::Responder upperResponder() {
    return [](const Delivery& request) { return upper(request.body()); };
}

} // namespace

TEST_CASE("request/serve: the reply comes back to the caller") {
    forEachUrl([](const std::string& url) {
        auto server = Connection::open(url);
        auto client = Connection::open(url);
        server->declareQueue("quotes");
        Consumer responder = server->serve("quotes", [](const Delivery& request) {
            return "quote for " + request.body() + " (" + request.properties().type + ")";
        });

        Properties properties;
        properties.type = "QuoteRequest";
        const auto reply = client->request("", "quotes", "parcel 42", 2s, properties);
        CHECK(reply.body == "quote for parcel 42 (QuoteRequest)");
        CHECK_FALSE(reply.properties.correlationId.empty());
        // Served requests are acked.
        CHECK(readyCount(*server, "quotes") == 0);
        CHECK(client->request("", "quotes", "again", 2s).body == "quote for again ()");
    });
}

TEST_CASE("concurrent requests from several threads each get their own reply") {
    forEachUrl([](const std::string& url) {
        auto server = Connection::open(url);
        auto client = Connection::open(url);
        server->declareQueue("upper");
        Consumer responder = server->serve("upper", upperResponder(), 4);

        constexpr int THREADS = 4;
        constexpr int REQUESTS = 25;
        std::vector<std::vector<std::string>> mismatches(THREADS);
        std::vector<std::thread> threads;
        for (int t = 0; t < THREADS; ++t)
            threads.emplace_back([&client, &mismatches, t] {
                for (int i = 0; i < REQUESTS; ++i) {
                    const std::string body =
                        "thread " + std::to_string(t) + " call " + std::to_string(i);
                    const std::string answer = client->request("", "upper", body, 5s).body;
                    if (answer != upper(body))
                        mismatches[t].push_back(body + " -> " + answer);
                }
            });
        for (std::thread& thread : threads)
            thread.join();
        for (int t = 0; t < THREADS; ++t)
            CHECK(mismatches[t].empty());
    });
}

TEST_CASE("a request without an answer times out, and its late reply is dropped") {
    forEachUrl([](const std::string& url) {
        auto server = Connection::open(url);
        auto client = Connection::open(url);
        server->declareQueue("slow");

        const auto started = std::chrono::steady_clock::now();
        CHECK(errorOf([&] { (void)client->request("", "slow", "first", 50ms); }) == "TIMEOUT");
        CHECK(std::chrono::steady_clock::now() - started >= 50ms);

        // Now a responder answers "first" (too late) and then "second": the caller of the
        // second request gets its own reply, not the stale one.
        Consumer responder = server->serve("slow", upperResponder());
        CHECK(client->request("", "slow", "second", 2s).body == "SECOND");
    });
}

TEST_CASE("a request from inside a consumer handler does not deadlock") {
    forEachUrl([](const std::string& url) {
        Inbox<std::string> replies;
        auto pricing = Connection::open(url);
        auto orders = Connection::open(url);
        pricing->declareQueue("price");
        orders->declareQueue("order-placed");
        Consumer responder = pricing->serve("price", upperResponder());

        Connection& c = *orders;
        Consumer consumer = orders->consume("order-placed", [&c, &replies](Delivery& d) {
            // On the dispatcher thread: the reply arrives without it.
            replies.push(c.request("", "price", d.body(), 2s).body);
            d.ack();
        });
        orders->publish("", "order-placed", "order 1");
        orders->publish("", "order-placed", "order 2");
        REQUIRE(replies.waitFor(2));
        CHECK(replies.items() == std::vector<std::string>{"ORDER 1", "ORDER 2"});
    });
}

TEST_CASE("a responder that throws: the request is rejected (dead-lettered) and reported") {
    forEachUrl([](const std::string& url) {
        Inbox<std::string> errors;
        auto server = Connection::open(url);
        auto client = Connection::open(url);
        server->onError([&errors](const Error& e) {
            errors.push(e.kind() == ErrorKind::HANDLER_FAILED ? std::string(e.what()) : "other");
        });
        server->declareQueue("failed-requests");
        QueueDeclareOptions options;
        options.arguments.set("x-dead-letter-exchange", std::string(""));
        options.arguments.set("x-dead-letter-routing-key", std::string("failed-requests"));
        server->declareQueue("fragile", options);
        Consumer responder = server->serve("fragile", [](const Delivery& request) -> std::string {
            if (request.body() == "boom")
                throw std::runtime_error("no price for boom");
            return "ok";
        });

        CHECK(errorOf([&] { (void)client->request("", "fragile", "boom", 100ms); }) == "TIMEOUT");
        REQUIRE(errors.waitFor(1));
        CHECK(errors.at(0).find("no price for boom") != std::string::npos);
        auto dead = server->get("failed-requests", true);
        REQUIRE(dead);
        CHECK(dead->body() == "boom");
        REQUIRE(dead->deaths().size() == 1);
        CHECK(dead->deaths()[0].reason == depot::core::DeathReason::REJECTED);
        // The responder goes on serving.
        CHECK(client->request("", "fragile", "fine", 2s).body == "ok");
    });
}

TEST_CASE("a request without reply-to is acked and reported, not answered") {
    forEachUrl([](const std::string& url) {
        Inbox<std::string> errors;
        auto server = Connection::open(url);
        server->onError([&errors](const Error& e) {
            errors.push(e.kind() == ErrorKind::HANDLER_FAILED ? std::string(e.what()) : "other");
        });
        server->declareQueue("rpc");
        int calls = 0;
        Consumer responder = server->serve("rpc", [&calls](const Delivery&) {
            ++calls;
            return std::string("unused");
        });
        server->publish("", "rpc", "who do I answer?");
        REQUIRE(errors.waitFor(1));
        CHECK(errors.at(0).find("reply-to") != std::string::npos);
        CHECK(calls == 0);
        server->close(); // an unacked request would be requeued now
        auto observer = Connection::open(url);
        CHECK(readyCount(*observer, "rpc") == 0);
    });
}

TEST_CASE("requests that cannot be sent fail at once") {
    forEachUrl([](const std::string& url) {
        auto client = Connection::open(url);
        CHECK(errorOf([&] { (void)client->request("no-such-exchange", "k", "x", 2s); }) ==
              "BROKER/NOT_FOUND");
        client->close();
        CHECK(errorOf([&] { (void)client->request("", "k", "x", 2s); }) == "CONNECTION_LOST");
    });
}

// Over depot:// the broker answers a request's publish only when it refuses it
// (wire::Publish.refusalsOnly): a refusal must still fail the request at once, and granted
// requests, which get no answer, must leave nothing behind that slows the next ones.
TEST_CASE("a request a full queue refuses fails at once, and requests go on after it") {
    forEachUrl([](const std::string& url) {
        auto client = Connection::open(url);
        QueueDeclareOptions bounded;
        bounded.arguments.set("x-max-length", std::int64_t{1});
        bounded.arguments.set("x-overflow", std::string("reject-publish"));
        client->declareQueue("rpc-full", bounded);
        REQUIRE(client->publishConfirmed("", "rpc-full", "filler").ack);
        const auto start = std::chrono::steady_clock::now();
        CHECK(errorOf([&] { (void)client->request("", "rpc-full", "x", 20s); }) ==
              "BROKER/RESOURCE_ERROR");
        CHECK(std::chrono::steady_clock::now() - start < 10s);

        auto server = Connection::open(url);
        server->declareQueue("rpc-upper");
        Consumer responder = server->serve("rpc-upper", upperResponder());
        for (int i = 0; i < 50; ++i)
            CHECK(client->request("", "rpc-upper", "call " + std::to_string(i), 5s).body ==
                  "CALL " + std::to_string(i));
        CHECK(readyCount(*client, "rpc-full") == 1);
    });
}

TEST_CASE("each connection has its own reply queue, deleted when it closes") {
    forEachUrl([](const std::string& url) {
        auto server = Connection::open(url);
        auto a = Connection::open(url);
        auto b = Connection::open(url);
        server->declareQueue("echo");
        Consumer responder =
            server->serve("echo", [](const Delivery& request) { return request.body(); });
        // A fanout in front of the request queue lets the test see each request's reply-to.
        auto tap = Connection::open(url);
        tap->declareExchange("tap", depot::client::ExchangeType::FANOUT);
        tap->declareQueue("observed");
        tap->bindQueue("observed", "tap", "");
        tap->bindQueue("echo", "tap", "");
        for (auto* caller : {a.get(), a.get(), b.get()})
            CHECK(caller->request("tap", "", "x", 2s).body == "x");
        std::vector<std::string> replyQueues;
        for (int i = 0; i < 3; ++i) {
            auto copy = tap->get("observed", true);
            REQUIRE(copy);
            replyQueues.push_back(copy->properties().replyTo);
        }
        CHECK(replyQueues[0] == replyQueues[1]);
        CHECK(replyQueues[0] != replyQueues[2]);
        a->close();
        CHECK(errorOf([&] { (void)readyCount(*tap, replyQueues[0]); }) == "BROKER/NOT_FOUND");
    });
}
