#!/usr/bin/env bash
# The main job (README): installs what is missing, builds build/release (shared with test.sh)
# and runs depot-tour, a guided run of an embedded broker. Arguments go to the program.
# Later: runs the delivery simulation instead of depot-tour.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
generator=()
[[ -f build/release/CMakeCache.txt ]] || generator=(-G Ninja) # keep an existing tree's choice
cmake -S . -B build/release "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j 2 --target depot-tour >&2
exec build/release/depot-tour "$@"
