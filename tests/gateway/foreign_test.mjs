// Foreign upstreams behind the real `kt gateway run` binary, driven by the
// official `openai` npm package. None of them is our fake: node's own `http`
// module answering in every framing a server may choose (Content-Length,
// chunked, one byte per write, an interim 100 or 103 first, trailers, CRLF
// events, a connection closed mid-answer), and Debian's nginx, both serving canned answers (with
// Content-Length, and pre-gzipped ones although nobody asked) and as a
// reverse proxy in front of the node server (buffered over HTTP/1.0, and
// unbuffered over HTTP/1.1). Every chat shape goes through each of them:
// JSON, SSE with usage, tool calls plain and streamed, and upstream errors
// with the headers the SDK acts on. Every failure must be a clear error the
// SDK raises (never a hang), have its audit record, and be followed by a
// normal request that succeeds.
//
//   tests/gateway/run.sh build/cli/kt foreign_test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import OpenAI, { APIError } from 'openai';

const KT = process.env.KT_BIN || path.resolve('build/cli/kt');
const SRC = process.env.KT_SOURCE_DIR || path.resolve('.');
const NGINX = process.env.KT_NGINX || '/usr/sbin/nginx';
const API_KEY = 'sk-foreign-0123456789abcdefghijkl';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-foreign-test-'));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Every child is killed when the test process ends, however it ends.
const children = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(1));

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

function stopChild(proc, signal = 'SIGTERM') {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    const kill = setTimeout(() => proc.kill('SIGKILL'), 5000);
    proc.once('exit', () => { clearTimeout(kill); resolve(); });
    proc.kill(signal);
  });
}

// --- node's own http module as the upstream ---------------------------------
//
// The first path segment picks how the answer is framed; the last user
// message picks what it says:
//   status CODE [name=value ...] [once=KEY]   an error with those headers
//                                             (with once=KEY only the first
//                                             request carrying KEY)
//   call NAME JSON                            one tool call
//   cut-headers | cut-body | cut-event        the connection destroyed after
//                                             the head, mid-body (mid-stream
//                                             after two events), mid-event
//   hangup                                    destroyed without an answer
//   anything else                             echoed back (`{at}` as an @)
const FRAMINGS = ['cl', 'chunked', 'bytes-cl', 'bytes-chunked', 'continue', 'hints', 'trailers', 'crlf'];

function lastUser(messages) {
  const m = (messages || []).filter((x) => x.role === 'user').at(-1);
  return typeof m?.content === 'string' ? m.content : '';
}

function startNodeUpstream() {
  const state = { hits: [], once: new Set() };
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => answer(state, req, res, Buffer.concat(parts).toString('utf8'))
      .catch(() => res.destroy()));
  });
  server.keepAliveTimeout = 30000;
  server.on('connection', (s) => s.setNoDelay(true));
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    port: server.address().port, state,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  })));
}

function completionOf(id, model, message, finish, usage) {
  return { id, object: 'chat.completion', created: 1700000000, model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: finish }], usage };
}

function chunkOf(id, model, delta, finish = null) {
  return { id, object: 'chat.completion.chunk', created: 1700000000, model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] };
}

// What the upstream answers for a request: status, headers and the body as
// bytes, plus the offsets where the cut directives end the connection.
function replyFor(state, framing, body) {
  const prompt = lastUser(body.messages);
  const words = prompt.split(/\s+/);
  const id = `chatcmpl-node-${state.hits.length}`;
  if (words[0] === 'status') {
    const code = Number(words[1]);
    const headers = { 'content-type': 'application/json' };
    let key = null;
    for (const w of words.slice(2)) {
      const eq = w.indexOf('=');
      if (w.slice(0, eq) === 'once') key = w.slice(eq + 1);
      else headers[w.slice(0, eq)] = w.slice(eq + 1);
    }
    if (!key || !state.once.has(key)) {
      if (key) state.once.add(key);
      const error = { message: `node ${framing} refuses with ${code}`, type: 'node_error', code: `node_${code}` };
      return { status: code, headers, payload: Buffer.from(JSON.stringify({ error })) };
    }
  }
  let tool = null;
  if (words[0] === 'call') {
    const rest = prompt.slice('call '.length);
    const sp = rest.indexOf(' ');
    tool = { name: rest.slice(0, sp), arguments: rest.slice(sp + 1) };
  }
  const text = `node ${framing} echoes: ${prompt.replaceAll('{at}', '@')}`;
  const usage = { prompt_tokens: prompt.length, completion_tokens: text.length, total_tokens: prompt.length + text.length };
  const headers = { 'x-ratelimit-remaining-requests': String(1000 - state.hits.length) };
  if (!body.stream) {
    const message = tool
      ? { role: 'assistant', content: null, tool_calls: [{ id: 'call_node1', type: 'function', function: tool }] }
      : { role: 'assistant', content: text };
    const payload = Buffer.from(JSON.stringify(completionOf(id, body.model, message, tool ? 'tool_calls' : 'stop', usage)));
    headers['content-type'] = 'application/json';
    return { status: 200, headers, payload, cutBody: Math.floor(payload.length / 2) };
  }
  const events = [chunkOf(id, body.model, { role: 'assistant', content: tool ? null : '' })];
  if (tool) {
    events.push(chunkOf(id, body.model, { tool_calls: [{ index: 0, id: 'call_node1', type: 'function',
      function: { name: tool.name, arguments: '' } }] }));
    const mid = Math.floor(tool.arguments.length / 2);
    for (const a of [tool.arguments.slice(0, mid), tool.arguments.slice(mid)]) {
      events.push(chunkOf(id, body.model, { tool_calls: [{ index: 0, function: { arguments: a } }] }));
    }
    events.push(chunkOf(id, body.model, {}, 'tool_calls'));
  } else {
    for (let i = 0; i < text.length; i += 7) events.push(chunkOf(id, body.model, { content: text.slice(i, i + 7) }));
    events.push(chunkOf(id, body.model, {}, 'stop'));
  }
  if (body.stream_options?.include_usage) events.push({ id, object: 'chat.completion.chunk', created: 1700000000, model: body.model, choices: [], usage });
  let frames = [...events.map((e) => `data: ${JSON.stringify(e)}\n\n`), 'data: [DONE]\n\n'];
  // CRLF line ends, a keep-alive comment and an id line before each event.
  if (framing === 'crlf') frames = frames.map((f, i) => `: keep-alive\r\nid: ${i}\r\n${f.replace(/\n/g, '\r\n')}`);
  frames = frames.map((f) => Buffer.from(f));
  headers['content-type'] = 'text/event-stream';
  headers['cache-control'] = 'no-cache';
  const payload = Buffer.concat(frames);
  // After the role and the first content event; in the middle of the third.
  const cutBody = frames[0].length + frames[1].length;
  return { status: 200, headers, payload, frames, cutBody, cutEvent: cutBody + Math.floor(frames[2].length / 2) };
}

