# Runs one example program for ctest (examples/CMakeLists.txt):
#   cmake -DPROGRAM=<path> -DEXPECT=<regex> -P run_example.cmake -- <arguments of the program>
# and fails unless the program exits with status 0, its output matches EXPECT and neither of
# its streams holds a sanitizer report. ctest's PASS_REGULAR_EXPRESSION alone would take a
# program that printed the expected line and then crashed, or exited nonzero, as a pass.
cmake_minimum_required(VERSION 3.25)

if(NOT DEFINED PROGRAM OR NOT DEFINED EXPECT)
  message(FATAL_ERROR "run_example.cmake: set -DPROGRAM=<path> and -DEXPECT=<regex>")
endif()

# The program's arguments: everything after "--" (an argument cannot hold a ";", which CMake
# lists would split).
set(args)
set(after_dashes FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE 1 ${last})
  if(after_dashes)
    list(APPEND args "${CMAKE_ARGV${i}}")
  elseif(CMAKE_ARGV${i} STREQUAL "--")
    set(after_dashes TRUE)
  endif()
endforeach()

execute_process(COMMAND "${PROGRAM}" ${args} RESULT_VARIABLE status OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
# Shown by ctest --output-on-failure (and checked by the test's FAIL_REGULAR_EXPRESSION).
message("${out}")
message("${err}")

list(JOIN args " " shown)
string(STRIP "${PROGRAM} ${shown}" shown)
# `status` is the exit status, or a text such as "Segmentation fault" when a signal ended it.
if(NOT status STREQUAL "0")
  message(FATAL_ERROR "${shown}: exit status ${status}, expected 0")
endif()
if(NOT out MATCHES "${EXPECT}")
  message(FATAL_ERROR "${shown}: the output does not match '${EXPECT}'")
endif()
# UBSan's "runtime error:", and the header of every sanitizer's report ("==pid==ERROR:
# AddressSanitizer: ...", "ERROR: LeakSanitizer: ..."): a report fails even at exit status 0.
if("${out}${err}" MATCHES "runtime error:|AddressSanitizer|LeakSanitizer|ERROR: [A-Za-z]*Sanitizer")
  message(FATAL_ERROR "${shown}: a sanitizer report (${CMAKE_MATCH_0})")
endif()
