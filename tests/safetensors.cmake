# safetensors cross-check against the safetensors package itself (PyPI; Debian has no package for
# it): registered for every interpreter with torch and safetensors (cmake/pthio_python.cmake; the
# venv scripts/deps.sh makes has both). Elsewhere the files the package wrote (fixtures/st, made by
# fixtures/st/make.py) are the cross-check.
if(TARGET pthio_cli)
  pthio_python_test(NAME "safetensors: conversions by pthio agree with the safetensors package and torch, both ways"
                    NEEDS torch safetensors
                    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/st_roundtrip.py $<TARGET_FILE:pthio_cli>
                              ${CMAKE_CURRENT_BINARY_DIR}/st_roundtrip-@TORCH@ ${PROJECT_SOURCE_DIR}/fixtures)
endif()
