#include "client/url.h"

#include "client/error.h"

#include <cctype>
#include <charconv>

namespace depot::client {
namespace {

[[noreturn]] void invalid(std::string_view url, const std::string& why) {
    throw Error(ErrorKind::INVALID_ARGUMENT,
                "invalid broker URL '" + std::string(url) + "': " + why);
}

bool startsWithNoCase(std::string_view text, std::string_view prefix) {
    if (text.size() < prefix.size())
        return false;
    for (std::size_t i = 0; i < prefix.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(text[i])) != prefix[i])
            return false;
    return true;
}

int hexValue(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

std::string decode(std::string_view url, std::string_view part, const char* what) {
    std::string out;
    out.reserve(part.size());
    for (std::size_t i = 0; i < part.size(); ++i) {
        if (part[i] != '%') {
            out.push_back(part[i]);
            continue;
        }
        const int high = i + 2 < part.size() ? hexValue(part[i + 1]) : -1;
        const int low = i + 2 < part.size() ? hexValue(part[i + 2]) : -1;
        if (high < 0 || low < 0)
            invalid(url, std::string("bad percent-escape in the ") + what);
        out.push_back(static_cast<char>(high * 16 + low));
        i += 2;
    }
    return out;
}

// Escapes everything but RFC 3986's unreserved characters, so redacted() parses back.
std::string encode(std::string_view text) {
    static constexpr char HEX[] = "0123456789ABCDEF";
    std::string out;
    for (char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
            out.push_back(c);
        } else {
            out.push_back('%');
            out.push_back(HEX[u >> 4]);
            out.push_back(HEX[u & 15]);
        }
    }
    return out;
}

void parseHostPort(std::string_view url, std::string_view hostPort, BrokerUrl& result) {
    std::string_view portText;
    if (!hostPort.empty() && hostPort.front() == '[') { // IPv6 literal: [::1]:7672
        const std::size_t close = hostPort.find(']');
        if (close == std::string_view::npos)
            invalid(url, "unterminated '[' in the host");
        result.host = std::string(hostPort.substr(1, close - 1));
        const std::string_view rest = hostPort.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':')
                invalid(url, "unexpected text after the IPv6 address");
            portText = rest.substr(1);
        }
        if (result.host.empty())
            invalid(url, "empty IPv6 address");
    } else {
        const std::size_t colon = hostPort.find(':');
        const std::string_view host = hostPort.substr(0, colon);
        if (!host.empty())
            result.host = std::string(host);
        if (colon != std::string_view::npos)
            portText = hostPort.substr(colon + 1);
    }
    if (portText.empty())
        return; // "host:" keeps the default port, as AMQP URIs do
    unsigned value = 0;
    const auto [end, error] =
        std::from_chars(portText.data(), portText.data() + portText.size(), value);
    if (error != std::errc() || end != portText.data() + portText.size() || value == 0 ||
        value > 65535)
        invalid(url, "the port must be a number from 1 to 65535");
    result.port = static_cast<std::uint16_t>(value);
}

} // namespace

BrokerUrl BrokerUrl::parse(std::string_view url) {
    BrokerUrl result;
    if (startsWithNoCase(url, "embedded:")) {
        result.scheme = Scheme::EMBEDDED;
        result.name = std::string(url.substr(9));
        for (char c : result.name)
            if (std::iscntrl(static_cast<unsigned char>(c)) ||
                std::isspace(static_cast<unsigned char>(c)))
                invalid(url, "the embedded broker's name has a space or control character");
        return result;
    }
    std::string_view rest;
    if (startsWithNoCase(url, "depot://")) {
        result.scheme = Scheme::DEPOT;
        rest = url.substr(8);
    } else if (startsWithNoCase(url, "amqp://")) {
        result.scheme = Scheme::AMQP;
        result.port = 5672;
        rest = url.substr(7);
    } else if (startsWithNoCase(url, "amqps://")) {
        invalid(url, "amqps:// (TLS) is not supported; use amqp:// on a trusted network");
    } else {
        invalid(url, "expected embedded:, embedded:NAME, depot://user:pass@host:port/vhost or "
                     "amqp://user:pass@host:port/vhost");
    }
    if (rest.find_first_of("?#") != std::string_view::npos)
        invalid(url, "query strings and fragments are not supported");

    const std::size_t slash = rest.find('/');
    const std::string_view authority = rest.substr(0, slash);
    if (slash != std::string_view::npos) {
        // An empty path ("depot://host/") keeps the default vhost "/"; "%2F" is "/" too.
        const std::string_view path = rest.substr(slash + 1);
        if (path.find('/') != std::string_view::npos)
            invalid(url, "the vhost must be one path segment (write '/' as %2F)");
        if (!path.empty())
            result.vhost = decode(url, path, "vhost");
    }

    std::string_view hostPort = authority;
    const std::size_t at = authority.rfind('@');
    if (at != std::string_view::npos) {
        const std::string_view userInfo = authority.substr(0, at);
        hostPort = authority.substr(at + 1);
        const std::size_t colon = userInfo.find(':');
        result.username = decode(url, userInfo.substr(0, colon), "user name");
        if (colon != std::string_view::npos) // "user@host" keeps the default password
            result.password = decode(url, userInfo.substr(colon + 1), "password");
        if (result.username.empty())
            invalid(url, "empty user name before '@'");
    }
    parseHostPort(url, hostPort, result);
    return result;
}

std::string BrokerUrl::redacted() const {
    if (scheme == Scheme::EMBEDDED)
        return "embedded:" + name;
    const std::string hostPart =
        host.find(':') != std::string::npos ? "[" + host + "]" : host; // IPv6
    return std::string(scheme == Scheme::AMQP ? "amqp://" : "depot://") + encode(username) + "@" +
           hostPart + ":" + std::to_string(port) + "/" + encode(vhost);
}

} // namespace depot::client
