#!/usr/bin/env bash
# A throwaway RabbitMQ node on loopback, for tests and benchmarks against the real thing:
#   bash scripts/rabbitmq-node.sh start DIR [VHOSTS]   starts it, waits until it takes connections
#   bash scripts/rabbitmq-node.sh stop DIR             stops it and its port mapper
# Everything lives in DIR (data, logs, config). It listens on 127.0.0.1 only, on free ports, and
# Erlang's port mapper (epmd) runs on a port of its own, on loopback, stopped with the node.
# DIR/url holds amqp://guest:guest@127.0.0.1:PORT; the node has the vhost "/" and t1..tVHOSTS
# (default 80), so that each test can have one of its own (tests/support/rabbitmq.h hands them
# out). `depot-bench e2e --compare local @DIR/url` benchmarks Depot against it.
# Uses Debian's rabbitmq-server (3.10); run as root, the node runs as the rabbitmq user, as
# Debian's own wrapper does, so DIR must be reachable by that user (under /tmp, not /root).
set -euo pipefail

usage() {
    echo "usage: $0 start DIR [VHOSTS] | stop DIR" >&2
    exit 2
}
[[ $# -ge 2 ]] || usage
command=$1
dir=$2
vhosts=${3:-80}
bin=/usr/lib/rabbitmq/bin

port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 30000))
        port_is_free "$p" && port_is_free $((p + 1)) && port_is_free $((p + 2)) && { echo "$p"; return; }
    done
    echo "rabbitmq-node: no free port found" >&2
    exit 1
}

# as_node CMD...: runs CMD with the node's environment, as the rabbitmq user when we are root.
as_node() {
    local env=(HOME="$dir" RABBITMQ_NODENAME="$(cat "$dir/nodename")"
               RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$(cat "$dir/port")"
               RABBITMQ_DIST_PORT=$(($(cat "$dir/port") + 1))
               ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT=$(($(cat "$dir/port") + 2))
               RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
               RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log"
               RABBITMQ_CONFIG_FILE="$dir/rabbitmq" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
               RABBITMQ_PID_FILE="$dir/pid")
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u rabbitmq -- env "${env[@]}" "$@"
    else
        env "${env[@]}" "$@"
    fi
}

case "$command" in
start)
    if [[ ! -x "$bin/rabbitmq-server" ]]; then
        echo "rabbitmq-node: rabbitmq-server is not installed (apt-get install rabbitmq-server)" >&2
        exit 1
    fi
    [[ -f "$dir/pid" ]] && bash "$0" stop "$dir" || true
    rm -rf "$dir"
    mkdir -p "$dir"
    port=$(free_port)
    echo "$port" >"$dir/port"
    echo "depot-test-$port@localhost" >"$dir/nodename"
    {
        printf '{"users":[{"name":"guest","password":"guest","tags":"administrator"}],'
        printf '"vhosts":[{"name":"/"}'
        for i in $(seq 1 "$vhosts"); do printf ',{"name":"t%d"}' "$i"; done
        printf '],"permissions":[{"user":"guest","vhost":"/","configure":".*","write":".*","read":".*"}'
        for i in $(seq 1 "$vhosts"); do
            printf ',{"user":"guest","vhost":"t%d","configure":".*","write":".*","read":".*"}' "$i"
        done
        printf ']}\n'
    } >"$dir/definitions.json"
    cat >"$dir/rabbitmq.conf" <<EOF
load_definitions = $dir/definitions.json
listeners.tcp.1 = 127.0.0.1:$port
log.console = false
log.file.level = warning
EOF
    echo "[]." >"$dir/enabled_plugins"
    echo "$vhosts" >"$dir/vhosts"
    if [[ $(id -u) -eq 0 ]]; then
        chown -R rabbitmq:rabbitmq "$dir"
        if ! runuser -u rabbitmq -- test -w "$dir"; then
            echo "rabbitmq-node: the rabbitmq user cannot reach $dir (a parent folder is not" \
                 "searchable, as /root is not): use a folder under /tmp" >&2
            exit 1
        fi
    fi
    as_node "$bin/rabbitmq-server" -detached
    for _ in $(seq 1 600); do
        if ! port_is_free "$port"; then
            echo "amqp://guest:guest@127.0.0.1:$port" >"$dir/url"
            echo "rabbitmq-node: ready at amqp://127.0.0.1:$port ($vhosts vhosts t1..t$vhosts, data in $dir)"
            exit 0
        fi
        sleep 0.1
    done
    echo "rabbitmq-node: the node did not open port $port in 60 s; its log:" >&2
    tail -n 30 "$dir"/log/*.log >&2 || true
    bash "$0" stop "$dir" >/dev/null 2>&1 || true # and its port mapper, if it started
    exit 1
    ;;
stop)
    [[ -f "$dir/port" ]] || exit 0
    if [[ -f "$dir/pid" ]]; then
        pid=$(cat "$dir/pid")
        kill "$pid" 2>/dev/null || true # SIGTERM: Erlang stops the node cleanly
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    ERL_EPMD_PORT=$(($(cat "$dir/port") + 2)) epmd -kill >/dev/null 2>&1 ||
        ERL_EPMD_PORT=$(($(cat "$dir/port") + 2)) /usr/lib/erlang/erts-*/bin/epmd -kill >/dev/null 2>&1 || true
    rm -f "$dir/pid" "$dir/url"
    echo "rabbitmq-node: stopped"
    ;;
*)
    usage
    ;;
esac
