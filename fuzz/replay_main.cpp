// fuzz/replay_main.cpp — main() of a fuzz target built without libFuzzer: runs LLVMFuzzerTestOneInput once
// on every file named on the command line and on every regular file below every directory named, in sorted
// order. Each input is passed in a heap buffer of exactly its size, so AddressSanitizer catches a read past
// the end just as under libFuzzer. Exits 1 when no input was found (a corpus that went missing must not
// pass silently), otherwise 0; a crash or failed check in the target ends the process as it would the fuzzer.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace {

bool collect_inputs(const std::filesystem::path& root, std::vector<std::filesystem::path>& inputs) {
    std::error_code error;
    if (std::filesystem::is_regular_file(root, error)) {
        inputs.push_back(root);
        return true;
    }
    if (!std::filesystem::is_directory(root, error)) {
        std::fprintf(stderr, "replay: %s is neither a file nor a directory\n", root.c_str());
        return false;
    }
    for (auto it = std::filesystem::recursive_directory_iterator(root, error);
         !error && it != std::filesystem::recursive_directory_iterator(); it.increment(error))
        if (it->is_regular_file()) inputs.push_back(it->path());
    if (error) {
        std::fprintf(stderr, "replay: reading %s: %s\n", root.c_str(), error.message().c_str());
        return false;
    }
    return true;
}

bool read_file(const std::filesystem::path& path, std::vector<char>& contents) {
    std::ifstream stream(path, std::ios::binary);
    if (!stream) return false;
    contents.assign(std::istreambuf_iterator<char>(stream), std::istreambuf_iterator<char>());
    return !stream.bad();
}

}  // namespace

int main(int argc, char** argv) {
    if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
    std::vector<std::filesystem::path> inputs;
    for (int i = 1; i < argc; ++i)
        if (!collect_inputs(argv[i], inputs)) return 1;
    std::sort(inputs.begin(), inputs.end());
    if (inputs.empty()) {
        std::fprintf(stderr, "replay: no input found in the %d path(s) given\n", argc - 1);
        return 1;
    }
    std::vector<char> contents;
    for (const auto& path : inputs) {
        if (!read_file(path, contents)) {
            std::fprintf(stderr, "replay: cannot read %s\n", path.c_str());
            return 1;
        }
        // Exactly the input's size, so that one byte too far is a heap-buffer-overflow under ASan.
        auto exact = std::make_unique<std::uint8_t[]>(contents.size());
        std::copy(contents.begin(), contents.end(), reinterpret_cast<char*>(exact.get()));
        std::fprintf(stderr, "replay: %s (%zu bytes)\n", path.c_str(), contents.size());
        LLVMFuzzerTestOneInput(exact.get(), contents.size());
    }
    std::fprintf(stderr, "replay: %zu input(s) ran\n", inputs.size());
    return 0;
}
