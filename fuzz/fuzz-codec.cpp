// fuzz/fuzz-codec.cpp — the codec's decoder (mproc/codec.hpp) on arbitrary bytes, as several target types.
//
// Input: byte 0 picks the type (modulo the number of types below), the rest is the message. Every decode
// either returns a value or throws mproc::DecodeError whose offset lies within the message; any other
// exception, a crash, an out-of-bounds read (AddressSanitizer) or undefined behaviour (UBSan) fails. What
// decodes must encode back to as many bytes as the message had (lengths have one form only). The
// allocation bound is policed by libFuzzer's -malloc_limit_mb, which a length claiming 2^60 elements would
// trip if it were ever believed; the recursion bound by the Tree type, which without it would overflow the
// stack on a message of repeated 0x01 bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/error.hpp"

namespace {

struct Tree {  // recursive: only the depth limit bounds its nesting
    std::string label;
    std::vector<Tree> children;
    friend auto codec_fields(Tree& self) { return std::tie(self.label, self.children); }
};

struct Record {
    std::int64_t id = 0;
    double score = 0;
    std::string name;
    std::vector<double> samples;
    friend auto codec_fields(Record& self) { return std::tie(self.id, self.score, self.name, self.samples); }
};

using Scalar = std::variant<std::monostate, bool, std::int64_t, double, std::string, std::vector<std::byte>>;
using Nested = std::map<std::string, std::vector<std::optional<std::variant<Scalar, std::set<std::int16_t>,
                                                                            std::pair<std::string, Record>>>>>;

void require(bool property) {
    if (!property) std::abort();
}

template <class T>
void try_decode(std::span<const std::byte> message) {
    try {
        const T value = mproc::decode<T>(message);
        require(mproc::encode(value).size() == message.size());
    } catch (const mproc::DecodeError& error) {
        require(error.offset() <= message.size());
        require(!error.type().empty() && !error.expected().empty());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::span<const std::byte> message(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
    switch (data[0] % 10) {
        case 0: try_decode<std::string>(message); break;
        case 1: try_decode<std::vector<std::string>>(message); break;
        case 2: try_decode<std::vector<std::uint64_t>>(message); break;
        case 3: try_decode<Tree>(message); break;
        case 4: try_decode<Record>(message); break;
        case 5: try_decode<Scalar>(message); break;
        case 6: try_decode<Nested>(message); break;
        case 7: try_decode<std::unordered_map<std::int32_t, std::vector<bool>>>(message); break;
        case 8: try_decode<std::tuple<std::monostate, std::array<std::string, 3>, std::tuple<>>>(message); break;
        default: try_decode<std::vector<std::vector<std::vector<std::optional<std::string>>>>>(message); break;
    }
    return 0;
}
