#!/usr/bin/env python3
"""Limits and budgets counted in a real Redis, shared by two gateway replicas
behind nginx.

  limits_test.py path/to/kt path/to/kt_loadgen

Starts its own redis-server, two `kt gateway run` replicas with
--limits-backend redis://..., and nginx balancing over them, all on free
loopback ports; kills them all at the end (also on failure). Cases:

  a. a 100/s sliding-window limit under 1000 req/s for 30 s through nginx;
  b. a $1 budget under a burst of 200 concurrent requests;
  c. the fail modes closed, open and local when Redis dies, and recovery
     when it comes back on the same port.

Python 3 standard library only.
"""
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import http.client

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "limits")
BODY = '{"model":"mock-1","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}'
BUDGET_BODY = '{"model":"mock-1","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}'
PATH = "/v1/chat/completions"

PROCS = []
FAILURES = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        FAILURES.append(what)
    return cond


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def kill(p, sig=signal.SIGTERM):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in PROCS:
        PROCS.remove(p)


def kill_all():
    for p in list(PROCS):
        kill(p)


# --- Redis, spoken in RESP over a socket -------------------------------------

def redis(port, *args, timeout=1.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(out)
        f = s.makefile("rb")
        return _resp(f)


def _resp(f):
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode()
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp(f) for _ in range(n)]
    raise RuntimeError(f"bad RESP line {line!r}")


def start_redis(port, tmp):
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", tmp],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    PROCS.append(p)
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            if redis(port, "PING") == "PONG":
                return p
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("redis-server did not start")


# --- the gateway replicas -----------------------------------------------------

class Replica:
    def __init__(self, kt, policy, port, audit, redis_port, ns, extra=()):
        self.port, self.audit = port, audit
        self.err = audit + ".stderr"
        args = [kt, "gateway", "run", "--policy", policy, "--listen", f"127.0.0.1:{port}",
                "--audit-log", audit, "--limits-backend", f"redis://127.0.0.1:{redis_port}/0",
                "--limits-namespace", ns, *extra]
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(self.err, "w"))
        PROCS.append(self.p)
        deadline = time.time() + 15
        while time.time() < deadline:
            if "kt gateway: listening on" in open(self.err).read():
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"gateway on {port} did not start:\n" + open(self.err).read())

    def stop(self):
        kill(self.p)

    def records(self):
        if not os.path.exists(self.audit):
            return []
        return [json.loads(l) for l in open(self.audit) if l.strip()]


def start_nginx(tmp, listen, upstreams):
    conf = os.path.join(tmp, "nginx.conf")
    servers = "".join(f"    server 127.0.0.1:{u};\n" for u in upstreams)
    with open(conf, "w") as f:
        f.write(f"""daemon off;
worker_processes 2;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/client_body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  upstream kt {{
{servers}    keepalive 32;
  }}
  server {{
    listen 127.0.0.1:{listen};
    location / {{
      proxy_pass http://kt;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream off;
    }}
  }}
}}
""")
    p = subprocess.Popen(["nginx", "-c", conf, "-p", tmp],
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "nginx.stderr"), "w"))
    PROCS.append(p)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", listen), timeout=0.2).close()
            return p
        except OSError:
            if p.poll() is not None:
                break
            time.sleep(0.05)
    raise RuntimeError("nginx did not start:\n" + open(os.path.join(tmp, "nginx.stderr")).read())


def post(port, timeout=2.0):
    """One chat request; (status, json body, seconds taken). Raises on a hang."""
    t0 = time.time()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", PATH, BODY, {"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        status, rid = r.status, r.getheader("x-request-id")
    finally:
        c.close()
    try:
        body = json.loads(data)
    except ValueError:
        body = {}
    return status, body, time.time() - t0, rid


def audit_of(replicas, rid, wait=1.0):
    deadline = time.time() + wait
    while True:
        for r in replicas:
            for rec in r.records():
                if rec.get("request_id") == rid:
                    return rec
        if time.time() > deadline:
            return None
        time.sleep(0.02)


def loadgen(binary, args):
    out = subprocess.run([binary, *args, "--json"], check=True, capture_output=True, text=True,
                         timeout=120).stdout
    return json.loads(out)


def error_code(body):
    e = body.get("error") if isinstance(body, dict) else None
    return e.get("code") if isinstance(e, dict) else None


# --- a. rate limit across replicas ---------------------------------------------

