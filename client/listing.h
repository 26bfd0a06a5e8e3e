#pragma once
// What a broker lists for administrators (depotctl list ...): one table per kind, with typed
// cells, so that a CLI can print it as text or JSON without knowing each kind's columns.

#include "broker/core/field_table.h"

#include <string>
#include <vector>

namespace depot::client {

enum class ListKind { EXCHANGES, QUEUES, BINDINGS, CONNECTIONS, CONSUMERS };

struct Listing {
    std::vector<std::string> columns;
    std::vector<std::vector<core::FieldValue>> rows; // each row has one cell per column
};

} // namespace depot::client
