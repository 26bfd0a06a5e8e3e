// The one main() of every doctest binary (tests/CMakeLists.txt globs support/*.cpp into each).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
