#include "bench/e2e_bench.h"

#include "bench/e2e_peer.h"
#include "bench/local_depotd.h"
#include "bench/local_nats.h"
#include "bench/loopback.h"
#include "bench/nats_client.h"
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
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
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
    bool failed = false;      // a publisher or consumer process failed (it said why on stderr)
    bool unsupported = false; // the target has no such thing (nats-server: acks, confirms, ...)
    // CPU time (user + system) of the publisher and consumer processes, and of a local depotd
    // during the scenario; 0 where not measured (a scenario run in this process, a remote broker).
    double publisherCpu = 0;
    double consumerCpu = 0;
    double brokerCpu = 0;
    double rate() const { return seconds > 0 ? static_cast<double>(messages) / seconds : 0; }
    bool complete() const {
        return unsupported || (!failed && (expected == 0 || messages >= expected));
    }
};

// What core NATS has no equivalent for: acks, confirms, persistence, AMQP's topic routing to
// queues (a NATS subscriber gets a message once per matching subscription).
Outcome unsupportedOnNats() {
    Outcome o;
    o.unsupported = true;
    o.note = "n/a on nats-server (core NATS has no queues, acks or confirms)";
    return o;
}

// Each scenario below runs its publisher and its consumer as processes of their own (see
// e2e_peer.h), after this process declared what they use; the time runs from the first publish
// to the last delivery.

std::vector<std::string> peerArgs(const std::string& url, std::size_t count,
                                  std::vector<std::string> more) {
    std::vector<std::string> args = {"--url", url, "--count", std::to_string(count)};
    args.insert(args.end(), more.begin(), more.end());
    return args;
}

Outcome fromPeers(const std::string& scenario, const PeerOutcome& p, const E2eOptions& options,
                  std::size_t expected, std::string note = {}) {
    if (!p.completed)
        note += (note.empty() ? "" : ", ") + std::string("failed or timed out (see stderr)");
    Outcome o{scenario,        p.received, p.seconds,   static_cast<double>(options.body) + 96,
              std::move(note), expected,   !p.completed};
    o.publisherCpu = p.publisherCpuSeconds;
    o.consumerCpu = p.consumerCpuSeconds;
    return o;
}

// One publisher process, one consumer process, N messages.
Outcome oneToOne(const std::string& url, const E2eOptions& options, bool acks) {
    const std::string queue = acks ? "bench.e2e.acks" : "bench.e2e.noack";
    if (isNatsUrl(url) && acks)
        return unsupportedOnNats();
    if (!isNatsUrl(url)) { // over NATS the queue's name is the subject, subscribed to
        auto setup = client::Connection::open(url);
        setup->declareQueue(queue);
        setup->purge(queue);
    }
    std::vector<std::string> consume = {"--queue", queue};
    if (acks)
        consume.insert(consume.end(), {"--acks", "--prefetch", "100"});
    const PeerOutcome p = runPeers(
        peerArgs(url, options.messages, consume),
        peerArgs(url, options.messages, {"--key", queue, "--body", std::to_string(options.body)}));
    return fromPeers(acks ? "1 -> 1, acks (prefetch 100)" : "1 -> 1, no acks", p, options,
                     options.messages);
}

// Four publisher connections (a thread each) into one queue, four competing consumer
// connections with acks (prefetch 100): the work-queue pattern; a process for each side.
Outcome fourToFour(const std::string& url, const E2eOptions& options) {
    if (isNatsUrl(url))
        return unsupportedOnNats();
    constexpr std::size_t N = 4;
    const std::string queue = "bench.e2e.work";
    {
        auto setup = client::Connection::open(url);
        setup->declareQueue(queue);
        setup->purge(queue);
    }
    const std::size_t total = std::max<std::size_t>(1, options.messages / N) * N;
    const PeerOutcome p = runPeers(
        peerArgs(url, total,
                 {"--queue", queue, "--acks", "--prefetch", "100", "--connections", "4"}),
        peerArgs(url, total,
                 {"--key", queue, "--body", std::to_string(options.body), "--connections", "4"}));
    return fromPeers("4 -> 4, one queue, acks (prefetch 100)", p, options, total);
}