async function answer(state, req, res, raw) {
  const m = req.url.match(/^\/([\w-]+)\/v1\/chat\/completions$/);
  const framing = m && FRAMINGS.includes(m[1]) ? m[1] : null;
  let body = null;
  try { body = JSON.parse(raw); } catch { /* answered below */ }
  state.hits.push({ path: req.url, framing, headers: req.headers, body, raw, httpVersion: req.httpVersion });
  if (!framing || !body) {
    res.writeHead(400, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: `node cannot serve ${req.url}`, type: 'invalid_request_error' } }));
    return;
  }
  const r = replyFor(state, framing, body);
  state.hits.at(-1).sent = r.headers;
  const directive = lastUser(body.messages);
  if (directive === 'hangup') {
    res.socket.destroy();
    return;
  }
  if (directive === 'cut-headers') {
    res.writeHead(200, { ...r.headers, 'content-length': String(r.payload.length) });
    res.flushHeaders();
    await sleep(20);
    res.socket.destroy();
    return;
  }
  const end = directive === 'cut-body' ? r.cutBody : directive === 'cut-event' ? r.cutEvent : null;
  const bytes = end === null ? r.payload : r.payload.subarray(0, end);
  if (framing === 'continue') { res.writeContinue(); await sleep(10); }
  if (framing === 'hints') { res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' }); await sleep(10); }
  const withLength = framing === 'cl' || framing === 'bytes-cl' || framing === 'continue';
  const head = withLength ? { ...r.headers, 'content-length': String(r.payload.length) } : { ...r.headers };
  if (framing === 'trailers') head.trailer = 'x-upstream-digest';
  res.writeHead(r.status, head);
  if (framing.startsWith('bytes-')) {
    // Every byte its own write, UTF-8 sequences and chunk framing split.
    for (let i = 0; i < bytes.length; i++) {
      if (res.destroyed) return;
      res.write(bytes.subarray(i, i + 1));
      await sleep(1);
    }
  } else if (withLength) {
    res.write(bytes);
  } else {
    // Chunked: one write per event (per third of a JSON body).
    const pieces = r.frames ?? [0, 1, 2].map((i) => r.payload.subarray(Math.floor(i * r.payload.length / 3), Math.floor((i + 1) * r.payload.length / 3)));
    let at = 0;
    for (const p of pieces) {
      const take = Math.min(p.length, bytes.length - at);
      if (take <= 0) break;
      res.write(p.subarray(0, take));
      at += take;
      await sleep(2);
    }
  }
  if (end === null) {
    if (framing === 'trailers') res.addTrailers({ 'x-upstream-digest': `bytes=${bytes.length}` });
    res.end();
    return;
  }
  await sleep(20);
  res.socket.destroy();
}

// --- nginx --------------------------------------------------------------------

// The canned answers nginx serves. Tool-call arguments are JSON inside JSON,
// so those come from files, as does the stream; the plain JSON answer is a
// `return` in the configuration.
const CANNED_TEXT = 'nginx canned: hello from a file server';
const cannedUsage = { prompt_tokens: 3, completion_tokens: 7, total_tokens: 10 };
const cannedJson = completionOf('chatcmpl-nginx', 'nginx-json', { role: 'assistant', content: CANNED_TEXT }, 'stop', cannedUsage);
const cannedToolArgs = '{"account_id":"AC-4321"}';
const cannedTool = completionOf('chatcmpl-nginx', 'nginx-tool', { role: 'assistant', content: null,
  tool_calls: [{ id: 'call_ngx', type: 'function', function: { name: 'get_account_balance', arguments: cannedToolArgs } }] },
'tool_calls', cannedUsage);
function cannedStream(model, tool) {
  const ev = [chunkOf('chatcmpl-nginx', model, { role: 'assistant', content: tool ? null : '' })];
  if (tool) {
    ev.push(chunkOf('chatcmpl-nginx', model, { tool_calls: [{ index: 0, id: 'call_ngx', type: 'function', function: { name: 'get_account_balance', arguments: '' } }] }));
    ev.push(chunkOf('chatcmpl-nginx', model, { tool_calls: [{ index: 0, function: { arguments: cannedToolArgs.slice(0, 9) } }] }));
    ev.push(chunkOf('chatcmpl-nginx', model, { tool_calls: [{ index: 0, function: { arguments: cannedToolArgs.slice(9) } }] }));
    ev.push(chunkOf('chatcmpl-nginx', model, {}, 'tool_calls'));
  } else {
    for (const piece of CANNED_TEXT.match(/\S+\s*/g)) ev.push(chunkOf('chatcmpl-nginx', model, { content: piece }));
    ev.push(chunkOf('chatcmpl-nginx', model, {}, 'stop'));
  }
  ev.push({ id: 'chatcmpl-nginx', object: 'chat.completion.chunk', created: 1700000000, model, choices: [], usage: cannedUsage });
  return [...ev.map((e) => `data: ${JSON.stringify(e)}\n\n`), 'data: [DONE]\n\n'].join('');
}
// Answers far over the gateway's 16 KiB read buffer: 2 MiB of JSON, and a
// stream of 5,000 events (every buffer boundary falls inside an event).
const BIG_TEXT = Array.from({ length: 2 << 20 >> 6 }, (_, i) => `line ${String(i).padStart(8, '0')} of a long answer, é ✓ 日本\n`.slice(0, 48)).join('');
const bigJson = completionOf('chatcmpl-nginx-big', 'nginx-big', { role: 'assistant', content: BIG_TEXT }, 'stop', cannedUsage);
const BIG_PIECES = Array.from({ length: 5000 }, (_, i) => `piece ${i}; `);
function bigStream() {
  const ev = [chunkOf('chatcmpl-nginx-big', 'nginx-big-sse', { role: 'assistant', content: '' }),
    ...BIG_PIECES.map((p) => chunkOf('chatcmpl-nginx-big', 'nginx-big-sse', { content: p })),
    chunkOf('chatcmpl-nginx-big', 'nginx-big-sse', {}, 'stop')];
  return [...ev.map((e) => `data: ${JSON.stringify(e)}\n\n`), 'data: [DONE]\n\n'].join('');
}
const NGINX_ERRORS = [
  { code: 400, headers: {} },
  { code: 404, headers: {} },
  { code: 500, headers: {} },
  { code: 503, headers: { 'retry-after': '1' } },
  { code: 429, headers: { 'retry-after': '1', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '1s' } },
];
const nginxErrorBody = (code) => ({ error: { message: `nginx refuses with ${code}`, type: 'nginx_error', code: `nginx_${code}` } });

