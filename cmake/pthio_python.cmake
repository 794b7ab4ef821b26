# The one way the tests find Python (included from tests/CMakeLists.txt).
#
# The cross-checks against real PyTorch run under every interpreter that can run them, so that
# both torch layouts are tested where both torches are installed. The candidates, in order:
#   PTHIO_PYTHONS    interpreters named by the user (a ;-list), tried first;
#   /usr/bin/python3 Debian's, with python3-torch (torch 1.13) and python3-numpy;
#   PTHIO_VENV       the virtual environment scripts/deps.sh makes, with PyPI's torch 2.x,
#                    safetensors and numpy;
#   python3          whatever PATH finds, for the tests that need no module.
# Each candidate is probed once for its torch, numpy and safetensors versions; the answer is cached
# until the interpreter or one of its sys.path folders changes (importing torch takes seconds).
# Two candidates with the same sys.prefix are one interpreter.
#
# Tests then register through pthio_python_test(), once per interpreter that has what they need.

set(PTHIO_PYTHONS "" CACHE STRING
    "Python interpreters for the PyTorch cross-checks, tried before the default ones (a ;-list)")
if(DEFINED ENV{PTHIO_VENV} AND NOT "$ENV{PTHIO_VENV}" STREQUAL "")
  set(_pthio_default_venv "$ENV{PTHIO_VENV}")
else()
  set(_pthio_default_venv "$ENV{HOME}/.cache/pthio/venv-torch2")
endif()
set(PTHIO_VENV "${_pthio_default_venv}" CACHE PATH
    "The virtual environment scripts/deps.sh makes (PyPI's torch 2.x, safetensors, numpy)")
find_program(PTHIO_PATH_PYTHON3 python3 DOC "The python3 on PATH (tests that need no module)")

# Prints one key=value per line; a module that fails to import has an empty version.
set(_pthio_python_probe [=[
import importlib, os, sys
print("prefix=" + sys.prefix)
for name in ("torch", "numpy", "safetensors"):
    try:
        version = str(importlib.import_module(name).__version__)
    except Exception:
        version = ""
    print(name + "=" + version)
for p in sys.path:
    if p and os.path.isdir(p):
        print("site=" + p)
]=])

# The signature of a probe's answer: the interpreter's and its sys.path folders' modification
# times (pip and apt add or replace entries in those folders when they install a module).
function(_pthio_python_signature out python sites)
  file(TIMESTAMP "${python}" sig "%s")
  foreach(site IN LISTS sites)
    file(TIMESTAMP "${site}" t "%s")
    string(APPEND sig ",${t}")
  endforeach()
  set(${out} "${sig}" PARENT_SCOPE)
endfunction()

# Sets <prefix>_OK, _PREFIX, _TORCH, _NUMPY, _SAFETENSORS in the caller's scope. The answer is
# kept in the cache as a list of key=value items, the first the signature.
function(_pthio_python_probe python prefix)
  string(MAKE_C_IDENTIFIER "${python}" id)
  set(answer "")
  if(DEFINED _PTHIO_PYTHON_PROBE_${id})
    set(cached "${_PTHIO_PYTHON_PROBE_${id}}")
    set(sites "${cached}")
    list(FILTER sites INCLUDE REGEX "^site=")
    list(TRANSFORM sites REPLACE "^site=" "")
    _pthio_python_signature(sig "${python}" "${sites}")
    if("sig=${sig}" IN_LIST cached AND cached MATCHES ";prefix=")
      set(answer "${cached}")
    endif()
  endif()
  if(NOT answer)
    execute_process(COMMAND "${python}" -c "${_pthio_python_probe}"
                    WORKING_DIRECTORY "${CMAKE_CURRENT_BINARY_DIR}"
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_QUIET TIMEOUT 300)
    if(NOT rc EQUAL 0 OR NOT out MATCHES "prefix=")
      set(${prefix}_OK FALSE PARENT_SCOPE)
      return()
    endif()
    string(STRIP "${out}" out)
    string(REPLACE "\n" ";" lines "${out}")
    set(sites "${lines}")
    list(FILTER sites INCLUDE REGEX "^site=")
    list(TRANSFORM sites REPLACE "^site=" "")
    _pthio_python_signature(sig "${python}" "${sites}")
    set(answer "sig=${sig};${lines}")
    set(_PTHIO_PYTHON_PROBE_${id} "${answer}" CACHE INTERNAL "")
  endif()
  set(${prefix}_OK TRUE PARENT_SCOPE)
  foreach(key prefix torch numpy safetensors)
    string(TOUPPER "${key}" var)
    set(item "${answer}")
    list(FILTER item INCLUDE REGEX "^${key}=")
    list(TRANSFORM item REPLACE "^${key}=" "")
    set(${prefix}_${var} "${item}" PARENT_SCOPE)
  endforeach()
endfunction()

# Probe every candidate. Results: PTHIO_PYTHON (the first that runs at all, or empty),
# _pthio_pythons (the interpreters, one per sys.prefix) and, for each, _pthio_py_<id>_torch /
# _numpy / _safetensors (versions, empty when absent).
set(_pthio_candidates ${PTHIO_PYTHONS} /usr/bin/python3)
if(PTHIO_VENV)
  list(APPEND _pthio_candidates "${PTHIO_VENV}/bin/python")
