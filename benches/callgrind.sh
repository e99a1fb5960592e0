#!/usr/bin/env bash
# benches/callgrind.sh BINDIR MODE: callgrind instructions per request of meshd (1 core, epoll) for
# MODE out (outbound plain), in (inbound plaintext), jwt (inbound with an ES256 JWT rule and a
# token on every request, served from the cache), match (outbound through a route whose third
# rule matches: a header and a prefix condition fail first, then a method and a header regex
# hold), nometrics (out with Istio's request metrics off), log (out with a JSON access log
# written to a file), trace (log, and every request
# traced, its spans posted to the upstream as a Zipkin collector). Prints (total(6s)-total(2s))/2000.
# MODE tls / h2: inbound strict mTLS, curl with a client certificate sending 200 and then 1200
# GETs on one kept-alive HTTP/1.1 connection (tls) or multiplexed, 10 at a time, on one HTTP/2
# connection (h2); prints (total(1200)-total(200))/1000.
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
  nometrics) CONF="telemetry { metrics off }
service web { port 80 http endpoint $UPADDR }"; ARGS=();;
  log) CONF="telemetry { access_log json }
service web { port 80 http endpoint $UPADDR }"; ARGS=(--access-log $W/access.log);;
  trace) CONF="telemetry { access_log json trace_sampling 100% }
service web { port 80 http endpoint $UPADDR }"
    ARGS=(--access-log $W/access.log --trace-collector http://$UPADDR/api/v2/spans);;
  match) CONF="service web { port 80 http endpoint $UPADDR }
route web {
  rule canary { match header \"x-canary\" = \"true\" to web }
  rule api { match path prefix \"/api\" and header \"x-user\" prefix \"test\" to web }
  rule users { match method GET and header \"end-user\" regex \"j[a-z]+\" to web }
  rule rest { to web }
}"; ARGS=();;
  in) CONF="service web { port 80 http endpoint $UPADDR }
workload w { serves web inbound 9080 http -> $UPADDR mtls disable }"; ARGS=(--workload w --inbound 127.0.0.1:0);;
  tls|h2) CONF="service web { port 80 http endpoint $UPADDR }
workload w { identity \"spiffe://cluster.local/ns/bench/sa/w\" serves web inbound 9080 http -> $UPADDR mtls strict }"
    $BIN/meshca init --dir $W/ca --trust-domain cluster.local > /dev/null
    $BIN/meshca issue --dir $W/ca --spiffe spiffe://cluster.local/ns/bench/sa/w --out $W/w > /dev/null
    $BIN/meshca issue --dir $W/ca --spiffe spiffe://cluster.local/ns/bench/sa/c --out $W/c > /dev/null
    ARGS=(--workload w --inbound 127.0.0.1:0 --certs $W/w);;
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
  if [ $MODE = out ] || [ $MODE = nometrics ] || [ $MODE = match ] || [ $MODE = log ] || [ $MODE = trace ]; then target=$(echo "$line" | grep -o "outbound=[0-9.:]*" | cut -d= -f2); else target=$(echo "$line" | grep -o "inbound=[0-9.:]*" | cut -d= -f2); fi
  local H=(-H "host: web")
  [ $MODE = jwt ] && H+=(-H "authorization: Bearer $TOKEN")
  [ $MODE = match ] && H+=(-H "end-user: jason")
  if [ $MODE = tls ] || [ $MODE = h2 ]; then
    for i in $(seq $secs); do echo "url = \"https://$target/\""; echo "output = /dev/null"; done > $W/urls.$secs
    local P=(--http1.1)
    [ $MODE = h2 ] && P=(--http2 --parallel --parallel-max 10)
    curl -sS -k "${P[@]}" -H "host: web" --cert $W/c/cert.pem --key $W/c/key.pem -w "%{http_code}\n" -K $W/urls.$secs \
      | sort | uniq -c | tr '\n' ' ' >&2
  else
    $BIN/meshload "http://$target/" --rate 500 --duration ${secs}s -c 2 "${H[@]}" --json $W/l.$secs.json > $W/l.$secs.out 2>&1
  fi
  kill -TERM $D; wait $D || true
  [ -f $W/l.$secs.json ] && grep -o '"failed":[0-9]*\|"errors":[0-9]*' $W/l.$secs.json | tr '\n' ' ' >&2
  grep "summary: totals:" $W/d.$secs.err 2>/dev/null || true
  callgrind_annotate $W/cg.$secs 2>/dev/null | grep "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}'
}
if [ $MODE = tls ] || [ $MODE = h2 ]; then
  A=$(run 200); B=$(run 1200); N=1000
else
  A=$(run 2); B=$(run 6); N=2000
fi
kill $UP 2>/dev/null || true
echo "$MODE $(( (B - A) / N ))"
