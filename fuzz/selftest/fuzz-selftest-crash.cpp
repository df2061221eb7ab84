// fuzz/selftest/fuzz-selftest-crash.cpp — a fuzz target that is broken on purpose: every input is read one
// byte past its end, which AddressSanitizer reports as a heap-buffer-overflow. It exists only so that
// tests/run can check that its libFuzzer step reports a crashing target as a failure (and that the corpus
// replay does too). Never part of the real target list.
#include <cstddef>
#include <cstdint>

namespace {

volatile std::uint8_t sink = 0;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    sink = data[size];  // one past the input: libFuzzer and the replay main both pass exactly `size` bytes
    return 0;
}