async function startNginx(nodePort) {
  if (!fs.existsSync(NGINX)) {
    throw new Error(`nginx is missing (${NGINX}): scripts/install-deps installs nginx-light, or set KT_NGINX`);
  }
  const dir = path.join(tmp, 'nginx');
  for (const d of ['html/files', 'html/gz', 'tmp', 'logs']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.writeFileSync(path.join(dir, 'html/files/stream.sse'), cannedStream('nginx-sse', false));
  fs.writeFileSync(path.join(dir, 'html/files/tool.json'), JSON.stringify(cannedTool));
  fs.writeFileSync(path.join(dir, 'html/files/tool.sse'), cannedStream('nginx-tool-sse', true));
  fs.writeFileSync(path.join(dir, 'html/files/big.json'), JSON.stringify(bigJson));
  fs.writeFileSync(path.join(dir, 'html/files/big.sse'), bigStream());
  // Pre-compressed only: gzip_static serves the .gz whatever was asked.
  const gz = completionOf('chatcmpl-nginx', 'nginx-gzip', { role: 'assistant', content: 'zipped' }, 'stop', cannedUsage);
  fs.writeFileSync(path.join(dir, 'html/gz/completion.json.gz'), zlib.gzipSync(JSON.stringify(gz)));
  fs.writeFileSync(path.join(dir, 'html/gz/completion.json'), JSON.stringify(gz));
  fs.writeFileSync(path.join(dir, 'html/gz/stream.sse.gz'), zlib.gzipSync(cannedStream('nginx-gzip-sse', false)));
  fs.writeFileSync(path.join(dir, 'html/gz/stream.sse'), cannedStream('nginx-gzip-sse', false));
  const port = await freePort();
  const deadPort = await freePort();  // nothing listens there
  const q = (s) => `'${s}'`;  // JSON has no single quotes
  const errors = NGINX_ERRORS.map(({ code, headers }) => `
    location = /canned/e${code}/v1/chat/completions {
${Object.entries(headers).map(([k, v]) => `      add_header ${k} ${v} always;`).join('\n')}
      return ${code} ${q(JSON.stringify(nginxErrorBody(code)))};
    }`).join('');
  const proxy = (name, extra) => `
    location /${name}/ {
      proxy_pass http://127.0.0.1:${name === 'dead' ? deadPort : nodePort}/;
      proxy_set_header X-Via nginx-${name};
${extra}
    }`;
  // Single process, everything under DIR: no root paths, no privilege
  // change (as root, the worker would otherwise drop to `nobody` and not
  // read the temp dir).
  const conf = `
${process.getuid?.() === 0 ? 'user root;' : ''}
master_process off;
worker_processes 1;
error_log ${dir}/logs/error.log warn;
pid ${dir}/nginx.pid;
events { worker_connections 256; }
http {
  log_format hits '$request_uri $status';
  access_log ${dir}/logs/access.log hits;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  types { application/json json; text/event-stream sse; }
  default_type application/json;
  keepalive_timeout 30s;
  # Every fourth answer on a connection says Connection: close: the gateway
  # must not pool a connection nginx is closing.
  keepalive_requests 4;
  server {
    listen 127.0.0.1:${port};
    root ${dir}/html;
    # The static module answers POST with 405: serve the file as for GET.
    error_page 405 =200 $uri;
    location = /canned/json/v1/chat/completions { return 200 ${q(JSON.stringify(cannedJson))}; }
    location = /canned/sse/v1/chat/completions { try_files /files/stream.sse =404; }
    location = /canned/tool/v1/chat/completions { try_files /files/tool.json =404; }
    location = /canned/tool-sse/v1/chat/completions { try_files /files/tool.sse =404; }
    location = /canned/gzip/v1/chat/completions { try_files /gz/completion.json =404; }
    location = /canned/gzip-sse/v1/chat/completions { try_files /gz/stream.sse =404; }
    location = /canned/big/v1/chat/completions { try_files /files/big.json =404; }
    location = /canned/big-sse/v1/chat/completions { try_files /files/big.sse =404; }
    location = /canned/empty/v1/chat/completions { return 200 ''; }
    # nginx closes idle keep-alive connections after 1 s here: the gateway's
    # pooled connection to it goes stale.
    location = /canned/short-idle/v1/chat/completions { keepalive_timeout 1s; return 200 ${q(JSON.stringify(cannedJson))}; }
    # A proxy with a small body limit refuses a large request itself.
    location /small-body/ { client_max_body_size 1k; proxy_pass http://127.0.0.1:${nodePort}/; }
    location /files/ { }
    location /gz/ { gzip_static always; }
${errors}
${proxy('buffered', '')}
${proxy('dead', '')}
${proxy('unbuffered', '      proxy_http_version 1.1;\n      proxy_set_header Connection "";\n      proxy_buffering off;')}
  }
}
`;
  fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
  const proc = spawn(NGINX, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;'],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(proc);
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d));
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null) throw new Error(`nginx exited (${proc.exitCode}): ${stderr}`);
    try {
      await new Promise((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => { s.end(); resolve(); });
        s.on('error', reject);
      });
      break;
    } catch {
      if (i > 200) throw new Error(`nginx did not listen on ${port}: ${stderr}`);
      await sleep(25);
    }
  }
  return {
    port, dir, proc, stderr: () => stderr,
    // Requests nginx saw for a path (from its access log).
    hits: (p) => fs.readFileSync(path.join(dir, 'logs/access.log'), 'utf8').split('\n').filter((l) => l.startsWith(`${p} `)).length,
  };
}

