// src/object_header_wait.hpp (private) — the opener's wait for publication against a Deadline the caller
// already started, so that an opener that first waited for the file to be sized (SharedMemory::open) spends
// one time budget across both waits, not one per wait.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "deadline.hpp"
#include "mproc/object_header.hpp"

namespace mproc::detail {

// await_object_header() with the deadline given; the InvalidObject for a missed deadline names
// deadline.timeout().
ObjectHeaderFields await_object_header_until(std::span<std::byte> mapping, std::string_view object_label,
                                             ObjectKind expected_kind, std::uint32_t expected_layout_version,
                                             const Deadline& deadline);

}  // namespace mproc::detail
