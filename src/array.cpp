// Array: what is Array's own on top of the core in value.cpp (layout, validation and segments are shared
// with Value, an Array of one element of kind value): the bounds check's error path, kept out of line so
// that at() and atomic_at() inline to one compare.
#include "mproc/array.hpp"

#include <string>

#include "mproc/error.hpp"

namespace mproc::detail {

void throw_index_out_of_range(std::string_view label, const char* operation, std::size_t index, std::size_t count) {
    throw ValueError(std::string(label) + ": " + operation + ": index " + std::to_string(index) +
                     (count == 0 ? std::string(" is out of range: the array is empty")
                                 : " is outside 0.." + std::to_string(count - 1) + " (size " + std::to_string(count) +
                                       ")"));
}

}  // namespace mproc::detail
