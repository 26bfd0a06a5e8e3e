// "Nothing crashes on any input": seeded random sequences of every channel operation over a few
// names, with invariants checked after each step against a model built only from what the
// core returned and what the sinks saw. Run under ASan/UBSan, this is the test that finds
// dangling pointers (deleted queues, closed channels, cancelled consumers) and bookkeeping
// drift (unacked counts, prefetch, consumer counts). A failure prints the seed and the step.

#include "broker/core/broker.h"
#include "tests/support/core_helpers.h"
#include "tests/support/recording_sink.h"

#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

using namespace depot::core;
using namespace depot::tests;

// Hundreds of thousands of checks run here: a passing one must cost no more than the comparison, so
// the doctest assertion (which stops the run at the first failure) is only built when it fails. The
// arguments are evaluated again on failure, so they must have no side effects.
#define DEPOT_EXPECT(...)                                                                          \
    do {                                                                                           \
        if (!(__VA_ARGS__))                                                                        \
            REQUIRE(__VA_ARGS__);                                                                  \
    } while (0)
#define DEPOT_EXPECT_FALSE(...) DEPOT_EXPECT(!(__VA_ARGS__))
#define DEPOT_EXPECT_MESSAGE(cond, message)                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            REQUIRE_MESSAGE(cond, message);                                                        \
    } while (0)

namespace {

class Rng {
public:
    explicit Rng(std::uint64_t seed) : engine_(seed) {}
    // Uniform in [0, n).
    std::size_t below(std::size_t n) {
        return std::uniform_int_distribution<std::size_t>(0, n - 1)(engine_);
    }
    bool chance(int percent) { return static_cast<int>(below(100)) < percent; }
    template <class C> const auto& pick(const C& items) { return items[below(items.size())]; }

private:
    std::mt19937_64 engine_;
};

// One unacked delivery, as the model sees it.
struct Outstanding {
    std::string queue;
    std::uint64_t queueGeneration = 0; // which incarnation of a queue of that name
    std::uint64_t consumerId = 0;      // 0 for basic.get
};

struct ModelConsumer {
    std::uint64_t id = 0;
    std::string queue;
    std::uint32_t prefetchCount = 0;
    bool noAck = false;
};

// A channel, its sink, and what the model knows about it.
struct Slot {
    Channel* channel = nullptr;
    RecordingSink sink; // outlives the channel's consumers: they end when the channel closes
    std::size_t seenDeliveries = 0;
    std::size_t seenCancels = 0;
    std::uint64_t lastDeliveryTag = 0;
    std::map<std::uint64_t, Outstanding> outstanding; // by delivery tag
    std::map<std::string, ModelConsumer> consumers;   // by consumer tag
};

const std::vector<std::string> QUEUES = {"q0", "q1", "q2", "q3", "q4"};
const std::vector<std::string> EXCHANGES = {"x0", "x1", "x2"};
const std::vector<std::string> ANY_EXCHANGE = {"x0",        "x1",         "x2",          "",
                                               "amq.topic", "amq.fanout", "amq.headers", "missing"};
const std::vector<std::string> KEYS = {"",    "a",  "b",  "a.b", "a.*", "#",
                                       "*.b", "q0", "q1", "q2",  "q3",  "q4"};
const std::vector<std::string> CONSUMER_TAGS = {"", "c0", "c1", "c2"};

// Drives one Broker with random operations and checks the model after each.
class Harness {
public:
    // `conserving`: a fixed topology with no deletes, purges, TTLs, limits or dead-lettering,
    // where every message can be accounted for exactly.
    Harness(std::uint64_t seed, bool conserving) : rng_(seed), conserving_(conserving) {
        for (Slot& slot : slots_)
            slot.channel = &vhost_.openChannel();
        if (conserving_)
            buildFixedTopology();
    }

