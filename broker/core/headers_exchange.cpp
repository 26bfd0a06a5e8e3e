#include "broker/core/headers_exchange.h"

#include <algorithm>

namespace depot::core {

namespace {

struct XMatch {
    bool matchAll;
    bool includeX;
};

Result<XMatch> parseXMatch(const FieldTable& arguments) {
    const FieldValue* value = arguments.find("x-match");
    if (value == nullptr)
        return XMatch{true, false};
    const std::string* text = std::get_if<std::string>(value);
    if (text != nullptr) {
        if (*text == "all")
            return XMatch{true, false};
        if (*text == "any")
            return XMatch{false, false};
        if (*text == "all-with-x")
            return XMatch{true, true};
        if (*text == "any-with-x")
            return XMatch{false, true};
    }
    return makeError(ErrorCode::PRECONDITION_FAILED,
                     "invalid x-match value '" + fieldValueText(*value) +
                         "': expected all, any, all-with-x or any-with-x");
}

} // namespace

Status HeadersExchange::validateBinding(std::string_view, const FieldTable& arguments) const {
    Result<XMatch> xmatch = parseXMatch(arguments);
    if (!xmatch)
        return xmatch.error();
    return {};
}

bool HeadersExchange::matches(const Matcher& matcher, const FieldTable& headers) {
    for (const auto& [name, expected] : *matcher.arguments) {
        if (name == "x-match" || (!matcher.includeX && name.starts_with("x-")))
            continue;
        const FieldValue* actual = headers.find(name);
        const bool hit = actual != nullptr &&
                         (std::holds_alternative<std::monostate>(expected) || *actual == expected);
        if (matcher.matchAll && !hit)
            return false;
        if (!matcher.matchAll && hit)
            return true;
    }
    return matcher.matchAll;
}

void HeadersExchange::route(std::string_view, const FieldTable& headers,
                            std::vector<Destination>& out) {
    for (const Matcher& matcher : matchers_)
        if (matches(matcher, headers))
            out.push_back(matcher.destination);
}

void HeadersExchange::indexAdd(const BindingEntry& binding) {
    Result<XMatch> xmatch = parseXMatch(binding.arguments);
    DEPOT_ASSERT(xmatch.ok(), "headers binding was not validated");
    matchers_.push_back(
        {binding.destination, &binding.arguments, xmatch->matchAll, xmatch->includeX});
}

void HeadersExchange::indexRemove(const BindingEntry& binding) {
    auto it = std::find_if(matchers_.begin(), matchers_.end(),
                           [&](const Matcher& m) { return m.arguments == &binding.arguments; });
    if (it != matchers_.end())
        matchers_.erase(it);
}

} // namespace depot::core
