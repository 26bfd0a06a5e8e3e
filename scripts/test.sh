#!/usr/bin/env bash
# The test command (README: `sudo bash scripts/test.sh`, or as root `bash scripts/test.sh`; CI runs
# it through .ci/run). On a fresh Debian 12 machine it installs what is missing, then
#   1. checks that our C++ sources are clang-formatted (first: it takes a second),
#   2. builds build/release (g++, RelWithDebInfo, Ninja) and runs every ctest,
#   3. builds build/sanitize (clang, Debug, ASan + UBSan, no bench) and runs every ctest again,
# and ends with one line: `N passed, 0 failed` (N = ctest tests run across both builds).
# Any failure stops it with a non-zero exit before that line.
# DEPOT_SKIP_SANITIZE=1 skips step 3 for a quick local run (CI never sets it).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "== format: clang-format --dry-run -Werror"
dirs=()
for d in broker client bench tests examples services protocol tools; do
    [[ -d "$d" ]] && dirs+=("$d")
done
unformatted=()
if [[ ${#dirs[@]} -gt 0 ]]; then
    while IFS= read -r -d '' f; do
        clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || unformatted+=("$f")
    done < <(find "${dirs[@]}" -type f \( -name '*.h' -o -name '*.cpp' \) -print0 | sort -z)
fi
if [[ ${#unformatted[@]} -gt 0 ]]; then
    echo "depot: ${#unformatted[@]} file(s) not clang-formatted (fix: clang-format -i <file>):" >&2
    printf '  %s\n' "${unformatted[@]}" >&2
    exit 1
fi

# doctest_discover_tests registers each case by name through a CMake list, which splits at
# ';': a case with one in its name would be registered as pieces that run nothing.
if grep -rnE 'TEST_CASE\("[^"]*;' tests/ >&2; then
    echo "depot: test case names may not contain ';' (see above)" >&2
    exit 1
fi

jobs=2
total=0

# build_and_test <label> <build dir> <cmake args...>
build_and_test() {
    local label=$1 dir=$2
    shift 2
    local generator=()
    [[ -f "$dir/CMakeCache.txt" ]] || generator=(-G Ninja) # keep an existing tree's choice
    echo "== $label: configure and build ($dir)"
    cmake -S . -B "$dir" "${generator[@]}" "$@" >/dev/null
    cmake --build "$dir" -j "$jobs"
    echo "== $label: ctest (${SECONDS}s so far)"
    local log="$dir/ctest.log"
    ctest --test-dir "$dir" --output-on-failure -j "$jobs" | tee "$log"
    # ctest ends with e.g. "100% tests passed, 0 tests failed out of 57".
    local count
    count=$(sed -nE 's/.* tests passed, 0 tests failed out of ([0-9]+).*/\1/p' "$log" | tail -n 1)
    if [[ -z "$count" || "$count" -eq 0 ]]; then
        echo "depot: $label: ctest ran no tests (see $log)" >&2
        exit 1
    fi
    total=$((total + count))
}

build_and_test "release" build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo

if [[ "${DEPOT_SKIP_SANITIZE:-0}" != 1 ]]; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    build_and_test "sanitize (ASan+UBSan)" build/sanitize -DCMAKE_BUILD_TYPE=Debug \
        -DDEPOT_SANITIZE=ON -DDEPOT_BUILD_BENCH=OFF \
        -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
fi

echo "$total passed, 0 failed"