// One publisher, a fanout exchange bound to ten queues, a consumer (no acks) on each: every
// message is delivered ten times; the rate counts deliveries. Over NATS: ten subscriptions to
// one subject.
Outcome fanoutTen(const std::string& url, const E2eOptions& options) {
    constexpr std::size_t QUEUES = 10;
    std::vector<std::string> consume;
    if (isNatsUrl(url)) {
        for (std::size_t i = 0; i < QUEUES; ++i)
            consume.insert(consume.end(), {"--queue", "bench.e2e.fanout"});
    } else {
        auto setup = client::Connection::open(url);
        setup->declareExchange("bench.e2e.fanout", client::ExchangeType::FANOUT);
        for (std::size_t i = 0; i < QUEUES; ++i) {
            const std::string queue = "bench.e2e.fanout." + std::to_string(i);
            setup->declareQueue(queue);
            setup->purge(queue);
            setup->bindQueue(queue, "bench.e2e.fanout", "");
            consume.insert(consume.end(), {"--queue", queue});
        }
    }
    const std::size_t published = std::max<std::size_t>(1, options.messages / QUEUES);
    const PeerOutcome p = runPeers(peerArgs(url, published * QUEUES, consume),
                                   peerArgs(url, published,
                                            {"--exchange", "bench.e2e.fanout", "--key",
                                             isNatsUrl(url) ? "bench.e2e.fanout" : "any", "--body",
                                             std::to_string(options.body)}));
    return fromPeers("fanout to 10 queues, no acks (deliveries)", p, options, published * QUEUES);
}

// A topic exchange with 1,000 bindings (10 patterns on each of 100 queues), one publisher, a
// consumer (no acks) on every queue; each key matches one binding. RabbitMQ's topic routing
// slows with many bindings (RABBITMQ-FACTS.md); the rate counts deliveries.
Outcome topicThousand(const std::string& url, const E2eOptions& options) {
    if (isNatsUrl(url))
        return unsupportedOnNats();
    constexpr std::size_t QUEUES = 100, PER_QUEUE = 10;
    const std::string exchange = "bench.e2e.topic";
    std::vector<std::string> consume;
    std::vector<std::string> publish = {"--exchange", exchange, "--body",
                                        std::to_string(options.body)};
    {
        auto setup = client::Connection::open(url);
        setup->declareExchange(exchange, client::ExchangeType::TOPIC);
        for (std::size_t q = 0; q < QUEUES; ++q) {
            const std::string queue = "bench.e2e.topic." + std::to_string(q);
            setup->declareQueue(queue);
            setup->purge(queue);
            for (std::size_t b = 0; b < PER_QUEUE; ++b) {
                const std::string prefix =
                    "region" + std::to_string(q) + ".kind" + std::to_string(b);
                setup->bindQueue(queue, exchange, prefix + (b % 2 == 0 ? ".*" : ".#"));
                publish.insert(publish.end(), {"--key", prefix + ".event"});
            }
            consume.insert(consume.end(), {"--queue", queue});
        }
    }
    const std::size_t published = std::max<std::size_t>(1, options.messages / 4);
    const PeerOutcome p =
        runPeers(peerArgs(url, published, consume), peerArgs(url, published, publish));
    return fromPeers("topic, 1,000 bindings to 100 queues, no acks", p, options, published);
}

