#pragma once
// A fuzzer's input read as a program: bytes taken in order, zeros once it runs out (so every
// input, however short, is a whole program). Shared by the structure-aware fuzz targets.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

namespace depot::tests {

class FuzzInput {
public:
    FuzzInput(const std::uint8_t* data, std::size_t size) : p_(data), left_(size) {}
    bool empty() const { return left_ == 0; }
    std::uint8_t byte() {
        if (left_ == 0)
            return 0;
        --left_;
        return *p_++;
    }
    // The next `n` bytes, or fewer at the end.
    std::string bytes(std::size_t n) {
        n = std::min(n, left_);
        std::string out(reinterpret_cast<const char*>(p_), n);
        p_ += n;
        left_ -= n;
        return out;
    }
    std::string rest() { return bytes(left_); }

private:
    const std::uint8_t* p_;
    std::size_t left_;
};

} // namespace depot::tests
