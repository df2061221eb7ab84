#include "mproc/error.hpp"

#include <cerrno>

namespace mproc {

// Out of line: the key function, so Error's vtable and type_info live in the library, once.
Error::~Error() = default;

SystemError::SystemError(const std::string& what, int error_number)
    : ErrorOf(error_number, std::system_category(), what) {}

void throw_system_error(const std::string& what) { throw_system_error(what, errno); }

void throw_system_error(const std::string& what, int error_number) { throw SystemError(what, error_number); }

}  // namespace mproc