// --- the gateway ----------------------------------------------------------------

// Models and the upstream base URL each is routed to.
function routes(nodePort, nginxPort) {
  const r = {};
  for (const f of FRAMINGS) r[`node-${f}`] = `http://127.0.0.1:${nodePort}/${f}/v1`;
  for (const c of ['json', 'sse', 'tool', 'tool-sse', 'gzip', 'gzip-sse', 'big', 'big-sse', 'empty', 'short-idle',
    ...NGINX_ERRORS.map((e) => `e${e.code}`)]) {
    r[`nginx-${c}`] = `http://127.0.0.1:${nginxPort}/canned/${c}/v1`;
  }
  for (const p of ['buffered', 'unbuffered']) {
    for (const f of ['cl', 'chunked']) r[`nginx-${p}-${f}`] = `http://127.0.0.1:${nginxPort}/${p}/${f}/v1`;
  }
  r['nginx-dead'] = `http://127.0.0.1:${nginxPort}/dead/cl/v1`;
  r['nginx-small-body'] = `http://127.0.0.1:${nginxPort}/small-body/cl/v1`;
  return r;
}

async function startGateway(routeTable) {
  // The quickstart's rules (injection block, email redaction, the tool
  // allowlist of get_account_balance), with the foreign upstreams as its
  // providers instead of the mock.
  const quickstart = fs.readFileSync(path.join(SRC, 'examples/policies/quickstart.ktp'), 'utf8')
    .replace(/provider mock \{[^}]*\}/, '')
    .replace(/\ntest "[\s\S]*$/, '\n');
  const providers = Object.entries(routeTable).map(([model, url]) => `
provider ${model.replaceAll('-', '_')} {
  kind: openai
  base_url: "${url}"
  models: ["${model}"]
}
`).join('');
  const dir = path.join(tmp, 'policies');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'main.ktp'), quickstart + providers);
  const port = await freePort();
  const audit = path.join(tmp, 'audit.jsonl');
  const proc = spawn(KT, ['gateway', 'run', '--listen', `127.0.0.1:${port}`, '--audit-log', audit,
    '--threads', '2', '--policy', dir, '--first-byte-timeout-ms', '10000'], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(proc);
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null) throw new Error(`the gateway exited: ${stderr}`);
    try {
      if ((await fetch(`${base}/readyz`)).status === 200) break;
    } catch { /* not listening yet */ }
    if (i > 400) throw new Error(`the gateway did not become ready: ${stderr}`);
    await sleep(50);
  }
  return {
    proc, url: `${base}/v1`, stderr: () => stderr,
    events: () => fs.readFileSync(audit, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)),
  };
}

let node, nginx, gw;

before(async () => {
  if (!fs.existsSync(KT)) throw new Error(`the kt binary is missing: ${KT}`);
  node = await startNodeUpstream();
  nginx = await startNginx(node.port);
  gw = await startGateway(routes(node.port, nginx.port));
});

after(async () => {
  if (gw) await stopChild(gw.proc);
  if (nginx) await stopChild(nginx.proc);
  await node?.close();
});

// --- helpers ----------------------------------------------------------------

const client = (extra = {}) => new OpenAI({ baseURL: gw.url, apiKey: API_KEY, maxRetries: 0, timeout: 15000, ...extra });
let seq = 0;
const newId = (what) => `req_foreign_${what.replace(/\W+/g, '_')}_${++seq}`;
const requestOpts = (rid) => ({ headers: { 'x-request-id': rid } });
const TOOLS = [{ type: 'function', function: { name: 'get_account_balance', description: 'the balance of an account',
  parameters: { type: 'object', properties: { account_id: { type: 'string' } }, required: ['account_id'] } } }];

async function collect(stream) {
  const out = { content: '', tools: {}, usage: null, finish: null, chunks: 0 };
  for await (const c of stream) {
    out.chunks++;
    if (c.usage) out.usage = c.usage;
    const ch = c.choices[0];
    if (!ch) continue;
    if (ch.delta?.content) out.content += ch.delta.content;
    for (const tc of ch.delta?.tool_calls ?? []) {
      const t = (out.tools[tc.index] ??= { id: '', name: '', arguments: '' });
      t.id += tc.id ?? '';
      t.name += tc.function?.name ?? '';
      t.arguments += tc.function?.arguments ?? '';
    }
    if (ch.finish_reason) out.finish = ch.finish_reason;
  }
  return out;
}

// The request event of one request id (the audit write completes before the
// response does, but the file is read by another process: poll briefly).
async function auditOf(rid, n = 1) {
  for (let i = 0; i < 40; i++) {
    const evs = gw.events().filter((e) => e.event === 'request' && e.request_id === rid);
    if (evs.length >= n) return evs;
    await sleep(25);
  }
  assert.fail(`no audit record for ${rid}`);
}

async function assertAudited(rid, status, code, outcome) {
  const [ev] = await auditOf(rid);
  assert.equal(ev.status, status, `audited status of ${rid}: ${JSON.stringify(ev)}`);
  assert.equal(ev.error?.code, code, `audited error code of ${rid}: ${JSON.stringify(ev)}`);
  if (outcome) assert.equal(ev.outcome, outcome);
  return ev;
}

// A request the gateway must refuse with its own upstream error envelope
// (never a hang: the SDK's timeout is 15 s, the case's bound 5 s), audited.
async function refused(model, content, { status = 502, code = 'upstream_error', stream = false, message } = {}) {
  const rid = newId(`${model}-${content.slice(0, 20)}`);
  const t0 = Date.now();
  await assert.rejects(client().chat.completions.create({ model, stream,
    messages: [{ role: 'user', content }] }, requestOpts(rid)), (e) => {
    assert.ok(e instanceof APIError, String(e));
    assert.equal(e.status, status);
    assert.equal(e.error.type, 'upstream_error');
    assert.equal(e.error.code, code);
    assert.equal(e.error.request_id, rid);
    if (message) assert.match(e.error.message, message);
    return true;
  });
  assert.ok(Date.now() - t0 < 5000, 'no hang');
  await assertAudited(rid, status, code, 'error');
}

