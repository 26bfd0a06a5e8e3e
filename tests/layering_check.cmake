# Keeps broker/core a pure library: no networking, serialization, logging, threads or clock reads
# (time enters the core as a value). Registered as the ctest `layering-check`; by hand:
#   cmake -DROOT=<repo> -P tests/layering_check.cmake
# Prints every offending file:line and fails. `//` comments are ignored, so a comment may name a
# forbidden header or call.
if(NOT ROOT)
  get_filename_component(ROOT "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
endif()

set(include_prefix "^[ \t]*#[ \t]*include[ \t]*")
set(forbidden_includes # regular expressions for what follows `#include`
    "<asio" "\"asio" "<capnp" "<kj/" "<spdlog" "<sys/socket" "<netinet" "<arpa/" "<thread>"
    "<mutex>")
set(forbidden_calls steady_clock::now system_clock::now high_resolution_clock::now)

file(GLOB_RECURSE files LIST_DIRECTORIES false
     "${ROOT}/broker/core/*.h" "${ROOT}/broker/core/*.hpp" "${ROOT}/broker/core/*.ipp"
     "${ROOT}/broker/core/*.cpp" "${ROOT}/broker/core/*.cc")
list(SORT files)

set(failures "")
foreach(file IN LISTS files)
  file(RELATIVE_PATH rel "${ROOT}" "${file}")
  file(READ "${file}" content)
  # One list item per line. `;` would split a line, `[`/`]` would glue lines together in CMake's
  # list expansion and `\` escapes; none matters to the patterns, so neutralise them first.
  string(REPLACE "\\" "/" content "${content}")
  string(REPLACE ";" "," content "${content}")
  string(REPLACE "[" "(" content "${content}")
  string(REPLACE "]" ")" content "${content}")
  string(REPLACE "\r" "" content "${content}")
  string(REPLACE "\n" ";" lines "${content}")
  set(number 0)
  foreach(line IN LISTS lines)
    math(EXPR number "${number} + 1")
    string(REGEX REPLACE "//.*$" "" code "${line}")
    foreach(header IN LISTS forbidden_includes)
      if(code MATCHES "${include_prefix}${header}")
        string(STRIP "${code}" shown)
        string(APPEND failures "  ${rel}:${number}: ${shown}\n")
      endif()
    endforeach()
    foreach(call IN LISTS forbidden_calls)
      string(FIND "${code}" "${call}" at)
      if(NOT at EQUAL -1)
        string(APPEND failures "  ${rel}:${number}: calls ${call}\n")
      endif()
    endforeach()
  endforeach()
endforeach()

list(LENGTH files count)
if(failures)
  message(FATAL_ERROR
          "broker/core must stay free of I/O, serialization, logging, threads and clocks "
          "(STYLE.md points 1-3; time is passed in as a TimePoint):\n${failures}")
endif()
message(STATUS "layering check: ${count} files in broker/core are clean")
