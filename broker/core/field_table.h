#pragma once
// AMQP field tables: message headers and the arguments of declares and bindings. A small ordered
// vector of (name, value) pairs, because tables are short and order is what the publisher sent.
// Values are typed like AMQP's: void, boolean, signed integer, float, string.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace depot::core {

using FieldValue = std::variant<std::monostate, bool, std::int64_t, double, std::string>;

class FieldTable {
public:
    FieldTable() = default;
    FieldTable(std::initializer_list<std::pair<std::string, FieldValue>> entries)
        : entries_(entries) {}

    // Replaces an existing entry of the same name, or appends.
    void set(std::string name, FieldValue value);
    const FieldValue* find(std::string_view name) const;
    bool contains(std::string_view name) const { return find(name) != nullptr; }
    std::optional<std::int64_t> getInt(std::string_view name) const;
    std::optional<std::string_view> getString(std::string_view name) const;

    bool empty() const { return entries_.empty(); }
    std::size_t size() const { return entries_.size(); }
    auto begin() const { return entries_.begin(); }
    auto end() const { return entries_.end(); }

    // Tables are equal when they hold the same names with the same values, in any order: that is
    // how RabbitMQ compares the arguments of a re-declare or of a binding.
    friend bool operator==(const FieldTable& a, const FieldTable& b);

private:
    std::vector<std::pair<std::string, FieldValue>> entries_;
};

// "long", "string", ... for error messages that name the type a client sent.
const char* fieldTypeName(const FieldValue& value);
// The value as text, for error messages: 'true', '42', 'abc'.
std::string fieldValueText(const FieldValue& value);

} // namespace depot::core
