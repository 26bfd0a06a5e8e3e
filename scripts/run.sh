#!/usr/bin/env bash
# The main job (README): installs what is missing, builds, and runs depot-tour, a guided run of
# an embedded broker. Once the delivery business exists it runs the delivery simulation instead.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j "$(nproc)" --target depot-tour
exec build/release/depot-tour "$@"
