#include "broker/net/definitions.h"

#include "broker/store/write_all.h"
#include "protocol/convert.h"
#include "protocol/definitions.capnp.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <unistd.h>

namespace depot::net {

namespace {

using protocol::fromWire;
using protocol::text;
using protocol::toWire;
using protocol::view;
using protocol::wireText;

constexpr std::uint32_t FORMAT_VERSION = 1;

std::runtime_error fileError(const std::string& what, const std::filesystem::path& file) {
    return std::runtime_error(what + " " + file.string() + ": " + std::strerror(errno));
}

bool builtIn(const std::string& exchange) {
    return exchange.empty() || exchange.rfind("amq.", 0) == 0;
}

// The durable definitions of the broker, encoded; sorted, so equal definitions are equal bytes.
std::string encode(core::Broker& broker) {
    capnp::MallocMessageBuilder message;
    auto root = message.initRoot<wire::Definitions>();
    root.setFormatVersion(FORMAT_VERSION);
    std::vector<std::string> names = broker.vhostNames();
    std::sort(names.begin(), names.end());
    auto vhosts = root.initVhosts(static_cast<unsigned>(names.size()));
    for (unsigned v = 0; v < names.size(); ++v) {
        const core::Vhost& vhost = *broker.findVhost(names[v]);
        vhosts[v].setName(wireText(names[v]));

        std::vector<core::ExchangeInfo> exchanges = vhost.listExchanges();
        std::sort(exchanges.begin(), exchanges.end(),
                  [](const auto& a, const auto& b) { return a.name < b.name; });
        std::set<std::string> durableExchanges;
        std::vector<const core::ExchangeInfo*> keptExchanges;
        for (const core::ExchangeInfo& x : exchanges) {
            if (!x.options.durable)
                continue;
            durableExchanges.insert(x.name);
            if (!builtIn(x.name))
                keptExchanges.push_back(&x);
        }
        auto xs = vhosts[v].initExchanges(static_cast<unsigned>(keptExchanges.size()));
        for (unsigned i = 0; i < keptExchanges.size(); ++i) {
            const core::ExchangeInfo& x = *keptExchanges[i];
            xs[i].setName(wireText(x.name));
            xs[i].setType(toWire(x.type));
            xs[i].setDurable(true);
            xs[i].setAutoDelete(x.options.autoDelete);
            xs[i].setInternal(x.options.internal);
            toWire(x.options.arguments,
                   xs[i].initArguments(static_cast<unsigned>(x.options.arguments.size())));
        }

        std::vector<core::QueueInfo> queues = vhost.listQueues();
        std::sort(queues.begin(), queues.end(),
                  [](const auto& a, const auto& b) { return a.name < b.name; });
        std::set<std::string> durableQueues;
        std::vector<const core::QueueInfo*> keptQueues;
        for (const core::QueueInfo& q : queues) {
            if (q.options.durable && !q.options.exclusive) {
                durableQueues.insert(q.name);
                keptQueues.push_back(&q);
            }
        }
        auto qs = vhosts[v].initQueues(static_cast<unsigned>(keptQueues.size()));
        for (unsigned i = 0; i < keptQueues.size(); ++i) {
            const core::QueueInfo& q = *keptQueues[i];
            qs[i].setName(wireText(q.name));
            qs[i].setDurable(true);
            qs[i].setAutoDelete(q.options.autoDelete);
            const core::FieldTable arguments = core::queueArguments(q.options);
            toWire(arguments, qs[i].initArguments(static_cast<unsigned>(arguments.size())));
        }

        std::vector<core::BindingInfo> bindings = vhost.listBindings();
        std::vector<const core::BindingInfo*> keptBindings;
        for (const core::BindingInfo& b : bindings) {
            const bool destinationDurable = b.destinationIsExchange
                                                ? durableExchanges.count(b.destination) > 0
                                                : durableQueues.count(b.destination) > 0;
            if (!b.source.empty() && durableExchanges.count(b.source) && destinationDurable)
                keptBindings.push_back(&b);
        }
        std::sort(keptBindings.begin(), keptBindings.end(), [](const auto* a, const auto* b) {
            return std::tie(a->source, a->destination, a->destinationIsExchange, a->key) <
                   std::tie(b->source, b->destination, b->destinationIsExchange, b->key);
        });
        auto bs = vhosts[v].initBindings(static_cast<unsigned>(keptBindings.size()));
        for (unsigned i = 0; i < keptBindings.size(); ++i) {
            const core::BindingInfo& b = *keptBindings[i];
            bs[i].setSource(wireText(b.source));
            bs[i].setDestination(wireText(b.destination));
            bs[i].setToExchange(b.destinationIsExchange);
            bs[i].setKey(wireText(b.key));
            toWire(b.arguments, bs[i].initArguments(static_cast<unsigned>(b.arguments.size())));
        }
    }
    const kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
    return std::string(words.asChars().begin(), words.asChars().size());
}

void writeAtomically(const std::filesystem::path& file, const std::string& bytes) {
    const std::filesystem::path temporary = file.string() + ".tmp";
    const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        throw fileError("cannot create", temporary);
    if (!store::writeAll(fd, bytes)) {
        const std::runtime_error error = fileError("cannot write", temporary);
        ::close(fd);
        ::unlink(temporary.c_str());
        throw error;
    }
    if (::fsync(fd) != 0) {
        const std::runtime_error error = fileError("cannot sync", temporary);
        ::close(fd);
        ::unlink(temporary.c_str());
        throw error;
    }
    ::close(fd);
    if (::rename(temporary.c_str(), file.c_str()) != 0)
        throw fileError("cannot replace", file);
    const int directory = ::open(file.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (directory >= 0) {
        (void)::fsync(directory);
        ::close(directory);
    }
}

template <class R> void check(const R& result, const std::string& what) {
    if (!result)
        throw std::runtime_error(what + ": " + result.error().describe());
}

} // namespace

DefinitionsFile::Loaded DefinitionsFile::load(core::Broker& broker, core::TimePoint now) {
    Loaded loaded;
    std::ifstream in(file_, std::ios::binary);
    if (!in)
        return loaded; // a first start
    const std::string bytes((std::istreambuf_iterator<char>(in)), {});
    const std::string where = "definitions " + file_.string();
    if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0)
        throw std::runtime_error(where + ": damaged (" + std::to_string(bytes.size()) + " bytes)");
    kj::Array<capnp::word> words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
    std::memcpy(words.begin(), bytes.data(), bytes.size());
    try {
        capnp::FlatArrayMessageReader reader(words.asPtr());
        const auto root = reader.getRoot<wire::Definitions>();
        if (root.getFormatVersion() != FORMAT_VERSION)
            throw std::runtime_error(where + ": format version " +
                                     std::to_string(root.getFormatVersion()) +
                                     " is not one this depotd knows");
        for (const auto v : root.getVhosts()) {
            const std::string name = text(v.getName());
            core::Vhost* vhost = broker.findVhost(name);
            if (vhost == nullptr) {
                auto added = broker.addVhost(name);
                check(added, where + ": vhost '" + name + "'");
                vhost = *added;
            }
            core::Channel& channel = vhost->openChannel();
            for (const auto x : v.getExchanges()) {
                check(channel.declareExchange(view(x.getName()), fromWire(x.getType()),
                                              core::exchangeOptionsFromArguments(
                                                  true, x.getAutoDelete(), x.getInternal(),
                                                  fromWire(x.getArguments()))),
                      where + ": exchange '" + text(x.getName()) + "'");
                ++loaded.exchanges;
            }
            for (const auto q : v.getQueues()) {
                const auto options = core::queueOptionsFromArguments(true, false, q.getAutoDelete(),
                                                                     fromWire(q.getArguments()));
                check(options, where + ": queue '" + text(q.getName()) + "'");
                check(channel.declareQueue(view(q.getName()), *options, now),
                      where + ": queue '" + text(q.getName()) + "'");
                ++loaded.queues;
            }
            for (const auto b : v.getBindings()) {
                const core::FieldTable arguments = fromWire(b.getArguments());
                const std::string what = where + ": binding of '" + text(b.getDestination()) +
                                         "' to '" + text(b.getSource()) + "'";
                if (b.getToExchange())
                    check(channel.bindExchange(view(b.getDestination()), view(b.getSource()),
                                               view(b.getKey()), arguments),
                          what);
                else
                    check(channel.bindQueue(view(b.getDestination()), view(b.getSource()),
                                            view(b.getKey()), arguments),
                          what);
                ++loaded.bindings;
            }
            vhost->closeChannel(channel, now);
        }
    } catch (const kj::Exception& e) {
        throw std::runtime_error(where + ": damaged: " + e.getDescription().cStr());
    }
    saved_ = encode(broker);
    return loaded;
}

void DefinitionsFile::saveIfChanged(core::Broker& broker) {
    std::string bytes = encode(broker);
    if (bytes == saved_)
        return;
    writeAtomically(file_, bytes);
    saved_ = std::move(bytes);
}

} // namespace depot::net
