#include "broker/core/field_table.h"

#include <algorithm>

namespace depot::core {

void FieldTable::set(std::string name, FieldValue value) {
    for (auto& entry : entries_) {
        if (entry.first == name) {
            entry.second = std::move(value);
            return;
        }
    }
    entries_.emplace_back(std::move(name), std::move(value));
}

const FieldValue* FieldTable::find(std::string_view name) const {
    for (const auto& entry : entries_)
        if (entry.first == name)
            return &entry.second;
    return nullptr;
}

std::optional<std::int64_t> FieldTable::getInt(std::string_view name) const {
    const FieldValue* value = find(name);
    if (value == nullptr || !std::holds_alternative<std::int64_t>(*value))
        return std::nullopt;
    return std::get<std::int64_t>(*value);
}

std::optional<std::string_view> FieldTable::getString(std::string_view name) const {
    const FieldValue* value = find(name);
    if (value == nullptr || !std::holds_alternative<std::string>(*value))
        return std::nullopt;
    return std::string_view(std::get<std::string>(*value));
}

bool operator==(const FieldTable& a, const FieldTable& b) {
    if (a.entries_.size() != b.entries_.size())
        return false;
    return std::all_of(a.entries_.begin(), a.entries_.end(), [&](const auto& entry) {
        const FieldValue* other = b.find(entry.first);
        return other != nullptr && *other == entry.second;
    });
}

const char* fieldTypeName(const FieldValue& value) {
    switch (value.index()) {
    case 0:
        return "void";
    case 1:
        return "bool";
    case 2:
        return "long";
    case 3:
        return "double";
    default:
        return "longstr";
    }
}

std::string fieldValueText(const FieldValue& value) {
    struct Visitor {
        std::string operator()(std::monostate) const { return "void"; }
        std::string operator()(bool b) const { return b ? "true" : "false"; }
        std::string operator()(std::int64_t i) const { return std::to_string(i); }
        std::string operator()(double d) const { return std::to_string(d); }
        std::string operator()(const std::string& s) const { return s; }
    };
    return std::visit(Visitor{}, value);
}

} // namespace depot::core
