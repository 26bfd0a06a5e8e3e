#pragma once
// Headers exchange: routes on message headers instead of the routing key. A binding's arguments
// are the headers to look for; `x-match` says whether all of them (default) or any one must
// match. As in RabbitMQ: a binding argument with a void value matches on presence alone,
// arguments starting with `x-` are ignored unless x-match is `all-with-x` or `any-with-x`, and
// an `all` binding with no arguments matches every message. Bindings are scanned in order, as
// RabbitMQ does; headers exchanges are rarely bound thousands of times.

#include "broker/core/exchange.h"

#include <string>
#include <vector>

namespace depot::core {

class HeadersExchange final : public Exchange {
public:
    HeadersExchange(std::string name, ExchangeOptions options)
        : Exchange(std::move(name), ExchangeType::HEADERS, std::move(options)) {}

    void route(std::string_view routingKey, const FieldTable& headers,
               std::vector<Destination>& out) override;
    Status validateBinding(std::string_view key, const FieldTable& arguments) const override;

private:
    void indexAdd(const BindingEntry& binding) override;
    void indexRemove(const BindingEntry& binding) override;

    struct Matcher {
        Destination destination;
        const FieldTable* arguments; // points into the Exchange's binding set, which is stable
        bool matchAll;
        bool includeX;
    };
    static bool matches(const Matcher& matcher, const FieldTable& headers);

    std::vector<Matcher> matchers_;
};

} // namespace depot::core
