// depot-bench: measurements of Depot, one subcommand per benchmark. Each subcommand lives in its
// own file and registers itself here with its add...Command function; main only wires them up.

#include "bench/e2e_bench.h"
#include "bench/e2e_peer.h"
#include "bench/recovery_bench.h"
#include "bench/route_bench.h"
#include "bench/store_bench.h"

#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>

int main(int argc, char** argv) {
    CLI::App app{"depot-bench: Depot benchmarks. Each prints a markdown table and ratios against a "
                 "baseline measured in the same run. Figures are machine-dependent; nothing here "
                 "asserts on speed."};
    app.require_subcommand(1);
    depot::bench::addRouteCommand(app);
    depot::bench::addE2eCommand(app);
    depot::bench::addPeerCommand(app);
    depot::bench::addStoreCommand(app);
    depot::bench::addRecoveryCommand(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const std::exception& e) { // a broker that cannot be reached, say: one line
        std::cerr << "depot-bench: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