    void run(int steps) {
        for (step_ = 0; step_ < steps; ++step_) {
            snapshotGenerations();
            if (rng_.chance(30))
                now_ += Milliseconds(static_cast<std::int64_t>(rng_.below(20)));
            const std::size_t s = rng_.below(slots_.size());
            INFO("step " << step_);
            doRandomOperation(s);
            checkInvariants();
        }
    }

    std::uint64_t deliveriesSeen() const { return deliveriesSeen_; }

private:
    // --- operations ---

    enum class Op {
        PUBLISH,
        CONSUME,
        CANCEL,
        SETTLE,
        GET,
        RECOVER,
        FLOW,
        ADVANCE,
        CLOSE_CHANNEL,
        DECLARE_QUEUE,
        DELETE_QUEUE,
        PURGE,
        DECLARE_EXCHANGE,
        DELETE_EXCHANGE,
        BIND,
        UNBIND
    };

    Op randomOperation() {
        // Weights: mostly message traffic, with enough topology churn in the full run to
        // delete queues and exchanges from under consumers, bindings and unacked deliveries.
        static const std::vector<std::pair<Op, int>> traffic = {
            {Op::PUBLISH, 25}, {Op::CONSUME, 8}, {Op::CANCEL, 4},
            {Op::SETTLE, 14},  {Op::GET, 10},    {Op::RECOVER, 2},
            {Op::FLOW, 3},     {Op::ADVANCE, 6}, {Op::CLOSE_CHANNEL, 2}};
        static const std::vector<std::pair<Op, int>> topology = {
            {Op::DECLARE_QUEUE, 8},   {Op::DELETE_QUEUE, 2},
            {Op::PURGE, 2},           {Op::DECLARE_EXCHANGE, 4},
            {Op::DELETE_EXCHANGE, 1}, {Op::BIND, 7},
            {Op::UNBIND, 3}};
        int total = 0;
        for (const auto& [op, weight] : traffic)
            total += weight;
        if (!conserving_)
            for (const auto& [op, weight] : topology)
                total += weight;
        int roll = static_cast<int>(rng_.below(static_cast<std::size_t>(total)));
        for (const auto* table : {&traffic, &topology})
            for (const auto& [op, weight] : *table)
                if ((roll -= weight) < 0)
                    return op;
        return Op::PUBLISH;
    }

    void doRandomOperation(std::size_t s) {
        Slot& slot = slots_[s];
        Channel& ch = *slot.channel;
        switch (randomOperation()) {
        case Op::PUBLISH:
            return doPublish(ch);
        case Op::CONSUME:
            return doConsume(s);
        case Op::CANCEL:
            return doCancel(s);
        case Op::SETTLE:
            return doSettle(s);
        case Op::GET:
            return doGet(s);
        case Op::RECOVER:
            return doRecover(s);
        case Op::FLOW:
            ch.setFlow(rng_.chance(70), now_);
            return afterOperation();
        case Op::ADVANCE:
            return doAdvance();
        case Op::CLOSE_CHANNEL:
            return doCloseChannel(s);
        case Op::DECLARE_QUEUE:
            return doDeclareQueue(ch);
        case Op::DELETE_QUEUE:
            return doDeleteQueue(ch);
        case Op::PURGE:
            (void)ch.purgeQueue(rng_.pick(QUEUES), now_);
            return afterOperation();
        case Op::DECLARE_EXCHANGE:
            return doDeclareExchange(ch);
        case Op::DELETE_EXCHANGE:
            (void)ch.deleteExchange(rng_.pick(EXCHANGES), rng_.chance(50));
            return afterOperation();
        case Op::BIND:
            return doBind(ch, true);
        case Op::UNBIND:
            return doBind(ch, false);
        }
    }

    Properties randomProperties() {
        Properties properties;
        if (!conserving_ && rng_.chance(20))
            properties.expiration = Milliseconds(static_cast<std::int64_t>(rng_.below(80)));
        if (rng_.chance(30))
            properties.headers.set(rng_.chance(50) ? "a" : "b", rng_.chance(50)
                                                                    ? FieldValue{std::string("1")}
                                                                    : FieldValue{std::int64_t{1}});
        return properties;
    }

