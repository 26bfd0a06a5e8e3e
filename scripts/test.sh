#!/usr/bin/env bash
# The test command (README, and CI through .ci/run): on a fresh Debian 12 machine as root it
# installs what is missing, then
#   1. builds build/release (RelWithDebInfo, g++) and runs every ctest,
#   2. builds build/sanitize (clang, ASan + UBSan, Debug) and runs every ctest again,
#   3. checks that our C++ is clang-formatted.
# DEPOT_SKIP_SANITIZE=1 skips step 2 for a quick local run (CI never sets it).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

jobs=$(nproc)
total=0

run_suite() { # name, build dir, extra cmake args...
    local name=$1 dir=$2
    shift 2
    echo "== $name: configure and build ($dir)"
    cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
    cmake --build "$dir" -j "$jobs"
    echo "== $name: ctest"
    local log="$dir/ctest.log"
    ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 300 | tee "$log"
    local count
    count=$(sed -nE 's/.*tests passed, 0 tests failed out of ([0-9]+).*/\1/p' "$log" | tail -n 1)
    total=$((total + ${count:-0}))
}

run_suite "release" build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo

if [[ "${DEPOT_SKIP_SANITIZE:-0}" != 1 ]]; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    run_suite "sanitize (ASan+UBSan)" build/sanitize -DCMAKE_BUILD_TYPE=Debug \
        -DDEPOT_SANITIZE=ON -DDEPOT_BUILD_BENCH=OFF \
        -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
fi

echo "== format: clang-format --dry-run"
mapfile -t sources < <(git ls-files --cached --others --exclude-standard -- \
    '*.h' '*.cpp' | grep -E '^(broker|client|bench|tests|examples|services|protocol)/' || true)
unformatted=()
for f in "${sources[@]}"; do
    [[ -f "$f" ]] || continue
    clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || unformatted+=("$f")
done
if [[ ${#unformatted[@]} -gt 0 ]]; then
    echo "depot: not clang-formatted (run clang-format -i on them):" >&2
    printf '  %s\n' "${unformatted[@]}" >&2
    exit 1
fi

echo
echo "$total passed, 0 failed"
