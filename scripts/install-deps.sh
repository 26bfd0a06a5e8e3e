#!/usr/bin/env bash
# Installs the Debian 12 packages Depot needs to build and test, and only those missing.
# Idempotent and silent when everything is there; runs apt-get update only when installing.
# Needs root only when something is missing (otherwise prints what to install and exits 1).
set -euo pipefail

packages=(cmake g++ clang ninja-build make git clang-format
          libasio-dev capnproto libcapnp-dev libcli11-dev libspdlog-dev doctest-dev
          # depotd's allocator (CMakeLists.txt says why)
          libmimalloc-dev
          # amqp://: the client's AMQP 0-9-1 transport (rabbitmq-c), and a real RabbitMQ that
          # the tests start on loopback (see scripts/rabbitmq-node.sh)
          librabbitmq-dev rabbitmq-server
          # the baseline `depot-bench e2e --compare local nats` measures, and its smoke test
          nats-server
          # clang's ASan/UBSan runtime: only a Recommends of clang-14 on Debian 12, and we
          # install without recommends, so name it or the sanitizer build cannot link.
          libclang-rt-14-dev)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
    echo "depot: missing Debian packages: ${missing[*]}" >&2
    echo "depot: run this as root, or first: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "depot: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Debian's rabbitmq-server and nats-server start a system service on every interface when
# installed. The tests start their own on loopback (scripts/rabbitmq-node.sh, bench/local_nats.h):
# tell the packages not to start one (policy-rc.d exit 101 = "not allowed"), unless the machine
# already has a policy.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    own_policy=1
fi
trap '[[ $own_policy -eq 1 ]] && rm -f "$policy"' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