    void doPublish(Channel& ch) {
        const std::string& exchange =
            conserving_ ? rng_.pick(FIXED_EXCHANGES) : rng_.pick(ANY_EXCHANGE);
        const std::string& key = rng_.pick(KEYS);
        Properties properties = randomProperties();
        std::string body = "p" + std::to_string(nextBody_++);
        publishedAt_[body] = now_;
        std::vector<Queue*> expected;
        Status routable = vhost_.route(exchange, key, properties.headers, expected);
        const bool mandatory = rng_.chance(30);
        auto result = ch.publish(exchange, key, std::move(properties), body, mandatory, now_);
        if (conserving_) {
            DEPOT_EXPECT_MESSAGE(result.ok(), describe(result));
            DEPOT_EXPECT(result->queues == expected.size());
            DEPOT_EXPECT(result->returned == (mandatory && expected.empty()));
            DEPOT_EXPECT_FALSE(result->rejected);
            for (Queue* q : expected)
                ++readyModel_[q->name()];
            routed_ += expected.size();
        } else if (result.ok()) {
            DEPOT_EXPECT(routable.ok());
            DEPOT_EXPECT(result->queues == expected.size());
            DEPOT_EXPECT(result->returned == (mandatory && expected.empty()));
        } else {
            // Only a missing or internal exchange makes a publish fail here.
            const ErrorCode code = result.error().code;
            DEPOT_EXPECT((code == ErrorCode::NOT_FOUND || code == ErrorCode::ACCESS_REFUSED));
        }
        afterOperation();
    }

    void doConsume(std::size_t s) {
        Slot& slot = slots_[s];
        const std::string& queue = rng_.pick(conserving_ ? FIXED_QUEUES : QUEUES);
        ConsumeOptions options;
        options.consumerTag = rng_.pick(CONSUMER_TAGS);
        options.prefetchCount = static_cast<std::uint32_t>(rng_.below(4));
        options.noAck = rng_.chance(20);
        options.exclusive = rng_.chance(5);
        auto tag = slot.channel->consume(queue, slot.sink, options, now_);
        if (tag.ok()) {
            DEPOT_EXPECT_FALSE(slot.consumers.contains(*tag));
            slot.consumers[*tag] =
                ModelConsumer{nextConsumerId_++, queue, options.prefetchCount, options.noAck};
        } else {
            const ErrorCode code = tag.error().code;
            DEPOT_EXPECT((code == ErrorCode::NOT_FOUND || code == ErrorCode::NOT_ALLOWED ||
                          code == ErrorCode::ACCESS_REFUSED || code == ErrorCode::RESOURCE_LOCKED));
            if (code == ErrorCode::NOT_ALLOWED)
                DEPOT_EXPECT(slot.consumers.contains(options.consumerTag));
        }
        afterOperation();
    }

    void doCancel(std::size_t s) {
        Slot& slot = slots_[s];
        std::string tag = "c9";
        if (!slot.consumers.empty() && rng_.chance(85)) {
            auto it = slot.consumers.begin();
            std::advance(it, static_cast<std::ptrdiff_t>(rng_.below(slot.consumers.size())));
            tag = it->first;
        }
        Status cancelled = slot.channel->cancel(tag, now_);
        DEPOT_EXPECT(cancelled.ok());
        afterOperation();
        slot.consumers.erase(tag);
    }