endif()
if(PTHIO_PATH_PYTHON3)
  list(APPEND _pthio_candidates "${PTHIO_PATH_PYTHON3}")
endif()
set(PTHIO_PYTHON "")
set(_pthio_pythons "")
set(_pthio_prefixes "")
foreach(python IN LISTS _pthio_candidates)
  if(NOT IS_ABSOLUTE "${python}")
    find_program(_pthio_resolved "${python}" NO_CACHE)
    if(NOT _pthio_resolved)
      message(STATUS "Python candidate ${python}: not found")
      continue()
    endif()
    set(python "${_pthio_resolved}")
  endif()
  if(NOT EXISTS "${python}")
    continue()  # the venv before scripts/deps.sh made it, or no Debian python
  endif()
  _pthio_python_probe("${python}" _p)
  if(NOT _p_OK)
    message(STATUS "Python candidate ${python}: does not run")
    continue()
  endif()
  if(_p_PREFIX IN_LIST _pthio_prefixes)
    continue()
  endif()
  list(APPEND _pthio_prefixes "${_p_PREFIX}")
  list(APPEND _pthio_pythons "${python}")
  string(MAKE_C_IDENTIFIER "${python}" _id)
  set(_pthio_py_${_id}_torch "${_p_TORCH}")
  set(_pthio_py_${_id}_numpy "${_p_NUMPY}")
  set(_pthio_py_${_id}_safetensors "${_p_SAFETENSORS}")
  if(NOT PTHIO_PYTHON)
    set(PTHIO_PYTHON "${python}")
  endif()
  foreach(m torch numpy safetensors)
    string(TOUPPER "${m}" _M)
    if(_p_${_M})
      set(_v_${m} "${_p_${_M}}")
    else()
      set(_v_${m} "-")
    endif()
  endforeach()
  message(STATUS "Python ${python}: torch ${_v_torch}, numpy ${_v_numpy}, safetensors ${_v_safetensors}")
endforeach()
if(NOT PTHIO_PYTHON)
  message(WARNING "No Python found (tried: ${_pthio_candidates}): no Python test is registered")
endif()

# pthio_python_test(NAME <title> [NEEDS <module>...] [LABELS <label>...] [PROPERTIES <p> <v>...]
#                   [NAMES_VAR <var>] COMMAND <script> [<arg>...])
#
# NEEDS torch: one test per interpreter that imports every module in NEEDS, with a different torch
# version each, named "<title> (torch <version>)" and labelled `torch`; "@TORCH@" in COMMAND and
# PROPERTIES becomes "torch-<version>" (each run's own scratch folder, so the runs may go in
# parallel). Without torch in NEEDS: one test, "<title>", under the first interpreter that
# imports NEEDS. Every test runs <python> <script> <args...> with PYTHONDONTWRITEBYTECODE=1.
# Where no interpreter qualifies, a warning names the test left out. NAMES_VAR receives the
# names of the tests registered (set_tests_properties on them afterwards).
function(pthio_python_test)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "NAME;NAMES_VAR" "NEEDS;LABELS;PROPERTIES;COMMAND")
  set(names "")
  set(torch_versions "")
  foreach(python IN LISTS _pthio_pythons)
    string(MAKE_C_IDENTIFIER "${python}" id)
    set(ok TRUE)
    foreach(m IN LISTS arg_NEEDS)
      if(NOT _pthio_py_${id}_${m})
        set(ok FALSE)
      endif()
    endforeach()
    if(NOT ok)
      continue()
    endif()
    set(labels ${arg_LABELS})
    if("torch" IN_LIST arg_NEEDS)
      # The local version (+cu132, +cpu) names the build, not the torch.
      string(REGEX REPLACE "\\+.*$" "" version "${_pthio_py_${id}_torch}")
      if(version IN_LIST torch_versions)
        message(STATUS "${python} has torch ${version} too: \"${arg_NAME}\" runs once for it")
        continue()
      endif()
      list(APPEND torch_versions "${version}")
      set(name "${arg_NAME} (torch ${version})")
      set(tag "torch-${version}")
      list(APPEND labels torch)
    else()
      set(name "${arg_NAME}")
      set(tag "python")
    endif()
    list(TRANSFORM arg_COMMAND REPLACE "@TORCH@" "${tag}" OUTPUT_VARIABLE command)
    list(TRANSFORM arg_PROPERTIES REPLACE "@TORCH@" "${tag}" OUTPUT_VARIABLE properties)
    add_test(NAME "${name}" COMMAND "${python}" ${command})
    set_tests_properties("${name}" PROPERTIES ENVIRONMENT PYTHONDONTWRITEBYTECODE=1 ${properties})
    if(labels)
      set_tests_properties("${name}" PROPERTIES LABELS "${labels}")
    endif()
    list(APPEND names "${name}")
    if(NOT "torch" IN_LIST arg_NEEDS)
      break()
    endif()
  endforeach()
  if(NOT names)
    if(arg_NEEDS)
      string(REPLACE ";" ", " needs "${arg_NEEDS}")
    else()
      set(needs "nothing more")
    endif()
    message(WARNING "No Python with ${needs} (candidates: ${_pthio_candidates}; see scripts/deps.sh): "
                    "\"${arg_NAME}\" is not registered")
  endif()
  if(arg_NAMES_VAR)
    set(${arg_NAMES_VAR} "${names}" PARENT_SCOPE)
  endif()
endfunction()
