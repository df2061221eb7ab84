// fuzz/selftest/fuzz-selftest-ub.cpp — a fuzz target that is broken on purpose: every input overflows a
// signed int. It exists only so that tests/run can check its own libFuzzer step: with UndefinedBehaviorSanitizer
// set to halt on the first report (-fno-sanitize-recover=all, UBSAN_OPTIONS=halt_on_error=1) this target
// must be reported as a failure by the code that runs the real targets. If it is not, a real target could
// overflow on every input and still pass. Never part of the real target list.
#include <climits>
#include <cstddef>
#include <cstdint>

namespace {

// volatile: the compiler may not fold the overflow away or prove it unreachable; it happens at run time.
volatile int largest = INT_MAX;
volatile int sink = 0;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* /*data*/, std::size_t size) {
    const int step = 1 + static_cast<int>(size & 0u);  // always 1, but computed from the input
    sink = largest + step;                              // signed overflow: undefined behaviour, every input
    return 0;
}
