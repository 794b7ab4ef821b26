# Checks what libpthio.so exports; run by CTest with cmake -P (tests/package.cmake).
#   LIBRARY  the shared library (pthio_shared's file)
#   NM       nm (CMAKE_NM); c++filt is looked up beside it and on the PATH
# The library is compiled with hidden visibility and exports only what include/pthio marks
# PTHIO_API (include/pthio/export.hpp). Fails when a dynamic symbol mentions pthio::detail and
# matches no entry of the allowlist below, or when the public API is not exported at all (which
# would also mean this check reads nothing). Prints "PTHIO_TEST_SKIPPED:" where nm or c++filt is
# missing.
cmake_minimum_required(VERSION 3.22)

if(NOT DEFINED LIBRARY OR NOT EXISTS "${LIBRARY}")
  message(FATAL_ERROR "check_exports: LIBRARY (${LIBRARY}) does not exist")
endif()

# pthio::detail symbols libpthio.so may export, as regular expressions over c++filt's spelling.
# Public inline and template code (include/pthio) calls no out-of-line pthio::detail function:
# eigen.hpp's detail helpers are inline templates compiled into the caller. So the list holds
# only what the compiler exports on its own:
set(allowed
  # GCC gives the closure type of a lambda in a member function default visibility even under
  # -fvisibility=hidden, so std::thread's state object for the lambda that the CUDA staging
  # pipeline's constructor starts its worker with (src/cuda/staging.h) has exported typeinfo and
  # vtable (unique "V" objects). Only the library refers to them.
  "^(typeinfo|typeinfo name|vtable) for std::thread::_State_impl<std::thread::_Invoker<std::tuple<pthio::detail::staging_pipeline::staging_pipeline\\(pthio::detail::staging_pipeline::backend&\\)::{lambda\\(\\)#1}> > >$"
)

if(NOT NM)
  find_program(NM NAMES nm)
endif()
get_filename_component(nm_dir "${NM}" DIRECTORY)
find_program(CXXFILT NAMES c++filt HINTS "${nm_dir}")
if(NOT NM OR NOT EXISTS "${NM}" OR NOT CXXFILT)
  message("PTHIO_TEST_SKIPPED: check_exports needs nm and c++filt (nm: '${NM}', c++filt: '${CXXFILT}')")
  return()
endif()

execute_process(COMMAND "${NM}" -D --defined-only "${LIBRARY}"
                COMMAND "${CXXFILT}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE symbols ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "check_exports: nm -D --defined-only ${LIBRARY} | c++filt failed (${rc}): ${err}")
endif()

set(total 0)
set(detail 0)
set(unexpected "")
set(found_error_typeinfo OFF)
set(found_c_api OFF)
# Line by line without CMake lists: demangled names hold brackets and may hold semicolons.
string(APPEND symbols "\n")
while(NOT symbols STREQUAL "")
  string(FIND "${symbols}" "\n" eol)
  string(SUBSTRING "${symbols}" 0 ${eol} line)
  math(EXPR eol "${eol} + 1")
  string(SUBSTRING "${symbols}" ${eol} -1 symbols)
  # "<address> <type> <name>"
  if(NOT line MATCHES "^[0-9a-fA-F]+ [A-Za-z] (.+)$")
    continue()
  endif()
  set(name "${CMAKE_MATCH_1}")
  math(EXPR total "${total} + 1")
  if(name STREQUAL "typeinfo for pthio::error")
    set(found_error_typeinfo ON)
  elseif(name STREQUAL "pthio_version")
    set(found_c_api ON)
  endif()
  string(FIND "${name}" "pthio::detail" at)
  if(at EQUAL -1)
    continue()
  endif()
  math(EXPR detail "${detail} + 1")
  set(ok OFF)
  foreach(pattern IN LISTS allowed)
    if(name MATCHES "${pattern}")
      set(ok ON)
      break()
    endif()
  endforeach()
  if(NOT ok)
    string(APPEND unexpected "\n  ${name}")
  endif()
endwhile()

message(STATUS "${LIBRARY}: ${total} dynamic symbols, ${detail} mentioning pthio::detail")
if(NOT found_error_typeinfo OR NOT found_c_api)
  message(FATAL_ERROR "check_exports: the public API is not exported (typeinfo for pthio::error: "
                      "${found_error_typeinfo}, pthio_version: ${found_c_api})")
endif()
if(unexpected)
  message(FATAL_ERROR "check_exports: libpthio.so exports pthio::detail symbols outside the "
                      "allowlist (mark nothing under src/ PTHIO_API; see include/pthio/export.hpp):"
                      "${unexpected}")
endif()
