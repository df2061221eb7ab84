// Built by install_test.sh outside the source tree against the installed headers and library, found
// through pkg-config: proves the installed package is usable as a user gets it.
#include <mproc/mproc.hpp>

#include <cstdio>
#include <cstring>

int main() {
    mproc::SharedMemory segment = mproc::SharedMemory::anonymous(64);
    mproc::Process child([&segment] { std::memcpy(segment.bytes().data(), "installed", 10); });
    child.start();
    child.join();
    if (child.exitcode() != 0) return 1;
    if (std::memcmp(segment.bytes().data(), "installed", 10) != 0) return 2;
    std::puts("installed mproc works");
    return 0;
}