    // ack / nack / reject, with a tag the model knows or a random one; the core must agree
    // with the model on which tags are valid.
    void doSettle(std::size_t s) {
        Slot& slot = slots_[s];
        std::uint64_t tag = 0;
        if (!slot.outstanding.empty() && rng_.chance(80)) {
            auto it = slot.outstanding.begin();
            std::advance(it, static_cast<std::ptrdiff_t>(rng_.below(slot.outstanding.size())));
            tag = it->first;
        } else {
            tag = rng_.below(slot.lastDeliveryTag + 3);
        }
        const int kind = static_cast<int>(rng_.below(3)); // ack, nack, reject
        const bool multiple = kind != 2 && rng_.chance(30);
        const bool requeue = rng_.chance(50);
        const bool valid = (multiple && tag == 0) || slot.outstanding.contains(tag);

        Status status = kind == 0   ? slot.channel->ack(tag, multiple, now_)
                        : kind == 1 ? slot.channel->nack(tag, multiple, requeue, now_)
                                    : slot.channel->reject(tag, requeue, now_);
        DEPOT_EXPECT_MESSAGE(status.ok() == valid,
                             "tag " << tag << " multiple " << multiple << ": " << describe(status));
        if (status.ok()) {
            std::vector<std::uint64_t> settled;
            for (const auto& [t, delivery] : slot.outstanding)
                if (t == tag || (multiple && (tag == 0 || t <= tag)))
                    settled.push_back(t);
            for (std::uint64_t t : settled) {
                if (conserving_) {
                    if (kind != 0 && requeue)
                        ++readyModel_[slot.outstanding[t].queue];
                    else
                        ++removed_;
                }
                slot.outstanding.erase(t);
            }
        }
        afterOperation();
    }

    void doGet(std::size_t s) {
        Slot& slot = slots_[s];
        const std::string& queue = rng_.pick(conserving_ ? FIXED_QUEUES : QUEUES);
        const bool noAck = rng_.chance(40);
        auto got = slot.channel->get(queue, noAck, now_);
        if (got.ok() && got->has_value()) {
            const Delivery& delivery = **got;
            DEPOT_EXPECT(delivery.consumerTag.empty());
            DEPOT_EXPECT(delivery.deliveryTag > slot.lastDeliveryTag);
            slot.lastDeliveryTag = delivery.deliveryTag;
            checkDelivered(queue, delivery.message, delivery.redelivered);
            if (!noAck)
                slot.outstanding[delivery.deliveryTag] =
                    Outstanding{queue, generationBefore(queue), 0};
            if (conserving_) {
                --readyModel_[queue];
                if (noAck)
                    ++removed_;
            }
        } else if (!got.ok()) {
            const ErrorCode code = got.error().code;
            DEPOT_EXPECT((code == ErrorCode::NOT_FOUND || code == ErrorCode::RESOURCE_LOCKED));
        }
        afterOperation();
    }

    void doRecover(std::size_t s) {
        Slot& slot = slots_[s];
        if (conserving_)
            for (const auto& [tag, delivery] : slot.outstanding)
                ++readyModel_[delivery.queue];
        slot.outstanding.clear(); // before the redeliveries the recover itself causes
        slot.channel->recover(now_);
        afterOperation();
    }

    void doCloseChannel(std::size_t s) {
        Slot& slot = slots_[s];
        if (conserving_)
            for (const auto& [tag, delivery] : slot.outstanding)
                ++readyModel_[delivery.queue];
        const std::size_t before = slot.sink.size();
        vhost_.closeChannel(*slot.channel, now_);
        DEPOT_EXPECT(slot.sink.size() ==
                     before); // its consumers ended before anything was requeued
        slot.outstanding.clear();
        slot.consumers.clear();
        slot.sink.clear();
        slot.seenDeliveries = 0;
        slot.seenCancels = 0;
        slot.lastDeliveryTag = 0;
        afterOperation();
        slot.channel = &vhost_.openChannel();
    }

    void doAdvance() {
        if (rng_.chance(30) && broker_.nextDeadline() != NEVER)
            now_ = std::max(now_, broker_.nextDeadline());
        broker_.advanceTo(now_);
        DEPOT_EXPECT(broker_.nextDeadline() > now_);
        afterOperation();
    }