// What a normal answer through `model` must say, and a check that it does.
const expectedText = (model, prompt) => (model.startsWith('node-') ? `node ${model.slice(5)} echoes: ${prompt}`
  : model.startsWith('nginx-buffered-') || model.startsWith('nginx-unbuffered-') ? `node ${model.split('-').at(-1)} echoes: ${prompt}`
    : CANNED_TEXT);
const normalModel = (model) => (model.startsWith('nginx-') && !/buffered/.test(model) ? 'nginx-json' : model);

async function stillServes(model) {
  const m = normalModel(model);
  const prompt = `still there after a fault? ${++seq}`;
  const r = await client().chat.completions.create({ model: m, messages: [{ role: 'user', content: prompt }] });
  assert.equal(r.choices[0].message.content, expectedText(m, prompt), `a normal request through ${m} after the fault`);
}

// A fault case: after it, the same upstream serves a normal request.
function fault(name, model, fn) {
  test(name, async (t) => {
    await fn(t);
    await stillServes(model);
    assert.equal(gw.proc.exitCode, null, 'the gateway is alive');
  });
}

// --- chat shapes through every node framing ------------------------------

for (const f of FRAMINGS) {
  const model = `node-${f}`;
  test(`node ${f}: a JSON completion`, async () => {
    const prompt = `Explain AI governance, s'il vous plaît — 日本語 ✓ (${f})`;
    const before = node.state.hits.length;
    const { data, response } = await client().chat.completions
      .create({ model, messages: [{ role: 'user', content: prompt }] }).withResponse();
    assert.equal(data.choices[0].message.content, `node ${f} echoes: ${prompt}`);
    assert.deepEqual(data.usage, { prompt_tokens: prompt.length, completion_tokens: data.choices[0].message.content.length,
      total_tokens: prompt.length + data.choices[0].message.content.length });
    assert.equal(data.choices[0].finish_reason, 'stop');
    assert.equal(node.state.hits.length, before + 1, 'one upstream request');
    const hit = node.state.hits.at(-1);
    assert.equal(hit.path, `/${f}/v1/chat/completions`);
    assert.equal(hit.headers['accept-encoding'], 'identity');
    assert.equal(hit.headers.authorization, `Bearer ${API_KEY}`);
    assert.equal(hit.body.messages[0].content, prompt);
    assert.match(response.headers.get('x-request-id'), /^req_/);
    // OpenAI sends its rate-limit headers on every answer; clients that pace
    // themselves read them on successes too.
    assert.equal(response.headers.get('x-ratelimit-remaining-requests'), hit.sent['x-ratelimit-remaining-requests']);
  });

  test(`node ${f}: an SSE stream with usage`, async () => {
    const prompt = `List three benefits — ✓ 日本 (${f})`;
    const { data: stream, response } = await client().chat.completions.create({ model, stream: true,
      stream_options: { include_usage: true }, messages: [{ role: 'user', content: prompt }] }).withResponse();
    const got = await collect(stream);
    assert.equal(response.headers.get('x-ratelimit-remaining-requests'), node.state.hits.at(-1).sent['x-ratelimit-remaining-requests']);
    const text = `node ${f} echoes: ${prompt}`;
    assert.equal(got.content, text);
    assert.equal(got.finish, 'stop');
    assert.deepEqual(got.usage, { prompt_tokens: prompt.length, completion_tokens: text.length, total_tokens: prompt.length + text.length });
    assert.equal(node.state.hits.at(-1).headers.accept, 'text/event-stream');
  });

  test(`node ${f}: a tool call`, async () => {
    const r = await client().chat.completions.create({ model, tools: TOOLS, tool_choice: 'auto',
      messages: [{ role: 'user', content: 'call get_account_balance {"account_id":"AC-1234"}' }] });
    const call = r.choices[0].message.tool_calls[0];
    assert.equal(r.choices[0].finish_reason, 'tool_calls');
    assert.equal(call.function.name, 'get_account_balance');
    assert.deepEqual(JSON.parse(call.function.arguments), { account_id: 'AC-1234' });
    assert.deepEqual(node.state.hits.at(-1).body.tools, TOOLS);
  });

  test(`node ${f}: a streamed tool call`, async () => {
    const got = await collect(await client().chat.completions.create({ model, stream: true, tools: TOOLS,
      messages: [{ role: 'user', content: 'call get_account_balance {"account_id":"AC-5678"}' }] }));
    assert.deepEqual(got.tools, { 0: { id: 'call_node1', name: 'get_account_balance', arguments: '{"account_id":"AC-5678"}' } });
    assert.equal(got.finish, 'tool_calls');
  });
}

test('node chunked and bytes-chunked: a tool not on the allowlist is a 409, plain and streamed, audited', async () => {
  const rid = newId('tool409');
  await assert.rejects(client().chat.completions.create({ model: 'node-chunked', tools: TOOLS,
    messages: [{ role: 'user', content: 'call delete_account {"account_id":"AC-1"}' }] }, requestOpts(rid)), (e) => {
    assert.equal(e.status, 409);
    assert.equal(e.error.code, 'tool_blocked');
    assert.equal(e.error.policy, 'tool-allowlist');
    return true;
  });
  await assertAudited(rid, 409, 'tool_blocked', 'blocked');
  const srid = newId('tool-stream');
  const stream = await client().chat.completions.create({ model: 'node-bytes-chunked', stream: true, tools: TOOLS,
    messages: [{ role: 'user', content: 'call delete_account {"account_id":"AC-1"}' }] }, requestOpts(srid));
  const chunks = [];
  await assert.rejects((async () => { for await (const c of stream) chunks.push(c); })(), (e) => {
    assert.ok(e instanceof APIError);
    assert.equal(e.error.code, 'tool_blocked');
    return true;
  });
  assert.ok(chunks.every((c) => !c.choices[0]?.delta?.tool_calls), 'no tool-call delta reached the client');
  await assertAudited(srid, 200, 'tool_blocked', 'blocked');
  await stillServes('node-chunked');
});

