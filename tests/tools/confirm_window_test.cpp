// ConfirmWindow against a depotd that stops answering (SIGSTOP): a full window and wait() give
// up after their timeout with TIMEOUT instead of hanging, and once depotd runs again the
// confirms still in flight are counted.

#include "tests/client/client_helpers.h"
#include "tests/support/process.h"

#include "client/confirm_window.h"
#include "client/connection.h"

#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <string>

using depot::client::ConfirmTally;
using depot::client::ConfirmWindow;
using depot::client::Connection;
using depot::client::Error;
using depot::tests::DepotdProcess;
using depot::tests::errorOf;

TEST_CASE("ConfirmWindow: a broker that stops answering gets TIMEOUT, not a hang") {
    DepotdProcess depotd;
    auto connection = Connection::open(depotd.url());
    connection->declareQueue("stalled");
    ConfirmWindow window(*connection, 2, std::chrono::milliseconds(300));

    depotd.process().signal(SIGSTOP);
    window.publish("", "stalled", "1");
    window.publish("", "stalled", "2");
    CHECK(window.unsettled() == 2);
    const auto started = std::chrono::steady_clock::now();
    CHECK(errorOf([&] { window.publish("", "stalled", "3"); }) == "TIMEOUT");
    CHECK(std::chrono::steady_clock::now() - started >= std::chrono::milliseconds(300));
    CHECK(window.unsettled() == 2); // the third was never sent
    CHECK(errorOf([&] { (void)window.wait(); }) == "TIMEOUT");

    depotd.process().signal(SIGCONT);
    ConfirmTally tally;
    for (int tries = 0; tries < 50 && tally.acked < 2; ++tries) {
        try {
            const ConfirmTally more = window.wait();
            tally.acked += more.acked;
            tally.failed += more.failed;
        } catch (const Error&) {
            // still catching up
        }
    }
    CHECK(tally.acked == 2);
    CHECK(tally.failed == 0);
    CHECK(window.unsettled() == 0);
}
