// Writes the seed corpus for frame_fuzzer: one valid frame of each common kind. Run by the
// fuzz ctest before fuzzing, so the seeds always match the current schema.

#include "protocol/wire.capnp.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <fstream>
#include <functional>
#include <string>

namespace {

void write(const std::string& dir, const std::string& name,
           const std::function<void(depot::wire::Frame::Builder)>& fill) {
    capnp::MallocMessageBuilder builder;
    auto frame = builder.initRoot<depot::wire::Frame>();
    frame.setRequestId(1);
    fill(frame);
    const auto words = capnp::messageToFlatArray(builder);
    const auto bytes = words.asBytes();
    std::ofstream(dir + "/" + name, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.begin()),
               static_cast<std::streamsize>(bytes.size()));
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 2)
        return 2;
    const std::string dir = argv[1];
    write(dir, "hello", [](auto f) {
        auto h = f.initHello();
        h.setProtocolVersion(depot::wire::PROTOCOL_VERSION);
        h.setUsername("guest");
        h.setPassword("guest");
    });
    write(dir, "declare-queue", [](auto f) {
        auto d = f.initDeclareQueue();
        d.setName("q");
        auto args = d.initArguments(2);
        args[0].setName("x-message-ttl");
        args[0].initValue().setInt(1000);
        args[1].setName("x-dead-letter-exchange");
        args[1].initValue().setText("dlx");
    });
    write(dir, "publish", [](auto f) {
        auto p = f.initPublish();
        p.setExchange("amq.topic");
        p.setRoutingKey("a.b.c");
        auto props = p.initProperties();
        props.setCorrelationId("c-1");
        props.getExpiration().setMilliseconds(500);
        auto headers = props.initHeaders(1);
        headers[0].setName("h");
        headers[0].initValue().setBool(true);
        p.setBody(capnp::Data::Reader(reinterpret_cast<const kj::byte*>("body"), 4));
    });
    write(dir, "bind", [](auto f) {
        auto b = f.initBind();
        b.setSource("amq.headers");
        b.setDestination("q");
        auto args = b.initArguments(1);
        args[0].setName("x-match");
        args[0].initValue().setText("any");
    });
    write(dir, "deliver", [](auto f) {
        auto m = f.initDeliver().initMessage();
        m.setRoutingKey("k");
        auto deaths = m.initDeaths(1);
        deaths[0].setQueue("q");
        deaths[0].initRoutingKeys(1).set(0, "k");
    });
    return 0;
}