// Persistent messages into a durable queue with publisher confirms, `inFlight` confirms
// outstanding (client::ConfirmWindow: publish waits while the window is full)
// and one consumer with acks. The broker writes them to disk and confirms after the fsync that
// covers them (group commit).
Outcome persistentConfirmed(const std::string& url, const E2eOptions& options) {
    if (isNatsUrl(url))
        return unsupportedOnNats();
    const std::string queue = "bench.e2e.persistent";
    {
        auto setup = client::Connection::open(url);
        client::QueueDeclareOptions durable;
        durable.durable = true;
        setup->declareQueue(queue, durable);
        setup->purge(queue);
    }
    const std::size_t window = std::max<std::size_t>(1, options.inFlight);
    const PeerOutcome p =
        runPeers(peerArgs(url, options.messages, {"--queue", queue, "--acks", "--prefetch", "100"}),
                 peerArgs(url, options.messages,
                          {"--key", queue, "--body", std::to_string(options.body), "--persistent",
                           "--in-flight", std::to_string(window)}));
    std::string note = std::to_string(window) + " confirms in flight; all confirmed in " +
                       std::to_string(p.publishSeconds).substr(0, 5) + " s";
    if (p.nacked > 0)
        note += ", " + std::to_string(p.nacked) + " nacked";
    return fromPeers("persistent, confirms, durable queue, acks", p, options, options.messages,
                     std::move(note));
}

Outcome confirmed(const std::string& url, const E2eOptions& options) {
    if (isNatsUrl(url))
        return unsupportedOnNats();
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

// NATS's request-reply: a responder thread answers on the request's reply subject, the caller
// waits on an inbox subject of its own; a connection each.
RoundTrips natsRpc(const std::string& url, const E2eOptions& options) {
    NatsClient server(url);
    server.subscribe("bench.rpc", 1);
    server.ping();
    std::atomic<bool> stop{false};
    std::string failure;
    std::thread responder([&] {
        try {
            while (!stop)
                (void)server.receive(
                    [&](const NatsClient::Message& m) {
                        server.publish(m.replyTo, "", m.payload);
                        server.flush();
                    },
                    [&] { return stop.load(); }, std::chrono::milliseconds(100));
        } catch (const std::exception& e) {
            failure = e.what();
        }
    });
    struct Join {
        std::atomic<bool>& stop;
        std::thread& t;
        ~Join() { now(); }
        void now() {
            stop = true;
            if (t.joinable())
                t.join();
        }
    } join{stop, responder};
    NatsClient caller(url);
    caller.subscribe("_INBOX.bench", 1);
    caller.ping();
    const std::string body(options.body, 'x');
    std::vector<double> micros;
    micros.reserve(options.rpcCalls);
    for (std::size_t i = 0; i < options.rpcCalls; ++i) {
        const auto start = Clock::now();
        caller.publish("bench.rpc", "_INBOX.bench", body);
        caller.flush();
        bool answered = false;
        if (!caller.receive([&](const NatsClient::Message&) { answered = true; },
                            [&] { return answered; }, std::chrono::seconds(5))) {
            join.now(); // `failure` is the responder's until it has stopped
            throw std::runtime_error("nats: no reply in 5 s" +
                                     (failure.empty() ? "" : " (responder: " + failure + ")"));
        }
        micros.push_back(secondsSince(start) * 1e6);
    }
    return percentiles(std::move(micros));
}

RoundTrips rpc(const std::string& url, const E2eOptions& options) {
    if (isNatsUrl(url))
        return natsRpc(url, options);
    auto server = client::Connection::open(url);
    auto caller = client::Connection::open(url);
    server->declareQueue("bench.rpc");
    // An echo never blocks: an inline responder (over depot://, on the network thread; over
    // amqp:// on the dispatcher thread, as any responder there).
    client::ConsumeOptions inlineResponder;
    inlineResponder.prefetch = 16;
    inlineResponder.inlineHandler = true;
    auto responder = server->serve(
        "bench.rpc", [](const client::Delivery& d) { return d.body(); }, inlineResponder);
    const std::string body(options.body, 'x');
    std::vector<double> micros;
    micros.reserve(options.rpcCalls);
    for (std::size_t i = 0; i < options.rpcCalls; ++i) {
        const auto start = Clock::now();
        (void)caller->request("", "bench.rpc", body, std::chrono::seconds(5));
        micros.push_back(secondsSince(start) * 1e6);
    }
    return percentiles(std::move(micros));
}

// A scenario measured against one target.
using Scenario = std::function<Outcome(const std::string& url, const E2eOptions&)>;

// Where a scenario runs: a broker URL, `local` (a depotd started here, in memory or, with
// --persistent, on disk) or `@FILE` (the URL read from FILE, as scripts/rabbitmq-node.sh writes
// it).
// A process's CPU time so far (user + system), from /proc; 0 if it cannot be read.
double processCpuSeconds(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), {});
    const std::size_t afterName = stat.rfind(')'); // the name may hold spaces
    if (afterName == std::string::npos)
        return 0;
    std::istringstream fields(stat.substr(afterName + 2));
    std::string field;
    unsigned long long user = 0, system = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) { // state is field 3
        if (i == 14)
            user = std::stoull(field);
        if (i == 15)
            system = std::stoull(field);
    }
    return static_cast<double>(user + system) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// "CPU per delivery: broker 1.20 us, publisher 0.60 us, consumer 0.90 us", for what was measured.
