#!/usr/bin/env bash
# The main job (README): installs what is missing, builds build/release (shared with test.sh)
# and runs the delivery simulation on an embedded broker: `delivery run`. Arguments go to it,
# e.g. `bash scripts/run.sh --orders 5000 --seed 7`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
generator=()
[[ -f build/release/CMakeCache.txt ]] || generator=(-G Ninja) # keep an existing tree's choice
cmake -S . -B build/release "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j 2 --target delivery >&2
exec build/release/delivery run "$@"