    void doDeclareQueue(Channel& ch) {
        const std::string name = rng_.chance(5) ? std::string() : rng_.pick(QUEUES);
        QueueOptions options;
        options.exclusive = rng_.chance(10);
        options.autoDelete = rng_.chance(15);
        if (rng_.chance(25))
            options.messageTtl = Milliseconds(static_cast<std::int64_t>(rng_.below(100)));
        if (rng_.chance(10))
            options.expires = Milliseconds(static_cast<std::int64_t>(50 + rng_.below(450)));
        if (rng_.chance(20))
            options.maxLength = rng_.below(4);
        if (rng_.chance(10))
            options.maxLengthBytes = 5 + rng_.below(26);
        if (options.maxLength || options.maxLengthBytes)
            options.overflow = static_cast<Overflow>(rng_.below(3));
        if (rng_.chance(30)) {
            options.deadLetterExchange = rng_.chance(30) ? std::string() : rng_.pick(ANY_EXCHANGE);
            if (rng_.chance(50))
                options.deadLetterRoutingKey = rng_.pick(QUEUES);
        }
        auto declared = ch.declareQueue(name, options, now_);
        if (declared.ok() && name.empty()) {
            // Server-named: delete it again at once so the model's name set stays small.
            DEPOT_EXPECT(declared->queue.starts_with("amq.gen-"));
            auto deleted = ch.deleteQueue(declared->queue, false, false, now_);
            DEPOT_EXPECT(deleted.ok());
        }
        afterOperation();
    }

    void doDeleteQueue(Channel& ch) {
        auto deleted = ch.deleteQueue(rng_.pick(QUEUES), rng_.chance(30), rng_.chance(30), now_);
        if (!deleted.ok()) {
            const ErrorCode code = deleted.error().code;
            DEPOT_EXPECT(
                (code == ErrorCode::PRECONDITION_FAILED || code == ErrorCode::RESOURCE_LOCKED));
        }
        afterOperation();
    }

    void doDeclareExchange(Channel& ch) {
        ExchangeOptions options;
        options.autoDelete = rng_.chance(20);
        options.internal = rng_.chance(10);
        if (rng_.chance(20))
            options.alternateExchange = rng_.pick(ANY_EXCHANGE);
        const auto type = static_cast<ExchangeType>(rng_.below(4));
        Status declared = ch.declareExchange(rng_.pick(EXCHANGES), type, options);
        if (!declared.ok())
            DEPOT_EXPECT(declared.error().code == ErrorCode::PRECONDITION_FAILED);
        afterOperation();
    }

    void doBind(Channel& ch, bool bind) {
        const std::string& source = rng_.pick(ANY_EXCHANGE);
        const std::string& key = rng_.pick(KEYS);
        FieldTable arguments;
        if (rng_.chance(30)) {
            arguments.set("x-match", std::string(rng_.pick(std::vector<std::string>{
                                         "all", "any", "all-with-x", "any-with-x", "bad"})));
            arguments.set("a", std::string("1"));
        }
        if (rng_.chance(25)) {
            const std::string& destination = rng_.pick(EXCHANGES);
            (void)(bind ? ch.bindExchange(destination, source, key, arguments)
                        : ch.unbindExchange(destination, source, key, arguments));
        } else {
            const std::string& queue = rng_.pick(QUEUES);
            (void)(bind ? ch.bindQueue(queue, source, key, arguments)
                        : ch.unbindQueue(queue, source, key, arguments));
        }
        afterOperation();
    }

    // --- the model ---

    void buildFixedTopology() {
        Channel& ch = *slots_[0].channel;
        for (const std::string& q : FIXED_QUEUES)
            declareQueue(ch, q);
        declareExchange(ch, "fan", ExchangeType::FANOUT);
        declareExchange(ch, "top", ExchangeType::TOPIC);
        declareExchange(ch, "hdr", ExchangeType::HEADERS);
        DEPOT_REQUIRE_OK(ch.bindQueue("q0", "fan", ""));
        DEPOT_REQUIRE_OK(ch.bindQueue("q1", "fan", ""));
        DEPOT_REQUIRE_OK(ch.bindQueue("q1", "top", "a.#"));
        DEPOT_REQUIRE_OK(ch.bindQueue("q2", "top", "#.b"));
        DEPOT_REQUIRE_OK(ch.bindQueue("q2", "hdr", "", FieldTable{{"x-match", "any"}, {"a", "1"}}));
        DEPOT_REQUIRE_OK(ch.bindExchange("top", "fan", ""));
    }

