#!/usr/bin/env bash
# benches/intercept.sh BINDIR [RATE] [DURATION] [REPEATS]: what transparent capture costs against
# calling meshd's outbound listener explicitly. Two network namespaces on a veth pair (client
# 198.18.0.1, server 198.18.0.2): mesh-upstream on the server; on the client, meshd (one core,
# pinned to CPU 0, each IO driver in turn) under `meshd iptables`, and meshload (CPU 1) sending
# RATE req/s for DURATION on 16 kept-alive connections, once to 127.0.0.1:15001 with
# `host: reviews` (explicit) and once to the service's virtual address 198.18.1.10:9080
# (captured: NAT redirect, original-destination lookup, sniffing). Prints, per run, latency
# percentiles and meshd's CPU-s per 1000 requests. NEW_CONNECTIONS=1 sends every request with
# `connection: close`, so each opens a connection (the per-connection part: redirect, lookup,
# sniff). Needs root, iproute2 and iptables.
set -euo pipefail
BIN=$(cd "$1" && pwd); RATE=${2:-5000}; DUR=${3:-5s}; REPEATS=${4:-3}
W=$(mktemp -d)
C=ringmesh-bench-client-$$; S=ringmesh-bench-server-$$
cleanup() {
  for ns in $C $S; do
    for pid in $(ip netns pids $ns 2>/dev/null); do kill -KILL $pid 2>/dev/null || true; done
    ip netns del $ns 2>/dev/null || true
  done
  rm -rf "$W"
}
trap cleanup EXIT
ip netns add $C; ip netns add $S
ip link add eth0 netns $C type veth peer name eth0 netns $S
ip -n $C addr add 198.18.0.1/24 dev eth0; ip -n $S addr add 198.18.0.2/24 dev eth0
for ns in $C $S; do ip -n $ns link set lo up; ip -n $ns link set eth0 up; done
ip -n $C route add default dev eth0
# A connection per request leaves tens of thousands in TIME_WAIT: let new ones reuse their ports.
ip netns exec $C sysctl -qw net.ipv4.tcp_tw_reuse=1

ip netns exec $S taskset -c 1 $BIN/mesh-upstream --listen 198.18.0.2:9080 --name reviews > $W/up.out 2>&1 &
disown
for i in $(seq 100); do grep -q listening $W/up.out 2>/dev/null && break; sleep 0.05; done
echo "service reviews { port 9080 http endpoint 198.18.0.2:9080 address 198.18.1.10 }" > $W/m.mesh
$BIN/meshc compile $W/m.mesh -o $W/m.snap > /dev/null 2>&1
ip netns exec $C $BIN/meshd iptables > /dev/null

cpu_ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
TICKS=$(getconf CLK_TCK)
echo "| driver | target | run | achieved req/s | p50 ms | p99 ms | p99.9 ms | meshd CPU-s / 1000 req |"
echo "|---|---|---|---|---|---|---|---|"
for driver in epoll uring; do
  ip netns exec $C taskset -c 0 $BIN/meshd --snapshot $W/m.snap --cores 1 --io-driver $driver \
    --outbound 127.0.0.1:15001 --admin 127.0.0.1:15000 > $W/d.out 2> $W/d.err &
  D=$!
  for i in $(seq 200); do grep -q "meshd ready" $W/d.out 2>/dev/null && break; sleep 0.05; done
  for run in $(seq $REPEATS); do
    for target in explicit captured; do
      if [ $target = explicit ]; then URL=http://127.0.0.1:15001/; H=(-H "host: reviews")
      else URL=http://198.18.1.10:9080/; H=(); fi
      if [ -n "${NEW_CONNECTIONS:-}" ]; then H+=(-H "connection: close"); fi
      before=$(cpu_ticks $D)
      ip netns exec $C taskset -c 1 $BIN/meshload $URL --rate $RATE --duration $DUR "${H[@]}" \
        --json $W/l.json > /dev/null 2>&1
      after=$(cpu_ticks $D)
      python3 - "$W/l.json" "$driver" "$target" "$run" "$before" "$after" "$TICKS" <<'EOF'
import json, sys
path, driver, target, run, before, after, ticks = sys.argv[1:]
r = json.load(open(path))
lat = r["latency_ms"]
cpu = (int(after) - int(before)) / int(ticks)
per_k = cpu / max(r["responses"], 1) * 1000
bad = sum(r["errors"].values())
note = f" ({bad} errors)" if bad else ""
print(f"| {driver} | {target}{note} | {run} | {r['achieved_rate']:.0f} | {lat['p50']:.3f} | "
      f"{lat['p99']:.3f} | {lat['p999']:.3f} | {per_k:.4f} |")
EOF
    done
  done
  kill -TERM $D; wait $D 2>/dev/null || true
done
