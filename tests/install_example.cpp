// Built by install_test.sh outside the source tree against the installed headers and library, found
// through pkg-config: proves the installed package is usable as a user gets it.
#include <mproc/mproc.hpp>

#include <cstdio>
#include <cstring>
#include <span>
#include <string>

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
    std::puts("installed mproc works");
    return 0;
}
