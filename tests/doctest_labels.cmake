# Labels every CTest test doctest_discover_tests() made from a doctest program with the case's
# suite, by name. doctest_discover_tests(ADD_LABELS 1) asks the program for each case's suite
# with --test-case=<name>, where a comma separates patterns, so a case whose name holds a comma
# gets no label; this asks once, for the XML listing, which names each case and its suite.
#
#   cmake -DPROGRAM=<doctest program> -DOUT=<ctest file> -P doctest_labels.cmake
# Run after each build of the program; OUT is one of the directory's TEST_INCLUDE_FILES.
execute_process(COMMAND "${PROGRAM}" --list-test-cases --reporters=xml
                OUTPUT_VARIABLE xml RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} --list-test-cases failed: ${rc}")
endif()
string(REGEX MATCHALL "<TestCase name=\"[^\"]*\" testsuite=\"[^\"]*\"" cases "${xml}")
set(script "")
foreach(c IN LISTS cases)
  string(REGEX REPLACE "^<TestCase name=\"([^\"]*)\" testsuite=\"([^\"]*)\"$" "\\1" name "${c}")
  string(REGEX REPLACE "^<TestCase name=\"([^\"]*)\" testsuite=\"([^\"]*)\"$" "\\2" suite "${c}")
  foreach(pair "&quot;|\"" "&apos;|'" "&lt;|<" "&gt;|>" "&amp;|&")
    string(REGEX REPLACE "^([^|]*)\\|(.*)$" "\\1" entity "${pair}")
    string(REGEX REPLACE "^([^|]*)\\|(.*)$" "\\2" char "${pair}")
    string(REPLACE "${entity}" "${char}" name "${name}")
    string(REPLACE "${entity}" "${char}" suite "${suite}")
  endforeach()
  if(NOT suite STREQUAL "")
    string(APPEND script "set_tests_properties([==[${name}]==] PROPERTIES LABELS [==[${suite}]==])\n")
  endif()
endforeach()
file(WRITE "${OUT}" "${script}")
