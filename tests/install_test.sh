#!/bin/sh
# Installs the build into a throwaway prefix (DESTDIR), then compiles and runs a small program from outside
# the source tree with `c++ $(pkg-config --cflags --libs mproc)`, once against the shared and once against
# the static library.
# Then a CMake project (tests/cmake_consumer) finds the same install with find_package(mproc 0.1) and
# builds the same program against the imported target mproc::mproc; a version the package cannot satisfy
# must not be found.
# Then the README's example, taken from README.md as it stands, is built and run the same way, so the
# README cannot drift from the API.
# usage: install_test.sh BUILD_DIR EXAMPLE_SOURCE README [CMAKE_CONSUMER_DIR]
set -eu
build_dir=$1
example=$2
readme=$3
cmake_consumer=${4:-}
work=$(mktemp -d /tmp/mproc-install.XXXXXX)
trap 'rm -rf "$work"' EXIT

meson install -C "$build_dir" --destdir "$work/root" --no-rebuild --quiet >"$work/install.log" 2>&1 || {
    cat "$work/install.log"; echo "meson install failed"; exit 1; }
pcfile=$(find "$work/root" -name mproc.pc | head -n 1)
[ -n "$pcfile" ] || { echo "mproc.pc was not installed"; exit 1; }
export PKG_CONFIG_PATH="$(dirname "$pcfile")"
export PKG_CONFIG_SYSROOT_DIR="$work/root"
# pkgconf prefixes the sysroot to variables too, so libdir is already inside the throwaway root.
libdir=$(pkg-config --variable=libdir mproc)
cp "$example" "$work/example.cpp"
cd "$work"

# shellcheck disable=SC2046 # word splitting of pkg-config's output is intended
c++ -std=c++20 -o example-shared example.cpp $(pkg-config --cflags --libs mproc)
LD_LIBRARY_PATH="$libdir" ./example-shared

# The static library, with its private requirements (liburing) from `pkg-config --static`.
static_libs=$(pkg-config --static --libs mproc | sed 's/-lmproc\b/-Wl,-Bstatic -lmproc -Wl,-Bdynamic/')
# shellcheck disable=SC2046,SC2086
c++ -std=c++20 -o example-static example.cpp $(pkg-config --cflags mproc) $static_libs
./example-static
if ldd ./example-static | grep -q libmproc; then echo "static example still links libmproc.so"; exit 1; fi

if [ -n "$cmake_consumer" ]; then
    config=$(find "$work/root" -name mprocConfig.cmake | head -n 1)
    [ -n "$config" ] || { echo "mprocConfig.cmake was not installed"; exit 1; }
    [ -f "$(dirname "$config")/mprocConfigVersion.cmake" ] || {
        echo "mprocConfigVersion.cmake was not installed"; exit 1; }
    cp -r "$cmake_consumer" "$work/cmake-consumer"
    cp "$example" "$work/cmake-consumer/consumer.cpp"
    # The package directory itself, not the prefix: the install sits under DESTDIR.
    cmake -S "$work/cmake-consumer" -B "$work/cmake-build" -Dmproc_DIR="$(dirname "$config")" \
        >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; echo "cmake could not configure the consumer"; exit 1; }
    cmake --build "$work/cmake-build" >>"$work/cmake.log" 2>&1 || {
        cat "$work/cmake.log"; echo "cmake could not build the consumer"; exit 1; }
    "$work/cmake-build/consumer" | grep -q "installed mproc works" || {
        echo "the CMake consumer did not work"; exit 1; }
    # The version file refuses a newer major version.
    mkdir "$work/cmake-too-new"
    sed 's/find_package(mproc 0.1 REQUIRED)/find_package(mproc 99 REQUIRED)/' "$cmake_consumer/CMakeLists.txt" \
        >"$work/cmake-too-new/CMakeLists.txt"
    cp "$example" "$work/cmake-too-new/consumer.cpp"
    if cmake -S "$work/cmake-too-new" -B "$work/cmake-too-new/build" -Dmproc_DIR="$(dirname "$config")" \
            >"$work/cmake-too-new.log" 2>&1; then
        echo "find_package(mproc 99) accepted version $(pkg-config --modversion mproc)"; exit 1
    fi
    grep -q 'requested version "99"' "$work/cmake-too-new.log" || {
        cat "$work/cmake-too-new.log"; echo "cmake refused mproc 99 for another reason"; exit 1; }
fi

# The first C++ block of the README.
awk '/^```cpp$/ {inside = 1; next} /^```$/ && inside {exit} inside {print}' "$readme" >readme_example.cpp
[ -s readme_example.cpp ] || { echo "README.md has no C++ example"; exit 1; }
# shellcheck disable=SC2046
c++ -std=c++20 -o readme-example readme_example.cpp $(pkg-config --cflags --libs mproc)
LD_LIBRARY_PATH="$libdir" ./readme-example >readme-example.out
grep -q "got 9" readme-example.out || { echo "the README example did not print what it promises"; exit 1; }
echo "install test: shared and static builds from pkg-config work, so do the CMake package and the README's example"