std::string cpuNote(const Outcome& o) {
    if (o.messages == 0)
        return "";
    std::string note;
    auto add = [&](const char* who, double seconds) {
        if (seconds <= 0)
            return;
        char text[64];
        std::snprintf(text, sizeof text, "%s %.2f us", who,
                      seconds * 1e6 / static_cast<double>(o.messages));
        note += (note.empty() ? "CPU per delivery: " : ", ") + std::string(text);
    };
    add("broker", o.brokerCpu);
    add("publisher", o.publisherCpu);
    add("consumer", o.consumerCpu);
    return note;
}

struct Target {
    std::string label;
    std::string url;
    std::unique_ptr<LocalDepotd> local;
    std::unique_ptr<LocalNats> nats; // `nats`: a nats-server started here
    pid_t pid() const { return local ? local->pid() : nats ? nats->pid() : -1; }
    std::string shownUrl() const { // without a password
        return isNatsUrl(url) ? url : client::BrokerUrl::parse(url).redacted();
    }
};

Target openTarget(const std::string& spec, bool persistent) {
    Target target;
    if (spec.empty() || spec == "local") {
        target.local = std::make_unique<LocalDepotd>(persistent);
        target.url = target.local->url();
        target.label = "depotd";
        return target;
    }
    if (spec == "nats") {
        target.nats = std::make_unique<LocalNats>();
        target.url = target.nats->url();
        target.label = "nats-server";
        return target;
    }
    target.url = spec;
    if (isNatsUrl(spec)) {
        target.label = "nats " + spec.substr(7);
        NatsClient probe(spec); // one that cannot be reached fails the run now, not per scenario
        return target;
    }
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
                << (results[s][t].unsupported ? "n/a" : formatSi(rate) + "/s") << "</text>\n";
        }
    }
    out << "</svg>\n";
}

// What loopback TCP allows, and the RPC figures, for the JSON (the table prints them itself).
struct Baselines {
    double loopbackCeiling = 0;  // msgs/s
    double relayCeiling = 0;     // msgs/s
    std::vector<RoundTrips> rpc; // per target; empty when RPC did not run
    RoundTrips rpcFloor;
};

std::string jsonRoundTrips(const RoundTrips& r) {
    return "\"p50_us\": " + jsonNumber(r.p50) + ", \"p99_us\": " + jsonNumber(r.p99) +
           ", \"p999_us\": " + jsonNumber(r.p999);
}

