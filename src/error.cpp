#include "mproc/error.hpp"

#include <cerrno>
#include <cstring>

namespace mproc {

SystemError::SystemError(const std::string& what, int error_number)
    : Error(what + ": " + std::strerror(error_number)), error_number_(error_number) {}

void throw_system_error(const std::string& what) { throw_system_error(what, errno); }

void throw_system_error(const std::string& what, int error_number) { throw SystemError(what, error_number); }

}  // namespace mproc
