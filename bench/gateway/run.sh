#!/usr/bin/env bash
# The gateway benchmark: wrk (keep-alive, 64 connections) against
#   (a) the fake upstream directly,
#   (b) nginx proxy_pass to it,
#   (c) kt with no policies, --upstream to it,
#   (d) kt with the quickstart and the stdlib pack, --upstream to it,
# non-streamed and streamed, all in one run. Prints a markdown table (req/s,
# p50, p99, what each adds over (a)) and kt's RSS idle and under load.
#
#   bash bench/gateway/run.sh [seconds per run, default 10]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-10}
KT_WITH_BENCH=1 "$root/scripts/install-deps" >/dev/null
kt="$root/build/cli/kt"
[[ -x "$kt" ]] || { echo "build first: make test (or cmake --build build)"; exit 1; }
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; echo "not up: $1"; exit 1; }

up_port=$(port); nginx_port=$(port); kt0_port=$(port); kt1_port=$(port)
node "$root/tests/gateway/fake_upstream.mjs" "$up_port" >/dev/null & pids+=($!)
wait_http "http://127.0.0.1:$up_port/v1/models"

mkdir -p "$tmp/nginx/logs"
cat > "$tmp/nginx/nginx.conf" <<NGINX
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream fake { server 127.0.0.1:$up_port; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGINX
nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' & pids+=($!)
wait_http "http://127.0.0.1:$nginx_port/v1/models"

echo "// no policies" > "$tmp/none.ktp"
"$kt" gateway run --listen "127.0.0.1:$kt0_port" --policy "$tmp/none.ktp" --threads 2 \
  --upstream "http://127.0.0.1:$up_port/v1" --audit-log "$tmp/audit0.jsonl" 2>/dev/null & kt0=$!; pids+=($kt0)
"$kt" gateway run --listen "127.0.0.1:$kt1_port" --threads 2 \
  --policy "$root/examples/policies/quickstart.ktp" --policy "$root/bench/gateway/stdlib_pack.ktp" \
  --upstream "http://127.0.0.1:$up_port/v1" --audit-log "$tmp/audit1.jsonl" 2>/dev/null & kt1=$!; pids+=($kt1)
wait_http "http://127.0.0.1:$kt0_port/readyz"; wait_http "http://127.0.0.1:$kt1_port/readyz"
rss() { awk '/VmRSS/ {print int($2/1024) " MB"}' "/proc/$1/status"; }
idle_rss=$(rss "$kt1")

# A 1 KB prompt; the fake upstream answers with 4 content pieces.
prompt=$(python3 -c 'print(("Summarise our onboarding policy for new staff members. " * 19)[:1000])')
for mode in json stream; do
  stream=false; [[ $mode == stream ]] && stream=true
  cat > "$tmp/$mode.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-0000000000000000000000"
wrk.body = '{"model":"gpt-4o","stream":$stream,"messages":[{"role":"user","content":"$prompt"}]}'
LUA
done

conns=64; threads=2
run() {  # name url mode → "req/s p50_us p99_us"
  local out
  out=$(wrk -t$threads -c$conns -d"${secs}s" --latency -s "$tmp/$3.lua" "$2/v1/chat/completions")
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $4}' <<<"$out")
  [[ -z "$non2xx" ]] || { echo "$1: $non2xx non-2xx responses" >&2; exit 1; }
  echo "$rps $(to_us "$p50") $(to_us "$p99")"
}
to_us() { python3 -c "
import re,sys; m=re.match(r'([0-9.]+)(us|ms|s)', sys.argv[1]); v=float(m[1]); print(round(v*{'us':1,'ms':1e3,'s':1e6}[m[2]]))" "$1"; }

table() {
echo "| mode | target | req/s | p50 µs | p99 µs | p50 added over (a) | p99 added over (a) | req/s vs (b) |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for mode in json stream; do
  # Warm-up: pools, caches, JIT.
  wrk -t2 -c64 -d2s -s "$tmp/$mode.lua" "http://127.0.0.1:$kt1_port/v1/chat/completions" >/dev/null
  read -r a_rps a50 a99 < <(run a "http://127.0.0.1:$up_port" $mode)
  read -r b_rps b50 b99 < <(run b "http://127.0.0.1:$nginx_port" $mode)
  read -r c_rps c50 c99 < <(run c "http://127.0.0.1:$kt0_port" $mode)
  (sleep $((secs / 2)); rss "$kt1" > "$tmp/load_rss_$conns") &
  read -r d_rps d50 d99 < <(run d "http://127.0.0.1:$kt1_port" $mode)
  for row in "a fake upstream:$a_rps:$a50:$a99" "b nginx proxy_pass:$b_rps:$b50:$b99" \
             "c kt, no policies:$c_rps:$c50:$c99" "d kt, quickstart + stdlib:$d_rps:$d50:$d99"; do
    IFS=: read -r name rps p50 p99 <<<"$row"
    python3 - "$mode" "$name" "$rps" "$p50" "$p99" "$a50" "$a99" "$b_rps" <<'PY'
import sys
mode, name, rps, p50, p99, a50, a99, b_rps = sys.argv[1:]
rps, p50, p99, a50, a99, b_rps = map(float, (rps, p50, p99, a50, a99, b_rps))
added = lambda x, y: "—" if name.startswith("a ") else f"{x - y:+.0f} µs"
print(f"| {mode} | ({name[0]}) {name[2:]} | {rps:.0f} | {p50:.0f} | {p99:.0f} | {added(p50, a50)} | {added(p99, a99)} | {rps / b_rps:.2f} |")
PY
  done
done
}
echo "### 64 connections (saturation)"
echo
table
load_rss=$(cat "$tmp/load_rss_64")
echo
echo "### 1 connection (no queueing: what kt adds to one request)"
echo
conns=1; threads=1
table
echo
echo "kt (d) RSS: idle $idle_rss, under load (64 connections) $load_rss"
echo "wrk --latency -d${secs}s (-t2 -c64, then -t1 -c1), 1 KB prompt; $(nproc) cores shared by wrk, node, nginx and kt."