def case_rate(kt, lg, tmp, redis_port):
    print("\n== a. limit \"rps\" { requests 100 per second } over two replicas, 1000 req/s for 30 s")
    a = Replica(kt, os.path.join(FIXTURES, "rate.ktp"), free_port(), f"{tmp}/a1.jsonl",
                redis_port, "kta")
    b = Replica(kt, os.path.join(FIXTURES, "rate.ktp"), free_port(), f"{tmp}/a2.jsonl",
                redis_port, "kta")
    nport = free_port()
    ng = start_nginx(f"{tmp}/nginx-a", nport, [a.port, b.port])
    try:
        r = loadgen(lg, ["--url", f"http://127.0.0.1:{nport}{PATH}", "--rate", "1000",
                         "--duration", "30", "--connections", "64", "--body", BODY,
                         "--header", "Content-Type: application/json", "--threads", "2"])
    finally:
        kill(ng)
        a.stop()
        b.stop()
    status = {k: int(v) for k, v in r.get("status", {}).items()}
    admitted = status.get("200", 0)
    span = (r["last_send_us"] - r["first_send_us"]) / 1e6
    # A sliding window of 1 s admits at most 100 in any second. Under a dense
    # load the first 100 arrivals are admitted at t≈0 (t: since the first
    # send), the next 100 as soon as those leave the window at t≈1 s, and so
    # on: a group of 100 starting at every whole second k = 0, 1, … of the
    # span [first, last send]. That is 100 × ceil(span) when the span is a
    # little under whole seconds (29.999 s: groups at 0…29, 3000); the
    # "+100 for the first window" of a fixed-window count is that group at 0.
    # But the schedule's span is 30 s within microseconds either way, and at
    # span 30.0003 s ceil() says 31 groups while the last one, at k = 30,
    # only gets the sends of its last 0.3 ms. So: the whole groups, plus the
    # last one counted by the sends it had time for (rate × its share of a
    # second, at most 100). Jitter through nginx moves group starts by
    # milliseconds (a few requests), so 1% (30) is the bound.
    rate = 1000.0
    whole = math.floor(span)
    expected = 100 * whole + min(100, math.floor((span - whole) * rate) + 1)
    ratio = admitted / expected if expected else float("nan")
    lat = r.get("latency_us", {})
    print(f"   sent {r['sent']} completed {r['completed']} errors {r['errors']} "
          f"status {status} span {span:.3f} s")
    print(f"   admitted {admitted}  expected {expected}  ratio {ratio:.4f}  "
          f"p50 {lat.get('p50')} us  p99 {lat.get('p99')} us  "
          f"(100 x ceil(span) would be {100 * math.ceil(span)})")
    served = tuple(sum(1 for x in r_.records() if x.get("event") == "request") for r_ in (a, b))
    print(f"   requests audited per replica {served}")
    check(min(served) > 0, f"a: nginx spread the load over both replicas ({served})")
    check(abs(admitted - expected) <= 0.01 * expected,
          f"a: admitted {admitted} within 1% of expected {expected}")
    check(r["errors"] == 0, f"a: no transport errors ({r['errors']})")
    check(status.get("429", 0) == r["sent"] - admitted and sum(status.values()) == r["sent"],
          f"a: the rest are 429 ({status.get('429', 0)} of {r['sent'] - admitted})")
    try:
        zkeys = [k for k in redis(redis_port, "KEYS", "kta:l:*")]
    except Exception:
        zkeys = []
    check(len(zkeys) >= 1, f"a: the window is in Redis ({zkeys})")


# --- b. budget under concurrency ------------------------------------------------