    std::uint64_t generationBefore(const std::string& queue) const {
        auto it = generationBefore_.find(queue);
        return it == generationBefore_.end() ? 0 : it->second;
    }

    // Before each step: the generation of every queue name, so deliveries made during the step
    // are attributed to the incarnation that made them even if the step then deleted it.
    void snapshotGenerations() { generationBefore_ = generation_; }

    void updateGenerations() {
        for (const std::string& name : QUEUES) {
            const Queue* now = vhost_.findQueue(name);
            auto it = alive_.find(name);
            const Queue* before = it == alive_.end() ? nullptr : it->second;
            if (now != nullptr && before == nullptr)
                ++generation_[name]; // created
            else if (now == nullptr && before != nullptr)
                ++generation_[name]; // deleted: its deliveries are orphans now
            alive_[name] = now;
        }
    }

    // A delivered message was never expired when delivered, and "redelivered" means it was
    // delivered from this queue before.
    void checkDelivered(const std::string& queue, const MessageRef& message, bool redelivered) {
        ++deliveriesSeen_;
        const auto key = std::make_tuple(queue, generationBefore(queue), message.get());
        if (redelivered)
            DEPOT_EXPECT_MESSAGE(delivered_.contains(key),
                                 "redelivered but never delivered: " << message->body << " from "
                                                                     << queue);
        delivered_.insert(key);
        auto published = publishedAt_.find(message->body);
        DEPOT_EXPECT(published != publishedAt_.end());
        if (message->properties.expiration)
            DEPOT_EXPECT(now_ <= published->second + *message->properties.expiration);
        const Queue* q = vhost_.findQueue(queue);
        if (q != nullptr && q->options().messageTtl && message->deaths.empty())
            DEPOT_EXPECT(now_ <= published->second + *q->options().messageTtl);
    }

    // Reads what the sinks saw during the operation into the model.
    void afterOperation() {
        for (Slot& slot : slots_) {
            const auto& deliveries = slot.sink.deliveries();
            for (; slot.seenDeliveries < deliveries.size(); ++slot.seenDeliveries) {
                const RecordedDelivery& d = deliveries[slot.seenDeliveries];
                auto consumer = slot.consumers.find(d.consumerTag);
                DEPOT_EXPECT_MESSAGE(consumer != slot.consumers.end(),
                                     "delivery to unknown consumer " << d.consumerTag);
                DEPOT_EXPECT(d.deliveryTag > slot.lastDeliveryTag);
                slot.lastDeliveryTag = d.deliveryTag;
                const std::string& queue = consumer->second.queue;
                checkDelivered(queue, d.message, d.redelivered);
                if (!consumer->second.noAck)
                    slot.outstanding[d.deliveryTag] =
                        Outstanding{queue, generationBefore(queue), consumer->second.id};
                if (conserving_) {
                    --readyModel_[queue];
                    if (consumer->second.noAck)
                        ++removed_;
                }
            }
            const auto& cancels = slot.sink.cancelled();
            for (; slot.seenCancels < cancels.size(); ++slot.seenCancels) {
                const std::size_t erased = slot.consumers.erase(cancels[slot.seenCancels]);
                DEPOT_EXPECT_MESSAGE(erased == 1, "server cancel of unknown consumer "
                                                      << cancels[slot.seenCancels]);
            }
        }
        updateGenerations();
    }

