#!/usr/bin/env bash
# benches/h2.sh BINDIR [REQUESTS] [REPEATS]: HTTP/2 and gRPC through a sidecar pair with mutual
# TLS, meshd against Envoy, on loopback. Both proxies of a pair on CPU 0 with one worker each;
# h2load (nghttp2-client) and the application on CPU 1.
#   h2 100 streams   h2load, one h2c connection with 100 streams in flight, REQUESTS GETs as
#                    fast as the pair serves them; the application is mesh-upstream (HTTP/1.1);
#   gRPC unary       h2load sending REQUESTS/4 unary calls of ringmesh.test.Echo/Unary at 1000
#                    calls/s on 10 streams; the application is Python's grpcio server
#                    (tests/e2e/grpc/peer.py) on an HTTP/2 port.
# Between the meshd sidecars: HTTP/2 over mutual TLS (ALPN h2; the client spoke HTTP/2, and
# the gRPC port says grpc), the callee calling a grpc port with h2c and mesh-upstream with
# HTTP/1.1; between the Envoys: HTTP/1.1 for the h2 rows, HTTP/2 for gRPC (Envoy needs it for
# trailers).
# Prints req/s as h2load counts it, failures, the mean and max request time h2load reports, and
# both proxies' CPU-s per 1000 requests. Needs h2load, envoy, python3 with grpcio.
set -euo pipefail
BIN=$(cd "$1" && pwd); N=${2:-40000}; REPEATS=${3:-2}
PEER=$(cd "$(dirname "$0")/.." && pwd)/tests/e2e/grpc/peer.py
W=$(mktemp -d)
PIDS_ALL=()
cleanup() { for p in "${PIDS_ALL[@]}"; do kill -KILL $p 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

A_ID=spiffe://cluster.local/ns/bench/sa/a
B_ID=spiffe://cluster.local/ns/bench/sa/b
$BIN/meshca init --dir $W/ca --trust-domain cluster.local > /dev/null
$BIN/meshca issue --dir $W/ca --spiffe $A_ID --out $W/a > /dev/null
$BIN/meshca issue --dir $W/ca --spiffe $B_ID --out $W/b > /dev/null

taskset -c 1 $BIN/mesh-upstream --listen 127.0.0.1:19080 --name reviews > $W/up.out 2>&1 &
PIDS_ALL+=($!)
taskset -c 1 python3 $PEER serve 19051 > $W/grpc.out 2>&1 &
PIDS_ALL+=($!)
for i in $(seq 200); do grep -q listening $W/up.out && grep -q listening $W/grpc.out && break; sleep 0.05; done
printf '\x00\x00\x00\x00\x02hi' > $W/call.bin

cat > $W/m.mesh <<EOF
service reviews { port 9080 http endpoint 127.0.0.1:19106 }
service echo { port 50051 grpc endpoint 127.0.0.1:19106 }
workload a { identity "$A_ID" outbound reviews, echo }
workload b { identity "$B_ID" serves reviews, echo
  inbound 9080 http -> 127.0.0.1:19080 mtls strict
  inbound 50051 grpc -> 127.0.0.1:19051 mtls strict }
EOF
$BIN/meshc compile $W/m.mesh -o $W/m.snap 2> /dev/null > /dev/null

cpu_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat))); done; echo $t; }
TICKS=$(getconf CLK_TCK)

# measure LABEL ROW PIDS...: h2load's report of the last run against the proxies' CPU.
measure() {
  local label=$1 row=$2; shift 2
  python3 - "$W/h2load.out" "$label" "$row" "$(cat $W/before)" "$(cpu_ticks "$@")" "$TICKS" <<'EOF'
import re, sys
path, label, row, before, after, ticks = sys.argv[1:]
text = open(path).read()
rps = float(re.search(r"finished in [^,]+, ([\d.]+) req/s", text).group(1))
done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", text)
total, succeeded = int(done.group(1)), int(done.group(3))
statuses = re.search(r"status codes: (\d+) 2xx", text)
times = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text)
cpu = (int(after) - int(before)) / int(ticks)
per_k = cpu / max(succeeded, 1) * 1000
print(f"| {label} | {row} | {rps:.0f} | {total - succeeded} | {times.group(3)} | {times.group(2)} | {per_k:.4f} |")
EOF
}

