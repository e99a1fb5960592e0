#!/usr/bin/env bash
# Where one plain hop's CPU goes: runs one proxy on CPU 0 (mesh-upstream and meshload on
# CPU 1), sends RATE req/s (default 5000) for 5 s, and prints the proxy's user and system
# milliseconds per 1000 requests and its syscalls per request (perf's syscall tracepoints).
#
#   benches/syscalls.sh TARGET [RELEASE_DIR]
#   TARGET: meshd-epoll | meshd-uring | bare-epoll | bare-uring | nginx
#
# Needs `cargo build --release -p compiler -p dataplane -p tools -p benches --bins` (or MESHC
# naming another meshc), nginx and perf.
# The counting itself slows the proxy; compare the CPU figures of runs without it
# (NOCOUNT=1) or the mesh-bench tables.
set -euo pipefail
target=$1
bin=$(realpath "${2:-target/release}")
meshc=${MESHC:-$bin/meshc}
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Waits up to 10 s for PATTERN in FILE.
wait_for() {
    for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    echo "syscalls.sh: no '$2' in $1" >&2; cat "$1" >&2; exit 1
}

taskset -c 1 "$bin/mesh-upstream" --listen 127.0.0.1:0 --name app > "$work/up.out" 2>&1 &
pids+=($!)
wait_for "$work/up.out" listening
upstream=$(grep -o "127.0.0.1:[0-9]*" "$work/up.out" | head -1)

case $target in
meshd-epoll | meshd-uring)
    echo "service web { port 80 http endpoint $upstream }" > "$work/c.mesh"
    "$meshc" compile "$work/c.mesh" -o "$work/s.snap" > /dev/null
    taskset -c 0 "$bin/meshd" --snapshot "$work/s.snap" --cores 1 --io-driver "${target#meshd-}" \
        --outbound 127.0.0.1:0 --admin 127.0.0.1:0 > "$work/p.out" 2>&1 &
    pid=$!
    wait_for "$work/p.out" "meshd ready"
    address=$(grep -o "outbound=[0-9.:]*" "$work/p.out" | cut -d= -f2)
    ;;
bare-epoll | bare-uring)
    taskset -c 0 "$bin/bare-forwarder" --upstream "$upstream" --io-driver "${target#bare-}" \
        > "$work/p.out" 2>&1 &
    pid=$!
    wait_for "$work/p.out" listening
    address=$(grep -o "127.0.0.1:[0-9]*" "$work/p.out" | head -1)
    ;;
nginx)
    port=$(python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
    mkdir -p "$work/nginx/logs"
    cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1; daemon off; master_process off; error_log stderr error; pid $work/nginx/pid;
events { worker_connections 1024; }
http { access_log off; upstream app { server $upstream; keepalive 32; }
  server { listen 127.0.0.1:$port; location / { proxy_pass http://app; proxy_http_version 1.1;
    proxy_set_header Connection ""; } } }
CONF
    taskset -c 0 nginx -e stderr -p "$work/nginx" -c "$work/nginx/nginx.conf" > "$work/p.out" 2>&1 &
    pid=$!
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.05
    done
    address=127.0.0.1:$port
    ;;
*)
    echo "syscalls.sh: unknown target $target" >&2; exit 2 ;;
esac
pids+=("$pid")

# utime and stime, in clock ticks, of every thread of the proxy.
ticks() { cut -d' ' -f14,15 "/proc/$pid/stat"; }
events=recvfrom,sendto,read,write,readv,writev,recvmsg,sendmsg,epoll_wait,epoll_ctl,io_uring_enter
read -r user0 sys0 < <(ticks)
if [ -z "${NOCOUNT:-}" ]; then
    perf stat -x, -o "$work/counts" -p "$pid" \
        -e "$(echo "$events" | sed 's/\([a-z_]*\)/syscalls:sys_enter_\1/g')" &
    perf_pid=$!
    sleep 0.3
fi
taskset -c 1 "$bin/meshload" "http://$address/" -H "host: web" --rate "${RATE:-5000}" \
    --duration 5s --json "$work/load.json" > /dev/null
[ -z "${NOCOUNT:-}" ] && { kill -INT "$perf_pid"; wait "$perf_pid" || true; }
read -r user1 sys1 < <(ticks)

responses=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['responses'])" "$work/load.json")
hz=$(getconf CLK_TCK)
echo "$target: $responses responses; per 1000 requests: user $(( (user1 - user0) * 1000 * 1000 / hz / responses )) ms, system $(( (sys1 - sys0) * 1000 * 1000 / hz / responses )) ms"
if [ -z "${NOCOUNT:-}" ]; then
    awk -F, -v n="$responses" '$1 ~ /^[0-9]+$/ && $1 > 0 {
        sub("syscalls:sys_enter_", "", $3); printf "  %-15s %5.2f per request\n", $3, $1 / n }' "$work/counts"
fi