// The upstream writes `{at}` as an @, so the email exists only in its
// answer (the input stage would redact one in the prompt): the output stage
// must redact it in a plain answer, in a stream whose events are 7 characters
// each (the email spans four) and in one that arrives a byte per write.
for (const model of ['node-cl', 'node-chunked', 'node-bytes-chunked', 'nginx-unbuffered-chunked']) {
  test(`${model}: an email in the answer is redacted, plain and streamed`, async () => {
    const prompt = 'write to ann.smith{at}example.org for access';
    const want = expectedText(model, 'write to [EMAIL_REDACTED] for access');
    const r = await client().chat.completions.create({ model, messages: [{ role: 'user', content: prompt }] });
    assert.equal(r.choices[0].message.content, want);
    const pieces = [];
    const stream = await client().chat.completions.create({ model, stream: true, messages: [{ role: 'user', content: prompt }] });
    for await (const c of stream) if (c.choices[0]?.delta?.content) pieces.push(c.choices[0].delta.content);
    assert.equal(pieces.join(''), want);
    for (const p of pieces) assert.ok(!/smith|example\.org/.test(p), `leaked piece: ${p}`);
    assert.ok(node.state.hits.at(-1).raw.includes('ann.smith{at}example.org'), 'the prompt went upstream unchanged');
  });
}

// --- upstream errors, with the headers the SDK acts on -----------------------

const ERROR_CASES = [
  { code: 400, headers: {} },
  { code: 404, headers: {} },
  { code: 500, headers: {} },
  { code: 503, headers: { 'retry-after': '3' } },
  { code: 429, headers: { 'retry-after': '7', 'retry-after-ms': '7000', 'x-ratelimit-remaining-requests': '0',
    'x-ratelimit-limit-requests': '500', 'x-ratelimit-reset-requests': '7s', 'x-ratelimit-remaining-tokens': '12' } },
];

for (const model of ['node-cl', 'node-chunked', 'node-bytes-chunked', 'node-continue', 'nginx-buffered-cl', 'nginx-unbuffered-chunked']) {
  for (const { code, headers } of ERROR_CASES) {
    const framing = model.split('-').slice(model.startsWith('nginx-') ? 2 : 1).join('-');
    fault(`${model}: an upstream ${code} reaches the SDK with its body and headers, audited`, model, async () => {
      const rid = newId(`${model}-${code}`);
      const directive = `status ${code} ${Object.entries(headers).map(([k, v]) => `${k}=${v}`).join(' ')}`.trim();
      const before = node.state.hits.length;
      await assert.rejects(client().chat.completions.create({ model,
        messages: [{ role: 'user', content: directive }] }, requestOpts(rid)), (e) => {
        assert.ok(e instanceof APIError, String(e));
        assert.equal(e.status, code);
        assert.deepEqual(e.error, { message: `node ${framing} refuses with ${code}`, type: 'node_error', code: `node_${code}` });
        for (const [k, v] of Object.entries(headers)) assert.equal(e.headers.get(k), v, `header ${k}`);
        assert.equal(e.requestID, rid);
        return true;
      });
      assert.equal(node.state.hits.length, before + 1, 'maxRetries 0: one upstream request');
      if (model.startsWith('nginx-')) assert.equal(node.state.hits.at(-1).headers['x-via'], `nginx-${model.split('-')[1]}`);
      await assertAudited(rid, code, `upstream_status_${code}`, 'upstream_error');
    });
  }
}

fault('node chunked: a streamed request answered 429 raises at create, headers intact', 'node-chunked', async () => {
  const rid = newId('stream-429');
  await assert.rejects(client().chat.completions.create({ model: 'node-chunked', stream: true,
    messages: [{ role: 'user', content: 'status 429 retry-after=2 x-ratelimit-remaining-requests=0' }] }, requestOpts(rid)), (e) => {
    assert.equal(e.status, 429);
    assert.equal(e.headers.get('retry-after'), '2');
    assert.equal(e.headers.get('x-ratelimit-remaining-requests'), '0');
    assert.equal(e.error.code, 'node_429');
    return true;
  });
  await assertAudited(rid, 429, 'upstream_status_429', 'upstream_error');
});

// retry-after-ms passed through drives the SDK's wait: 1,200 ms, where its
// own backoff for a first retry is at most 500 ms.
fault('node cl: a 429 with retry-after-ms is retried once by the SDK after that wait', 'node-cl', async () => {
  const rid = newId('retry-ms');
  const key = `k${Date.now()}`;
  const before = node.state.hits.length;
  const t0 = Date.now();
  const r = await client({ maxRetries: 1 }).chat.completions.create({ model: 'node-cl',
    messages: [{ role: 'user', content: `status 429 retry-after-ms=1200 retry-after=30 once=${key}` }] }, requestOpts(rid));
  const waited = Date.now() - t0;
  assert.match(r.choices[0].message.content, /^node cl echoes: status 429/);
  assert.equal(node.state.hits.length - before, 2, 'one 429, one retry');
  assert.ok(waited >= 1150 && waited < 5000, `the SDK waited ${waited} ms (retry-after-ms 1200, not retry-after 30)`);
  const evs = await auditOf(rid, 2);
  assert.deepEqual(evs.map((e) => e.status), [429, 200]);
  assert.equal(evs[0].error.code, 'upstream_status_429');
});

fault('nginx canned: a 429 with retry-after 1 is retried once, then surfaces (nginx counts two hits)', 'nginx-e429', async () => {
  const rid = newId('retry-nginx');
  const p = '/canned/e429/v1/chat/completions';
  const before = nginx.hits(p);
  const t0 = Date.now();
  await assert.rejects(client({ maxRetries: 1 }).chat.completions.create({ model: 'nginx-e429',
    messages: [{ role: 'user', content: 'hi' }] }, requestOpts(rid)), (e) => {
    assert.equal(e.status, 429);
    assert.equal(e.headers.get('retry-after'), '1');
    assert.equal(e.headers.get('x-ratelimit-reset-requests'), '1s');
    return true;
  });
  const waited = Date.now() - t0;
  assert.ok(waited >= 950 && waited < 5000, `the SDK waited ${waited} ms (retry-after 1)`);
  for (let i = 0; i < 20 && nginx.hits(p) < before + 2; i++) await sleep(25);  // the log is written after the answer
  assert.equal(nginx.hits(p) - before, 2, 'maxRetries 1: two requests reached nginx');
  const evs = await auditOf(rid, 2);
  assert.deepEqual(evs.map((e) => [e.status, e.error?.code]), [[429, 'upstream_status_429'], [429, 'upstream_status_429']]);
});