def case_budget(kt, lg, tmp, redis_port):
    print("\n== b. budget \"team\" { usd 1 per month }, a burst of 200 concurrent requests")
    redis(redis_port, "FLUSHALL")
    a = Replica(kt, os.path.join(FIXTURES, "budget.ktp"), free_port(), f"{tmp}/b1.jsonl",
                redis_port, "ktb")
    b = Replica(kt, os.path.join(FIXTURES, "budget.ktp"), free_port(), f"{tmp}/b2.jsonl",
                redis_port, "ktb")
    nport = free_port()
    ng = start_nginx(f"{tmp}/nginx-b", nport, [a.port, b.port])
    try:
        r = loadgen(lg, ["--url", f"http://127.0.0.1:{nport}{PATH}", "--concurrency-burst", "200",
                         "--body", BUDGET_BODY, "--header", "Content-Type: application/json"])
        time.sleep(0.3)
        recs = a.records() + b.records()
        per_replica = tuple(sum(1 for x in r.records() if x.get("event") == "request")
                            for r in (a, b))
    finally:
        kill(ng)
        a.stop()
        b.stop()
    status = {k: int(v) for k, v in r.get("status", {}).items()}
    admitted = status.get("200", 0)
    ok = [x for x in recs if x.get("status") == 200]
    reservations = {x["limits"]["reserved"]["usd"] for x in ok if "reserved" in x.get("limits", {})}
    reservation = max(float(u) for u in reservations) if reservations else 0.0
    audit_settled = sum(float(x["limits"]["settled"]["usd"]) for x in ok
                        if isinstance(x.get("limits", {}).get("settled"), dict))
    bt = redis(redis_port, "HGETALL", "ktb:bt:4:team") or []
    redis_settled = sum(int(v) for v in bt[1::2]) / 1e9
    overspend = redis_settled - 1.0
    print(f"   status {status} errors {r['errors']} requests audited per replica {per_replica}")
    print(f"   reservation ${reservation:.6f} (audit reserved.usd {sorted(reservations)})")
    print(f"   admitted {admitted}  in flight at most ${admitted * reservation:.6f}  "
          f"settled total ${redis_settled:.6f} (Redis) ${audit_settled:.6f} (audit)  "
          f"worst overspend ${overspend:+.6f}")
    check(r["errors"] == 0 and status.get("429", 0) == 200 - admitted,
          f"b: 200 answers, 200 or 429 ({status}, errors {r['errors']})")
    check(reservation > 0, "b: the audit records the reservation")
    check(admitted >= 1 and min(per_replica) > 0, f"b: both replicas served ({per_replica})")
    check(admitted * reservation <= 1.0 + reservation + 1e-9,
          f"b: reservations in flight {admitted} x {reservation:.6f} <= $1 + one reservation")
    check(redis_settled <= 1.0 + reservation + 1e-9,
          f"b: settled ${redis_settled:.6f} <= $1 + one reservation")
    check(abs(redis_settled - audit_settled) < 1e-6,
          f"b: Redis total agrees with the audit ({redis_settled:.6f} vs {audit_settled:.6f})")
    # Every admitted request settles to exactly its reservation (budget.ktp),
    # so the order of admissions and settlements does not matter: the sum of
    # reservations of the admitted ones is what they spent, and the budget
    # is full at floor(1 / reservation) = 100. Fewer means refused early.
    settled_each = {x["limits"]["settled"]["usd"] for x in ok
                    if isinstance(x.get("limits", {}).get("settled"), dict)}
    check(settled_each == reservations, f"b: each settles to its reservation ({settled_each})")
    full = int(round(1.0 / reservation)) if reservation else 0
    check(admitted >= full, f"b: the budget is used, not refused early ({admitted} >= {full})")


# --- c. fail modes ---------------------------------------------------------------

