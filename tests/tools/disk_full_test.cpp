// depotd --data-dir when the disk cannot take more: publishers get a nack with the reason (never
// a confirm), depotd blocks them as RabbitMQ's disk alarm does, keeps serving, and once space
// returns it writes what it could not, unblocks them and confirms again. Its store stays
// readable: after a kill -9, every confirmed message is there, in order.
//
// A full disk is simulated with a file size limit on depotd (prlimit, as `ulimit -f` sets): a
// write past it fails with EFBIG exactly where one on a full disk fails with ENOSPC.

#include "tests/support/process.h"
#include "tests/support/segment_files.h"

#include "client/connection.h"

#include <doctest/doctest.h>

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <vector>

using namespace depot::tests;
using depot::client::Confirmation;
using depot::client::Connection;
using depot::client::ConnectionEvent;

namespace {

void limitFileSize(pid_t pid, rlim_t bytes) {
    rlimit limit{};
    REQUIRE(::prlimit(pid, RLIMIT_FSIZE, nullptr, &limit) == 0);
    limit.rlim_cur = bytes;
    REQUIRE(::prlimit(pid, RLIMIT_FSIZE, &limit, nullptr) == 0);
}

// Where the newest segment's records end (its file runs ahead of them in zeros).
std::uintmax_t newestSegmentEnd(const std::string& messagesDir) {
    std::vector<std::filesystem::path> segments;
    for (const auto& entry : std::filesystem::directory_iterator(messagesDir))
        if (entry.path().extension() == ".seg")
            segments.push_back(entry.path());
    REQUIRE(!segments.empty());
    return segmentRecordsEnd(*std::max_element(segments.begin(), segments.end()));
}

template <class F> bool eventually(F&& condition, std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (condition())
            return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return condition();
}

depot::client::PublishOptions persistent() {
    depot::client::PublishOptions options;
    options.properties.deliveryMode = depot::core::DeliveryMode::PERSISTENT;
    return options;
}

} // namespace

TEST_CASE("depotd: a full disk nacks and blocks publishers, then recovers without losing data") {
    TempDir data;
    const std::string dir = data.file("depot");
    std::vector<std::string> confirmed; // bodies whose confirm was an ack, in publish order
    {
        DepotdProcess depotd({"--data-dir", dir});
        auto connection = Connection::open(depotd.url());
        std::atomic<int> blocked{0}, unblocked{0};
        connection->onEvent([&](ConnectionEvent event) {
            if (event == ConnectionEvent::BLOCKED)
                ++blocked;
            else if (event == ConnectionEvent::UNBLOCKED)
                ++unblocked;
        });
        depot::client::QueueDeclareOptions durable;
        durable.durable = true;
        connection->declareQueue("q", durable);
        const std::string padding(1024, 'p');
        for (int i = 0; i < 5; ++i) {
            const std::string body = "before-" + std::to_string(i) + padding;
            REQUIRE(connection->publishConfirmed("", "q", body, persistent()).ack);
            confirmed.push_back(body);
        }

        // Room for about three more messages.
        limitFileSize(depotd.process().pid(), newestSegmentEnd(dir + "/messages") + 4096);
        std::vector<std::pair<std::string, std::future<Confirmation>>> pending;
        for (int i = 0; i < 40; ++i) {
            std::string body = "during-" + std::to_string(i) + padding;
            auto future = connection->publishConfirmedAsync("", "q", body, persistent());
            pending.emplace_back(std::move(body), std::move(future));
        }
        // In publish order: acks while there was room, then a nack that says why.
        std::size_t settled = 0;
        std::string reason;
        for (; settled < pending.size(); ++settled) {
            auto& [body, future] = pending[settled];
            REQUIRE(future.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
            const Confirmation c = future.get();
            if (!c.ack) {
                reason = c.reason;
                ++settled;
                break;
            }
            confirmed.push_back(body);
        }
        CHECK(reason.find("not written to disk") != std::string::npos);
        CHECK(reason.find("File too large") != std::string::npos);
        CHECK(eventually([&] { return blocked.load() == 1; }, std::chrono::seconds(5)));

        // depotctl publish --persistent says so too, and exits non-zero.
        Process ctl(std::string(DEPOT_BINARY_DIR) + "/depotctl",
                    {"--url", depotd.url(), "publish", "", "q", "--persistent", "--body", "x"});
        CHECK(ctl.wait() == 1);
        CHECK(ctl.err().find("not written to disk") != std::string::npos);

        // The broker still serves: a consumer's connection is not blocked.
        auto reader = Connection::open(depotd.url());
        CHECK(reader->declareQueue("q", durable).messageCount >= 5);

        // Space returns: what waited is written and confirmed, publishers go on.
        limitFileSize(depotd.process().pid(), RLIM_INFINITY);
        CHECK(eventually([&] { return unblocked.load() == 1; }, std::chrono::seconds(5)));
        for (; settled < pending.size(); ++settled) {
            auto& [body, future] = pending[settled];
            REQUIRE(future.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
            if (future.get().ack)
                confirmed.push_back(body);
        }
        for (int i = 0; i < 5; ++i) {
            const std::string body = "after-" + std::to_string(i) + padding;
            REQUIRE(connection->publishConfirmed("", "q", body, persistent()).ack);
            confirmed.push_back(body);
        }
        depotd.process().signal(SIGKILL);
        depotd.process().wait();
    }

    DepotdProcess again({"--data-dir", dir});
    auto connection = Connection::open(again.url());
    std::vector<std::string> recovered;
    while (auto delivery = connection->get("q", /*noAck=*/true))
        recovered.push_back(delivery->body());
    // Every confirmed message, in order (nacked ones may be there too: they were written once
    // space returned, as their queue held them all along).
    std::size_t next = 0;
    for (const std::string& body : recovered)
        if (next < confirmed.size() && body == confirmed[next])
            ++next;
    CHECK(next == confirmed.size());
    CHECK(recovered.size() >= confirmed.size());
    MESSAGE("confirmed ", confirmed.size(), ", recovered ", recovered.size());
    const std::string log = again.process().err();
    CHECK(log.find("unreadable") == std::string::npos);
    CHECK(log.find("torn tail") == std::string::npos);
    CHECK(log.find("checksum") == std::string::npos);
}
