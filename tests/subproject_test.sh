#!/bin/sh
# mproc as a Meson subproject: configures tests/subproject_consumer with this source tree as
# subprojects/mproc, builds the consumer and runs it. Proves that dependency('mproc', fallback : 'mproc')
# works (meson.override_dependency), that a parent project's setup neither needs CppUnit nor builds mproc's
# tests, fuzz targets or benchmarks, and that the program runs against the subproject's library.
# usage: subproject_test.sh SOURCE_ROOT
set -eu
source_root=$1
work=$(mktemp -d /tmp/mproc-subproject.XXXXXX)
trap 'rm -rf "$work"' EXIT

cp -r "$source_root/tests/subproject_consumer" "$work/consumer"
cp "$source_root/tests/install_example.cpp" "$work/consumer/consumer.cpp"
mkdir "$work/consumer/subprojects"
ln -s "$source_root" "$work/consumer/subprojects/mproc"
cd "$work/consumer"
# plain: no optimisation, no debug info, so that compiling the library again stays cheap.
meson setup build --buildtype=plain --force-fallback-for=mproc >setup.log 2>&1 || {
    cat setup.log; echo "subproject test: the consumer's meson setup failed"; exit 1; }
# mproc's summary, "Parts built": each part must be off.
for part in tests fuzz bench "verify (spin)"; do
    line=$(grep -F "    $part" setup.log | head -n 1)
    case "$line" in
        *": False") ;;
        *) echo "subproject test: mproc as a subproject builds its $part (summary: '$line')"; exit 1 ;;
    esac
done
grep -q "Dependency mproc found: YES .* (overridden)" setup.log || {
    cat setup.log; echo "subproject test: dependency('mproc') was not taken from the subproject"; exit 1; }
ninja -C build consumer >build.log 2>&1 || { cat build.log; echo "subproject test: the build failed"; exit 1; }
./build/consumer | grep -q "installed mproc works" || { echo "subproject test: the consumer did not work"; exit 1; }
echo "subproject test: dependency('mproc') from the subproject builds and runs, without mproc's test tree"