run_h2load() { # run_h2load URL AUTHORITY PIDS...: the two rows for one pair
  local url=$1 authority=$2 label=$3; shift 3
  cpu_ticks "$@" > $W/before
  taskset -c 1 h2load -n $N -c 1 -m 100 -H ":authority: $authority" "$url/" > $W/h2load.out 2>&1 || true
  measure "$label" "h2, 100 streams" "$@"
  cpu_ticks "$@" > $W/before
  taskset -c 1 h2load -n $((N / 4)) -c 1 -m 10 --rps 1000 -d $W/call.bin \
    -H ":authority: echo:50051" -H "content-type: application/grpc" -H "te: trailers" \
    "$url/ringmesh.test.Echo/Unary" > $W/h2load.out 2>&1 || true
  measure "$label" "gRPC unary, 1000/s" "$@"
}

envoy_yaml() { # envoy_yaml LISTEN TLS_DIR PEER DOWNSTREAM_TLS(0/1) UPSTREAM_HTTP UPSTREAM_GRPC UPSTREAM_TLS(0/1)
  local tls_ctx="common_tls_context:
            tls_params: { tls_minimum_protocol_version: TLSv1_3, tls_maximum_protocol_version: TLSv1_3 }
            alpn_protocols: [ALPN]
            tls_certificates: [{ certificate_chain: { filename: $2/cert.pem }, private_key: { filename: $2/key.pem } }]
            validation_context:
              trusted_ca: { filename: $2/bundle.pem }
              match_typed_subject_alt_names: [{ san_type: URI, matcher: { exact: '$3' } }]"
  local down="" up=""
  [ "$4" = 1 ] && down="      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          ${tls_ctx/ALPN/h2, http\/1.1}"
  local up_grpc=""
  if [ "$7" = 1 ]; then
    up="    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        $(echo "${tls_ctx/ALPN/http\/1.1}" | sed 's/^  //')"
    up_grpc="${up/http\/1.1\]/h2]}"
  fi
  local h2opts="    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        '@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }"
  cat <<EOF
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: ${1} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: h
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: all
              domains: ['*']
              routes:
              - { match: { prefix: /ringmesh.test.Echo/ }, route: { cluster: grpc, timeout: 0s } }
              - { match: { prefix: / }, route: { cluster: http } }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { '@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
$down
  clusters:
  - name: http
    type: STATIC
    connect_timeout: 5s
    load_assignment: { cluster_name: http, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $5 } } } }] }] }
$up
  - name: grpc
    type: STATIC
    connect_timeout: 5s
    load_assignment: { cluster_name: grpc, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $6 } } } }] }] }
$h2opts
$up_grpc
EOF
}

echo "| pair | load | req/s | failed | mean | max | proxies' CPU-s / 1000 req |"
echo "|---|---|---|---|---|---|---|"
for r in $(seq $REPEATS); do
  for driver in epoll uring; do
    taskset -c 0 $BIN/meshd --snapshot $W/m.snap --cores 1 --io-driver $driver --workload b \
      --certs $W/b --inbound 127.0.0.1:19106 --outbound 127.0.0.1:19105 --admin 127.0.0.1:19104 > $W/b.out 2> $W/b.err &
    B=$!
    taskset -c 0 $BIN/meshd --snapshot $W/m.snap --cores 1 --io-driver $driver --workload a \
      --certs $W/a --outbound 127.0.0.1:19101 --admin 127.0.0.1:19100 --inbound 127.0.0.1:0 > $W/a.out 2> $W/a.err &
    A=$!
    for i in $(seq 200); do grep -q "meshd ready" $W/a.out && grep -q "meshd ready" $W/b.out && break; sleep 0.05; done
    run_h2load http://127.0.0.1:19101 reviews:9080 "meshd pair mTLS, $driver" $A $B
    kill -TERM $A $B; wait $A $B 2>/dev/null || true
  done
  envoy_yaml 19206 $W/b $A_ID 1 19080 19051 0 > $W/envoy-b.yaml
  envoy_yaml 19201 $W/a $B_ID 0 19206 19206 1 > $W/envoy-a.yaml
  taskset -c 0 envoy -c $W/envoy-b.yaml --concurrency 1 -l error --disable-hot-restart > $W/eb.log 2>&1 &
  EB=$!
  taskset -c 0 envoy -c $W/envoy-a.yaml --concurrency 1 -l error --disable-hot-restart > $W/ea.log 2>&1 &
  EA=$!
  for i in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/19201) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/19206) 2>/dev/null && break; sleep 0.05; done
  run_h2load http://127.0.0.1:19201 reviews "Envoy pair mTLS" $EA $EB
  kill -TERM $EA $EB; wait $EA $EB 2>/dev/null || true
done