fault('node cl: x-should-retry false on a 503 is obeyed (one upstream hit with maxRetries 2)', 'node-cl', async () => {
  const before = node.state.hits.length;
  await assert.rejects(client({ maxRetries: 2 }).chat.completions.create({ model: 'node-cl',
    messages: [{ role: 'user', content: 'status 503 x-should-retry=false' }] }), (e) => e.status === 503);
  assert.equal(node.state.hits.length - before, 1);
});

// --- connections that end early ------------------------------------------------

for (const model of ['node-cl', 'node-chunked', 'node-bytes-cl', 'node-continue', 'nginx-buffered-cl', 'nginx-unbuffered-chunked']) {
  fault(`${model}: a JSON body cut short is a 502, audited`, model, () => refused(model, 'cut-body'));
}

fault('node cl: headers then a close, no body, is a 502, audited', 'node-cl', () => refused('node-cl', 'cut-headers'));

fault('node cl: a stream whose head arrived, then a close, ends with an error frame, audited', 'node-cl', async () => {
  const rid = newId('stream-cut-headers');
  const stream = await client().chat.completions.create({ model: 'node-cl', stream: true,
    messages: [{ role: 'user', content: 'cut-headers' }] }, requestOpts(rid));
  await assert.rejects(collect(stream), (e) => e instanceof APIError && e.error.code === 'upstream_error');
  await assertAudited(rid, 200, 'upstream_error', 'error');
});

// A connection closed with no answer at all. The gateway retries a request
// once when a pooled connection fails before any answer byte (it cannot
// tell an upstream's idle close from a crash), so node sees one or two.
for (const stream of [false, true]) {
  fault(`node chunked: a connection closed without an answer (${stream ? 'stream' : 'JSON'}) is a 502, audited`, 'node-chunked', async (t) => {
    const before = node.state.hits.length;
    await refused('node-chunked', 'hangup', { stream });
    const hits = node.state.hits.length - before;
    assert.ok(hits >= 1 && hits <= 2, `${hits} upstream requests`);
    t.diagnostic(`${hits} upstream request(s) for one client request`);
  });
}

// A stream cut short: the SDK raises on the final frame, after the content
// that had arrived; never a silently short answer, never a hang.
for (const [model, cut, code] of [
  ['node-chunked', 'cut-body', 'upstream_error'],
  ['node-chunked', 'cut-event', 'upstream_error'],
  ['node-bytes-chunked', 'cut-event', 'upstream_error'],
  ['node-cl', 'cut-body', 'upstream_error'],
  ['node-hints', 'cut-event', 'upstream_error'],
  // nginx reads node's close-delimited HTTP/1.0 answer to its end and ends
  // its own chunked answer cleanly: only the missing [DONE] shows the cut.
  ['nginx-buffered-chunked', 'cut-body', 'upstream_stream_truncated'],
  // Over HTTP/1.1 nginx sees the chunked answer cut and closes without
  // the last chunk.
  ['nginx-unbuffered-chunked', 'cut-event', 'upstream_error'],
]) {
  fault(`${model}: a stream cut short (${cut}) ends with an error frame (${code}), audited`, model, async () => {
    const rid = newId(`${cut}-${model}`);
    const prompt = cut;
    const stream = await client().chat.completions.create({ model, stream: true,
      messages: [{ role: 'user', content: prompt }] }, requestOpts(rid));
    let text = '';
    const t0 = Date.now();
    await assert.rejects((async () => {
      for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
    })(), (e) => {
      assert.ok(e instanceof APIError, String(e));
      assert.equal(e.error.code, code, JSON.stringify(e.error));
      assert.equal(e.error.type, 'upstream_error');
      assert.equal(e.error.request_id, rid);
      return true;
    });
    assert.ok(Date.now() - t0 < 5000, 'no hang');
    const full = expectedText(model, prompt);
    assert.ok(full.startsWith(text) && text.length < full.length, `a strict prefix arrived: ${JSON.stringify(text)}`);
    await assertAudited(rid, 200, code, 'error');
  });
}

// --- nginx canned answers (Content-Length) ---------------------------------------

test('nginx canned: a JSON completion from `return 200`', async () => {
  const { data, response } = await client().chat.completions.create({ model: 'nginx-json',
    messages: [{ role: 'user', content: 'hi' }] }).withResponse();
  assert.deepEqual(data, cannedJson);
  assert.match(response.headers.get('x-request-id'), /^req_/);
});

test('nginx canned: an SSE stream from a static file, with usage', async () => {
  const got = await collect(await client().chat.completions.create({ model: 'nginx-sse', stream: true,
    stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] }));
  assert.equal(got.content, CANNED_TEXT);
  assert.equal(got.finish, 'stop');
  assert.deepEqual(got.usage, cannedUsage);
});

test('nginx canned: a tool call from a static file', async () => {
  const r = await client().chat.completions.create({ model: 'nginx-tool', tools: TOOLS,
    messages: [{ role: 'user', content: 'balance?' }] });
  assert.deepEqual(r.choices[0].message.tool_calls, cannedTool.choices[0].message.tool_calls);
});

test('nginx canned: a streamed tool call from a static file', async () => {
  const got = await collect(await client().chat.completions.create({ model: 'nginx-tool-sse', stream: true, tools: TOOLS,
    messages: [{ role: 'user', content: 'balance?' }] }));
  assert.deepEqual(got.tools, { 0: { id: 'call_ngx', name: 'get_account_balance', arguments: cannedToolArgs } });
  assert.deepEqual(got.usage, cannedUsage);
});

