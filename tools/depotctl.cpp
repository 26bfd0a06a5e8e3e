// depotctl: the admin CLI for a Depot broker, like rabbitmqadmin. Every command is one client
// connection (client/connection.h) that does one thing and exits: 0 on success, 1 when the
// broker refuses or cannot be reached, 2 on a usage error. Errors are one line on stderr.

#include "client/connection.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

using depot::client::Connection;
using depot::client::Listing;
using depot::client::ListKind;
using depot::core::FieldTable;
using depot::core::FieldValue;

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// "KEY=VALUE" -> a typed field: integers and true/false as such (x-message-ttl must be a
// number), anything else as text. Quote nothing: the shell already did.
FieldTable parseFields(const std::vector<std::string>& items, const char* option) {
    FieldTable table;
    for (const std::string& item : items) {
        const auto eq = item.find('=');
        if (eq == std::string::npos || eq == 0)
            throw UsageError(std::string(option) + " " + item + ": expected KEY=VALUE");
        const std::string key = item.substr(0, eq);
        const std::string value = item.substr(eq + 1);
        std::int64_t number = 0;
        const auto [end, error] =
            std::from_chars(value.data(), value.data() + value.size(), number);
        if (error == std::errc() && end == value.data() + value.size() && !value.empty())
            table.set(key, number);
        else if (value == "true" || value == "false")
            table.set(key, value == "true");
        else
            table.set(key, value);
    }
    return table;
}

std::string jsonEscape(std::string_view text) {
    std::string out = "\"";
    for (const char c : text) {
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\r':
            out += "\\r";
            break;
        case '\t':
            out += "\\t";
            break;
        default:
            if (static_cast<unsigned char>(c) < 0x20) {
                char buffer[8];
                std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
                out += buffer;
            } else {
                out += c;
            }
        }
    }
    return out + "\"";
}

std::string jsonValue(const FieldValue& value) {
    return std::visit(
        [](const auto& v) -> std::string {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::monostate>)
                return "null";
            else if constexpr (std::is_same_v<T, bool>)
                return v ? "true" : "false";
            else if constexpr (std::is_same_v<T, std::int64_t>)
                return std::to_string(v);
            else if constexpr (std::is_same_v<T, double>)
                return std::to_string(v);
            else
                return jsonEscape(v);
        },
        value);
}

std::string cellText(const FieldValue& value) {
    if (std::holds_alternative<std::monostate>(value))
        return "";
    if (const auto* s = std::get_if<std::string>(&value))
        return *s;
    return depot::core::fieldValueText(value);
}

void printListing(const Listing& listing, bool json) {
    if (json) {
        std::cout << "[";
        for (std::size_t r = 0; r < listing.rows.size(); ++r) {
            std::cout << (r ? ",\n " : "\n ") << "{";
            for (std::size_t c = 0; c < listing.columns.size(); ++c)
                std::cout << (c ? ", " : "") << jsonEscape(listing.columns[c]) << ": "
                          << jsonValue(listing.rows[r][c]);
            std::cout << "}";
        }
        std::cout << (listing.rows.empty() ? "]\n" : "\n]\n");
        return;
    }
    std::vector<std::size_t> widths;
    for (const std::string& column : listing.columns)
        widths.push_back(column.size());
    for (const auto& row : listing.rows)
        for (std::size_t c = 0; c < row.size(); ++c)
            widths[c] = std::max(widths[c], cellText(row[c]).size());
    auto printRow = [&](const std::vector<std::string>& cells) {
        std::string line;
        for (std::size_t c = 0; c < cells.size(); ++c) {
            line += cells[c];
            if (c + 1 < cells.size())
                line += std::string(widths[c] - cells[c].size() + 2, ' ');
        }
        std::cout << line << "\n";
    };
    printRow(listing.columns);
    for (const auto& row : listing.rows) {
        std::vector<std::string> cells;
        for (const FieldValue& v : row)
            cells.push_back(cellText(v));
        printRow(cells);
    }
}