def case_fail_mode(kt, tmp, redis_port, mode):
    print(f"\n== c. --limits-fail-mode {mode}: Redis killed, then back on the same port")
    redis_proc = start_redis(redis_port, tmp)
    ns = f"ktc{mode}"
    extra = ["--limits-fail-mode", mode, "--limits-timeout-ms", "50", "--limits-replicas", "2"]
    reps = [Replica(kt, os.path.join(FIXTURES, "failmode.ktp"), free_port(),
                    f"{tmp}/c-{mode}-{i}.jsonl", redis_port, ns, extra) for i in (1, 2)]
    key = f"{ns}:l:5:rps10:"
    try:
        # Counted in Redis first.
        before = []
        for i in range(4):
            before.append(post(reps[i % 2].port))
        check(all(s == 200 for s, *_ in before), f"c/{mode}: before the kill, 4 admitted")
        zcard = redis(redis_port, "ZCARD", key)
        check(zcard == 4, f"c/{mode}: counted in Redis ({key} has {zcard})")
        recs = [audit_of(reps, rid) for *_, rid in before]
        check(all(x and x["limits"]["backend"] == "redis" and "degraded" not in x["limits"]
                  for x in recs), f"c/{mode}: audited backend redis")
        # Unresponsive (stopped, connections open): the 50 ms timeout decides.
        redis_proc.send_signal(signal.SIGSTOP)
        stalled = [post(reps[i % 2].port) for i in range(2)]
        redis_proc.send_signal(signal.SIGCONT)
        want = {"closed": {503}, "open": {200}, "local": {200, 429}}[mode]
        print(f"   Redis stopped: statuses {[s for s, *_ in stalled]} "
              f"slowest {max(t for _, _, t, _ in stalled) * 1000:.0f} ms")
        check(all(t < 2.0 and s in want for s, _, t, _ in stalled),
              f"c/{mode}: Redis not answering: {sorted(want)} in < 2 s")
        kill(redis_proc, signal.SIGKILL)
        time.sleep(1.1)  # the window of the requests above has passed

        if mode == "local":
            results = [post(reps[0].port) for _ in range(20)]
        else:
            results = [post(reps[i % 2].port) for i in range(6)]
        slowest = max(t for _, _, t, _ in results)
        statuses = [s for s, *_ in results]
        recs = [audit_of(reps, rid) for *_, rid in results]
        print(f"   Redis down: statuses {statuses} slowest {slowest * 1000:.0f} ms")
        check(slowest < 2.0, f"c/{mode}: no request hangs (slowest {slowest:.3f} s)")
        if mode == "closed":
            codes = [error_code(b) for _, b, _, _ in results]
            check(all(s == 503 for s in statuses), f"c/closed: all 503 ({statuses})")
            check(all(c == "limits_unavailable" for c in codes), f"c/closed: code limits_unavailable ({set(codes)})")
            check(all(x and x.get("status") == 503 for x in recs), "c/closed: each 503 audited")
        elif mode == "open":
            check(all(s == 200 for s in statuses), f"c/open: all admitted ({statuses})")
            check(all(x and x["limits"].get("degraded") == "open" for x in recs),
                  f"c/open: audit degraded open ({[x and x['limits'] for x in recs][:1]})")
        else:
            admitted = statuses.count(200)
            print(f"   local: one replica admitted {admitted} of 20 within "
                  f"{sum(t for _, _, t, _ in results):.3f} s")
            check(admitted <= 5, f"c/local: one replica admits at most 10/2 = 5 ({admitted})")
            check(admitted >= 1, f"c/local: it still admits ({admitted})")
            check(all(s in (200, 429) for s in statuses), f"c/local: the rest 429 ({statuses})")
            ok = [x for x, s in zip(recs, statuses) if s == 200]
            check(all(x and x["limits"].get("degraded") == "local" and x["limits"]["backend"] == "local"
                      for x in ok), "c/local: audit degraded local, backend local")

        # Recovery without restarting the replicas.
        time.sleep(1.1)
        redis_proc = start_redis(redis_port, tmp)
        t0 = time.time()
        recovered = None
        while time.time() - t0 < 2.0:
            s, body, took, rid = post(reps[0].port)
            x = audit_of(reps, rid, wait=0.3)
            if s == 200 and x and x["limits"].get("backend") == "redis" and "degraded" not in x["limits"]:
                recovered = time.time() - t0
                break
            time.sleep(0.15)
        zcard = redis(redis_port, "ZCARD", key)
        print(f"   Redis back: counted in Redis after {recovered if recovered is None else round(recovered, 3)} s, "
              f"{key} has {zcard}")
        check(recovered is not None, f"c/{mode}: admitted and counted in Redis within 2 s of its restart")
        check(zcard >= 1, f"c/{mode}: the Redis key changed after recovery ({zcard})")
        s, *_ , rid = post(reps[1].port)
        x = audit_of(reps, rid)
        check(s == 200 and x and x["limits"].get("backend") == "redis" and "degraded" not in x["limits"],
              f"c/{mode}: the other replica recovered too ({s}, {x and x['limits']})")
    finally:
        for r in reps:
            r.stop()
        kill(redis_proc)


def main():
    kt, lg = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    for tool in ("redis-server", "nginx"):
        if shutil.which(tool) is None and not os.path.exists("/usr/sbin/" + tool):
            print(f"{tool} is not installed")
            return 1
    os.environ["PATH"] += os.pathsep + "/usr/sbin"
    only = set(sys.argv[3:])  # optional: a b c
    tmp = tempfile.mkdtemp(prefix="kt-limits-")
    for d in ("nginx-a", "nginx-b"):
        os.makedirs(f"{tmp}/{d}")
    t0 = time.time()
    try:
        redis_port = free_port()
        rp = start_redis(redis_port, tmp)
        if not only or "a" in only:
            case_rate(kt, lg, tmp, redis_port)
        if not only or "b" in only:
            case_budget(kt, lg, tmp, redis_port)
        kill(rp)
        if not only or "c" in only:
            for mode in ("closed", "open", "local"):
                case_fail_mode(kt, tmp, free_port(), mode)
    finally:
        kill_all()
    print(f"\ngateway.limits: {time.time() - t0:.1f} s, "
          f"{'all passed' if not FAILURES else str(len(FAILURES)) + ' failed'}")
    for f in FAILURES:
        print("  failed: " + f)
    if not FAILURES and not os.environ.get("KT_KEEP"):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"  logs kept in {tmp}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BaseException:
        kill_all()
        raise