test('nginx canned: a 2 MiB JSON answer and a 5,000-event stream arrive whole', async () => {
  const r = await client().chat.completions.create({ model: 'nginx-big', messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(r.choices[0].message.content.length, BIG_TEXT.length);
  assert.equal(r.choices[0].message.content, BIG_TEXT);
  const got = await collect(await client().chat.completions.create({ model: 'nginx-big-sse', stream: true,
    messages: [{ role: 'user', content: 'hi' }] }));
  assert.equal(got.content, BIG_PIECES.join(''));
  assert.equal(got.finish, 'stop');
});

test('nginx canned: a pooled connection nginx closed while idle is not a failure', async () => {
  for (let i = 0; i < 3; i++) {
    if (i > 0) await sleep(1300);  // past nginx's 1 s keep-alive timeout
    const r = await client().chat.completions.create({ model: 'nginx-short-idle', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(r.choices[0].message.content, CANNED_TEXT);
  }
  // Eight more on the same connections: nginx closes every fourth.
  for (let i = 0; i < 8; i++) {
    const r = await client().chat.completions.create({ model: 'nginx-json', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(r.choices[0].message.content, CANNED_TEXT);
  }
});

// An answer that does not fit the request: never passed off as one.
fault('nginx canned: an SSE body for a JSON request is a 502, audited', 'nginx-json',
  () => refused('nginx-sse', 'hi', { code: 'invalid_upstream_response' }));

fault('nginx canned: an empty 200 is a 502, audited', 'nginx-json',
  () => refused('nginx-empty', 'hi', { code: 'invalid_upstream_response' }));

fault('nginx canned: a JSON body for a streamed request ends the stream with an error frame', 'nginx-json', async () => {
  const rid = newId('json-for-sse');
  let failed = null;
  try {
    await collect(await client().chat.completions.create({ model: 'nginx-json', stream: true,
      messages: [{ role: 'user', content: 'hi' }] }, requestOpts(rid)));
  } catch (e) { failed = e; }
  assert.ok(failed instanceof APIError, `the SDK raised: ${failed}`);
  assert.equal(failed.error?.code ?? failed.status, 'upstream_stream_truncated', JSON.stringify(failed.error));
  const [ev] = await auditOf(rid);
  assert.equal(ev.error?.code, 'upstream_stream_truncated');
});

// nginx refuses a body over its client_max_body_size with its own 413
// before the request reaches node: the gateway passes that answer on.
fault('nginx proxy with a 1 KiB body limit: its 413 for a 256 KiB prompt passes through, audited', 'nginx-json', async () => {
  const rid = newId('nginx-413');
  const before = node.state.hits.length;
  await assert.rejects(client().chat.completions.create({ model: 'nginx-small-body',
    messages: [{ role: 'user', content: 'x'.repeat(256 << 10) }] }, requestOpts(rid)), (e) => {
    assert.equal(e.status, 413, e.message);
    assert.match(e.message, /413 Request Entity Too Large/);
    return true;
  });
  assert.equal(node.state.hits.length, before, 'nothing reached node');
  await assertAudited(rid, 413, 'upstream_status_413', 'upstream_error');
});

for (const { code, headers } of NGINX_ERRORS) {
  fault(`nginx canned: a ${code} from \`return\` reaches the SDK with its body and headers, audited`, `nginx-e${code}`, async () => {
    const rid = newId(`nginx-e${code}`);
    await assert.rejects(client().chat.completions.create({ model: `nginx-e${code}`,
      messages: [{ role: 'user', content: 'hi' }] }, requestOpts(rid)), (e) => {
      assert.equal(e.status, code);
      assert.deepEqual(e.error, nginxErrorBody(code).error);
      for (const [k, v] of Object.entries(headers)) assert.equal(e.headers.get(k), v, `header ${k}`);
      return true;
    });
    await assertAudited(rid, code, `upstream_status_${code}`, 'upstream_error');
  });
}

for (const [model, stream] of [['nginx-gzip', false], ['nginx-gzip-sse', true]]) {
  fault(`${model}: a pre-gzipped body nobody asked for is a 502, audited`, model,
    () => refused(model, 'hi', { stream, message: /`gzip` body although the gateway asked for identity/ }));
}

// --- nginx as a reverse proxy in front of node -------------------------------

// nginx's own error page (HTML) when its backend is down is the upstream's
// answer: passed through as it came, status and content type.
fault('nginx proxy to a dead backend: its 502 HTML page passes through, audited', 'nginx-json', async () => {
  const rid = newId('nginx-dead');
  await assert.rejects(client().chat.completions.create({ model: 'nginx-dead',
    messages: [{ role: 'user', content: 'hi' }] }, requestOpts(rid)), (e) => {
    assert.equal(e.status, 502);
    assert.match(e.headers.get('content-type'), /^text\/html/);
    assert.match(e.message, /502 Bad Gateway/);
    return true;
  });
  await assertAudited(rid, 502, 'upstream_status_502', 'upstream_error');
});

for (const model of ['nginx-buffered-cl', 'nginx-buffered-chunked', 'nginx-unbuffered-cl', 'nginx-unbuffered-chunked']) {
  const [, mode, framing] = model.split('-');
  test(`${model}: JSON, SSE with usage, tool calls plain and streamed through nginx`, async () => {
    const prompt = `through nginx ${mode} — ✓`;
    const { data: r, response } = await client().chat.completions.create({ model,
      messages: [{ role: 'user', content: prompt }] }).withResponse();
    assert.equal(r.choices[0].message.content, `node ${framing} echoes: ${prompt}`);
    const hit = node.state.hits.at(-1);
    assert.equal(hit.headers['x-via'], `nginx-${mode}`);
    assert.equal(response.headers.get('x-ratelimit-remaining-requests'), hit.sent['x-ratelimit-remaining-requests']);
    assert.equal(hit.httpVersion, mode === 'buffered' ? '1.0' : '1.1');
    const got = await collect(await client().chat.completions.create({ model, stream: true,
      stream_options: { include_usage: true }, messages: [{ role: 'user', content: prompt }] }));
    const text = `node ${framing} echoes: ${prompt}`;
    assert.equal(got.content, text);
    assert.deepEqual(got.usage, { prompt_tokens: prompt.length, completion_tokens: text.length, total_tokens: prompt.length + text.length });
    const t = await client().chat.completions.create({ model, tools: TOOLS,
      messages: [{ role: 'user', content: 'call get_account_balance {"account_id":"AC-0001"}' }] });
    assert.equal(t.choices[0].message.tool_calls[0].function.arguments, '{"account_id":"AC-0001"}');
    const st = await collect(await client().chat.completions.create({ model, stream: true, tools: TOOLS,
      messages: [{ role: 'user', content: 'call get_account_balance {"account_id":"AC-0002"}' }] }));
    assert.equal(st.tools[0].arguments, '{"account_id":"AC-0002"}');
    assert.equal(st.finish, 'tool_calls');
  });
}
