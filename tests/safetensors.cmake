# safetensors cross-check against the safetensors package itself (PyPI; Debian has no package for
# it). Registered only where a Python with torch 2.x and safetensors exists; elsewhere the files the
# package wrote (fixtures/st, made by fixtures/st/make.py) are the cross-check.
set(PTHIO_SAFETENSORS_PYTHON "/opt/torch2/bin/python" CACHE FILEPATH
    "A Python with torch 2.x and safetensors for the safetensors cross-check")
if(EXISTS "${PTHIO_SAFETENSORS_PYTHON}")
  execute_process(COMMAND ${PTHIO_SAFETENSORS_PYTHON} -c "import torch, safetensors"
                  RESULT_VARIABLE PTHIO_HAVE_SAFETENSORS OUTPUT_QUIET ERROR_QUIET)
else()
  set(PTHIO_HAVE_SAFETENSORS 1)
endif()
if(PTHIO_HAVE_SAFETENSORS EQUAL 0 AND TARGET pthio_cli)
  add_test(NAME "safetensors: conversions by pthio agree with the safetensors package and torch, both ways"
           COMMAND ${PTHIO_SAFETENSORS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/st_roundtrip.py
                   $<TARGET_FILE:pthio_cli> ${CMAKE_CURRENT_BINARY_DIR}/st_roundtrip ${PROJECT_SOURCE_DIR}/fixtures)
else()
  message(STATUS "No Python with torch and safetensors at ${PTHIO_SAFETENSORS_PYTHON}: "
                 "the safetensors package cross-check is not registered")
endif()
