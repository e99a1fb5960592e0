#!/usr/bin/env bash
# benches/callgrind.sh BINDIR MODE: callgrind instructions per request of meshd (1 core, epoll) for
# MODE out (outbound plain), in (inbound plaintext), jwt (inbound with an ES256 JWT rule and a
# token on every request, served from the cache). Prints (total(6s)-total(2s))/2000.
# KEEP=1 keeps the work directory (named on stderr) with its callgrind.out files to compare.
set -euo pipefail
BIN=$1; MODE=$2; MESHC=${MESHC:-$BIN/meshc}
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d)
if [ -n "${KEEP:-}" ]; then echo "$W" >&2; else trap 'rm -rf "$W"' EXIT; fi
$BIN/mesh-upstream --listen 127.0.0.1:0 --name app > $W/up.out 2>&1 &
UP=$!
for i in $(seq 100); do grep -q "listening" $W/up.out 2>/dev/null && break; sleep 0.05; done
UPADDR=$(grep -o "127.0.0.1:[0-9]*" $W/up.out | head -1)
TOKEN=$(python3 "$HERE/jwt_token.py" $W)
case $MODE in
  out) CONF="service web { port 80 http endpoint $UPADDR }"; ARGS=();;
  in) CONF="service web { port 80 http endpoint $UPADDR }
workload w { serves web inbound 9080 http -> $UPADDR mtls disable }"; ARGS=(--workload w --inbound 127.0.0.1:0);;
  jwt) CONF="service web { port 80 http endpoint $UPADDR }
workload w { serves web inbound 9080 http -> $UPADDR mtls disable }
authentication users { workloads w jwt { issuer \"https://auth.example\" audiences \"web\" jwks \"jwks.json\" } }"; ARGS=(--workload w --inbound 127.0.0.1:0);;
esac
echo "$CONF" > $W/c.mesh
$MESHC compile $W/c.mesh -o $W/s.snap > /dev/null
run() {
  local secs=$1
  valgrind --tool=callgrind --callgrind-out-file=$W/cg.$secs $BIN/meshd --snapshot $W/s.snap --cores 1 --io-driver epoll \
    --outbound 127.0.0.1:0 --admin 127.0.0.1:0 "${ARGS[@]}" > $W/d.$secs.out 2> $W/d.$secs.err &
  local D=$!
  for i in $(seq 600); do grep -q "meshd ready" $W/d.$secs.out 2>/dev/null && break; sleep 0.05; done
  local line=$(grep "meshd ready" $W/d.$secs.out)
  local target
  if [ $MODE = out ]; then target=$(echo "$line" | grep -o "outbound=[0-9.:]*" | cut -d= -f2); else target=$(echo "$line" | grep -o "inbound=[0-9.:]*" | cut -d= -f2); fi
  local H=(-H "host: web")
  [ $MODE = jwt ] && H+=(-H "authorization: Bearer $TOKEN")
  $BIN/meshload "http://$target/" --rate 500 --duration ${secs}s -c 2 "${H[@]}" --json $W/l.$secs.json > $W/l.$secs.out 2>&1
  kill -TERM $D; wait $D || true
  grep -o '"failed":[0-9]*\|"errors":[0-9]*' $W/l.$secs.json | tr '\n' ' ' >&2
  grep "summary: totals:" $W/d.$secs.err 2>/dev/null || true
  callgrind_annotate $W/cg.$secs 2>/dev/null | grep "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}'
}
A=$(run 2); B=$(run 6)
kill $UP 2>/dev/null || true
echo "$MODE $(( (B - A) / 2000 ))"
