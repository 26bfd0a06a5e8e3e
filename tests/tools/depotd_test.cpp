// depotd as a user runs it: its flags, its exit codes, its signals.

#include "tests/net/raw_client.h"
#include "tests/support/process.h"

#include <doctest/doctest.h>

using namespace depot::tests;

namespace {
const std::string DEPOTD = std::string(DEPOT_BINARY_DIR) + "/depotd";
}

TEST_CASE("depotd --help describes the options and exits 0") {
    Process p(DEPOTD, {"--help"});
    CHECK(p.wait() == 0);
    const std::string out = p.out();
    for (const char* option : {"--listen", "--config", "--log-level", "--max-frame", "--heartbeat"})
        CHECK_MESSAGE(out.find(option) != std::string::npos, option);
}

TEST_CASE("depotd refuses bad options with exit code 2 and one clear line") {
    Process badListen(DEPOTD, {"--listen", "localhost"});
    CHECK(badListen.wait() == 2);
    CHECK(badListen.err().find("--listen") != std::string::npos);
    Process badLevel(DEPOTD, {"--log-level", "loud"});
    CHECK(badLevel.wait() == 2);
    Process unknown(DEPOTD, {"--no-such-flag"});
    CHECK(unknown.wait() == 2);
}

TEST_CASE("depotd reads its options from a config file") {
    TempDir dir;
    std::ofstream(dir.file("depotd.conf")) << "listen = \"127.0.0.1:0\"\nheartbeat = 7\n"
                                           << "in-memory = true\n"
                                           << "port-file = \"" << dir.file("port") << "\"\n";
    Process p(DEPOTD, {"--config", dir.file("depotd.conf")});
    std::string port;
    for (int i = 0; i < 1000 && port.empty(); ++i) {
        port = readFile(dir.file("port"));
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    REQUIRE(!port.empty());
    RawClient client(static_cast<unsigned short>(std::stoi(port)));
    client.hello();
    std::uint32_t heartbeat = 0;
    REQUIRE(client.receive([&](depot::wire::Frame::Reader f) {
        REQUIRE(f.isHelloOk());
        heartbeat = f.getHelloOk().getHeartbeatSeconds();
    }));
    CHECK(heartbeat == 7);
    p.signal(SIGTERM);
    CHECK(p.wait() == 0);
}

TEST_CASE("SIGTERM closes connections with a close frame and exits 0") {
    DepotdProcess depotd;
    RawClient client(depotd.port());
    client.hello();
    REQUIRE(client.nextKind() == depot::wire::Frame::HELLO_OK);
    depotd.process().signal(SIGTERM);
    std::string reason;
    REQUIRE(client.receive([&](depot::wire::Frame::Reader f) {
        REQUIRE(f.isClose());
        reason = f.getClose().getReason();
    }));
    CHECK(reason.find("shutting down") != std::string::npos);
    CHECK(depotd.process().wait() == 0);
}

TEST_CASE("a second depotd on a taken port fails with a clear error") {
    DepotdProcess first;
    Process second(DEPOTD,
                   {"--listen", "127.0.0.1:" + std::to_string(first.port()), "--in-memory"});
    CHECK(second.wait() == 1);
    CHECK(second.err().find("cannot listen") != std::string::npos);
}
