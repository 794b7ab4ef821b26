// pthio — what libpthio.so exports.
//
// The library is compiled with hidden visibility (-fvisibility=hidden, inline functions hidden
// too), so only what is marked PTHIO_API is part of the shared library's ABI: the public classes
// (which exports their out-of-line members, typeinfo and vtables, so that a pthio::error thrown
// inside libpthio.so is caught by type in the program) and the public free functions. Internals
// (pthio::detail, anything declared only under src/) stay local to the library.
//
// CMake defines PTHIO_BUILDING while compiling the library and PTHIO_STATIC for programs that link
// the static variant; only Windows needs them (dllexport / dllimport). The C API has its own,
// C-compatible PTHIO_C_API in <pthio/pthio.h>.
#pragma once

#if defined(_WIN32) || defined(__CYGWIN__)
#if defined(PTHIO_STATIC)
#define PTHIO_API
#elif defined(PTHIO_BUILDING)
#define PTHIO_API __declspec(dllexport)
#else
#define PTHIO_API __declspec(dllimport)
#endif
#elif defined(__GNUC__)
#define PTHIO_API __attribute__((visibility("default")))
#else
#define PTHIO_API
#endif
