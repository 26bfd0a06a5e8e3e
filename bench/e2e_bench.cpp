#include "bench/e2e_bench.h"

#include "bench/confirm_window.h"
#include "bench/local_depotd.h"
#include "bench/report.h"
#include "client/connection.h"
#include "client/url.h"

#include <CLI/CLI.hpp>
#include <asio.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
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
    std::vector<std::string> compare; // several targets, one table
    std::string json;
    std::string svg;
    std::size_t messages = 200'000;
    std::size_t body = 100;
    std::size_t rpcCalls = 2'000;
    bool smoke = false;
    bool persistent = false; // depotd --data-dir; persistent messages, confirms, a durable queue
    std::size_t inFlight = 1'000;  // --persistent: confirms outstanding at most
    std::vector<std::string> only; // --scenario: run only these (short names)
};

double secondsSince(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

struct Outcome {
    std::string scenario;
    std::size_t messages = 0; // delivered (or round trips made)
    double seconds = 0;
    double bytesPerMessage = 0; // on the wire, for the ceiling ratio
    std::string note;
    std::size_t expected = 0; // what should have been delivered; 0 = as many as `messages`
    double rate() const { return seconds > 0 ? static_cast<double>(messages) / seconds : 0; }
    bool complete() const { return expected == 0 || messages >= expected; }
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
    Outcome outcome{acks ? "1 -> 1, acks (prefetch 100)" : "1 -> 1, no acks",
                    received,
                    seconds,
                    static_cast<double>(options.body) + 96,
                    finished ? "" : "timed out",
                    options.messages};
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
    return Outcome{"4 -> 4, one queue, acks (prefetch 100)",
                   tally.received(),
                   seconds,
                   static_cast<double>(options.body) + 96,
                   finished ? "" : "timed out",
                   perPublisher * N};
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
    return Outcome{"fanout to 10 queues, no acks (deliveries)",
                   tally.received(),
                   seconds,
                   static_cast<double>(options.body) + 96,
                   finished ? "" : "timed out",
                   published * QUEUES};
}

// A topic exchange with 1,000 bindings (10 patterns on each of 100 queues), one publisher, a
// consumer (no acks) on every queue; each key matches one binding. RabbitMQ's topic routing
// slows with many bindings (RABBITMQ-FACTS.md); the rate counts deliveries.
Outcome topicThousand(const std::string& url, const E2eOptions& options) {
    constexpr std::size_t QUEUES = 100, PER_QUEUE = 10;
    auto consumerConnection = client::Connection::open(url);
    auto publisherConnection = client::Connection::open(url);
    const std::string exchange = "bench.e2e.topic";
    consumerConnection->declareExchange(exchange, client::ExchangeType::TOPIC);
    const std::size_t published = std::max<std::size_t>(1, options.messages / 4);
    Tally tally(published);
    std::vector<client::Consumer> consumers;
    client::ConsumeOptions consume;
    consume.noAck = true;
    for (std::size_t q = 0; q < QUEUES; ++q) {
        const std::string queue = "bench.e2e.topic." + std::to_string(q);
        consumerConnection->declareQueue(queue);
        consumerConnection->purge(queue);
        for (std::size_t b = 0; b < PER_QUEUE; ++b)
            consumerConnection->bindQueue(
                queue, exchange,
                b % 2 == 0 ? "region" + std::to_string(q) + ".kind" + std::to_string(b) + ".*"
                           : "region" + std::to_string(q) + ".kind" + std::to_string(b) + ".#");
        consumers.push_back(consumerConnection->consume(
            queue, [&tally](client::Delivery&) { tally.add(); }, consume));
    }
    std::vector<std::string> keys;
    for (std::size_t q = 0; q < QUEUES; ++q)
        for (std::size_t b = 0; b < PER_QUEUE; ++b)
            keys.push_back("region" + std::to_string(q) + ".kind" + std::to_string(b) + ".event");
    const std::string body(options.body, 'x');
    const auto start = Clock::now();
    for (std::size_t i = 0; i < published; ++i)
        publisherConnection->publish(exchange, keys[(i * 7919) % keys.size()], body);
    const bool finished = tally.wait();
    const double seconds = secondsSince(start);
    for (client::Consumer& c : consumers)
        c.cancel();
    return Outcome{"topic, 1,000 bindings to 100 queues, no acks",
                   tally.received(),
                   seconds,
                   static_cast<double>(options.body) + 96,
                   finished ? "" : "timed out",
                   published};
}

// Persistent messages into a durable queue with publisher confirms, `inFlight` confirms
// outstanding (publishConfirmedAsync with a window: wait for the oldest before publishing more)
// and one consumer with acks. The broker writes them to disk and confirms after the fsync that
// covers them (group commit).
Outcome persistentConfirmed(const std::string& url, const E2eOptions& options) {
    auto consumerConnection = client::Connection::open(url);
    auto publisherConnection = client::Connection::open(url);
    const std::string queue = "bench.e2e.persistent";
    client::QueueDeclareOptions durable;
    durable.durable = true;
    consumerConnection->declareQueue(queue, durable);
    consumerConnection->purge(queue);
    const std::size_t window = std::max<std::size_t>(1, options.inFlight);
    Tally tally(options.messages);
    client::ConsumeOptions consume;
    consume.prefetch = 100;
    auto consumer = consumerConnection->consume(
        queue,
        [&tally](client::Delivery& d) {
            d.ack();
            tally.add();
        },
        consume);
    const std::string body(options.body, 'x');
    const auto start = Clock::now();
    const std::size_t nacked =
        publishPersistentWindowed(*publisherConnection, queue, body, options.messages, window);
    const double confirmedSeconds = secondsSince(start);
    const bool finished = tally.wait();
    const double seconds = secondsSince(start);
    consumer.cancel();
    std::string note = std::to_string(window) + " confirms in flight; all confirmed in " +
                       std::to_string(confirmedSeconds).substr(0, 5) + " s";
    if (nacked > 0)
        note += ", " + std::to_string(nacked) + " nacked";
    if (!finished)
        note += ", timed out";
    return Outcome{"persistent, confirms, durable queue, acks",
                   tally.received(),
                   seconds,
                   static_cast<double>(options.body) + 96,
                   note,
                   options.messages};
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

// A scenario measured against one target.
using Scenario = std::function<Outcome(const std::string& url, const E2eOptions&)>;

// Where a scenario runs: a broker URL, `local` (a depotd started here, in memory or, with
// --persistent, on disk) or `@FILE` (the URL read from FILE, as scripts/rabbitmq-node.sh writes
// it).
struct Target {
    std::string label;
    std::string url;
    std::unique_ptr<LocalDepotd> local;
};

Target openTarget(const std::string& spec, bool persistent) {
    Target target;
    if (spec.empty() || spec == "local") {
        target.local = std::make_unique<LocalDepotd>(persistent);
        target.url = target.local->url();
        target.label = "depotd";
        return target;
    }
    target.url = spec;
    if (spec.front() == '@') {
        std::ifstream in(spec.substr(1));
        if (!(in >> target.url))
            throw std::runtime_error("cannot read a broker URL from " + spec.substr(1));
    }
    const client::BrokerUrl parsed = client::BrokerUrl::parse(target.url); // throws if bad
    target.label = parsed.scheme == client::BrokerUrl::Scheme::AMQP ? "amqp " : "depot ";
    target.label += parsed.host + ":" + std::to_string(parsed.port);
    return target;
}

// A bar chart of each scenario's rate per target, bars scaled to the scenario's fastest.
void writeSvg(const std::string& path, const std::vector<std::string>& scenarios,
              const std::vector<Target>& targets,
              const std::vector<std::vector<Outcome>>& results) {
    static const char* const colours[] = {"#2b6cb0", "#dd6b20", "#38a169", "#805ad5"};
    const int barHeight = 18, gap = 6, labelWidth = 330, chartWidth = 420;
    const int groupHeight = static_cast<int>(targets.size()) * (barHeight + 2) + gap * 2;
    const int height = 40 + static_cast<int>(scenarios.size()) * groupHeight + 30;
    std::ofstream out(path);
    out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << labelWidth + chartWidth + 120
        << "\" height=\"" << height << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
    out << "<text x=\"8\" y=\"20\" font-size=\"14\">depot-bench e2e: messages per second "
           "(bars scaled per scenario)</text>\n";
    for (std::size_t t = 0; t < targets.size(); ++t)
        out << "<rect x=\"" << labelWidth + 200 * static_cast<int>(t) << "\" y=\"" << height - 22
            << "\" width=\"12\" height=\"12\" fill=\"" << colours[t % 4] << "\"/><text x=\""
            << labelWidth + 200 * static_cast<int>(t) + 16 << "\" y=\"" << height - 12 << "\">"
            << targets[t].label << "</text>\n";
    for (std::size_t s = 0; s < scenarios.size(); ++s) {
        const int top = 40 + static_cast<int>(s) * groupHeight;
        double best = 0;
        for (const Outcome& o : results[s])
            best = std::max(best, o.rate());
        out << "<text x=\"8\" y=\"" << top + gap + barHeight - 4 << "\">" << scenarios[s]
            << "</text>\n";
        for (std::size_t t = 0; t < results[s].size(); ++t) {
            const double rate = results[s][t].rate();
            const int y = top + gap + static_cast<int>(t) * (barHeight + 2);
            const int width =
                best > 0 ? std::max(1, static_cast<int>(chartWidth * rate / best)) : 1;
            out << "<rect x=\"" << labelWidth << "\" y=\"" << y << "\" width=\"" << width
                << "\" height=\"" << barHeight << "\" fill=\"" << colours[t % 4] << "\"/>";
            out << "<text x=\"" << labelWidth + width + 6 << "\" y=\"" << y + barHeight - 5 << "\">"
                << formatSi(rate) << "/s</text>\n";
        }
    }
    out << "</svg>\n";
}

void writeJson(const std::string& path, const E2eOptions& options,
               const std::vector<std::string>& scenarios, const std::vector<Target>& targets,
               const std::vector<std::vector<Outcome>>& results) {
    std::ofstream out(path);
    out << "{\n  \"benchmark\": \"e2e\",\n  \"messages\": " << options.messages
        << ",\n  \"body_bytes\": " << options.body << ",\n  \"targets\": [";
    for (std::size_t t = 0; t < targets.size(); ++t)
        out << (t ? ", " : "") << "{\"label\": " << jsonString(targets[t].label)
            << ", \"url\": " << jsonString(client::BrokerUrl::parse(targets[t].url).redacted())
            << "}";
    out << "],\n  \"results\": [\n";
    bool first = true;
    for (std::size_t s = 0; s < scenarios.size(); ++s)
        for (std::size_t t = 0; t < results[s].size(); ++t) {
            const Outcome& o = results[s][t];
            out << (first ? "" : ",\n") << "    {\"scenario\": " << jsonString(scenarios[s])
                << ", \"target\": " << jsonString(targets[t].label)
                << ", \"messages\": " << o.messages << ", \"expected\": " << o.expected
                << ", \"seconds\": " << jsonNumber(o.seconds)
                << ", \"per_second\": " << jsonNumber(o.rate())
                << ", \"complete\": " << (o.complete() ? "true" : "false") << "}";
            first = false;
        }
    out << "\n  ]\n}\n";
}

// Runs every scenario against every target, interleaved (scenario by scenario), so that a burst
// of load from elsewhere on the machine hits both sides of a comparison alike. Returns false if
// a target did not deliver every message of a scenario.
bool runE2e(const E2eOptions& given) {
    E2eOptions options = given;
    if (options.smoke) {
        options.messages = 2'000;
        options.rpcCalls = 50;
    }
    std::vector<std::string> specs = options.compare;
    if (specs.empty())
        specs.push_back(options.target);
    std::vector<Target> targets;
    for (const std::string& spec : specs)
        targets.push_back(openTarget(spec, options.persistent));

    std::vector<std::pair<std::string, Scenario>> scenarios;
    std::vector<std::string> shortNames; // what --scenario selects by
    if (options.persistent) {
        scenarios.emplace_back("persistent, confirms, durable queue, acks", persistentConfirmed);
        shortNames = {"persistent"};
    } else {
        scenarios.emplace_back("1 -> 1, no acks", [](const std::string& u, const E2eOptions& o) {
            return oneToOne(u, o, false);
        });
        scenarios.emplace_back(
            "1 -> 1, acks (prefetch 100)",
            [](const std::string& u, const E2eOptions& o) { return oneToOne(u, o, true); });
        scenarios.emplace_back("4 -> 4, one queue, acks (prefetch 100)", fourToFour);
        scenarios.emplace_back("fanout to 10 queues, no acks (deliveries)", fanoutTen);
        scenarios.emplace_back("topic, 1,000 bindings to 100 queues, no acks", topicThousand);
        scenarios.emplace_back("publish, wait for each confirm", confirmed);
        shortNames = {"1to1", "1to1-acks", "4to4", "fanout", "topic", "confirm"};
    }
    if (!options.only.empty()) {
        std::vector<std::pair<std::string, Scenario>> chosen;
        for (std::size_t i = 0; i < scenarios.size(); ++i)
            if (std::find(options.only.begin(), options.only.end(), shortNames[i]) !=
                options.only.end())
                chosen.push_back(scenarios[i]);
        scenarios = std::move(chosen);
    }
    std::cerr << options.messages << " messages of " << options.body << " bytes per scenario; "
              << "targets:";
    for (const Target& t : targets)
        std::cerr << " " << t.label << " (" << client::BrokerUrl::parse(t.url).redacted() << ")";
    std::cerr << "\n";

    const bool rpcRuns = !options.persistent && options.only.empty();
    const std::size_t steps =
        scenarios.size() * targets.size() + (rpcRuns ? targets.size() : 0) + 1;
    std::size_t step = 0;
    auto progress = [&](const std::string& what) {
        ++step;
        const std::size_t filled = 30 * step / steps;
        std::cerr << "[" << std::string(filled, '#') << std::string(30 - filled, '.') << "] "
                  << step << "/" << steps << " " << what << "\n";
    };

    bool complete = true;
    std::vector<std::string> names;
    std::vector<std::vector<Outcome>> results;
    for (const auto& [name, scenario] : scenarios) {
        names.push_back(name);
        results.emplace_back();
        for (const Target& target : targets) {
            Outcome o = scenario(target.url, options);
            o.scenario = name;
            progress(name + " on " + target.label + ": " + formatSi(o.rate()) + " msg/s" +
                     (o.complete() ? "" : " (INCOMPLETE)"));
            complete = complete && o.complete();
            results.back().push_back(std::move(o));
        }
    }
    if (options.persistent) // fsyncs per second, from each local depotd's own count
        for (std::size_t t = 0; t < targets.size(); ++t)
            if (targets[t].local)
                if (const auto fsyncs = targets[t].local->stop()) {
                    Outcome& o = results[0][t];
                    o.note += "; " + std::to_string(*fsyncs) + " fsyncs (" +
                              formatSi(static_cast<double>(*fsyncs) / o.seconds) + "/s)";
                }
    std::vector<RpcResult> calls;
    if (rpcRuns)
        for (const Target& target : targets) {
            calls.push_back(rpc(target.url, options));
            progress("rpc on " + target.label);
        }
    const Outcome ceiling =
        loopbackCeiling(static_cast<double>(options.body) + 96, options.messages);
    progress("loopback ceiling");

    std::vector<std::string> header = {"scenario"};
    for (std::size_t t = 0; t < targets.size(); ++t) {
        header.push_back(targets[t].label + " msgs/s");
        if (t > 0)
            header.push_back("vs " + targets[0].label);
    }
    if (targets.size() == 1)
        header.push_back("vs loopback ceiling");
    header.push_back("note");
    MarkdownTable table(header);
    for (std::size_t s = 0; s < names.size(); ++s) {
        std::vector<std::string> row = {names[s]};
        std::string note;
        for (std::size_t t = 0; t < targets.size(); ++t) {
            const Outcome& o = results[s][t];
            row.push_back(formatSi(o.rate()) + (o.complete() ? "" : " (incomplete)"));
            if (t > 0)
                row.push_back(formatRatio(o.rate() / results[s][0].rate()));
            if (!o.note.empty() && o.note != results[s][0].note)
                note += (note.empty() ? "" : "; ") + targets[t].label + ": " + o.note;
            else if (t == 0)
                note = o.note;
        }
        if (targets.size() == 1)
            row.push_back(formatRatio(results[s][0].rate() / ceiling.rate()));
        row.push_back(note);
        table.addRow(row);
    }
    std::vector<std::string> ceilingRow = {ceiling.scenario, formatSi(ceiling.rate())};
    while (ceilingRow.size() + 1 < header.size())
        ceilingRow.push_back(targets.size() == 1 ? formatRatio(1.0) : "");
    ceilingRow.push_back(ceiling.note);
    table.addRow(ceilingRow);
    table.print(std::cout);
    for (std::size_t t = 0; t < calls.size(); ++t)
        std::cout << "\nRPC round trip on " << targets[t].label << " (sequential, "
                  << calls[t].calls << " calls): p50 " << calls[t].p50 << " us, p99 "
                  << calls[t].p99 << " us, p99.9 " << calls[t].p999 << " us";
    std::cout << "\n\nEach message counts " << options.body + 96
              << " bytes on the wire for the ceiling (body plus about 96 bytes of frame). The "
                 "publishers, the consumers and the brokers share this machine's cores.\n";
    if (options.persistent)
        std::cout << "Persistent: every confirm waited for the broker's disk (depotd ran with "
                     "--data-dir); `depot-bench store` shows the disk's raw fsync rate.\n";
    if (!options.json.empty())
        writeJson(options.json, options, names, targets, results);
    if (!options.svg.empty())
        writeSvg(options.svg, names, targets, results);
    if (!complete)
        std::cerr << "depot-bench: a target did not deliver every message (see INCOMPLETE)\n";
    return complete;
}

} // namespace

void addE2eCommand(CLI::App& app) {
    auto options = std::make_shared<E2eOptions>();
    CLI::App* e2e = app.add_subcommand(
        "e2e", "Messages through a broker over TCP: 1 publisher -> 1 consumer without and with "
               "acks, 4 publishers -> 4 competing consumers, fanout to 10 queues, a topic "
               "exchange with 1,000 bindings, confirmed publishes, RPC round trips, next to a "
               "raw loopback TCP ceiling measured in the same run (the ratio compares bytes per "
               "second). Starts depotd (next to depot-bench) unless --target or --compare name "
               "brokers; --compare local @rabbitmq/url compares Depot with RabbitMQ. Exits 1 "
               "if a target did not deliver every message.");
    e2e->add_option("--target", options->target,
                    "where to run: a broker URL (depot://... or amqp://... for RabbitMQ), "
                    "`local` (a depotd started here, the default) or @FILE (the URL in FILE, "
                    "e.g. the one scripts/rabbitmq-node.sh writes)");
    e2e->add_option("--compare", options->compare,
                    "several targets (as --target) in one run, scenario by scenario, in one "
                    "table with each figure's ratio to the first target")
        ->excludes("--target");
    e2e->add_option("--json", options->json, "also write the results to this JSON file");
    e2e->add_option("--svg", options->svg, "also draw the results as a bar chart (SVG)");
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
    e2e->add_option("--scenario", options->only,
                    "run only these scenarios (and no RPC): 1to1, 1to1-acks, 4to4, fanout, "
                    "topic, confirm; persistent with --persistent")
        ->check(CLI::IsMember(
            {"1to1", "1to1-acks", "4to4", "fanout", "topic", "confirm", "persistent"}));
    e2e->add_option("--in-flight", options->inFlight,
                    "with --persistent: confirms outstanding at most (publishConfirmedAsync)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{100'000}))
        ->capture_default_str();
    e2e->callback([options] {
        if (!runE2e(*options))
            std::exit(1);
    });
}

} // namespace depot::bench
