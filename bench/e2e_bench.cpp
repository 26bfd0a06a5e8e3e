#include "bench/e2e_bench.h"

#include "bench/report.h"
#include "client/connection.h"

#include <CLI/CLI.hpp>
#include <asio.hpp>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace depot::bench {

namespace {

using Clock = std::chrono::steady_clock;

struct E2eOptions {
    std::string target;
    std::size_t messages = 200'000;
    std::size_t body = 100;
    std::size_t rpcCalls = 2'000;
    bool smoke = false;
    bool persistent = false;   // depotd --data-dir; persistent messages, confirms, a durable queue
    std::size_t inFlight = 32; // --persistent: publisher threads, each waiting for its confirm
};

double secondsSince(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// depotd on 127.0.0.1 with a kernel-chosen port, stopped (SIGTERM) when this goes away.
class LocalDepotd {
public:
    explicit LocalDepotd(bool onDisk) {
        const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe");
        const std::string program = (self.parent_path() / "depotd").string();
        char pattern[] = "/tmp/depot-bench-XXXXXX";
        if (::mkdtemp(pattern) == nullptr)
            throw std::runtime_error("mkdtemp failed");
        dir_ = pattern;
        const std::string portFile = dir_ + "/port";
        std::vector<std::string> args = {
            program,  "--listen",    "127.0.0.1:0", "--port-file",
            portFile, "--log-level", "warn",        "--status-interval",
            "0"};
        if (onDisk) {
            args.push_back("--data-dir");
            args.push_back(dir_ + "/data");
        } else {
            args.push_back("--in-memory");
        }
        std::vector<char*> argv;
        for (std::string& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        if (posix_spawn(&pid_, program.c_str(), nullptr, nullptr, argv.data(), environ) != 0)
            throw std::runtime_error("cannot start " + program);
        for (int i = 0; i < 2000; ++i) {
            std::ifstream in(portFile);
            unsigned port = 0;
            if (in >> port) {
                url_ = "depot://guest:guest@127.0.0.1:" + std::to_string(port) + "/";
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        throw std::runtime_error("depotd did not start");
    }
    ~LocalDepotd() {
        ::kill(pid_, SIGTERM);
        ::waitpid(pid_, nullptr, 0);
        std::filesystem::remove_all(dir_);
    }
    const std::string& url() const { return url_; }

private:
    pid_t pid_ = -1;
    std::string dir_;
    std::string url_;
};

struct Outcome {
    std::string scenario;
    std::size_t messages = 0;
    double seconds = 0;
    double bytesPerMessage = 0; // on the wire, for the ceiling ratio
    std::string note;
    double rate() const { return seconds > 0 ? static_cast<double>(messages) / seconds : 0; }
};

// One publisher connection, one consumer connection, N messages; time from the first publish
// to the last delivery.
Outcome oneToOne(const std::string& url, const E2eOptions& options, bool acks) {
    auto consumerConnection = client::Connection::open(url);
    auto publisherConnection = client::Connection::open(url);
    const std::string queue = acks ? "bench.e2e.acks" : "bench.e2e.noack";
    consumerConnection->declareQueue(queue);
    consumerConnection->purge(queue);

    std::mutex mutex;
    std::condition_variable done;
    std::size_t received = 0;
    client::ConsumeOptions consume;
    consume.noAck = !acks;
    consume.prefetch = acks ? 100 : 0;
    auto consumer = consumerConnection->consume(
        queue,
        [&](client::Delivery& d) {
            if (acks)
                d.ack();
            std::lock_guard lock(mutex);
            if (++received == options.messages)
                done.notify_all();
        },
        consume);

    const std::string body(options.body, 'x');
    const auto start = Clock::now();
    for (std::size_t i = 0; i < options.messages; ++i)
        publisherConnection->publish("", queue, body);
    std::unique_lock lock(mutex);
    const bool finished = done.wait_for(lock, std::chrono::seconds(120),
                                        [&] { return received >= options.messages; });
    const double seconds = secondsSince(start);
    lock.unlock();
    Outcome outcome{acks ? "1 -> 1, acks (prefetch 100)" : "1 -> 1, no acks", received, seconds,
                    static_cast<double>(options.body) + 96, finished ? "" : "timed out"};
    consumer.cancel();
    return outcome;
}

// Counts deliveries across handlers until `expected` arrived (or two minutes passed).
class Tally {
public:
    explicit Tally(std::size_t expected) : expected_(expected) {}
    void add() {
        std::lock_guard lock(mutex_);
        if (++received_ == expected_)
            done_.notify_all();
    }
    bool wait() {
        std::unique_lock lock(mutex_);
        return done_.wait_for(lock, std::chrono::seconds(120),
                              [&] { return received_ >= expected_; });
    }
    std::size_t received() {
        std::lock_guard lock(mutex_);
        return received_;
    }

private:
    std::mutex mutex_;
    std::condition_variable done_;
    std::size_t expected_;
    std::size_t received_ = 0;
};

// Four publisher connections (a thread each) into one queue, four competing consumer
// connections with acks (prefetch 100): the work-queue pattern.
Outcome fourToFour(const std::string& url, const E2eOptions& options) {
    constexpr std::size_t N = 4;
    const std::string queue = "bench.e2e.work";
    auto setup = client::Connection::open(url);
    setup->declareQueue(queue);
    setup->purge(queue);
    const std::size_t perPublisher = std::max<std::size_t>(1, options.messages / N);
    Tally tally(perPublisher * N);
    std::vector<std::shared_ptr<client::Connection>> consumerConnections;
    std::vector<client::Consumer> consumers;
    client::ConsumeOptions consume;
    consume.prefetch = 100;
    for (std::size_t i = 0; i < N; ++i) {
        consumerConnections.push_back(client::Connection::open(url));
        consumers.push_back(consumerConnections.back()->consume(
            queue,
            [&tally](client::Delivery& d) {
                d.ack();
                tally.add();
            },
            consume));
    }
    std::vector<std::shared_ptr<client::Connection>> publishers;
    for (std::size_t i = 0; i < N; ++i)
        publishers.push_back(client::Connection::open(url));
    const std::string body(options.body, 'x');
    const auto start = Clock::now();
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < N; ++i)
        threads.emplace_back([&, i] {
            for (std::size_t m = 0; m < perPublisher; ++m)
                publishers[i]->publish("", queue, body);
        });
    for (std::thread& t : threads)
        t.join();
    const bool finished = tally.wait();
    const double seconds = secondsSince(start);
    for (client::Consumer& c : consumers)
        c.cancel();
    return Outcome{"4 -> 4, one queue, acks (prefetch 100)", tally.received(), seconds,
                   static_cast<double>(options.body) + 96, finished ? "" : "timed out"};
}

// One publisher, a fanout exchange bound to ten queues, a consumer (no acks) on each: every
// message is delivered ten times; the rate counts deliveries.
Outcome fanoutTen(const std::string& url, const E2eOptions& options) {
    constexpr std::size_t QUEUES = 10;
    auto consumerConnection = client::Connection::open(url);
    auto publisherConnection = client::Connection::open(url);
    consumerConnection->declareExchange("bench.e2e.fanout", client::ExchangeType::FANOUT);
    const std::size_t published = std::max<std::size_t>(1, options.messages / QUEUES);
    Tally tally(published * QUEUES);
    std::vector<client::Consumer> consumers;
    client::ConsumeOptions consume;
    consume.noAck = true;
    for (std::size_t i = 0; i < QUEUES; ++i) {
        const std::string queue = "bench.e2e.fanout." + std::to_string(i);
        consumerConnection->declareQueue(queue);
        consumerConnection->purge(queue);
        consumerConnection->bindQueue(queue, "bench.e2e.fanout", "");
        consumers.push_back(consumerConnection->consume(
            queue, [&tally](client::Delivery&) { tally.add(); }, consume));
    }
    const std::string body(options.body, 'x');
    const auto start = Clock::now();
    for (std::size_t i = 0; i < published; ++i)
        publisherConnection->publish("bench.e2e.fanout", "", body);
    const bool finished = tally.wait();
    const double seconds = secondsSince(start);
    for (client::Consumer& c : consumers)
        c.cancel();
    return Outcome{"fanout to 10 queues, no acks (deliveries)", tally.received(), seconds,
                   static_cast<double>(options.body) + 96, finished ? "" : "timed out"};
}

// Persistent messages into a durable queue with publisher confirms, `inFlight` publishers (one
// connection, a thread each, each waiting for its confirm: that many confirms outstanding) and
// one consumer with acks. depotd writes them to disk and confirms after the fsync that covers
// them (group commit).
Outcome persistentConfirmed(const std::string& url, const E2eOptions& options) {
    auto consumerConnection = client::Connection::open(url);
    auto publisherConnection = client::Connection::open(url);
    const std::string queue = "bench.e2e.persistent";
    client::QueueDeclareOptions durable;
    durable.durable = true;
    consumerConnection->declareQueue(queue, durable);
    consumerConnection->purge(queue);
    const std::size_t threads = std::max<std::size_t>(1, options.inFlight);
    const std::size_t perThread = std::max<std::size_t>(1, options.messages / threads);
    Tally tally(perThread * threads);
    client::ConsumeOptions consume;
    consume.prefetch = 100;
    auto consumer = consumerConnection->consume(
        queue,
        [&tally](client::Delivery& d) {
            d.ack();
            tally.add();
        },
        consume);
    client::PublishOptions persistent;
    persistent.properties.deliveryMode = core::DeliveryMode::PERSISTENT;
    const std::string body(options.body, 'x');
    std::atomic<std::size_t> nacked{0};
    const auto start = Clock::now();
    std::vector<std::thread> publishers;
    for (std::size_t t = 0; t < threads; ++t)
        publishers.emplace_back([&] {
            for (std::size_t i = 0; i < perThread; ++i)
                if (!publisherConnection->publishConfirmed("", queue, body, persistent).ack)
                    ++nacked;
        });
    for (std::thread& t : publishers)
        t.join();
    const double confirmedSeconds = secondsSince(start);
    const bool finished = tally.wait();
    const double seconds = secondsSince(start);
    consumer.cancel();
    std::string note = std::to_string(threads) + " confirms in flight; all confirmed in " +
                       std::to_string(confirmedSeconds).substr(0, 5) + " s";
    if (nacked > 0)
        note += ", " + std::to_string(nacked.load()) + " nacked";
    if (!finished)
        note += ", timed out";
    return Outcome{"persistent, confirms, durable queue, acks", tally.received(), seconds,
                   static_cast<double>(options.body) + 96, note};
}

Outcome confirmed(const std::string& url, const E2eOptions& options) {
    auto connection = client::Connection::open(url);
    connection->declareQueue("bench.e2e.confirm");
    const std::string body(options.body, 'x');
    const std::size_t count = std::max<std::size_t>(1, options.messages / 20);
    const auto start = Clock::now();
    for (std::size_t i = 0; i < count; ++i)
        (void)connection->publishConfirmed("", "bench.e2e.confirm", body);
    return Outcome{"publish, wait for each confirm", count, secondsSince(start),
                   static_cast<double>(options.body) + 96, "sequential: latency-bound"};
}

struct RpcResult {
    std::size_t calls = 0;
    double p50 = 0, p99 = 0, p999 = 0;
};

RpcResult rpc(const std::string& url, const E2eOptions& options) {
    auto server = client::Connection::open(url);
    auto caller = client::Connection::open(url);
    server->declareQueue("bench.rpc");
    auto responder = server->serve("bench.rpc", [](const client::Delivery& d) { return d.body(); });
    const std::string body(options.body, 'x');
    std::vector<double> micros;
    micros.reserve(options.rpcCalls);
    for (std::size_t i = 0; i < options.rpcCalls; ++i) {
        const auto start = Clock::now();
        (void)caller->request("", "bench.rpc", body, std::chrono::seconds(5));
        micros.push_back(secondsSince(start) * 1e6);
    }
    std::sort(micros.begin(), micros.end());
    auto at = [&](double q) {
        return micros[std::min(micros.size() - 1, static_cast<std::size_t>(q * micros.size()))];
    };
    return RpcResult{micros.size(), at(0.50), at(0.99), at(0.999)};
}

// The ceiling: the same number of bytes through a plain loopback TCP connection, 64 KiB
// writes, in this process.
Outcome loopbackCeiling(double bytesPerMessage, std::size_t messages) {
    asio::io_context io;
    asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
    asio::ip::tcp::socket writer(io);
    writer.connect(acceptor.local_endpoint());
    asio::ip::tcp::socket reader = acceptor.accept();
    const std::size_t total =
        static_cast<std::size_t>(bytesPerMessage * static_cast<double>(messages));
    std::thread drain([&] {
        std::vector<char> buffer(64 * 1024);
        std::size_t got = 0;
        asio::error_code error;
        while (got < total && !error)
            got += reader.read_some(asio::buffer(buffer), error);
    });
    const std::vector<char> chunk(64 * 1024, 'x');
    const auto start = Clock::now();
    std::size_t sent = 0;
    while (sent < total) {
        const std::size_t n = std::min(chunk.size(), total - sent);
        asio::write(writer, asio::buffer(chunk.data(), n));
        sent += n;
    }
    drain.join();
    return Outcome{"loopback TCP, same bytes (ceiling)", messages, secondsSince(start),
                   bytesPerMessage, "one socket, 64 KiB writes"};
}

void runE2e(const E2eOptions& given) {
    E2eOptions options = given;
    if (options.smoke) {
        options.messages = 2'000;
        options.rpcCalls = 50;
    }
    std::optional<LocalDepotd> local;
    std::string url = options.target;
    if (url.empty()) {
        local.emplace(options.persistent);
        url = local->url();
    }
    if (options.persistent) {
        std::cerr << "target " << url << ", " << options.messages << " persistent messages of "
                  << options.body << " bytes\n";
        const Outcome o = persistentConfirmed(url, options);
        const Outcome ceiling = loopbackCeiling(o.bytesPerMessage, options.messages);
        MarkdownTable table({"scenario", "messages", "seconds", "msgs/s", "note"});
        table.addRow({o.scenario, std::to_string(o.messages), std::to_string(o.seconds),
                      formatSi(o.rate()), o.note});
        table.addRow({ceiling.scenario, std::to_string(ceiling.messages),
                      std::to_string(ceiling.seconds), formatSi(ceiling.rate()), ceiling.note});
        table.print(std::cout);
        std::cout << "\ndepotd ran with --data-dir on this machine's disk: each confirm waited "
                     "for the fsync that covered its message. `depot-bench store` shows the "
                     "disk's raw fsync rate.\n";
        return;
    }
    std::cerr << "target " << url << ", " << options.messages << " messages of " << options.body
              << " bytes\n";
    std::vector<Outcome> outcomes;
    std::cerr << "1 -> 1 no acks...\n";
    outcomes.push_back(oneToOne(url, options, false));
    std::cerr << "1 -> 1 acks...\n";
    outcomes.push_back(oneToOne(url, options, true));
    std::cerr << "4 -> 4...\n";
    outcomes.push_back(fourToFour(url, options));
    std::cerr << "fanout 10...\n";
    outcomes.push_back(fanoutTen(url, options));
    std::cerr << "confirms...\n";
    outcomes.push_back(confirmed(url, options));
    std::cerr << "loopback ceiling...\n";
    const Outcome ceiling = loopbackCeiling(outcomes[0].bytesPerMessage, options.messages);
    std::cerr << "rpc...\n";
    const RpcResult calls = rpc(url, options);

    MarkdownTable table(
        {"scenario", "messages", "seconds", "msgs/s", "vs loopback ceiling", "note"});
    for (const Outcome& o : outcomes)
        table.addRow({o.scenario, std::to_string(o.messages), std::to_string(o.seconds),
                      formatSi(o.rate()), formatRatio(o.rate() / ceiling.rate()), o.note});
    table.addRow({ceiling.scenario, std::to_string(ceiling.messages),
                  std::to_string(ceiling.seconds), formatSi(ceiling.rate()), formatRatio(1.0),
                  ceiling.note});
    table.print(std::cout);
    std::cout << "\nRPC round trip (sequential request/serve, " << calls.calls << " calls): p50 "
              << calls.p50 << " us, p99 " << calls.p99 << " us, p99.9 " << calls.p999 << " us\n";
    std::cout << "\nEach message counts " << outcomes[0].bytesPerMessage
              << " bytes on the wire for the ceiling (body plus about 96 bytes of frame). The "
                 "publisher, the consumer and depotd share this machine's cores.\n";
}

} // namespace

void addE2eCommand(CLI::App& app) {
    auto options = std::make_shared<E2eOptions>();
    CLI::App* e2e = app.add_subcommand(
        "e2e", "Messages through depotd over TCP: 1 publisher -> 1 consumer without and with "
               "acks, 4 publishers -> 4 competing consumers, fanout to 10 queues, confirmed "
               "publishes, RPC round trips, next to a raw loopback TCP ceiling measured in the "
               "same run (the ratio compares bytes per second). Starts depotd (next to "
               "depot-bench) unless --target.");
    e2e->add_option("--target", options->target, "a running broker (depot://...)");
    e2e->add_option("--messages", options->messages, "messages per scenario")
        ->check(CLI::Range(std::size_t{1}, std::size_t{100'000'000}))
        ->capture_default_str();
    e2e->add_option("--body", options->body, "body size in bytes")
        ->check(CLI::Range(std::size_t{0}, std::size_t{16} << 20))
        ->capture_default_str();
    e2e->add_option("--rpc-calls", options->rpcCalls, "sequential RPC round trips")
        ->check(CLI::Range(std::size_t{1}, std::size_t{10'000'000}))
        ->capture_default_str();
    e2e->add_flag("--smoke", options->smoke, "tiny run for a ctest; asserts nothing about speed");
    e2e->add_flag("--persistent", options->persistent,
                  "instead: persistent messages with confirms into a durable queue, depotd with "
                  "--data-dir (its confirms wait for the disk)");
    e2e->add_option("--in-flight", options->inFlight,
                    "with --persistent: publisher threads, each waiting for its confirm")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1024}))
        ->capture_default_str();
    e2e->callback([options] { runE2e(*options); });
}

} // namespace depot::bench
