#include "bench/recovery_bench.h"

#include "bench/confirm_window.h"
#include "bench/local_depotd.h"
#include "bench/report.h"
#include "client/connection.h"

#include <CLI/CLI.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

namespace depot::bench {

namespace {

using Clock = std::chrono::steady_clock;

struct RecoveryOptions {
    std::size_t messages = 1'000'000;
    std::size_t body = 100;
    bool smoke = false;
};

double secondsSince(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

std::uintmax_t bytesUnder(const std::filesystem::path& directory) {
    std::uintmax_t bytes = 0;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(directory))
        if (entry.is_regular_file())
            bytes += entry.file_size();
    return bytes;
}

// VmRSS of a process, in bytes (0 if unknown).
double residentBytes(pid_t pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(status, line);)
        if (line.rfind("VmRSS:", 0) == 0)
            return std::stod(line.substr(6)) * 1024;
    return 0;
}

bool runRecovery(const RecoveryOptions& given) {
    RecoveryOptions options = given;
    if (options.smoke)
        options.messages = 2'000;
    const std::string queue = "bench.recovery";
    client::QueueDeclareOptions durable;
    durable.durable = true;
    const std::string body(options.body, 'x');

    LocalDepotd first(/*onDisk=*/true);
    std::size_t nacked = 0;
    double publishSeconds = 0;
    {
        auto connection = client::Connection::open(first.url());
        connection->declareQueue(queue, durable);
        const auto start = Clock::now();
        nacked = publishPersistentWindowed(*connection, queue, body, options.messages, 1000);
        publishSeconds = secondsSince(start);
        connection->close();
    }
    const double onDisk = static_cast<double>(bytesUnder(first.dataDir()));
    const double residentFull = residentBytes(first.pid());
    first.crash();
    std::cerr << "filled " << options.messages << " messages in " << publishSeconds
              << " s; depotd killed (-9); restarting\n";

    const auto restart = Clock::now();
    LocalDepotd second(/*onDisk=*/true, first.dataDir());
    const double recoverySeconds = secondsSince(restart);
    const double resident = residentBytes(second.pid());

    // Every message back, redelivered: drained with acks.
    auto connection = client::Connection::open(second.url());
    const std::uint64_t back = connection->declareQueue(queue, durable).messageCount;
    std::mutex mutex;
    std::condition_variable done;
    std::size_t received = 0, redelivered = 0;
    client::ConsumeOptions consume;
    consume.prefetch = 1000;
    const auto drainStart = Clock::now();
    auto consumer = connection->consume(
        queue,
        [&](client::Delivery& d) {
            d.ack();
            std::lock_guard lock(mutex);
            ++received;
            redelivered += d.redelivered() ? 1 : 0;
            if (received == back)
                done.notify_all();
        },
        consume);
    {
        std::unique_lock lock(mutex);
        done.wait_for(lock, std::chrono::seconds(600), [&] { return received >= back; });
    }
    const double drainSeconds = secondsSince(drainStart);
    consumer.cancel();

    MarkdownTable table({"persistent messages", "body", "on disk", "depotd RSS, filled",
                         "recovery (restart to listening)", "recovered per second",
                         "depotd RSS after", "drained back, redelivered"});
    table.addRow({std::to_string(options.messages), formatBytes(static_cast<double>(options.body)),
                  formatBytes(onDisk), formatBytes(residentFull),
                  std::to_string(recoverySeconds).substr(0, 5) + " s",
                  formatSi(static_cast<double>(back) / recoverySeconds), formatBytes(resident),
                  std::to_string(received) + " in " + std::to_string(drainSeconds).substr(0, 5) +
                      " s, " + std::to_string(redelivered) + " redelivered"});
    table.print(std::cout);
    std::cout << "\nFilled with confirmed publishes (1,000 in flight) in " << publishSeconds
              << " s; " << nacked << " nacked. Recovery time includes starting the process.\n";
    const bool complete = nacked == 0 && back == options.messages && received == back;
    if (!complete)
        std::cerr << "depot-bench: recovery lost messages: " << back << " of " << options.messages
                  << " back, " << received << " drained\n";
    return complete;
}

} // namespace

void addRecoveryCommand(CLI::App& app) {
    auto options = std::make_shared<RecoveryOptions>();
    CLI::App* command = app.add_subcommand(
        "recovery", "How long depotd takes to restart with a backlog of persistent messages: "
                    "fills a durable queue with confirmed persistent messages, kill -9s depotd, "
                    "restarts it on the same data dir and times it until it listens, then drains "
                    "the queue to check every message came back. Exits 1 if one did not.");
    command->add_option("--messages", options->messages, "persistent messages in the backlog")
        ->check(CLI::Range(std::size_t{1}, std::size_t{100'000'000}))
        ->capture_default_str();
    command->add_option("--body", options->body, "body size in bytes")
        ->check(CLI::Range(std::size_t{0}, std::size_t{16 << 20}))
        ->capture_default_str();
    command->add_flag("--smoke", options->smoke, "tiny run for a ctest; asserts nothing on speed");
    command->callback([options] {
        if (!runRecovery(*options))
            std::exit(1);
    });
}

} // namespace depot::bench
