#!/usr/bin/env bash
# bench/limits/run.sh: the latency a Redis-backed admission adds, on loopback.
#
#   bench/limits/run.sh [BUILD_DIR] [RATE] [DURATION_S]
#
# One replica with `limit "rps" { requests 1000000 per second }` and a budget
# (never reached), the built-in mock provider, kt_loadgen at a fixed moderate
# rate (default 500 req/s for 10 s) over 1 and then 16 connections, with
# --limits-backend memory and then redis://127.0.0.1:PORT/0 (its own
# redis-server). Prints p50/p99 of each and the difference redis − memory.
# A measurement, not a test: it exits 0 whatever the numbers are.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
rate=${2:-500}
duration=${3:-10}
kt=$build/cli/kt
lg=$build/bench/kt_loadgen
export PATH=$PATH:/usr/sbin

tmp=$(mktemp -d /tmp/kt-bench-limits.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cat >"$tmp/bench.ktp" <<'EOF'
provider mock { kind: mock  models: ["mock-*"] }
price "mock-*" { input 1.00/1M  output 2.00/1M }
limit "rps" { requests 1000000 per second }
budget "team" { key header("X-Team") ?? "none"  usd 1000000 per month }
EOF
body='{"model":"mock-1","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}'

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
  >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  redis-cli -p "$rport" ping >/dev/null 2>&1 && break
  sleep 0.05
done

# run BACKEND CONNECTIONS -> "p50 p99 status"
run() {
  local backend=$1 conns=$2 port gw out label
  label=${backend%%:*}
  port=$(free_port)
  "$kt" gateway run --policy "$tmp/bench.ktp" --listen "127.0.0.1:$port" \
    --audit-log "$tmp/audit-$label-$conns.jsonl" --limits-backend "$backend" \
    2>"$tmp/gw.err" &
  gw=$!
  pids+=($gw)
  for _ in $(seq 200); do
    grep -q "kt gateway: listening on" "$tmp/gw.err" && break
    sleep 0.05
  done
  # warm up (connections, Redis scripts loaded), then measure
  "$lg" --url "http://127.0.0.1:$port/v1/chat/completions" --rate "$rate" --duration 1 \
    --connections "$conns" --body "$body" --header "Content-Type: application/json" \
    --header "X-Team: bench" --json >/dev/null || { echo "warm-up failed" >&2; cat "$tmp/gw.err" >&2; }
  out=$("$lg" --url "http://127.0.0.1:$port/v1/chat/completions" --rate "$rate" \
    --duration "$duration" --connections "$conns" --body "$body" \
    --header "Content-Type: application/json" --header "X-Team: bench" --json)
  kill "$gw"
  wait "$gw" 2>/dev/null || true
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); l=r["latency_us"]
print(l["p50"], l["p99"], json.dumps(r["status"], separators=(",", ":")), r["errors"])' "$out"
}

printf '%s req/s for %s s, one replica, mock provider, Redis on loopback\n\n' "$rate" "$duration"
printf '%-12s %-8s %10s %10s  %s\n' "connections" "backend" "p50 us" "p99 us" "status errors"
for conns in 1 16; do
  read -r m50 m99 mst merr < <(run memory "$conns")
  read -r r50 r99 rst rerr < <(run "redis://127.0.0.1:$rport/0" "$conns")
  printf '%-12s %-8s %10s %10s  %s %s\n' "$conns" memory "$m50" "$m99" "$mst" "$merr"
  printf '%-12s %-8s %10s %10s  %s %s\n' "$conns" redis "$r50" "$r99" "$rst" "$rerr"
  printf '%-12s %-8s %10s %10s\n' "$conns" "added" "$((r50 - m50))" "$((r99 - m99))"
done