void writeJson(const std::string& path, const E2eOptions& options,
               const std::vector<std::string>& scenarios, const std::vector<Target>& targets,
               const std::vector<std::vector<Outcome>>& results, const Baselines& baselines) {
    std::ofstream out(path);
    out << "{\n  \"benchmark\": \"e2e\",\n  \"messages\": " << options.messages
        << ",\n  \"loopback_ceiling_per_second\": " << jsonNumber(baselines.loopbackCeiling)
        << ",\n  \"relay_ceiling_per_second\": " << jsonNumber(baselines.relayCeiling)
        << ",\n  \"body_bytes\": " << options.body << ",\n  \"targets\": [";
    for (std::size_t t = 0; t < targets.size(); ++t)
        out << (t ? ", " : "") << "{\"label\": " << jsonString(targets[t].label)
            << ", \"url\": " << jsonString(targets[t].shownUrl()) << "}";
    out << "],\n  \"results\": [\n";
    bool first = true;
    for (std::size_t s = 0; s < scenarios.size(); ++s)
        for (std::size_t t = 0; t < results[s].size(); ++t) {
            const Outcome& o = results[s][t];
            if (o.unsupported)
                continue;
            out << (first ? "" : ",\n") << "    {\"scenario\": " << jsonString(scenarios[s])
                << ", \"target\": " << jsonString(targets[t].label)
                << ", \"messages\": " << o.messages << ", \"expected\": " << o.expected
                << ", \"seconds\": " << jsonNumber(o.seconds)
                << ", \"per_second\": " << jsonNumber(o.rate())
                << ", \"cpu_seconds\": {\"broker\": " << jsonNumber(o.brokerCpu)
                << ", \"publisher\": " << jsonNumber(o.publisherCpu)
                << ", \"consumer\": " << jsonNumber(o.consumerCpu) << "}"
                << ", \"complete\": " << (o.complete() ? "true" : "false") << "}";
            first = false;
        }
    out << "\n  ],\n  \"rpc\": [";
    for (std::size_t t = 0; t < baselines.rpc.size(); ++t)
        out << (t ? ", " : "") << "{\"target\": " << jsonString(targets[t].label) << ", "
            << jsonRoundTrips(baselines.rpc[t]) << "}";
    out << "]";
    if (!baselines.rpc.empty())
        out << ",\n  \"rpc_floor\": {" << jsonRoundTrips(baselines.rpcFloor) << "}";
    out << "\n}\n";
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
        std::cerr << " " << t.label << " (" << t.shownUrl() << ")";
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
            const pid_t broker = target.pid();
            const double brokerBefore = broker > 0 ? processCpuSeconds(broker) : 0;
            Outcome o = scenario(target.url, options);
            o.scenario = name;
            if (broker > 0)
                o.brokerCpu = processCpuSeconds(broker) - brokerBefore;
            if (const std::string cpu = cpuNote(o); !cpu.empty())
                o.note += (o.note.empty() ? "" : "; ") + cpu;
            progress(name + " on " + target.label + ": " +
                     (o.unsupported ? "n/a" : formatSi(o.rate()) + " msg/s") +
                     (o.complete() ? "" : " (INCOMPLETE)"));
            complete = complete && o.complete();
            results.back().push_back(std::move(o));
        }
    }
    if (options.persistent) // fsyncs per second, from each local depotd's own count
        for (std::size_t t = 0; t < targets.size(); ++t)
            if (targets[t].local)
                if (const auto fsyncs = targets[t].local->stop();
                    fsyncs && results[0][t].seconds > 0) {
                    Outcome& o = results[0][t];
                    o.note += "; " + std::to_string(*fsyncs) + " fsyncs (" +
                              formatSi(static_cast<double>(*fsyncs) / o.seconds) + "/s)";
                }
    std::vector<RoundTrips> calls;
    if (rpcRuns)
        for (const Target& target : targets) {
            calls.push_back(rpc(target.url, options));
            progress("rpc on " + target.label);
        }
    const std::size_t messageBytes = options.body + 96;
    const std::size_t wireBytes = messageBytes * options.messages;
    const Outcome ceiling{"loopback TCP, same bytes (ceiling)", options.messages,
                          loopbackSeconds(wireBytes), static_cast<double>(messageBytes),
                          "one socket, 64 KiB writes"};
    const Outcome relay{"the same through a bare relay (a broker's ceiling)", options.messages,
                        relaySeconds(wireBytes), static_cast<double>(messageBytes),
                        "a thread forwarding 64 KiB reads from one socket to another"};
    const RoundTrips rpcFloor =
        rpcRuns ? relayRoundTrips(messageBytes, options.rpcCalls) : RoundTrips{};
    progress("loopback ceilings and RPC floor");

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
            const bool comparable = !o.unsupported && !results[s][0].unsupported;
            row.push_back(
                o.unsupported ? "n/a" : formatSi(o.rate()) + (o.complete() ? "" : " (incomplete)"));
            if (t > 0)
                row.push_back(comparable ? formatRatio(o.rate() / results[s][0].rate()) : "");
            if (!o.note.empty() && o.note != results[s][0].note)
                note += (note.empty() ? "" : "; ") + targets[t].label + ": " + o.note;
            else if (t == 0)
                note = o.note;
        }
        if (targets.size() == 1)
            row.push_back(results[s][0].unsupported
                              ? ""
                              : formatRatio(results[s][0].rate() / ceiling.rate()));
        row.push_back(note);
        table.addRow(row);
    }
    for (const Outcome* line : {&ceiling, &relay}) {
        std::vector<std::string> row = {line->scenario, formatSi(line->rate())};
        while (row.size() + 1 < header.size())
            row.push_back(targets.size() == 1 ? formatRatio(line->rate() / ceiling.rate()) : "");
        row.push_back(line->note);
        table.addRow(row);
    }
    table.print(std::cout);
    for (std::size_t t = 0; t < calls.size(); ++t)
        std::cout << "\nRPC round trip on " << targets[t].label << " (sequential, "
                  << options.rpcCalls << " calls): p50 " << calls[t].p50 << " us, p99 "
                  << calls[t].p99 << " us, p99.9 " << calls[t].p999 << " us ("
                  << formatRatio(calls[t].p50 / rpcFloor.p50) << " the floor's p50)";
    if (rpcRuns)
        std::cout << "\nRPC floor: the same round trips through a bare relay to an echo, two hops "
                     "each way, no broker, no client library: p50 "
                  << rpcFloor.p50 << " us, p99 " << rpcFloor.p99 << " us";
    std::cout << "\n\nEach message counts " << options.body + 96
              << " bytes on the wire for the ceiling (body plus about 96 bytes of frame). The "
                 "publishers, the consumers and the brokers share this machine's cores. A "
                 "broker over TCP cannot pass the relay ceiling: every byte crosses loopback "
                 "twice.\n";
    if (options.persistent)
        std::cout << "Persistent: every confirm waited for the broker's disk (depotd ran with "
                     "--data-dir); `depot-bench store` shows the disk's raw fsync rate.\n";
    if (!options.json.empty())
        writeJson(options.json, options, names, targets, results,
                  Baselines{ceiling.rate(), relay.rate(), calls, rpcFloor});
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
        "e2e", "Messages through a broker over TCP, the publishers and the consumers each in a "
               "process of their own: 1 publisher -> 1 consumer without and with "
               "acks, 4 publishers -> 4 competing consumers, fanout to 10 queues, a topic "
               "exchange with 1,000 bindings, confirmed publishes, RPC round trips (consumers "
               "and the responder are inline handlers, as their work never blocks), next to a "
               "raw loopback TCP ceiling measured in the same run (the ratio compares bytes per "
               "second), the same bytes through a bare relay (what no broker over TCP can beat) "
               "and RPC round trips through that relay, with the CPU time per delivery of the "
               "publisher, the consumer and a "
               "local depotd. Starts depotd (next to depot-bench) unless --target or --compare "
               "name brokers; --compare local @rabbitmq/url compares Depot with RabbitMQ, "
               "--compare local nats with a nats-server started here (core NATS: 1 -> 1 without "
               "acks, fanout and RPC; n/a for the rest). Exits 1 if a target did not deliver "
               "every message.");
    e2e->add_option("--target", options->target,
                    "where to run: a broker URL (depot://..., amqp://... for RabbitMQ, "
                    "nats://HOST:PORT for a nats-server), `local` (a depotd started here, the "
                    "default), `nats` (a nats-server started here, Debian's nats-server) or "
                    "@FILE (the URL in FILE, e.g. the one scripts/rabbitmq-node.sh writes)");
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
                    "with --persistent: confirms outstanding at most (client::ConfirmWindow)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{100'000}))
        ->capture_default_str();
    e2e->callback([options] {
        if (!runE2e(*options))
            std::exit(1);
    });
}

} // namespace depot::bench
