#include "broker/core/message.h"

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace depot::core {

namespace {
// Properties' text members in TextProperty order.
constexpr std::string Properties::*TEXTS[TEXT_PROPERTY_COUNT] = {
    &Properties::contentType, &Properties::contentEncoding, &Properties::correlationId,
    &Properties::replyTo,     &Properties::messageId,       &Properties::type,
    &Properties::userId,      &Properties::appId,
};
} // namespace

std::string& Properties::text(TextProperty property) {
    return this->*TEXTS[static_cast<std::size_t>(property)];
}

const std::string& Properties::text(TextProperty property) const {
    return this->*TEXTS[static_cast<std::size_t>(property)];
}

PackedProperties::PackedProperties(const Properties& p)
    : expiration(p.expiration), deliveryMode(p.deliveryMode), priority(p.priority),
      timestamp(p.timestamp), headers(p.headers) {
    std::string_view texts[TEXT_PROPERTY_COUNT];
    for (std::size_t i = 0; i < TEXT_PROPERTY_COUNT; ++i)
        texts[i] = p.text(static_cast<TextProperty>(i));
    setTexts(texts);
}

Properties PackedProperties::unpack() const {
    Properties p;
    unpack(p);
    return p;
}

void PackedProperties::unpack(Properties& p) const {
    for (std::size_t i = 0; i < TEXT_PROPERTY_COUNT; ++i)
        p.text(static_cast<TextProperty>(i)) = text(static_cast<TextProperty>(i));
    p.expiration = expiration;
    p.deliveryMode = deliveryMode;
    p.priority = priority;
    p.timestamp = timestamp;
    p.headers = headers;
}

std::string_view PackedProperties::text(TextProperty property) const {
    const auto i = static_cast<std::size_t>(property);
    const std::uint32_t begin = i == 0 ? 0 : ends_[i - 1];
    return std::string_view(texts_).substr(begin, ends_[i] - begin);
}

void PackedProperties::setTexts(const std::string_view (&texts)[TEXT_PROPERTY_COUNT]) {
    std::size_t total = 0;
    for (const std::string_view t : texts)
        total += t.size();
    if (total > UINT32_MAX)
        throw std::length_error("message properties over 4 GiB");
    texts_.resize(total);
    std::uint32_t end = 0;
    for (std::size_t i = 0; i < TEXT_PROPERTY_COUNT; ++i) {
        if (!texts[i].empty()) // most are: no call per empty one
            std::memcpy(texts_.data() + end, texts[i].data(), texts[i].size());
        end += static_cast<std::uint32_t>(texts[i].size());
        ends_[i] = end;
    }
}

const char* deathReasonName(DeathReason reason) {
    switch (reason) {
    case DeathReason::REJECTED:
        return "rejected";
    case DeathReason::EXPIRED:
        return "expired";
    case DeathReason::MAXLEN:
        return "maxlen";
    }
    return "unknown";
}

} // namespace depot::core
