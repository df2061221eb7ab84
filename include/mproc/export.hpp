// mproc/export.hpp — which names the shared library exports.
//
// The library is compiled with hidden visibility (gnu_symbol_visibility 'hidden' in src/meson.build), so
// a name is exported only when its declaration carries MPROC_API: the public classes, the public free
// functions, and those few `detail` functions that inline or template code in the public headers calls
// (tests/exported_symbols_test.sh holds the reviewed list of those). Everything in src/*.hpp stays inside
// the library. The attribute sits on the declaration, not on the namespace: clang takes a function's
// visibility from the namespace block of its definition, GCC from its first declaration, and only a
// declaration's own attribute means the same to both.
// Cost: none at run time; calls between hidden functions inside the library skip the PLT.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define MPROC_API __attribute__((visibility("default")))
#else
#define MPROC_API
#endif