void printMessage(const depot::client::Delivery& d, bool json) {
    if (json) {
        std::cout << "{\"exchange\": " << jsonEscape(d.exchange())
                  << ", \"routing_key\": " << jsonEscape(d.routingKey())
                  << ", \"redelivered\": " << (d.redelivered() ? "true" : "false")
                  << ", \"body\": " << jsonEscape(d.body()) << "}\n";
        return;
    }
    std::cout << "routing_key: " << d.routingKey() << "\nexchange: " << d.exchange()
              << "\nredelivered: " << (d.redelivered() ? "true" : "false") << "\nbody: " << d.body()
              << "\n";
}

depot::core::ExchangeType parseType(const std::string& text) {
    auto type = depot::core::parseExchangeType(text);
    if (!type)
        throw UsageError("--type " + text + ": expected direct, fanout, topic or headers");
    return *type;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"depotctl: administer a Depot broker (like rabbitmqadmin). Each command opens "
                 "one connection, does one thing, and exits 0; 1 if the broker refuses or "
                 "cannot be reached; 2 on a usage error."};
    std::string url = "depot://guest:guest@127.0.0.1:7672/";
    bool json = false;
    app.add_option("--url", url, "the broker: depot://user:pass@host:port/vhost")
        ->capture_default_str();
    app.add_flag("--json", json, "print results as JSON");
    app.require_subcommand(1);

    // list
    auto* list = app.add_subcommand("list", "list exchanges, queues, bindings, connections or "
                                            "consumers");
    std::string listWhat;
    list->add_option("what", listWhat, "exchanges|queues|bindings|connections|consumers")
        ->required()
        ->check(CLI::IsMember({"exchanges", "queues", "bindings", "connections", "consumers"}));

    // declare exchange|queue
    auto* declare = app.add_subcommand("declare", "declare an exchange or a queue");
    declare->require_subcommand(1);
    auto* declareExchange = declare->add_subcommand("exchange", "declare an exchange");
    std::string name;
    std::string type;
    bool durable = false;
    bool autoDelete = false;
    bool internal = false;
    bool exclusive = false;
    std::vector<std::string> arguments;
    declareExchange->add_option("name", name, "exchange name")->required();
    declareExchange->add_option("--type", type, "direct, fanout, topic or headers")->required();
    declareExchange->add_flag("--durable", durable, "survives a broker restart");
    declareExchange->add_flag("--auto-delete", autoDelete, "deleted when its last binding goes");
    declareExchange->add_flag("--internal", internal, "only reachable from other exchanges");
    declareExchange->add_option("--arg", arguments, "argument KEY=VALUE (alternate-exchange=ae)");
    auto* declareQueue = declare->add_subcommand("queue", "declare a queue");
    declareQueue->add_option("name", name, "queue name (\"\" lets the broker choose)")->required();
    declareQueue->add_flag("--durable", durable, "survives a broker restart");
    declareQueue->add_flag("--exclusive", exclusive,
                           "owned by this connection (so deleted when depotctl exits)");
    declareQueue->add_flag("--auto-delete", autoDelete, "deleted when its last consumer goes");
    declareQueue->add_option("--arg", arguments,
                             "x-argument KEY=VALUE (x-message-ttl=60000, x-max-length=10, "
                             "x-dead-letter-exchange=dlx, x-queue-mode=lazy, ...)");

    // delete exchange|queue
    auto* remove = app.add_subcommand("delete", "delete an exchange or a queue");
    std::string removeWhat;
    remove->add_option("what", removeWhat, "exchange|queue")
        ->required()
        ->check(CLI::IsMember({"exchange", "queue"}));
    remove->add_option("name", name, "its name")->required();

    // bind / unbind
    std::string source;
    std::string destination;
    std::string key;
    bool toExchange = false;
    auto addBindingOptions = [&](CLI::App* command) {
        command->add_option("source", source, "the source exchange")->required();
        command->add_option("destination", destination, "the destination queue (or exchange)")
            ->required();
        command->add_option("--key", key, "binding key");
        command->add_flag("--to-exchange", toExchange, "the destination is an exchange");
        command->add_option("--arg", arguments, "binding argument KEY=VALUE (x-match=all, ...)");
    };
    auto* bind = app.add_subcommand("bind", "bind a queue (or exchange) to an exchange");
    addBindingOptions(bind);
    auto* unbind = app.add_subcommand("unbind", "remove a binding");
    addBindingOptions(unbind);

    // publish
    auto* publish = app.add_subcommand("publish", "publish one message and wait for the broker's "
                                                  "confirm");
    std::string exchange;
    std::string routingKey;
    std::optional<std::string> body;
    std::vector<std::string> headers;
    bool persistent = false;
    bool mandatory = false;
    publish->add_option("exchange", exchange, "exchange (\"\" is the default exchange)")
        ->required();
    publish->add_option("routing_key", routingKey, "routing key")->required();
    publish->add_option("--body", body, "the body (read from stdin when absent)");
    publish->add_option("--header", headers, "header KEY=VALUE");
    publish->add_flag("--persistent", persistent, "delivery mode 2");
    publish->add_flag("--mandatory", mandatory, "fail (exit 1) if no queue receives it");

    // get
    auto* get = app.add_subcommand("get", "take up to N messages from a queue and print them");
    std::string queue;
    std::uint32_t count = 1;
    bool requeue = false;
    get->add_option("queue", queue, "queue")->required();
    get->add_option("--count", count, "at most this many messages")
        ->check(CLI::Range(1u, 1'000'000u))
        ->capture_default_str();
    get->add_flag("--requeue", requeue,
                  "put them all back afterwards, in their original positions (else ack them)");

    // purge
    auto* purge = app.add_subcommand("purge", "delete a queue's ready messages");
    purge->add_option("queue", queue, "queue")->required();

    // consume
    auto* consume = app.add_subcommand("consume", "consume and ack messages until N were printed");
    consume->add_option("queue", queue, "queue")->required();
    consume->add_option("--count", count, "stop after this many")
        ->check(CLI::Range(1u, 1'000'000'000u))
        ->capture_default_str();

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int code = app.exit(e);
        return code == 0 ? 0 : 2;
    }

    try {
        depot::client::ConnectionOptions options;
        options.clientName = "depotctl";
        options.reconnect = false;
        auto connection = Connection::open(url, options);

        if (list->parsed()) {
            static const std::map<std::string, ListKind> kinds = {
                {"exchanges", ListKind::EXCHANGES},
                {"queues", ListKind::QUEUES},
                {"bindings", ListKind::BINDINGS},
                {"connections", ListKind::CONNECTIONS},
                {"consumers", ListKind::CONSUMERS}};
            printListing(connection->list(kinds.at(listWhat)), json);
        } else if (declareExchange->parsed()) {
            depot::client::ExchangeDeclareOptions o;
            o.durable = durable;
            o.autoDelete = autoDelete;
            o.internal = internal;
            o.arguments = parseFields(arguments, "--arg");
            connection->declareExchange(name, parseType(type), o);
            std::cout << "exchange declared: " << name << "\n";
        } else if (declareQueue->parsed()) {
            depot::client::QueueDeclareOptions o;
            o.durable = durable;
            o.exclusive = exclusive;
            o.autoDelete = autoDelete;
            o.arguments = parseFields(arguments, "--arg");
            const auto declared = connection->declareQueue(name, o);
            if (json)
                std::cout << "{\"name\": " << jsonEscape(declared.name)
                          << ", \"messages\": " << declared.messageCount
                          << ", \"consumers\": " << declared.consumerCount << "}\n";
            else
                std::cout << "queue declared: " << declared.name << " (" << declared.messageCount
                          << " messages, " << declared.consumerCount << " consumers)\n";
        } else if (remove->parsed()) {
            if (removeWhat == "exchange") {
                connection->deleteExchange(name);
                std::cout << "exchange deleted: " << name << "\n";
            } else {
                const auto removed = connection->deleteQueue(name);
                std::cout << "queue deleted: " << name << " (" << removed << " messages)\n";
            }
        } else if (bind->parsed() || unbind->parsed()) {
            const FieldTable table = parseFields(arguments, "--arg");
            const bool binding = bind->parsed();
            if (toExchange) {
                if (binding)
                    connection->bindExchange(destination, source, key, table);
                else
                    connection->unbindExchange(destination, source, key, table);
            } else {
                if (binding)
                    connection->bindQueue(destination, source, key, table);
                else
                    connection->unbindQueue(destination, source, key, table);
            }
            std::cout << (binding ? "bound " : "unbound ") << destination << " to " << source
                      << " with key '" << key << "'\n";
        } else if (publish->parsed()) {
            if (!body) {
                body.emplace(std::istreambuf_iterator<char>(std::cin),
                             std::istreambuf_iterator<char>());
            }
            depot::client::PublishOptions o;
            o.mandatory = mandatory;
            o.properties.headers = parseFields(headers, "--header");
            if (persistent)
                o.properties.deliveryMode = depot::core::DeliveryMode::PERSISTENT;
            const auto confirmation =
                connection->publishConfirmed(exchange, routingKey, std::move(*body), o);
            if (!confirmation.ack) {
                std::cerr << "depotctl: publish refused: " << confirmation.reason << "\n";
                return 1;
            }
            if (confirmation.returned) {
                std::cerr << "depotctl: message returned: no queue is bound for exchange '"
                          << exchange << "' and routing key '" << routingKey << "'\n";
                return 1;
            }
            if (confirmation.queues) // amqp:// does not say
                std::cout << "published (routed to " << *confirmation.queues << " queue"
                          << (*confirmation.queues == 1 ? "" : "s") << ")\n";
            else
                std::cout << "published (confirmed)\n";
        } else if (get->parsed()) {
            // Keep each message unacked until the end, so that --count takes distinct ones
            // and --requeue puts them all back where they were.
            std::vector<depot::client::Delivery> taken;
            while (taken.size() < count) {
                auto delivery = connection->get(queue, false);
                if (!delivery)
                    break;
                printMessage(*delivery, json);
                taken.push_back(std::move(*delivery));
            }
            if (taken.empty())
                std::cout << (json ? "" : "queue is empty\n");
            else if (requeue)
                taken.back().nack(true, true);
            else
                taken.back().ack(true);
            connection->close();
        } else if (purge->parsed()) {
            std::cout << "purged " << connection->purge(queue) << " messages from " << queue
                      << "\n";
        } else if (consume->parsed()) {
            std::mutex mutex;
            std::condition_variable done;
            std::uint32_t seen = 0;
            depot::client::ConsumeOptions o;
            o.prefetch = std::min<std::uint32_t>(count, 100);
            auto consumer = connection->consume(
                queue,
                [&](depot::client::Delivery& d) {
                    std::lock_guard lock(mutex);
                    if (seen >= count) {
                        d.nack(true);
                        return;
                    }
                    printMessage(d, json);
                    std::cout.flush();
                    d.ack();
                    if (++seen == count)
                        done.notify_all();
                },
                o);
            std::unique_lock lock(mutex);
            done.wait(lock, [&] { return seen >= count; });
            lock.unlock();
            consumer.cancel();
            connection->close();
        }
        return 0;
    } catch (const UsageError& e) {
        std::cerr << "depotctl: " << e.what() << "\n";
        return 2;
    } catch (const depot::client::Error& e) {
        std::cerr << "depotctl: " << e.what() << "\n";
        return e.kind() == depot::client::ErrorKind::INVALID_ARGUMENT ? 2 : 1;
    }
}
