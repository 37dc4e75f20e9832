#!/usr/bin/env python3
"""Smoke test of kt_loadgen against a Python HTTP/1.1 keep-alive server.

The server answers 200 and 429 alternately. kt_loadgen runs at 200 req/s for
2 s; the run must send ~400 requests, the status counts must sum to
"completed", and the 200/429 split must be even.

    bench/loadgen/selftest.py [path/to/kt_loadgen]   (default: build/bench/kt_loadgen)
"""
import http.server
import json
import os
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BIN = os.path.join(HERE, "..", "..", "build", "bench", "kt_loadgen")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    lock = threading.Lock()
    count = 0

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with Handler.lock:
            Handler.count += 1
            n = Handler.count
        status = 200 if n % 2 else 429
        body = b'{"ok":true}' if status == 200 else b'{"error":"rate limited"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *args):
        pass


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_BIN
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    cmd = [binary, "--url", f"http://127.0.0.1:{port}/v1/chat/completions",
           "--rate", "200", "--duration", "2", "--connections", "16",
           "--body", '{"model":"m","messages":[]}', "--header", "X-Test: 1", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    server.shutdown()
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr)
        sys.exit(f"FAIL: kt_loadgen exited {proc.returncode}")
    r = json.loads(proc.stdout)
    print(json.dumps({k: r[k] for k in ("sent", "completed", "errors", "duration_s",
                                        "offered_rate", "status", "latency_us")}))
    failures = []
    if not 395 <= r["sent"] <= 400:
        failures.append(f"sent {r['sent']}, want ~400")
    if sum(r["status"].values()) != r["completed"]:
        failures.append(f"status counts {r['status']} do not sum to completed {r['completed']}")
    if r["completed"] + r["errors"] != r["sent"]:
        failures.append("completed + errors != sent")
    if r["errors"]:
        failures.append(f"{r['errors']} errors")
    ok, limited = r["status"].get("200", 0), r["status"].get("429", 0)
    if abs(ok - limited) > 1 or ok + limited != r["completed"]:
        failures.append(f"200/429 split {ok}/{limited}, want even")
    if not 190 <= r["offered_rate"] <= 210:
        failures.append(f"offered_rate {r['offered_rate']}, want ~200")
    if not 1.9 <= r["duration_s"] <= 3.0:
        failures.append(f"duration_s {r['duration_s']}, want ~2")
    if set(r["latency_by_status"]) != set(r["status"]):
        failures.append("latency_by_status keys differ from status keys")
    if failures:
        sys.exit("FAIL: " + "; ".join(failures))
    print("PASS")


if __name__ == "__main__":
    main()
