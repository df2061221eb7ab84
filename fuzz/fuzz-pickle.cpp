// fuzz/fuzz-pickle.cpp — mproc::pickle_loads fed hostile bytes, and the round trip through pickle_dumps.
//
// Input: the bytes of one message, as Connection.recv would hand them to the decoder (seeds: real pickles
// that python3 wrote with protocols 2 to 5, fuzz/generate-pickle-corpus.py, plus hostile ones).
// Properties, each a std::abort() when broken:
// - pickle_loads returns or throws DecodeError whose message starts with "pickle: "; nothing else escapes.
// - Every allocation it makes is counted (this file replaces operator new/delete): the peak of live bytes
//   during one decode stays within kPickleBytesPerInputByte × input size + 64 KiB, the bound that
//   mproc/pickle.hpp states.
// - A decoded value has depth ≤ kPickleMaxDepth; pickle_dumps of it decodes to an equal value
//   (decode(encode(v)) == v), encoding that again gives the same bytes (the encoder is deterministic and
//   canonical), and the encoding is at most 16 × the input + 64 bytes long (shared parts are written once:
//   a DUP of a 10-byte LONG1 costs one input byte and comes out as ten; set() copies are budgeted).
// - The conversions to C++ types either succeed or throw DecodeError.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include <malloc.h>

#include "mproc/error.hpp"
#include "mproc/pickle.hpp"

namespace {

// Live bytes allocated through operator new while `counting`, and their peak.
bool counting = false;
std::size_t live_bytes = 0;
std::size_t peak_bytes = 0;

void require(bool property) {
    if (!property) std::abort();
}

void* counted_allocation(std::size_t size) {
    void* memory = std::malloc(size == 0 ? 1 : size);
    if (memory == nullptr) throw std::bad_alloc();
    if (counting) {
        live_bytes += ::malloc_usable_size(memory);
        if (live_bytes > peak_bytes) peak_bytes = live_bytes;
    }
    return memory;
}

void counted_release(void* memory) {
    if (memory == nullptr) return;
    if (counting) {
        const std::size_t size = ::malloc_usable_size(memory);
        live_bytes = live_bytes > size ? live_bytes - size : 0;  // blocks from before counting began
    }
    std::free(memory);
}

template <class Convert>
void try_conversion(Convert convert) {
    try {
        convert();
    } catch (const mproc::DecodeError&) {
    }
}

}  // namespace

void* operator new(std::size_t size) { return counted_allocation(size); }
void* operator new[](std::size_t size) { return counted_allocation(size); }
void operator delete(void* memory) noexcept { counted_release(memory); }
void operator delete[](void* memory) noexcept { counted_release(memory); }
void operator delete(void* memory, std::size_t) noexcept { counted_release(memory); }
void operator delete[](void* memory, std::size_t) noexcept { counted_release(memory); }
// The nothrow forms too (libFuzzer allocates with them): every form of new here pairs with a delete here.
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    try {
        return counted_allocation(size);
    } catch (const std::bad_alloc&) {
        return nullptr;
    }
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept { return operator new(size, tag); }
void operator delete(void* memory, const std::nothrow_t&) noexcept { counted_release(memory); }
void operator delete[](void* memory, const std::nothrow_t&) noexcept { counted_release(memory); }

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
    std::optional<mproc::PickleValue> decoded;
    live_bytes = 0;
    peak_bytes = 0;
    counting = true;
    try {
        decoded = mproc::pickle_loads(input);
    } catch (const mproc::DecodeError& error) {
        require(std::string(error.what()).rfind("pickle: ", 0) == 0);
    }
    counting = false;
    require(peak_bytes <= mproc::kPickleBytesPerInputByte * size + 64 * 1024);
    if (!decoded) return 0;

    const mproc::PickleValue& value = *decoded;
    require(value.depth() <= mproc::kPickleMaxDepth);
    const std::vector<std::byte> encoded = mproc::pickle_dumps(value);
    require(encoded.size() <= 16 * size + 64);
    const mproc::PickleValue again = mproc::pickle_loads(encoded);
    require(again == value);
    require(mproc::pickle_dumps(again) == encoded);

    try_conversion([&] { (void)mproc::from_pickle<std::vector<mproc::PickleValue>>(value); });
    try_conversion([&] { (void)mproc::from_pickle<std::map<std::string, mproc::PickleValue>>(value); });
    try_conversion([&] { (void)mproc::from_pickle<std::optional<std::int64_t>>(value); });
    try_conversion([&] { (void)mproc::from_pickle<std::uint64_t>(value); });
    try_conversion([&] { (void)mproc::from_pickle<std::tuple<mproc::PickleValue, double>>(value); });
    try_conversion([&] { (void)mproc::from_pickle<std::vector<std::byte>>(value); });
    try_conversion([&] { (void)mproc::from_pickle<std::string>(value); });
    return 0;
}
