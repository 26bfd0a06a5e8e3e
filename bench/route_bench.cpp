#include "bench/route_bench.h"

#include "bench/report.h"
#include "broker/core/broker.h"
#include "broker/core/delivery_sink.h"
#include "broker/core/message.h"
#include "broker/core/topic_exchange.h"
#include "broker/core/topic_trie.h"

#include <CLI/CLI.hpp>

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace depot::bench {

namespace {

using core::TimePoint;

constexpr std::size_t HOT_KEYS = 4096; // a power of two: the index wraps with a mask
constexpr std::size_t MAX_QUEUES = 100;
constexpr std::size_t FANOUT_MAX_BINDINGS = 1000;
constexpr std::size_t BODY_SIZE = 100;
constexpr std::size_t REGIONS = 50;
// Topic bindings come in groups of this many per service, with different patterns (see
// topicBindingKey), so a key matches about three bindings, as real subscriptions overlap.
constexpr std::size_t BINDINGS_PER_SERVICE = 5;
constexpr std::size_t COLD_KEYS = 1'000'000;
constexpr std::size_t SMOKE_COLD_KEYS = 4 * core::TopicExchange::MAX_CACHED_KEYS;
constexpr const char* VERBS[] = {"created", "updated", "delivered", "cancelled"};

const char* const ROUTE_DESCRIPTION =
    "In-process routing benchmarks of depot_core: no sockets, one thread, no pinning. For each "
    "type in --types and N in --bindings, a fresh Broker gets min(N, 100) queues (fanout: N "
    "queues, and only N <= 1000, since every fanout message goes to every queue) and N bindings "
    "with realistic keys (direct order.<i>; topic region<r>.svc<s>.* , *.svc<s>.# , "
    "#.svc<s>.# , ...).";

const char* const ROUTE_FOOTER =
    "Columns:\n"
    "  routes/s        Vhost::route() over 4096 pre-generated keys, about 15/16 of which match:\n"
    "                  exchange lookup, index match and dedup, no enqueue. Keys repeat, so\n"
    "                  direct and topic take their route cache's hit path (route_cache.h).\n"
    "  destinations/s  queues those routes reached (fanout: N per route).\n"
    "  ns/route        one route in ns.\n"
    "  map lookup (x)  the baseline, measured in the same case: std::unordered_map<std::string,\n"
    "                  int>::find of the same keys in a map of the same size (direct: the N\n"
    "                  binding keys; topic and fanout: the 4096 keys), in ns; (x) is ns/route\n"
    "                  divided by it. A 100k-entry map outgrows the CPU caches, and so does\n"
    "                  every index of that size: compare flatness against the map's.\n"
    "  cold routes/s   topic only: every key distinct (1M keys, far more than\n"
    "                  TopicExchange::MAX_CACHED_KEYS), so the cache never hits: trie walk plus\n"
    "                  cache refill. 'trie-only' is TopicTrie::match alone on the same keys.\n"
    "  publish msgs/s  Channel::publish(MessageRef) of prebuilt 100-byte messages (one per hot\n"
    "                  key, built before timing: no body copy) into queues drained by a no-ack\n"
    "                  consumer whose sink only counts; deliveries/s counts queue deliveries.\n"
    "  publish+copy    Channel::publish(exchange, key, properties, body): one message allocation\n"
    "                  and one 100-byte body copy per publish.\n"
    "  bytes/binding   heap growth (glibc mallinfo2) while the N bindings are added, / N.\n"
    "Flatness is each figure at the largest N divided by the figure at the smallest N (1.00 = "
    "flat).\nNo figure is checked against a threshold: --smoke only shows that the bench runs.";

struct RouteBenchOptions {
    std::vector<std::size_t> bindings{10, 1000, 100000};
    std::vector<std::string> types{"topic", "direct", "fanout"};
    double seconds = 1.0;
    bool smoke = false;
    std::string jsonPath;
};

struct CaseResult {
    std::string type;
    std::size_t bindings = 0;
    std::size_t queues = 0;
    std::string skipped; // why the case was not run; empty if it ran
    Rate mapLookup;      // the baseline
    Rate route;
    Rate cold;     // topic only
    Rate trieOnly; // topic only
    Rate publish;
    Rate publishCopy;
    double bytesPerBinding = 0;
};

class BenchError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

void check(const core::Status& status, std::string_view what) {
    if (!status)
        throw BenchError(std::string(what) + ": " + status.error().describe());
}

TimePoint clockNow() {
    return std::chrono::steady_clock::now();
}

std::size_t heapInUse() {
    const struct mallinfo2 info = ::mallinfo2();
    return info.uordblks + info.hblkhd; // small chunks in use + mmapped large ones
}

class CountingSink final : public core::DeliverySink {
public:
    void deliver(const core::Delivery&) override { ++deliveries; }
    void onCancelled(std::string_view) override {}

    std::uint64_t deliveries = 0;
};

// Keys stored back to back in one string: a million cold keys in two allocations, so walking
// them measures routing rather than pointer chasing through a million std::strings.
class KeyList {
public:
    void reserve(std::size_t keys, std::size_t bytes) {
        spans_.reserve(keys);
        text_.reserve(bytes);
    }
    void add(std::string_view key) {
        spans_.push_back(
            {static_cast<std::uint32_t>(text_.size()), static_cast<std::uint32_t>(key.size())});
        text_.append(key);
    }
    std::string_view operator[](std::size_t i) const {
        return {text_.data() + spans_[i].first, spans_[i].second};
    }
    std::size_t size() const { return spans_.size(); }

private:
    std::string text_;
    std::vector<std::pair<std::uint32_t, std::uint32_t>> spans_; // offset, length
};

std::string number(std::size_t n) {
    return std::to_string(n);
}

std::size_t topicServices(std::size_t bindings) {
    return (bindings + BINDINGS_PER_SERVICE - 1) / BINDINGS_PER_SERVICE;
}

// Binding i belongs to service i / 5; the five bindings of a service mix literals, `*` and `#`,
// and one pattern starts with `#`, which keeps a `#` node active on every word of every key.
std::string topicBindingKey(std::size_t i) {
    const std::size_t service = i / BINDINGS_PER_SERVICE;
    const std::string svc = "svc" + number(service);
    const std::string region = "region" + number(service % REGIONS);
    switch (i % BINDINGS_PER_SERVICE) {
    case 0:
        return region + "." + svc + ".*";
    case 1:
        return "*." + svc + ".#";
    case 2:
        return "#." + svc + ".#";
    case 3:
        return region + "." + svc + ".created";
    default:
        return "region" + number((service + 1) % REGIONS) + "." + svc + ".*";
    }
}

std::string bindingKey(const std::string& type, std::size_t i) {
    if (type == "topic")
        return topicBindingKey(i);
    if (type == "direct")
        return "order." + number(i);
    return ""; // fanout ignores the key
}

// `region<r>.svc<s>.<last>`: matches 3 of service s's bindings on average (2 to 4) when s is
// bound; 1 in 16 keys names an unbound service and matches nothing.
std::string topicKey(std::size_t bindings, std::mt19937_64& rng, std::string_view last) {
    const std::size_t services = topicServices(bindings);
    std::size_t service = rng() % services;
    if (rng() % 16 == 0)
        service += services; // unbound
    const std::size_t region = (service + rng() % 2) % REGIONS;
    return "region" + number(region) + ".svc" + number(service) + "." + std::string(last);
}

std::vector<std::string> hotKeys(const std::string& type, std::size_t bindings,
                                 std::mt19937_64& rng) {
    std::vector<std::string> keys;
    keys.reserve(HOT_KEYS);
    for (std::size_t i = 0; i < HOT_KEYS; ++i) {
        if (type == "topic") {
            keys.push_back(topicKey(bindings, rng, VERBS[rng() % std::size(VERBS)]));
        } else {
            const std::size_t order = rng() % bindings;
            keys.push_back(rng() % 16 == 0 ? "order.none" + number(order)
                                           : "order." + number(order));
        }
    }
    return keys;
}

// Every key distinct (the last word is a sequence number), so no cache can answer.
KeyList coldTopicKeys(std::size_t bindings, std::size_t count, std::mt19937_64& rng) {
    KeyList keys;
    keys.reserve(count, count * 32);
    for (std::size_t i = 0; i < count; ++i)
        keys.add(topicKey(bindings, rng, "e" + number(i)));
    return keys;
}

// Runs `count` operations per call over `keys`, from where the previous call stopped.
template <class Keys, class Op> BatchFunction overKeys(const Keys& keys, Op op) {
    return [&keys, op, next = std::size_t{0}](std::size_t count) mutable {
        Work work;
        for (std::size_t n = 0; n < count; ++n) {
            work.items += op(keys[next]);
            if (++next == keys.size())
                next = 0;
        }
        work.operations = count;
        doNotOptimize(work.items);
        return work;
    };
}

// The cost of one plain hash lookup of each key, in a map holding `entries`: what the figures
// are quoted against.
Rate measureMapLookup(const std::vector<std::string>& entries,
                      const std::vector<std::string>& lookups, double seconds) {
    std::unordered_map<std::string, int> map;
    for (std::size_t i = 0; i < entries.size(); ++i)
        map.emplace(entries[i], static_cast<int>(i));
    return measureRate(seconds, overKeys(lookups, [&map](const std::string& key) {
                           auto it = map.find(key);
                           const std::uint64_t found = it == map.end() ? 0 : 1;
                           doNotOptimize(it);
                           return found;
                       }));
}

CaseResult runCase(const std::string& type, std::size_t bindings, const RouteBenchOptions& options,
                   std::size_t coldKeyCount) {
    CaseResult result;
    result.type = type;
    result.bindings = bindings;
    if (type == "fanout" && bindings > FANOUT_MAX_BINDINGS) {
        result.skipped = "fanout is measured up to " + number(FANOUT_MAX_BINDINGS) +
                         " bindings (each to its own queue)";
        return result;
    }
    const core::Result<core::ExchangeType> exchangeType = core::parseExchangeType(type);
    if (!exchangeType)
        throw BenchError("unknown exchange type '" + type + "'");

    std::mt19937_64 rng(bindings * 31 + type.size());
    core::Broker broker;
    core::Vhost& vhost = broker.defaultVhost();
    core::Channel& channel = vhost.openChannel();
    const TimePoint setupTime = clockNow();

    result.queues = type == "fanout" ? bindings : std::min(bindings, MAX_QUEUES);
    std::vector<std::string> queueNames;
    for (std::size_t i = 0; i < result.queues; ++i) {
        queueNames.push_back("q" + number(i));
        if (auto declared = channel.declareQueue(queueNames.back(), {}, setupTime); !declared)
            throw BenchError("declare queue: " + declared.error().describe());
    }
    const std::string exchange = "bench." + type;
    check(channel.declareExchange(exchange, *exchangeType), "declare exchange");

    std::vector<std::string> bindingKeys;
    bindingKeys.reserve(bindings);
    for (std::size_t i = 0; i < bindings; ++i)
        bindingKeys.push_back(bindingKey(type, i));

    const std::size_t heapBefore = heapInUse();
    for (std::size_t i = 0; i < bindings; ++i)
        check(channel.bindQueue(queueNames[i % result.queues], exchange, bindingKeys[i]), "bind");
    const std::size_t heapAfter = heapInUse();
    // A sanitizer's allocator replaces glibc's, and mallinfo2 then reports nothing.
    result.bytesPerBinding =
        heapBefore == 0 && heapAfter == 0
            ? std::numeric_limits<double>::quiet_NaN()
            : (static_cast<double>(heapAfter) - static_cast<double>(heapBefore)) /
                  static_cast<double>(bindings);
    if (vhost.findExchange(exchange)->bindingCount() != bindings)
        throw BenchError("expected " + number(bindings) + " bindings on " + exchange);

    CountingSink sink;
    core::ConsumeOptions consumeOptions;
    consumeOptions.noAck = true;
    for (const std::string& queue : queueNames)
        if (auto tag = channel.consume(queue, sink, consumeOptions, setupTime); !tag)
            throw BenchError("consume: " + tag.error().describe());

    const std::vector<std::string> keys = hotKeys(type, bindings, rng);
    const core::FieldTable noHeaders;
    std::vector<core::Queue*> routed;
    auto route = [&vhost, &exchange, &noHeaders, &routed](std::string_view key) {
        if (!vhost.route(exchange, key, noHeaders, routed))
            throw BenchError("route failed");
        doNotOptimize(routed.data());
        return static_cast<std::uint64_t>(routed.size());
    };
    result.mapLookup =
        measureMapLookup(type == "direct" ? bindingKeys : keys, keys, options.seconds / 2);
    result.route = measureRate(options.seconds, overKeys(keys, route));

    // One prebuilt message per hot key: the body is copied before timing, never per publish.
    std::vector<core::MessageRef> messages;
    for (const std::string& key : keys)
        messages.push_back(core::makeMessage(exchange, key, {}, std::string(BODY_SIZE, 'x')));
    std::uint64_t routedTo = 0;
    result.publish =
        measureRate(options.seconds, [&channel, &messages, &routedTo,
                                      next = std::size_t{0}](std::size_t count) mutable {
            const TimePoint now = clockNow();
            Work work;
            for (std::size_t n = 0; n < count; ++n) {
                auto published = channel.publish(messages[next], false, now);
                if (!published)
                    throw BenchError("publish: " + published.error().describe());
                work.items += published->queues;
                next = (next + 1) & (HOT_KEYS - 1);
            }
            work.operations = count;
            routedTo += work.items;
            return work;
        });

    const std::string body(BODY_SIZE, 'x');
    result.publishCopy =
        measureRate(options.seconds, [&channel, &exchange, &keys, &body, &routedTo,
                                      next = std::size_t{0}](std::size_t count) mutable {
            const TimePoint now = clockNow();
            Work work;
            for (std::size_t n = 0; n < count; ++n) {
                // `body` is copied into the by-value parameter: the one copy per publish.
                auto published = channel.publish(exchange, keys[next], {}, body, false, now);
                if (!published)
                    throw BenchError("publish: " + published.error().describe());
                work.items += published->queues;
                next = (next + 1) & (HOT_KEYS - 1);
            }
            work.operations = count;
            routedTo += work.items;
            return work;
        });

    // Last, so its cache churn (the route cache starts over every MAX_KEYS misses) cannot
    // disturb the hot measurements.
    if (type == "topic") {
        const KeyList coldKeys = coldTopicKeys(bindings, coldKeyCount, rng);
        result.cold = measureRate(options.seconds, overKeys(coldKeys, route));

        core::TopicTrie<std::uint32_t> trie;
        for (std::size_t i = 0; i < bindings; ++i)
            trie.add(bindingKeys[i], static_cast<std::uint32_t>(i % result.queues));
        result.trieOnly =
            measureRate(options.seconds, overKeys(coldKeys, [&trie](std::string_view key) {
                            std::uint64_t matched = 0;
                            trie.match(key, [&matched](std::uint32_t queue) {
                                doNotOptimize(queue);
                                ++matched;
                            });
                            return matched;
                        }));
    }

    // The consumers must have taken everything, or the publish figures include queue growth.
    if (sink.deliveries != routedTo)
        throw BenchError("delivered " + number(sink.deliveries) + " of " + number(routedTo) +
                         " routed messages");
    for (const std::string& queue : queueNames)
        if (vhost.findQueue(queue)->readyCount() != 0)
            throw BenchError("queue " + queue + " kept messages; the consumers did not drain it");
    return result;
}

std::string rateCell(const Rate& rate) {
    return rate.measured ? formatSi(rate.operationsPerSecond) : "-";
}
std::string itemsCell(const Rate& rate) {
    return rate.measured ? formatSi(rate.itemsPerSecond) : "-";
}

double ratio(double numerator, double denominator) {
    return denominator == 0 ? std::numeric_limits<double>::quiet_NaN() : numerator / denominator;
}

void printResults(const std::vector<CaseResult>& results, std::ostream& out) {

    const std::vector<std::string> header{"type",
                                          "bindings",
                                          "queues",
                                          "routes/s",
                                          "destinations/s",
                                          "ns/route",
                                          "map lookup (x)",
                                          "cold routes/s",
                                          "cold trie-only/s",
                                          "publish msgs/s",
                                          "publish deliveries/s",
                                          "publish+copy msgs/s",
                                          "bytes/binding"};
    MarkdownTable table(header);
    for (const CaseResult& r : results) {
        if (!r.skipped.empty()) {
            // The reason is in the notes under the table, which would be too wide with it.
            std::vector<std::string> cells(header.size(), "-");
            cells[0] = r.type;
            cells[1] = number(r.bindings);
            cells[3] = "skipped";
            table.addRow(std::move(cells));
            continue;
        }
        table.addRow(
            {r.type, number(r.bindings), number(r.queues), rateCell(r.route), itemsCell(r.route),
             formatNanos(r.route.nanosPerOperation()),
             formatNanos(r.mapLookup.nanosPerOperation()) + " (" +
                 formatRatio(ratio(r.route.nanosPerOperation(), r.mapLookup.nanosPerOperation())) +
                 ")",
             rateCell(r.cold), rateCell(r.trieOnly), rateCell(r.publish), itemsCell(r.publish),
             rateCell(r.publishCopy), formatBytes(r.bytesPerBinding)});
    }
    table.print(out);

    out << "\nFlatness: the figure at the largest N divided by the figure at the smallest N "
           "(1.00 = flat; fanout routes/s fall with N by design, since each route reaches N "
           "queues).\n\n";
    MarkdownTable flatness({"type", "N", "map lookups/s", "routes/s", "destinations/s",
                            "cold routes/s", "cold trie-only/s", "publish msgs/s",
                            "publish deliveries/s", "bytes/binding"});
    std::vector<std::string> types;
    for (const CaseResult& r : results)
        if (std::find(types.begin(), types.end(), r.type) == types.end())
            types.push_back(r.type);
    for (const std::string& type : types) {
        const CaseResult* smallest = nullptr;
        const CaseResult* largest = nullptr;
        for (const CaseResult& r : results) {
            if (r.type != type || !r.skipped.empty())
                continue;
            if (smallest == nullptr || r.bindings < smallest->bindings)
                smallest = &r;
            if (largest == nullptr || r.bindings > largest->bindings)
                largest = &r;
        }
        if (smallest == nullptr || smallest == largest)
            continue;
        auto flat = [](const Rate& big, const Rate& small, bool items) {
            if (!big.measured || !small.measured)
                return std::string("-");
            return items ? formatRatio(ratio(big.itemsPerSecond, small.itemsPerSecond))
                         : formatRatio(ratio(big.operationsPerSecond, small.operationsPerSecond));
        };
        flatness.addRow({type, number(largest->bindings) + " vs " + number(smallest->bindings),
                         flat(largest->mapLookup, smallest->mapLookup, false),
                         flat(largest->route, smallest->route, false),
                         flat(largest->route, smallest->route, true),
                         flat(largest->cold, smallest->cold, false),
                         flat(largest->trieOnly, smallest->trieOnly, false),
                         flat(largest->publish, smallest->publish, false),
                         flat(largest->publish, smallest->publish, true),
                         formatRatio(ratio(largest->bytesPerBinding, smallest->bytesPerBinding))});
    }
    flatness.print(out);
    out << "\nPublish reuses prebuilt messages (no body copy); publish+copy builds one message per "
           "publish. Direct and topic routes/s hit the exchange's route cache ("
        << core::TopicExchange::MAX_CACHED_KEYS
        << " keys); cold routes/s never does. Fanout stops at " << FANOUT_MAX_BINDINGS
        << " bindings, one queue each (skipped above that): every fanout message goes to every "
           "queue, so larger N measures N-way delivery rather than routing.\n";
}

void writeRateJson(std::ostream& out, const char* name, const Rate& rate) {
    out << "      " << jsonString(name) << ": ";
    if (!rate.measured) {
        out << "null";
        return;
    }
    out << "{\"perSecond\": " << jsonNumber(rate.operationsPerSecond)
        << ", \"itemsPerSecond\": " << jsonNumber(rate.itemsPerSecond)
        << ", \"minPerSecond\": " << jsonNumber(rate.minOperationsPerSecond)
        << ", \"maxPerSecond\": " << jsonNumber(rate.maxOperationsPerSecond)
        << ", \"operations\": " << rate.operations << ", \"seconds\": " << jsonNumber(rate.seconds)
        << "}";
}

void writeJson(const std::string& path, const std::vector<CaseResult>& results,
               const RouteBenchOptions& options) {
    std::ofstream out(path);
    if (!out)
        throw BenchError("cannot write " + path);
    out << "{\n  \"benchmark\": \"route\",\n  \"secondsPerMeasurement\": "
        << jsonNumber(options.seconds) << ",\n  \"smoke\": " << (options.smoke ? "true" : "false")
        << ",\n  \"cases\": [\n";
    for (std::size_t i = 0; i < results.size(); ++i) {
        const CaseResult& r = results[i];
        out << "    {\n      \"type\": " << jsonString(r.type)
            << ",\n      \"bindings\": " << r.bindings << ",\n      \"queues\": " << r.queues
            << ",\n      \"skipped\": " << (r.skipped.empty() ? "null" : jsonString(r.skipped))
            << ",\n";
        writeRateJson(out, "mapLookup", r.mapLookup); // the baseline
        out << ",\n";
        writeRateJson(out, "route", r.route); // items = destinations
        out << ",\n";
        writeRateJson(out, "coldRoute", r.cold);
        out << ",\n";
        writeRateJson(out, "coldTrieOnly", r.trieOnly);
        out << ",\n";
        writeRateJson(out, "publish", r.publish); // items = deliveries
        out << ",\n";
        writeRateJson(out, "publishCopy", r.publishCopy);
        out << ",\n      \"bytesPerBinding\": "
            << (r.skipped.empty() ? jsonNumber(r.bytesPerBinding) : "null") << "\n    }"
            << (i + 1 < results.size() ? "," : "") << "\n";
    }
    out << "  ]\n}\n";
    if (!out)
        throw BenchError("cannot write " + path);
}

void runRoute(RouteBenchOptions options) {
    if (options.smoke) {
        options.bindings = {10, 100};
        options.seconds = 0.05;
    }
    const std::size_t coldKeyCount = options.smoke ? SMOKE_COLD_KEYS : COLD_KEYS;

    std::vector<CaseResult> results;
    for (const std::string& type : options.types)
        for (std::size_t bindings : options.bindings) {
            std::cerr << type << " " << bindings << "...\n";
            results.push_back(runCase(type, bindings, options, coldKeyCount));
        }
    printResults(results, std::cout);
    if (!options.jsonPath.empty())
        writeJson(options.jsonPath, results, options);
}

} // namespace

void addRouteCommand(CLI::App& app) {
    // Shared with the callback, which runs after parsing fills it in.
    auto options = std::make_shared<RouteBenchOptions>();
    CLI::App* route = app.add_subcommand("route", ROUTE_DESCRIPTION);
    route->footer(ROUTE_FOOTER);
    route->add_option("--bindings", options->bindings, "binding counts N, comma-separated")
        ->delimiter(',')
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    route->add_option("--types", options->types, "exchange types, comma-separated")
        ->delimiter(',')
        ->check(CLI::IsMember({"topic", "direct", "fanout"}))
        ->capture_default_str();
    route->add_option("--seconds", options->seconds, "time budget of each measurement of a case")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    route->add_flag("--smoke", options->smoke,
                    "tiny run for a ctest: bindings 10,100 and 0.05 s per measurement; checks "
                    "only that the bench runs and prints, never speed");
    route->add_option("--json", options->jsonPath, "also write the results to this JSON file");
    route->callback([options]() {
        try {
            runRoute(*options);
        } catch (const std::exception& e) {
            std::cerr << "depot-bench route: " << e.what() << "\n";
            throw CLI::RuntimeError(1);
        }
    });
}

} // namespace depot::bench
