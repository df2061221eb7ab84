// fuzz/fuzz-codec-roundtrip.cpp — the property decode(encode(x)) == x, for values of a wide type built from
// the fuzz input, and every proper prefix of an encoding refused with DecodeError.
//
// Input: read by a small generator (Source below): each byte steers which alternative, how many elements,
// which characters; when the input runs out the generator yields zeros, so any input builds a value.
// Doubles are made from integers (no NaN: NaN != NaN would fail the comparison, not the codec).
#include <array>
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

struct Tree {
    std::string label;
    std::vector<Tree> children;
    friend auto codec_fields(Tree& self) { return std::tie(self.label, self.children); }
    bool operator==(const Tree&) const = default;
};

using Scalar = std::variant<std::monostate, bool, std::int64_t, double, std::string, std::vector<std::byte>>;
using Value = std::tuple<std::vector<Scalar>, std::map<std::string, std::optional<std::set<std::int16_t>>>,
                         std::unordered_map<std::int32_t, std::pair<std::string, bool>>, std::array<std::string, 2>,
                         std::vector<bool>, Tree>;

void require(bool property) {
    if (!property) std::abort();
}

class Source {
public:
    explicit Source(std::span<const std::uint8_t> bytes) : bytes_(bytes) {}
    std::uint8_t byte() { return at_ < bytes_.size() ? bytes_[at_++] : 0; }
    std::size_t small(std::size_t limit) { return byte() % (limit + 1); }
    std::int64_t integer() {
        std::uint64_t value = 0;
        for (int i = 0; i < 8; ++i) value = value << 8 | byte();
        return static_cast<std::int64_t>(value);
    }
    std::string text() {
        std::string out(small(40), '\0');
        for (char& c : out) c = static_cast<char>(byte());
        return out;
    }

private:
    std::span<const std::uint8_t> bytes_;
    std::size_t at_ = 0;
};

Scalar scalar(Source& in) {
    switch (in.small(5)) {
        case 0: return std::monostate();
        case 1: return in.byte() % 2 == 1;
        case 2: return in.integer();
        case 3: return static_cast<double>(in.integer()) / 1024.0;
        case 4: return in.text();
        default: {
            std::vector<std::byte> bytes(in.small(64));
            for (std::byte& b : bytes) b = static_cast<std::byte>(in.byte());
            return bytes;
        }
    }
}

Tree tree(Source& in, int depth) {
    Tree out{in.text(), {}};
    if (depth < 60) {
        const std::size_t children = in.small(3);
        for (std::size_t i = 0; i < children; ++i) out.children.push_back(tree(in, depth + 1));
    }
    return out;
}

Value value(Source& in) {
    Value out;
    auto& [scalars, map, hash, array, bools, root] = out;
    for (std::size_t i = in.small(16); i > 0; --i) scalars.push_back(scalar(in));
    for (std::size_t i = in.small(8); i > 0; --i) {
        std::optional<std::set<std::int16_t>> entry;
        if (in.byte() % 2 == 1) {
            entry.emplace();
            for (std::size_t j = in.small(8); j > 0; --j) entry->insert(static_cast<std::int16_t>(in.integer()));
        }
        map[in.text()] = entry;
    }
    for (std::size_t i = in.small(8); i > 0; --i)
        hash[static_cast<std::int32_t>(in.integer())] = {in.text(), in.byte() % 2 == 1};
    array = {in.text(), in.text()};
    for (std::size_t i = in.small(20); i > 0; --i) bools.push_back(in.byte() % 2 == 1);
    root = tree(in, 1);
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Source in({data, size});
    const Value original = value(in);
    const std::vector<std::byte> bytes = mproc::encode(original);
    require(mproc::decode<Value>(bytes) == original);
    // Proper prefixes are refused, never misread: a few cut points spread over the message.
    for (const std::size_t cut : {std::size_t{0}, bytes.size() / 3, bytes.size() / 2, bytes.size() - 1}) {
        if (cut >= bytes.size()) continue;
        try {
            (void)mproc::decode<Value>(std::span<const std::byte>(bytes.data(), cut));
            std::abort();
        } catch (const mproc::DecodeError& error) {
            require(error.offset() <= cut);
        }
    }
    return 0;
}
