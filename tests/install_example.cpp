// Built outside the source tree against the installed headers and library, found through pkg-config and
// through the CMake package (install_test.sh), and against mproc as a Meson subproject
// (subproject_test.sh): proves the package is usable as a user gets it. It also uses a template whose inline
// code calls into the library (Queue<int>) and catches an error thrown inside the library by a standard
// base class, which fails when the shared library hides a name or a type_info that user code needs.
#include <mproc/mproc.hpp>

#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <system_error>

int main() {
    mproc::SharedMemory segment = mproc::SharedMemory::anonymous(64);
    mproc::Process child([&segment] { std::memcpy(segment.bytes().data(), "installed", 10); });
    child.start();
    child.join();
    if (child.exitcode() != 0) return 1;
    if (std::memcmp(segment.bytes().data(), "installed", 10) != 0) return 2;

    auto [parent_end, child_end] = mproc::fd_pipe();
    mproc::Process echo([&child_end] { child_end.send_bytes(child_end.recv_bytes()); });
    echo.start();
    const std::string greeting = "over a connection";
    parent_end.send_bytes(std::as_bytes(std::span(greeting)));
    const auto reply = parent_end.recv_bytes();
    echo.join();
    if (reply.size() != greeting.size() || std::memcmp(reply.data(), greeting.data(), reply.size()) != 0) return 3;
    mproc::Queue<int> numbers(8);
    mproc::Process producer([&numbers] { for (int n = 1; n <= 3; ++n) numbers.put(n); });
    producer.start();
    const int sum = numbers.get() + numbers.get() + numbers.get();
    producer.join();
    if (sum != 6 || producer.exitcode() != 0) return 4;

    try {
        mproc::SharedMemory::open("/mproc-install-example-no-such-object");
        return 5;
    } catch (const std::system_error& error) {
        if (error.code() != std::errc::no_such_file_or_directory) return 6;
    }
    std::puts("installed mproc works");
    return 0;
}