    void checkInvariants() {
        std::map<std::string, std::uint64_t> unacked;
        std::map<std::string, std::uint64_t> consumers;
        for (const Slot& slot : slots_) {
            DEPOT_EXPECT(slot.channel->unackedCount() == slot.outstanding.size());
            DEPOT_EXPECT(slot.channel->consumerCount() == slot.consumers.size());
            for (const auto& [tag, delivery] : slot.outstanding) {
                const auto generation = generation_.find(delivery.queue);
                if (generation != generation_.end() &&
                    delivery.queueGeneration == generation->second &&
                    vhost_.findQueue(delivery.queue) != nullptr)
                    ++unacked[delivery.queue];
            }
            for (const auto& entry : slot.consumers) {
                // Not a structured binding: doctest's message lambda captures it, which clang 14
                // rejects for structured bindings.
                const auto& tag = entry.first;
                const auto& consumer = entry.second;
                ++consumers[consumer.queue];
                DEPOT_EXPECT_MESSAGE(vhost_.findQueue(consumer.queue) != nullptr,
                                     "consumer " << tag << " on a deleted queue");
                if (consumer.prefetchCount > 0 && !consumer.noAck) {
                    std::uint64_t held = 0;
                    for (const auto& [t, delivery] : slot.outstanding)
                        held += delivery.consumerId == consumer.id;
                    DEPOT_EXPECT(held <= consumer.prefetchCount);
                }
            }
        }
        std::uint64_t inQueues = 0;
        for (const QueueInfo& info : vhost_.listQueues()) {
            CAPTURE(info.name);
            DEPOT_EXPECT(info.unacked == unacked[info.name]);
            DEPOT_EXPECT(info.consumers == consumers[info.name]);
            DEPOT_EXPECT((info.ready == 0) == (info.readyBytes == 0));
            DEPOT_EXPECT(info.exclusiveOwned == info.options.exclusive);
            if (info.options.overflow == Overflow::DROP_HEAD) {
                if (info.options.maxLength)
                    DEPOT_EXPECT(info.ready <= *info.options.maxLength);
                if (info.options.maxLengthBytes)
                    DEPOT_EXPECT(info.readyBytes <= *info.options.maxLengthBytes);
            }
            if (conserving_)
                DEPOT_EXPECT(info.ready == readyModel_[info.name]);
            inQueues += info.ready + info.unacked;
        }
        if (conserving_)
            DEPOT_EXPECT(inQueues + removed_ == routed_);
    }

    const std::vector<std::string> FIXED_QUEUES = {"q0", "q1", "q2"};
    const std::vector<std::string> FIXED_EXCHANGES = {"fan", "top", "hdr", ""};

    Rng rng_;
    bool conserving_;
    Broker broker_;
    Vhost& vhost_ = broker_.defaultVhost();
    std::array<Slot, 3> slots_;
    TimePoint now_ = T0;
    int step_ = 0;
    std::uint64_t nextBody_ = 1;
    std::uint64_t nextConsumerId_ = 1;
    std::uint64_t deliveriesSeen_ = 0;
    std::map<std::string, TimePoint> publishedAt_;
    std::map<std::string, std::uint64_t> generation_;
    std::map<std::string, std::uint64_t> generationBefore_;
    std::map<std::string, const Queue*> alive_;
    std::set<std::tuple<std::string, std::uint64_t, const Message*>> delivered_;
    // Conserving run only.
    std::map<std::string, std::uint64_t> readyModel_;
    std::uint64_t routed_ = 0;
    std::uint64_t removed_ = 0;
};

} // namespace

TEST_CASE("random operations on any topology never break the core's bookkeeping") {
    for (std::uint64_t seed : {1u, 2u, 3u, 4u}) {
        CAPTURE(seed);
        Harness harness(seed, false);
        harness.run(6000);
        REQUIRE(harness.deliveriesSeen() > 300); // the run did exercise delivery
    }
}

TEST_CASE("random operations on a fixed topology conserve every message") {
    for (std::uint64_t seed : {11u, 12u, 13u}) {
        CAPTURE(seed);
        Harness harness(seed, true);
        harness.run(6000);
        REQUIRE(harness.deliveriesSeen() > 1000);
    }
}
