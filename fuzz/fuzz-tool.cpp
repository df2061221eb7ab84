// fuzz/fuzz-tool.cpp — arbitrary bytes as an object file that `mproc ls` / `mproc show` reads.
//
// The bytes are copied into a 128-byte-aligned heap buffer of exactly their size (so AddressSanitizer sees
// a read one byte past them) and handed to the tool's reading path, mproc::tool::inspect_snapshot(), the
// way tools/mproc.cpp hands it what pread() returned. It must not crash, read outside the buffer, or throw.
// Properties checked on every input: a report is valid only for bytes that start with the mproc magic and
// hold a whole header; an invalid mproc report says why and carries no state; every state field is a
// non-empty name with a non-empty JSON value; json_string() of any name yields a quoted string with no raw
// control byte or non-ASCII byte in it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <string>

#include "inspect.hpp"
#include "mproc/object_header.hpp"

namespace {

void require(bool property) {
    if (!property) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::size_t capacity = size == 0 ? 1 : size;
    std::byte* buffer = static_cast<std::byte*>(::operator new(capacity, std::align_val_t{128}));
    if (size != 0) std::memcpy(buffer, data, size);
    const std::string name = "/fuzz\n\"name\"\xff";
    const mproc::tool::ObjectReport report =
        mproc::tool::inspect_snapshot(std::span(buffer, size), size, name);
    if (report.valid) {
        require(report.is_mproc && size >= mproc::kObjectHeaderSize && report.reason.empty());
        require(!report.kind.empty());
    } else if (report.is_mproc) {
        require(!report.reason.empty() && report.state.empty() && report.threads.empty());
    } else {
        require(report.state.empty());
    }
    for (const auto& field : report.state) require(!field.name.empty() && !field.json.empty());

    const std::string quoted =
        mproc::tool::json_string(std::string_view(reinterpret_cast<const char*>(data), size < 64 ? size : 64));
    require(quoted.size() >= 2 && quoted.front() == '"' && quoted.back() == '"');
    for (const char c : quoted) require(static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f);
    ::operator delete(buffer, std::align_val_t{128});
    return 0;
}
