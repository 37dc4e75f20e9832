// Operations: rate limits under concurrency, the audit hash chain and
// `kt audit verify`, /metrics and /health, and hot reload under load.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';

const KT = process.env.KT_BIN || path.resolve('build/cli/kt');
const API_KEY = 'sk-ops-test-abcdefghijklmnopqrstuvwxyz0123';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-ops-test-'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

async function startGateway(name, policyDir, extra = []) {
  const port = await freePort();
  const audit = path.join(tmp, `${name}-audit.jsonl`);
  const proc = spawn(KT, ['gateway', 'run', '--listen', `127.0.0.1:${port}`, '--policy', policyDir,
    '--audit-log', audit, '--threads', '2', ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    if (proc.exitCode !== null) throw new Error(`gateway exited: ${stderr}`);
    try { if ((await fetch(`${base}/readyz`)).status === 200) break; } catch { /* starting */ }
    await sleep(50);
  }
  return { proc, base, url: `${base}/v1`, audit, stderr: () => stderr,
    stop: () => new Promise((r) => { if (proc.exitCode !== null) return r(); proc.once('exit', r); proc.kill('SIGTERM'); }) };
}

const MOCK = `provider mock {
  kind: mock
  models: ["*"]
}
`;

function chat(base, content, headers = {}) {
  return fetch(`${base}/v1/chat/completions`, { method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}`, ...headers },
    body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content }] }) });
}

let limited, reloadable;
const limitDir = path.join(tmp, 'limits');
const reloadDir = path.join(tmp, 'reload');

before(async () => {
  fs.mkdirSync(limitDir);
  fs.writeFileSync(path.join(limitDir, 'limits.ktp'), `${MOCK}
limit "burst" {
  requests 100 per second
}

limit "per-source" {
  key header("X-Request-Source") ?? "anonymous"
  requests 5 per minute
  when (header("X-Request-Source") ?? "") == "tiny-service"
}
`);
  fs.mkdirSync(reloadDir);
  fs.writeFileSync(path.join(reloadDir, 'main.ktp'), `${MOCK}
policy "no-foo" {
  on input
  when any m in input.messages: m.content contains "foo"
  then block "foo is not allowed" code "foo"
}
`);
  limited = await startGateway('limits', limitDir);
  reloadable = await startGateway('reload', reloadDir);
});

after(async () => {
  await limited?.stop();
  await reloadable?.stop();
});

test('1,000 requests per second from 8 clients at a 100/s limit: 429s, admitted within 1%', async () => {
  // Sending stops by the clock, 2.5 s after the first request: the limit's
  // 1-second windows start at 0, 1 and 2 s, each refilled while demand
  // (far above 100/s) lasts, so exactly 300 admissions are right.
  const durationMs = 2500;
  const workers = 8;
  const perWorkerInterval = workers;  // ms between a worker's requests: 1,000 req/s in total
  let admitted = 0, refused = 0, other = 0;
  let retryAfterOk = true;
  const t0 = Date.now();
  const one = async () => {
    const r = await chat(limited.base, 'hi');
    const body = await r.json();
    if (r.status === 200) admitted++;
    else if (r.status === 429) {
      refused++;
      if (!(Number(r.headers.get('retry-after')) >= 1) || body.error.type !== 'rate_limit' ||
          body.error.code !== 'rate_limit_exceeded' || body.error.limit !== 'burst') retryAfterOk = false;
    } else other++;
  };
  // Each client sends on its own clock, without waiting for answers, so the
  // offered rate does not depend on the gateway's latency.
  await Promise.all(Array.from({ length: workers }, async (_, w) => {
    const inflight = [];
    let next = t0 + w;  // staggered
    while (true) {
      const wait = next - Date.now();
      if (wait > 0) await sleep(wait);
      if (Date.now() - t0 >= durationMs) break;
      inflight.push(one());
      next += perWorkerInterval;
    }
    await Promise.all(inflight);
  }));
  const sent = admitted + refused + other;
  const rate = sent / (durationMs / 1000);
  assert.equal(other, 0);
  assert.ok(rate > 400, `the client only reached ${rate.toFixed(0)} req/s`);
  assert.ok(refused > 0);
  assert.ok(retryAfterOk, '429s carry retry-after and the rate_limit envelope');
  // Judge the limiter by the gateway's own clock (the audit records), not
  // the client's: on a busy machine requests reach it late and in bursts.
  // A request's arrival is its record's time minus its total latency.
  const events = fs.readFileSync(limited.audit, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    .filter((e) => e.event === 'request');
  const arrival = (e) => e.ts_us - e.latency_us.total;
  const ok = events.filter((e) => e.status === 200).map(arrival).sort((a, b) => a - b);
  const refusedAt = events.filter((e) => e.status === 429).map(arrival).sort((a, b) => a - b);
  // Never more than 100 in any 1-second window: admissions 100 apart are a
  // second apart (1% tolerance).
  let tightest = Infinity;
  for (let i = 0; i + 100 < ok.length; i++) tightest = Math.min(tightest, ok[i + 100] - ok[i]);
  // And no under-admission: the first refusal comes after exactly the
  // budget (demand far above it fills a window within a tenth of a second).
  const beforeFirstRefusal = ok.filter((t) => t < refusedAt[0]).length;
  console.log(`rate limit: offered ${rate.toFixed(0)} req/s; ${admitted} admitted, ${refused} refused; ` +
    `${beforeFirstRefusal} admitted before the first 429; tightest 101 admissions span ` +
    `${(tightest / 1e6).toFixed(4)} s`);
  // The 1% bounds are a measurement of the gateway's clock against the
  // audit's reconstruction of arrivals; under ASan (make test-asan sets
  // KT_SANITIZED) requests take several times longer and arrive out of
  // order on the two threads, so only the limiter's behaviour is asserted.
  if (process.env.KT_SANITIZED !== '1') {
    assert.ok(tightest >= 0.99e6, `101 admissions within ${tightest} µs`);
    assert.ok(Math.abs(beforeFirstRefusal - 100) <= 1, `${beforeFirstRefusal} admitted before the first 429`);
  }
  assert.ok(admitted > 100, 'a later window admits again');
});

test('a keyed limit counts per key, and its 429 names it', async () => {
  await sleep(1100);  // let the global burst budget refill
  const statuses = [];
  for (let i = 0; i < 7; i++) statuses.push((await chat(limited.base, 'hi', { 'x-request-source': 'tiny-service' })).status);
  assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429, 429]);
  const other = await chat(limited.base, 'hi', { 'x-request-source': 'other-service' });
  assert.equal(other.status, 200);
  const r = await chat(limited.base, 'hi', { 'x-request-source': 'tiny-service' });
  const body = await r.json();
  assert.equal(body.error.limit, 'per-source');
  assert.ok(Number(r.headers.get('retry-after')) > 1, 'a per-minute window: retry after seconds');
  assert.equal(r.headers.get('x-ratelimit-limit-requests'), '5');
});

test('/metrics parses as Prometheus text and counts what was sent', async () => {
  const before = await (await fetch(`${reloadable.base}/metrics`)).text();
  const sent = { 200: 7, 409: 3 };
  for (let i = 0; i < sent[200]; i++) assert.equal((await chat(reloadable.base, 'hello')).status, 200);
  for (let i = 0; i < sent[409]; i++) assert.equal((await chat(reloadable.base, 'say foo')).status, 409);
  const text = await (await fetch(`${reloadable.base}/metrics`)).text();
  const samples = parsePrometheus(text);
  const count = (t, status) => t.filter((s) => s.name === 'kt_requests_total' && s.labels.status === String(status))
    .reduce((a, s) => a + s.value, 0);
  const prev = parsePrometheus(before);
  assert.equal(count(samples, 200) - count(prev, 200), sent[200]);
  assert.equal(count(samples, 409) - count(prev, 409), sent[409]);
  const blocks = samples.find((s) => s.name === 'kt_policy_decisions_total' && s.labels.policy === 'no-foo');
  assert.ok(blocks.value >= sent[409]);
  const hist = samples.filter((s) => s.name === 'kt_request_latency_seconds_count');
  assert.equal(hist.length, 1);
  assert.ok(hist[0].value >= sent[200] + sent[409]);
  assert.ok(samples.some((s) => s.name === 'kt_active_streams'));
});

// A strict reader of the text exposition format: every line is a comment
// (HELP/TYPE) or `name{labels} value`, and every sample belongs to a TYPE.
function parsePrometheus(text) {
  const samples = [];
  const types = new Map();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m;
    if ((m = line.match(/^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/))) {
      if (m[1] === 'TYPE') {
        assert.ok(['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(m[3]), line);
        types.set(m[2], m[3]);
      }
      continue;
    }
    m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.e+-]+|\+Inf|NaN)$/);
    assert.ok(m, `not a sample line: ${line}`);
    const labels = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g;
      let consumed = 0, l;
      while ((l = re.exec(m[3]))) { labels[l[1]] = l[2]; consumed += l[0].length; }
      assert.equal(consumed, m[3].length, `bad labels: ${line}`);
    }
    const family = m[1].replace(/_(bucket|sum|count)$/, '');
    assert.ok(types.has(m[1]) || types.has(family), `sample without TYPE: ${line}`);
    samples.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return samples;
}

test('a reload under load (200 req/s for 10 s) drops and fails no request', async () => {
  const file = path.join(reloadDir, 'main.ktp');
  const original = fs.readFileSync(file, 'utf8');
  const results = { ok: 0, blocked: 0, failed: [] };
  const t0 = Date.now();
  let reloaded = false;
  const load = Promise.all(Array.from({ length: 4 }, async (_, w) => {
    let next = t0 + w * 5;
    while (next - t0 < 10000) {
      const wait = next - Date.now();
      if (wait > 0) await sleep(wait);
      try {
        const r = await chat(reloadable.base, 'say bar');
        await r.text();
        if (r.status === 200) results.ok++;
        else if (r.status === 409) results.blocked++;
        else results.failed.push(r.status);
      } catch (e) {
        results.failed.push(String(e));
      }
      next += 20;  // 4 workers × 50/s = 200 req/s
    }
  }));
  await sleep(5000);
  fs.writeFileSync(file, original.replace('contains "foo"', 'contains "bar"'));
  reloadable.proc.kill('SIGHUP');
  reloaded = true;
  await load;
  fs.writeFileSync(file, original);
  assert.equal((await fetch(`${reloadable.base}/admin/reload`, { method: 'POST' })).status, 200);
  assert.ok(reloaded);
  assert.deepEqual(results.failed, [], 'no request failed or was dropped');
  assert.ok(results.ok + results.blocked > 1900, `sent ${results.ok + results.blocked}`);
  assert.ok(results.ok > 500 && results.blocked > 500, `before: allowed; after: blocked (${JSON.stringify(results)})`);
  const health = await (await fetch(`${reloadable.base}/health`)).json();
  assert.equal(health.status, 'ok');
  assert.equal(health.last_reload.ok, true);
});

test('a reload with a broken policy keeps the old set, and /health shows the error', async () => {
  const file = path.join(reloadDir, 'main.ktp');
  const good = fs.readFileSync(file, 'utf8');
  const before = await (await fetch(`${reloadable.base}/health`)).json();
  fs.writeFileSync(file, good.replace('input.messages', 'input.mesages'));
  const r = await fetch(`${reloadable.base}/admin/reload`, { method: 'POST' });
  assert.equal(r.status, 422);
  const body = await r.json();
  assert.equal(body.ok, false);
  assert.match(body.error, /E0202.*mesages/s);
  const health = await (await fetch(`${reloadable.base}/health`)).json();
  assert.equal(health.status, 'degraded');
  assert.equal(health.policy_version, before.policy_version);
  assert.match(health.last_reload.error, /did you mean `messages`/);
  // Still serving, still enforcing the old set.
  assert.equal((await chat(reloadable.base, 'say foo')).status, 409);
  assert.equal((await chat(reloadable.base, 'hello')).status, 200);
  fs.writeFileSync(file, good);
  const fixed = await fetch(`${reloadable.base}/admin/reload`, { method: 'POST' });
  assert.equal(fixed.status, 200);
  assert.equal((await (await fetch(`${reloadable.base}/health`)).json()).status, 'ok');
  const events = fs.readFileSync(reloadable.audit, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(events.some((e) => e.event === 'reload' && e.ok === false && /mesages/.test(e.error)));
});

test('kt audit verify: passes on a real log, names an edited line, never sees the key', async () => {
  const log = reloadable.audit;
  const text = fs.readFileSync(log, 'utf8');
  assert.ok(!text.includes(API_KEY), 'the API key is in the audit log');
  assert.ok(!text.includes(API_KEY.slice(3)), 'part of the API key is in the audit log');
  const ok = execFileSync(KT, ['audit', 'verify', log], { encoding: 'utf8' });
  assert.match(ok, /ok: \d+ lines, hash chain intact/);
  const lines = text.trim().split('\n');
  const middle = Math.floor(lines.length / 2);
  // One byte inside a value of the middle line: the model name.
  lines[middle] = lines[middle].replace('"model":"gpt-4o"', '"model":"gpt-4O"');
  assert.notEqual(lines.join('\n'), text.trim());
  const edited = path.join(tmp, 'edited.jsonl');
  fs.writeFileSync(edited, lines.join('\n') + '\n');
  let out = '';
  let code = 0;
  try { execFileSync(KT, ['audit', 'verify', edited], { encoding: 'utf8' }); } catch (e) { out = e.stdout; code = e.status; }
  assert.equal(code, 1);
  assert.match(out, new RegExp(`:${middle + 1}: chain broken: line ${middle + 1} was modified`));

  // The chain alone cannot see a dropped last line; the head from /health can.
  const head = (await (await fetch(`${reloadable.base}/health`)).json()).audit.head;
  const current = fs.readFileSync(log, 'utf8');
  assert.match(execFileSync(KT, ['audit', 'verify', '--head', head, log], { encoding: 'utf8' }), /hash chain intact/);
  const truncated = path.join(tmp, 'truncated.jsonl');
  fs.writeFileSync(truncated, current.trim().split('\n').slice(0, -1).join('\n') + '\n');
  assert.match(execFileSync(KT, ['audit', 'verify', truncated], { encoding: 'utf8' }), /hash chain intact/);
  code = 0;
  try { execFileSync(KT, ['audit', 'verify', '--head', head, truncated], { encoding: 'utf8' }); } catch (e) { out = e.stdout; code = e.status; }
  assert.equal(code, 1);
  assert.match(out, /truncated, or its last line was modified/);
});

test('a restart with a warm object cache links the cached program and compiles nothing', async () => {
  const dir = path.join(tmp, 'restart');
  const cache = path.join(tmp, 'restart-cache');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'main.ktp'), `${MOCK}
policy "no-bar" {
  on input
  when any m in input.messages: lower(m.content) contains "bar" or m.content matches /b[a4]z+/
  then block "bar is not allowed" code "bar"
}
`);
  const runs = [];
  for (let i = 0; i < 2; i++) {
    const gw = await startGateway(`restart-${i}`, dir, ['--cache-dir', cache]);
    try {
      const health = await (await fetch(`${gw.base}/health`)).json();
      const blocked = await chat(gw.base, 'a BAR walks in');
      assert.equal(blocked.status, 409);
      assert.equal((await blocked.json()).error.code, 'bar');
      assert.equal((await chat(gw.base, 'a b4zzz')).status, 409);
      assert.equal((await chat(gw.base, 'fine')).status, 200);
      runs.push({ program: health.program, log: gw.stderr() });
    } finally {
      await gw.stop();
    }
  }
  const [cold, warm] = runs;
  assert.equal(cold.program.engine, 'native');
  assert.equal(cold.program.from_cache, false);
  assert.ok(cold.program.compile_ms > 0);
  assert.match(cold.log, /policy program: native code, compiled/);
  assert.equal(warm.program.engine, 'native');
  assert.equal(warm.program.from_cache, true);
  assert.equal(warm.program.compile_ms, 0);
  assert.equal(warm.program.cache_key, cold.program.cache_key);
  assert.match(warm.log, /from the object cache: .*compilation skipped/);
  assert.ok(fs.existsSync(path.join(cache, `${cold.program.cache_key}.o`)));
  console.log(`program load: cold ${cold.program.load_ms.toFixed(1)} ms (compile ` +
    `${cold.program.compile_ms.toFixed(1)} ms), warm ${warm.program.load_ms.toFixed(1)} ms`);
});
