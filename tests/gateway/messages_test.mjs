// Anthropic natively, behind the real `kt gateway run` binary: the official
// `@anthropic-ai/sdk` npm package against /v1/messages (and
// /v1/messages/count_tokens), over a fake Anthropic upstream that follows the
// documented Messages event grammar (the body reaches it untouched unless a
// redaction rewrote it) and over the mock (translated through chat); and the
// official `openai` package against a claude-* model routed to that fake
// upstream (chat completions and responses translated chat → Messages and
// back). Every case checks what the client sees and the audit trail: the
// decision events (stage, policy, verdict, mode) and the request event
// (status, outcome, surface, upstream_api).
//
//   tests/gateway/run.sh build/cli/kt messages_test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import Anthropic, { APIError as AnthropicAPIError } from '@anthropic-ai/sdk';
import OpenAI, { APIError as OpenAIAPIError } from 'openai';

const KT = process.env.KT_BIN || path.resolve('build/cli/kt');
const API_KEY = 'sk-ant-msgtest-0123456789abcdefghij';
const BETA = 'tools-2024-05-16,prompt-caching-2024-07-31';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-messages-test-'));

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

function stopChild(proc) {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    const kill = setTimeout(() => proc.kill('SIGKILL'), 5000);
    proc.once('exit', () => { clearTimeout(kill); resolve(); });
    proc.kill('SIGTERM');
  });
}

// --- the policies ----------------------------------------------------------

const EMAIL = 'ann.lee@example.org';
const PHRASE = 'project nightingale';
const TOOL_OK = { account_id: 'AC-1234' };
const TOOL_BAD = { account_id: 'AC-6666' };
// Anthropic's tool shape, and the same tool in chat's.
const A_TOOL = { name: 'get_account_balance', description: 'the balance of an account',
  input_schema: { type: 'object', properties: { account_id: { type: 'string' } }, required: ['account_id'] } };
const O_TOOL = { type: 'function', function: { name: A_TOOL.name, description: A_TOOL.description, parameters: A_TOOL.input_schema } };

function policies(fakeUrl) {
  return `import std.pii

provider claude {
  kind: anthropic
  base_url: "${fakeUrl}"
  models: ["claude-*"]
}

provider mock {
  kind: mock
  models: ["mock-*"]
  chunk_size: 3
}

policy "block-contraband" {
  on input
  when any m in input.messages: m.content matches words("contraband")
  then block "the prompt names contraband" code "contraband_in_prompt"
}

policy "redact-input-email" {
  on input
  then redact std.pii.email with "[EMAIL_REDACTED]"
}

policy "observe-canary" {
  on input
  mode observe
  when any m in input.messages: m.content contains "canary"
  then flag "a canary in the prompt" code "canary_seen"
}

policy "block-tools" {
  on tool_call
  when tool.name == "delete_account"
    or (tool.name == "get_account_balance" and tool.args.account_id as string == "AC-6666")
  then block "that tool call is not allowed" code "tool_blocked"
}

policy "block-codename" {
  on output
  when output.text matches "${PHRASE}"i
  then block "the answer names a confidential project" code "output_blocked"
}

policy "redact-output-email" {
  on output
  then redact std.pii.email with "[EMAIL_REDACTED]"
}

policy "observe-globex" {
  on output
  mode observe
  when output.text contains "globex"
  then flag "the answer names a competitor" code "competitor_mention"
}
`;
}

const D = {
  inBlock: ['input', 'block-contraband', 'block', 'enforce'],
  inRedact: ['input', 'redact-input-email', 'redact', 'enforce'],
  canary: ['input', 'observe-canary', 'flag', 'observe'],
  toolBlock: ['tool_call', 'block-tools', 'block', 'enforce'],
  outBlock: ['output', 'block-codename', 'block', 'enforce'],
  outRedact: ['output', 'redact-output-email', 'redact', 'enforce'],
  globex: ['output', 'observe-globex', 'flag', 'observe'],
};

// --- a fake Anthropic upstream -----------------------------------------------
//
// POST /v1/messages and /v1/messages/count_tokens, as the Messages API
// documents them (@anthropic-ai/sdk's resources/messages/messages.d.ts). It
// records every request and answers per the last user text it receives:
//   say TEXT           a text block TEXT ({at} becomes @, so the input stage
//                      never sees the email the answer carries)
//   tool NAME JSON     a short text block, then a tool_use block
//   stream-split [text|tool]
//                      an email split over 1-3 character text_deltas and/or
//                      a forbidden get_account_balance call (AC-6666) whose
//                      input is split over input_json_deltas
//   overloaded         529 overloaded_error with retry-after: 2
//   ratelimit          429 rate_limit_error with retry-after: 7
//   anything else      "claude heard: <the text>"
// Streams cut text into 4-character deltas, tool input into 5-character
// partial_json pieces (after the empty first one the real API sends), with a
// ping after the first block starts.

function lastUserText(body) {
  const m = (body.messages || []).filter((x) => x.role === 'user').at(-1);
  if (!m) return '';
  if (typeof m.content === 'string') return m.content;
  return m.content.filter((b) => b.type === 'text').map((b) => b.text).join(' ');
}

const SPLIT_TEXT = `reach me at ${EMAIL} soon`;
// 1-3 characters per delta: the email never stands whole in one.
function splitPieces(s) {
  const out = [];
  for (let i = 0, n = 1; i < s.length; n = (n % 3) + 1) { out.push(s.slice(i, i + n)); i += n; }
  return out;
}

function plan(prompt) {
  const words = prompt.trim().split(/\s+/);
  if (words[0] === 'say') return [{ type: 'text', text: prompt.trim().slice(4).replaceAll('{at}', '@') }];
  if (words[0] === 'tool') {
    const rest = prompt.trim().slice(5);
    const sp = rest.indexOf(' ');
    return [{ type: 'text', text: 'Let me check.' },
      { type: 'tool_use', name: rest.slice(0, sp), input: JSON.parse(rest.slice(sp + 1)) }];
  }
  if (words[0] === 'stream-split') {
    const blocks = [];
    if (words[1] !== 'tool') blocks.push({ type: 'text', text: SPLIT_TEXT, pieces: splitPieces(SPLIT_TEXT) });
    if (words[1] !== 'text') {
      const json = JSON.stringify(TOOL_BAD);
      blocks.push({ type: 'tool_use', name: 'get_account_balance', input: TOOL_BAD, jsonPieces: splitPieces(json) });
    }
    return blocks;
  }
  return [{ type: 'text', text: `claude heard: ${prompt}` }];
}

function startFakeAnthropic() {
  const state = { hits: [], seq: 0 };
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(parts).toString('utf8');
      let body = null;
      try { body = JSON.parse(raw); } catch { /* answered below */ }
      state.hits.push({ method: req.method, path: req.url, headers: req.headers, body, raw });
      answer(state, req, res, body).catch(() => res.destroy());
    });
  });
  server.keepAliveTimeout = 30000;
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    port: server.address().port, state,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  })));
}

function anthropicError(res, status, type, message, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', 'request-id': 'req_fake_err', ...headers });
  res.end(JSON.stringify({ type: 'error', error: { type, message }, request_id: 'req_fake_err' }));
}

async function answer(state, req, res, body) {
  if (req.method !== 'POST' || !body) return anthropicError(res, 400, 'invalid_request_error', 'bad request');
  if (req.headers['x-api-key'] !== API_KEY) return anthropicError(res, 401, 'authentication_error', 'invalid x-api-key');
  if (req.url === '/v1/messages/count_tokens') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ input_tokens: JSON.stringify(body.messages).length }));
    return;
  }
  if (req.url !== '/v1/messages') return anthropicError(res, 404, 'not_found_error', `no route ${req.url}`);
  if (typeof body.max_tokens !== 'number') return anthropicError(res, 400, 'invalid_request_error', 'max_tokens: Field required');
  const prompt = lastUserText(body);
  if (prompt === 'overloaded') return anthropicError(res, 529, 'overloaded_error', 'Overloaded', { 'retry-after': '2' });
  if (prompt === 'ratelimit') {
    return anthropicError(res, 429, 'rate_limit_error', 'Number of requests has exceeded your rate limit',
      { 'retry-after': '7', 'anthropic-ratelimit-requests-remaining': '0' });
  }
  const id = `msg_fake_${++state.seq}`;
  const blocks = plan(prompt);
  let tools = 0;
  for (const b of blocks) if (b.type === 'tool_use') b.id = `toolu_fake_${state.seq}_${tools++}`;
  const stop = tools ? 'tool_use' : 'end_turn';
  const usage = { input_tokens: prompt.length, output_tokens: 11, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
  const content = blocks.map((b) => (b.type === 'text' ? { type: 'text', text: b.text }
    : { type: 'tool_use', id: b.id, name: b.name, input: b.input }));
  if (!body.stream) {
    res.writeHead(200, { 'content-type': 'application/json', 'request-id': `req_${id}` });
    res.end(JSON.stringify({ id, type: 'message', role: 'assistant', model: body.model, content,
      stop_reason: stop, stop_sequence: null, usage }));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'request-id': `req_${id}` });
  const send = async (type, data) => {
    res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
    await sleep(1);
  };
  await send('message_start', { message: { id, type: 'message', role: 'assistant', model: body.model, content: [],
    stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } });
  for (const [index, b] of blocks.entries()) {
    if (b.type === 'text') {
      await send('content_block_start', { index, content_block: { type: 'text', text: '' } });
      if (index === 0) await send('ping', {});
      const pieces = b.pieces ?? b.text.match(/[\s\S]{1,4}/g) ?? [];
      for (const p of pieces) await send('content_block_delta', { index, delta: { type: 'text_delta', text: p } });
    } else {
      await send('content_block_start', { index, content_block: { type: 'tool_use', id: b.id, name: b.name, input: {} } });
      const json = JSON.stringify(b.input);
      const pieces = ['', ...(b.jsonPieces ?? json.match(/[\s\S]{1,5}/g))];
      for (const p of pieces) await send('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: p } });
    }
    await send('content_block_stop', { index });
  }
  await send('message_delta', { delta: { stop_reason: stop, stop_sequence: null }, usage: { output_tokens: 11 } });
  await send('message_stop', {});
  res.end();
}

// --- the gateway ---------------------------------------------------------------

async function startGateway(fakeUrl) {
  const dir = path.join(tmp, 'policies');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'main.ktp'), policies(fakeUrl));
  const port = await freePort();
  const audit = path.join(tmp, 'audit.jsonl');
  const proc = spawn(KT, ['gateway', 'run', '--listen', `127.0.0.1:${port}`, '--audit-log', audit,
    '--threads', '2', '--policy', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
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
    await sleep(25);
  }
  return {
    proc, base, stderr: () => stderr,
    events: () => fs.readFileSync(audit, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)),
  };
}

let fake, gw;

before(async () => {
  if (!fs.existsSync(KT)) throw new Error(`the kt binary is missing: ${KT}`);
  fake = await startFakeAnthropic();
  gw = await startGateway(`http://127.0.0.1:${fake.port}/v1`);
});

after(async () => {
  if (gw) await stopChild(gw.proc);
  await fake?.close();
});

// --- helpers ----------------------------------------------------------------

let seq = 0;
const newId = (what) => `req_msg_${what.replace(/\W+/g, '_')}_${++seq}`;
// The gateway's base: the Anthropic SDK adds /v1/messages itself.
const anthropic = () => new Anthropic({ baseURL: gw.base, apiKey: API_KEY, maxRetries: 0, timeout: 15000 });
const openai = () => new OpenAI({ baseURL: `${gw.base}/v1`, apiKey: API_KEY, maxRetries: 0, timeout: 15000 });
const opts = (rid, extra = {}) => ({ headers: { 'x-request-id': rid, 'anthropic-beta': BETA, ...extra } });

async function auditOf(rid) {
  for (let i = 0; i < 80; i++) {
    const evs = gw.events().filter((e) => e.request_id === rid);
    const request = evs.find((e) => e.event === 'request');
    if (request) return { request, decisions: evs.filter((e) => e.event === 'decision') };
    await sleep(25);
  }
  assert.fail(`no audit record for ${rid}`);
}

// The request event and exactly the decisions given ([stage, policy,
// verdict, mode] each).
async function assertAudit(rid, { status, outcome, surface = 'messages', upstreamApi, stream, decisions = [], code }) {
  const a = await auditOf(rid);
  const r = a.request;
  const where = `${rid}: ${JSON.stringify(r)}`;
  assert.equal(r.status, status, `status, ${where}`);
  assert.equal(r.outcome, outcome, `outcome, ${where}`);
  assert.equal(r.surface, surface, `surface, ${where}`);
  assert.equal(r.upstream_api, upstreamApi, `upstream_api, ${where}`);
  if (stream !== undefined) assert.equal(r.stream, stream, `stream, ${where}`);
  if (code !== undefined) assert.equal(r.error?.code, code, `error code, ${where}`);
  assert.deepEqual(a.decisions.map((d) => [d.stage, d.policy, d.verdict, d.mode]), decisions, `decisions of ${where}`);
  for (const d of a.decisions) assert.equal(d.enforced, d.mode === 'enforce');
  return a;
}

// The fake's requests made while `fn` ran.
async function hitsDuring(fn) {
  const n = fake.state.hits.length;
  const r = await fn();
  return { r, hits: fake.state.hits.slice(n) };
}

// The fake received the request as the client sent it (JSON-equal), with
// the Messages API's headers and the client's anthropic-beta.
function assertForwarded(hit, params, { beta = BETA } = {}) {
  assert.equal(hit.path, '/v1/messages');
  assert.deepEqual(hit.body, params, 'the body reached the upstream untouched');
  assert.equal(hit.headers['x-api-key'], API_KEY);
  assert.equal(hit.headers['anthropic-version'], '2023-06-01');
  assert.equal(hit.headers['anthropic-beta'], beta);
  assert.equal(hit.headers.authorization, undefined, 'no bearer token to Anthropic');
}

// An Anthropic-SDK call refused with the gateway's Anthropic envelope.
async function rejectsAnthropic(promise, { status, code, policy, rid, type = 'permission_error' }) {
  let caught;
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof AnthropicAPIError, `an APIError, not ${e}`);
    caught = e;
    return true;
  });
  if (status !== undefined) assert.equal(caught.status, status);
  assert.equal(caught.error?.type, 'error', JSON.stringify(caught.error));
  assert.equal(caught.error.error.type, type, JSON.stringify(caught.error));
  assert.equal(caught.error.error.code, code, JSON.stringify(caught.error));
  if (policy) assert.equal(caught.error.error.policy, policy);
  if (rid) assert.equal(caught.error.error.request_id, rid);
  if (status === 409) assert.equal(caught.headers?.get?.('x-should-retry') ?? caught.headers?.['x-should-retry'], 'false');
  return caught;
}

// Every raw event of an SDK stream, and the error it raised if any.
async function drain(stream) {
  const events = [];
  let error = null;
  try {
    for await (const ev of stream) events.push(ev);
  } catch (e) {
    error = e;
  }
  return { events, error, text: JSON.stringify(events) };
}

// messages.stream(...).finalMessage(), with every raw event it saw and the
// error it raised, if any.
async function streamFinal(params, rid) {
  const raw = [];
  const stream = anthropic().messages.stream(params, opts(rid));
  stream.on('streamEvent', (ev) => raw.push(ev));
  try {
    return { final: await stream.finalMessage(), raw, error: null };
  } catch (error) {
    return { final: null, raw, error };
  }
}

// The text and tool inputs a Messages event stream carries.
function assemble(events) {
  const blocks = {};
  for (const ev of events) {
    if (ev.type === 'content_block_start') blocks[ev.index] = { ...ev.content_block, json: '' };
    if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') blocks[ev.index].text += ev.delta.text;
    if (ev.type === 'content_block_delta' && ev.delta.type === 'input_json_delta') blocks[ev.index].json += ev.delta.partial_json;
  }
  return Object.values(blocks);
}

const user = (text) => [{ role: 'user', content: text }];

// =============================================================================
// 1. @anthropic-ai/sdk → /v1/messages → the fake Anthropic upstream (native)
// =============================================================================

test('anthropic sdk, native: a JSON message reaches the upstream untouched, with its headers', async () => {
  const rid = newId('native-json');
  const params = { model: 'claude-sonnet-4-5', max_tokens: 256, system: 'You are terse.',
    messages: [{ role: 'user', content: [{ type: 'text', text: 'say hello there' }] }], temperature: 0.2,
    metadata: { user_id: 'u-1' } };
  const { r: msg, hits } = await hitsDuring(() => anthropic().messages.create(params, opts(rid)));
  assert.equal(hits.length, 1);
  assertForwarded(hits[0], params);
  assert.equal(hits[0].raw, JSON.stringify(params), 'byte for byte as the SDK serialized it');
  assert.equal(msg.type, 'message');
  assert.equal(msg.role, 'assistant');
  assert.deepEqual(msg.content, [{ type: 'text', text: 'hello there' }]);
  assert.equal(msg.stop_reason, 'end_turn');
  assert.equal(msg.usage.input_tokens, 'say hello there'.length);
  await assertAudit(rid, { status: 200, outcome: 'allowed', upstreamApi: undefined, stream: false });
});

test('anthropic sdk, native: an input block is a 409 the SDK raises, never forwarded', async () => {
  const rid = newId('native-in-block');
  const { hits } = await hitsDuring(() => rejectsAnthropic(anthropic().messages.create({ model: 'claude-sonnet-4-5',
    max_tokens: 64, messages: user('say where to buy contraband') }, opts(rid)),
  { status: 409, code: 'contraband_in_prompt', policy: 'block-contraband', rid }));
  assert.equal(hits.length, 0, 'nothing reached the upstream');
  await assertAudit(rid, { status: 409, outcome: 'blocked', decisions: [D.inBlock] });
});

test('anthropic sdk, native: an input block in the system prompt and in a tool_result', async () => {
  for (const [where, params] of [
    ['system', { system: [{ type: 'text', text: 'contraband is fine' }], messages: user('say ok') }],
    ['tool_result', { messages: [
      { role: 'user', content: 'say ok' },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_account_balance', input: TOOL_OK }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'the contraband is ready' }] }] }],
  ]) {
    const rid = newId(`native-in-block-${where}`);
    const { hits } = await hitsDuring(() => rejectsAnthropic(anthropic().messages.create(
      { model: 'claude-sonnet-4-5', max_tokens: 64, tools: [A_TOOL], ...params }, opts(rid)),
    { status: 409, code: 'contraband_in_prompt', rid }));
    assert.equal(hits.length, 0, where);
    await assertAudit(rid, { status: 409, outcome: 'blocked', decisions: [D.inBlock] });
  }
});

test('anthropic sdk, native: an input redaction rewrites only the redacted text', async () => {
  const rid = newId('native-in-redact');
  const params = { model: 'claude-sonnet-4-5', max_tokens: 64, system: [{ type: 'text', text: 'be kind' }],
    messages: [
      { role: 'user', content: [{ type: 'text', text: 'say noted' }, { type: 'text', text: `my mail is ${EMAIL}, thanks` }] },
    ] };
  const { r: msg, hits } = await hitsDuring(() => anthropic().messages.create(params, opts(rid)));
  assert.equal(hits.length, 1);
  // A redacted message's text goes to its first block (the parts joined, as
  // on every surface); the emptied block is dropped, since the Messages API
  // refuses empty text blocks. Everything else arrives as sent.
  const expected = structuredClone(params);
  expected.messages[0].content = [{ type: 'text', text: 'say noted\nmy mail is [EMAIL_REDACTED], thanks' }];
  assertForwarded(hits[0], expected);
  assert.ok(!hits[0].raw.includes(EMAIL), 'the email never reached the upstream');
  assert.equal(msg.content[0].text, 'noted\nmy mail is [EMAIL_REDACTED], thanks', 'the upstream saw the redacted text');
  await assertAudit(rid, { status: 200, outcome: 'allowed', decisions: [D.inRedact] });

  // In a tool_result's blocks, with a text block after it in the same turn.
  const nested = newId('native-in-redact-tool-result');
  const turns = { model: 'claude-sonnet-4-5', max_tokens: 64, tools: [A_TOOL], messages: [
    { role: 'user', content: 'whose account is AC-1234?' },
    { role: 'assistant', content: [{ type: 'text', text: 'Looking.' },
      { type: 'tool_use', id: 'toolu_9', name: 'get_account_balance', input: TOOL_OK }] },
    { role: 'user', content: [
      { type: 'tool_result', tool_use_id: 'toolu_9', content: [{ type: 'text', text: 'owner:' }, { type: 'text', text: EMAIL }] },
      { type: 'text', text: 'say done', cache_control: { type: 'ephemeral' } }] }] };
  const { hits: h2 } = await hitsDuring(() => anthropic().messages.create(turns, opts(nested)));
  const want = structuredClone(turns);
  want.messages[2].content[0].content = [{ type: 'text', text: 'owner:\n[EMAIL_REDACTED]' }];
  assertForwarded(h2[0], want);
  await assertAudit(nested, { status: 200, outcome: 'allowed', decisions: [D.inRedact] });
});

test('anthropic sdk, native: an observe rule is recorded and changes nothing', async () => {
  const rid = newId('native-canary');
  const params = { model: 'claude-haiku-4-5', max_tokens: 64, messages: user('say a canary sings') };
  const { r: msg, hits } = await hitsDuring(() => anthropic().messages.create(params, opts(rid)));
  assertForwarded(hits[0], params);
  assert.equal(msg.content[0].text, 'a canary sings');
  await assertAudit(rid, { status: 200, outcome: 'allowed', decisions: [D.canary] });
});

test('anthropic sdk, native: a tool_use answer (JSON) allowed and blocked', async () => {
  const ok = newId('native-tool-ok');
  const msg = await anthropic().messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64, tools: [A_TOOL],
    messages: user(`tool get_account_balance ${JSON.stringify(TOOL_OK)}`) }, opts(ok));
  assert.equal(msg.stop_reason, 'tool_use');
  assert.equal(msg.content[1].type, 'tool_use');
  assert.equal(msg.content[1].name, 'get_account_balance');
  assert.deepEqual(msg.content[1].input, TOOL_OK);
  await assertAudit(ok, { status: 200, outcome: 'allowed' });

  for (const [name, args] of [['delete_account', { account_id: 'AC-1' }], ['get_account_balance', TOOL_BAD]]) {
    const rid = newId(`native-tool-block-${name}`);
    await rejectsAnthropic(anthropic().messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64, tools: [A_TOOL],
      messages: user(`tool ${name} ${JSON.stringify(args)}`) }, opts(rid)),
    { status: 409, code: 'tool_blocked', policy: 'block-tools', rid });
    await assertAudit(rid, { status: 409, outcome: 'blocked', decisions: [D.toolBlock] });
  }
});

test('anthropic sdk, native: output block, redaction and observe (JSON)', async () => {
  const blocked = newId('native-out-block');
  await rejectsAnthropic(anthropic().messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64,
    messages: user(`say the ${PHRASE} launches monday`) }, opts(blocked)),
  { status: 409, code: 'output_blocked', policy: 'block-codename', rid: blocked });
  await assertAudit(blocked, { status: 409, outcome: 'blocked', decisions: [D.outBlock] });

  const redacted = newId('native-out-redact');
  const msg = await anthropic().messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64,
    messages: user('say write to ann.lee{at}example.org today') }, opts(redacted));
  assert.deepEqual(msg.content, [{ type: 'text', text: 'write to [EMAIL_REDACTED] today' }]);
  await assertAudit(redacted, { status: 200, outcome: 'allowed', decisions: [D.outRedact] });

  const observed = newId('native-out-observe');
  const seen = await anthropic().messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64,
    messages: user('say globex makes widgets') }, opts(observed));
  assert.equal(seen.content[0].text, 'globex makes widgets');
  await assertAudit(observed, { status: 200, outcome: 'allowed', decisions: [D.globex] });
});

test('anthropic sdk, native: stream:true with an allowed tool relays the event grammar', async () => {
  const rid = newId('native-stream-tool');
  const params = { model: 'claude-sonnet-4-5', max_tokens: 64, tools: [A_TOOL], stream: true,
    messages: user(`tool get_account_balance ${JSON.stringify(TOOL_OK)}`) };
  const { r: d, hits } = await hitsDuring(async () => drain(await anthropic().messages.create(params, opts(rid))));
  assert.equal(d.error, null, String(d.error));
  assertForwarded(hits[0], params);
  const types = d.events.map((e) => e.type);
  assert.equal(types[0], 'message_start');
  assert.equal(types.at(-1), 'message_stop');
  assert.ok(types.includes('message_delta'));
  assert.equal(d.events.find((e) => e.type === 'message_delta').delta.stop_reason, 'tool_use');
  const blocks = assemble(d.events);
  assert.equal(blocks[0].text, 'Let me check.');
  assert.equal(blocks[1].name, 'get_account_balance');
  assert.deepEqual(JSON.parse(blocks[1].json), TOOL_OK);
  await assertAudit(rid, { status: 200, outcome: 'allowed', stream: true });
});

test('anthropic sdk, native: messages.stream().finalMessage() with an email split over 1-3 char text_deltas', async () => {
  const rid = newId('native-stream-split-text');
  const { final: msg, raw, error } = await streamFinal({ model: 'claude-sonnet-4-5', max_tokens: 64,
    messages: user('stream-split text') }, rid);
  assert.equal(error, null, String(error));
  const redacted = SPLIT_TEXT.replace(EMAIL, '[EMAIL_REDACTED]');
  assert.deepEqual(msg.content, [{ type: 'text', text: redacted }]);
  const all = JSON.stringify(raw);
  assert.ok(!all.includes(EMAIL) && !all.includes('example.org') && !all.includes('ann.lee'), all);
  const deltas = raw.filter((e) => e.type === 'content_block_delta').map((e) => e.delta.text);
  assert.equal(deltas.join(''), redacted);
  assert.ok(deltas.length > 3, 'the text before the email went out as it came');
  await assertAudit(rid, { status: 200, outcome: 'allowed', stream: true, decisions: [D.outRedact] });
});

test('anthropic sdk, native: a forbidden tool argument split over input_json_deltas never reaches the client', async () => {
  const rid = newId('native-stream-split-tool');
  const d = await drain(await anthropic().messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64, stream: true,
    tools: [A_TOOL], messages: user('stream-split tool') }, opts(rid)));
  assert.ok(d.error instanceof AnthropicAPIError, `the SDK raised on the error event: ${d.error}`);
  assert.equal(d.error.error.error.code, 'tool_blocked', JSON.stringify(d.error.error));
  assert.equal(d.error.error.error.policy, 'block-tools');
  assert.equal(d.error.error.error.request_id, rid);
  for (const s of ['get_account_balance', 'AC-6666', 'account_id', 'input_json_delta', 'tool_use']) {
    assert.ok(!d.text.includes(s), `${s} in a delivered event: ${d.text}`);
  }
  await assertAudit(rid, { status: 200, outcome: 'blocked', stream: true, decisions: [D.toolBlock] });
});

test('anthropic sdk, native: a redacted email then a forbidden tool in one stream', async () => {
  const rid = newId('native-stream-split');
  const { raw, error } = await streamFinal({ model: 'claude-sonnet-4-5', max_tokens: 64, tools: [A_TOOL],
    messages: user('stream-split') }, rid);
  assert.ok(error instanceof AnthropicAPIError, `finalMessage() raised: ${error}`);
  assert.equal(error.error.error.code, 'tool_blocked');
  const all = JSON.stringify(raw);
  for (const s of [EMAIL, 'example.org', 'get_account_balance', 'AC-6666']) assert.ok(!all.includes(s), `${s}: ${all}`);
  assert.equal(assemble(raw)[0]?.text, SPLIT_TEXT.replace(EMAIL, '[EMAIL_REDACTED]'), 'the text block was released redacted');
  await assertAudit(rid, { status: 200, outcome: 'blocked', stream: true, decisions: [D.outRedact, D.toolBlock] });
});

test('anthropic sdk, native: an output block mid-stream ends with an Anthropic error event', async () => {
  const rid = newId('native-stream-out-block');
  const d = await drain(await anthropic().messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64, stream: true,
    messages: user(`say all about the ${PHRASE} plans`) }, opts(rid)));
  assert.ok(d.error instanceof AnthropicAPIError, String(d.error));
  assert.equal(d.error.error.type, 'error');
  assert.equal(d.error.error.error.code, 'output_blocked');
  assert.equal(d.error.error.error.policy, 'block-codename');
  assert.ok(!d.text.toLowerCase().includes('nightingale'), d.text);
  await assertAudit(rid, { status: 200, outcome: 'blocked', stream: true, decisions: [D.outBlock] });
});

test('anthropic sdk, native: upstream errors pass through in Anthropic\'s shape', async () => {
  const rid = newId('native-overloaded');
  let caught;
  await assert.rejects(anthropic().messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64,
    messages: user('overloaded') }, opts(rid)), (e) => { caught = e; return e instanceof AnthropicAPIError; });
  assert.equal(caught.status, 529);
  assert.equal(caught.error.error.type, 'overloaded_error');
  assert.equal(caught.headers.get('retry-after'), '2');
  await assertAudit(rid, { status: 529, outcome: 'upstream_error', code: 'upstream_status_529' });
});

// =============================================================================
// 2. @anthropic-ai/sdk → /v1/messages → the mock (translated through chat)
// =============================================================================

test('anthropic sdk, mock: text, tool and stream through chat', async () => {
  const text = newId('mock-text');
  const msg = await anthropic().messages.create({ model: 'mock-1', max_tokens: 64, system: 'be brief',
    messages: user('kt-mock: say hello from the mock') }, opts(text));
  assert.equal(msg.type, 'message');
  assert.match(msg.id, /^msg_/);
  assert.deepEqual(msg.content, [{ type: 'text', text: 'hello from the mock' }]);
  assert.equal(msg.stop_reason, 'end_turn');
  assert.equal(typeof msg.usage.input_tokens, 'number');
  await assertAudit(text, { status: 200, outcome: 'allowed', upstreamApi: 'chat', stream: false });

  const tool = newId('mock-tool');
  const called = await anthropic().messages.create({ model: 'mock-1', max_tokens: 64, tools: [A_TOOL],
    messages: user(`kt-mock: tool get_account_balance ${JSON.stringify(TOOL_OK)}`) }, opts(tool));
  assert.equal(called.stop_reason, 'tool_use');
  const use = called.content.find((b) => b.type === 'tool_use');
  assert.equal(use.name, 'get_account_balance');
  assert.deepEqual(use.input, TOOL_OK);
  await assertAudit(tool, { status: 200, outcome: 'allowed', upstreamApi: 'chat' });

  const streamed = newId('mock-stream');
  const { final, raw, error } = await streamFinal({ model: 'mock-1', max_tokens: 64,
    messages: user('kt-mock: say streamed through chat, in pieces') }, streamed);
  assert.equal(error, null, String(error));
  assert.equal(final.content[0].text, 'streamed through chat, in pieces');
  assert.ok(raw.filter((e) => e.type === 'content_block_delta').length > 3, 'several text_deltas');
  assert.deepEqual([raw[0].type, raw.at(-1).type], ['message_start', 'message_stop']);
  await assertAudit(streamed, { status: 200, outcome: 'allowed', upstreamApi: 'chat', stream: true });

  const streamedTool = newId('mock-stream-tool');
  const d = await drain(await anthropic().messages.create({ model: 'mock-1', max_tokens: 64, stream: true, tools: [A_TOOL],
    messages: user(`kt-mock: tool get_account_balance ${JSON.stringify(TOOL_OK)}`) }, opts(streamedTool)));
  assert.equal(d.error, null, String(d.error));
  const tb = assemble(d.events).find((b) => b.type === 'tool_use');
  assert.equal(tb.name, 'get_account_balance');
  assert.deepEqual(JSON.parse(tb.json), TOOL_OK);
  await assertAudit(streamedTool, { status: 200, outcome: 'allowed', upstreamApi: 'chat', stream: true });
});

test('anthropic sdk, mock: input, tool and output blocks', async () => {
  const inBlock = newId('mock-in-block');
  await rejectsAnthropic(anthropic().messages.create({ model: 'mock-1', max_tokens: 64,
    messages: user('kt-mock: say contraband') }, opts(inBlock)), { status: 409, code: 'contraband_in_prompt', rid: inBlock });
  // Refused before routing: no upstream API to name.
  await assertAudit(inBlock, { status: 409, outcome: 'blocked', upstreamApi: undefined, decisions: [D.inBlock] });

  const toolBlock = newId('mock-tool-block');
  await rejectsAnthropic(anthropic().messages.create({ model: 'mock-1', max_tokens: 64, tools: [A_TOOL],
    messages: user('kt-mock: tool delete_account {"account_id":"AC-1"}') }, opts(toolBlock)),
  { status: 409, code: 'tool_blocked', policy: 'block-tools', rid: toolBlock });
  await assertAudit(toolBlock, { status: 409, outcome: 'blocked', upstreamApi: 'chat', decisions: [D.toolBlock] });

  const streamToolBlock = newId('mock-stream-tool-block');
  const d = await drain(await anthropic().messages.create({ model: 'mock-1', max_tokens: 64, stream: true, tools: [A_TOOL],
    messages: user(`kt-mock: tool get_account_balance ${JSON.stringify(TOOL_BAD)}`) }, opts(streamToolBlock)));
  assert.ok(d.error instanceof AnthropicAPIError, String(d.error));
  assert.equal(d.error.error.error.code, 'tool_blocked');
  assert.ok(!d.text.includes('AC-6666') && !d.text.includes('get_account_balance'), d.text);
  await assertAudit(streamToolBlock, { status: 200, outcome: 'blocked', upstreamApi: 'chat', stream: true, decisions: [D.toolBlock] });

  const outBlock = newId('mock-out-block');
  await rejectsAnthropic(anthropic().messages.create({ model: 'mock-1', max_tokens: 64,
    messages: user(`kt-mock: say the ${PHRASE} is on`) }, opts(outBlock)), { status: 409, code: 'output_blocked', rid: outBlock });
  await assertAudit(outBlock, { status: 409, outcome: 'blocked', upstreamApi: 'chat', decisions: [D.outBlock] });
});

// =============================================================================
// 3. openai → chat / responses → a claude-* model → the fake Anthropic upstream
// =============================================================================

async function collectChat(stream) {
  const out = { content: '', tools: {}, finish: null, usage: null, chunks: [] };
  let error = null;
  try {
    for await (const c of stream) {
      out.chunks.push(c);
      if (c.usage) out.usage = c.usage;
      const ch = c.choices?.[0];
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
  } catch (e) {
    error = e;
  }
  return { ...out, error, text: JSON.stringify(out.chunks) };
}

async function rejectsOpenAI(promise, { status, code, policy }) {
  let caught;
  await assert.rejects(promise, (e) => { caught = e; return e instanceof OpenAIAPIError; });
  assert.equal(caught.status, status, JSON.stringify(caught.error));
  if (code) assert.equal(caught.code, code, JSON.stringify(caught.error));
  if (policy) assert.equal(caught.error.policy, policy);
  return caught;
}

test('openai sdk → claude: chat JSON is translated to Messages (system hoisted, max_tokens, tools)', async () => {
  const rid = newId('openai-chat-json');
  const { r: c, hits } = await hitsDuring(() => openai().chat.completions.create({ model: 'claude-sonnet-4-5',
    messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'say hi from claude' }],
    tools: [O_TOOL], temperature: 0.5 }, opts(rid)));
  assert.equal(hits.length, 1);
  const h = hits[0];
  assert.equal(h.method, 'POST');
  assert.equal(h.path, '/v1/messages');
  assert.equal(h.headers['x-api-key'], API_KEY, 'the bearer key went as x-api-key');
  assert.equal(h.headers['anthropic-version'], '2023-06-01');
  assert.equal(h.headers['anthropic-beta'], BETA);
  assert.equal(h.body.system, 'You are terse.');
  assert.ok(h.body.messages.every((m) => m.role !== 'system'), 'no system turn left');
  assert.equal(h.body.messages.length, 1);
  assert.equal(lastUserText(h.body), 'say hi from claude');
  assert.equal(h.body.max_tokens, 4096);
  assert.equal(h.body.temperature, 0.5);
  assert.deepEqual(h.body.tools, [A_TOOL]);
  assert.equal(c.object, 'chat.completion');
  assert.equal(c.choices[0].message.role, 'assistant');
  assert.equal(c.choices[0].message.content, 'hi from claude');
  assert.equal(c.choices[0].finish_reason, 'stop');
  assert.equal(c.usage.prompt_tokens, 'say hi from claude'.length);
  assert.equal(c.usage.completion_tokens, 11);
  await assertAudit(rid, { status: 200, outcome: 'allowed', surface: 'chat', upstreamApi: 'messages', stream: false });

  const capped = newId('openai-chat-max');
  const { hits: h2 } = await hitsDuring(() => openai().chat.completions.create({ model: 'claude-haiku-4-5',
    max_completion_tokens: 77, messages: user('say ok') }, opts(capped)));
  assert.equal(h2[0].body.max_tokens, 77);
});

test('openai sdk → claude: tool calls (JSON and stream) allowed and blocked', async () => {
  const ok = newId('openai-tool-ok');
  const c = await openai().chat.completions.create({ model: 'claude-sonnet-4-5', tools: [O_TOOL],
    messages: user(`tool get_account_balance ${JSON.stringify(TOOL_OK)}`) }, opts(ok));
  assert.equal(c.choices[0].finish_reason, 'tool_calls');
  const call = c.choices[0].message.tool_calls[0];
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, 'get_account_balance');
  assert.deepEqual(JSON.parse(call.function.arguments), TOOL_OK);
  assert.match(call.id, /^toolu_fake_/);
  await assertAudit(ok, { status: 200, outcome: 'allowed', surface: 'chat', upstreamApi: 'messages' });

  const blocked = newId('openai-tool-block');
  await rejectsOpenAI(openai().chat.completions.create({ model: 'claude-sonnet-4-5', tools: [O_TOOL],
    messages: user('tool delete_account {"account_id":"AC-1"}') }, opts(blocked)), { status: 409, code: 'tool_blocked', policy: 'block-tools' });
  await assertAudit(blocked, { status: 409, outcome: 'blocked', surface: 'chat', upstreamApi: 'messages', decisions: [D.toolBlock] });

  const streamed = newId('openai-stream-tool');
  const s = await collectChat(await openai().chat.completions.create({ model: 'claude-sonnet-4-5', tools: [O_TOOL], stream: true,
    stream_options: { include_usage: true }, messages: user(`tool get_account_balance ${JSON.stringify(TOOL_OK)}`) }, opts(streamed)));
  assert.equal(s.error, null, String(s.error));
  assert.equal(s.content, 'Let me check.');
  assert.equal(s.tools[0].name, 'get_account_balance');
  assert.deepEqual(JSON.parse(s.tools[0].arguments), TOOL_OK);
  assert.equal(s.finish, 'tool_calls');
  assert.ok(s.chunks.every((ch) => ch.object === 'chat.completion.chunk'));
  assert.equal(fake.state.hits.at(-1).body.stream, true);
  await assertAudit(streamed, { status: 200, outcome: 'allowed', surface: 'chat', upstreamApi: 'messages', stream: true });

  const split = newId('openai-stream-split-tool');
  const b = await collectChat(await openai().chat.completions.create({ model: 'claude-sonnet-4-5', tools: [O_TOOL], stream: true,
    messages: user('stream-split tool') }, opts(split)));
  assert.ok(b.error instanceof OpenAIAPIError, `the SDK raised: ${b.error}`);
  assert.ok(!b.text.includes('AC-6666') && !b.text.includes('get_account_balance'), b.text);
  await assertAudit(split, { status: 200, outcome: 'blocked', surface: 'chat', upstreamApi: 'messages', stream: true, decisions: [D.toolBlock] });
});

test('openai sdk → claude: input block and redaction', async () => {
  const blocked = newId('openai-in-block');
  const { hits } = await hitsDuring(() => rejectsOpenAI(openai().chat.completions.create({ model: 'claude-sonnet-4-5',
    messages: user('say contraband') }, opts(blocked)), { status: 409, code: 'contraband_in_prompt', policy: 'block-contraband' }));
  assert.equal(hits.length, 0);
  await assertAudit(blocked, { status: 409, outcome: 'blocked', surface: 'chat', decisions: [D.inBlock] });

  const redacted = newId('openai-in-redact');
  const { r: c, hits: h2 } = await hitsDuring(() => openai().chat.completions.create({ model: 'claude-sonnet-4-5',
    messages: [{ role: 'system', content: `escalate to ${EMAIL}` }, { role: 'user', content: `say mail ${EMAIL} now` }] }, opts(redacted)));
  assert.ok(!h2[0].raw.includes(EMAIL), h2[0].raw);
  assert.equal(h2[0].body.system, 'escalate to [EMAIL_REDACTED]');
  assert.equal(lastUserText(h2[0].body), 'say mail [EMAIL_REDACTED] now');
  assert.equal(c.choices[0].message.content, 'mail [EMAIL_REDACTED] now');
  await assertAudit(redacted, { status: 200, outcome: 'allowed', surface: 'chat', upstreamApi: 'messages', decisions: [D.inRedact] });
});

test('openai sdk → claude: output block, redaction and observe (JSON and stream)', async () => {
  const blocked = newId('openai-out-block');
  await rejectsOpenAI(openai().chat.completions.create({ model: 'claude-sonnet-4-5',
    messages: user(`say the ${PHRASE} is real`) }, opts(blocked)), { status: 409, code: 'output_blocked', policy: 'block-codename' });
  await assertAudit(blocked, { status: 409, outcome: 'blocked', surface: 'chat', upstreamApi: 'messages', decisions: [D.outBlock] });

  const redacted = newId('openai-out-redact');
  const c = await openai().chat.completions.create({ model: 'claude-sonnet-4-5',
    messages: user('say write ann.lee{at}example.org or globex') }, opts(redacted));
  assert.equal(c.choices[0].message.content, 'write [EMAIL_REDACTED] or globex');
  await assertAudit(redacted, { status: 200, outcome: 'allowed', surface: 'chat', upstreamApi: 'messages', decisions: [D.outRedact, D.globex] });

  const streamed = newId('openai-stream-split-text');
  const s = await collectChat(await openai().chat.completions.create({ model: 'claude-sonnet-4-5', stream: true,
    messages: user('stream-split text') }, opts(streamed)));
  assert.equal(s.error, null, String(s.error));
  assert.equal(s.content, SPLIT_TEXT.replace(EMAIL, '[EMAIL_REDACTED]'));
  assert.ok(!s.text.includes(EMAIL) && !s.text.includes('example.org'), s.text);
  assert.equal(s.finish, 'stop');
  await assertAudit(streamed, { status: 200, outcome: 'allowed', surface: 'chat', upstreamApi: 'messages', stream: true, decisions: [D.outRedact] });

  const streamBlock = newId('openai-stream-out-block');
  const b = await collectChat(await openai().chat.completions.create({ model: 'claude-sonnet-4-5', stream: true,
    messages: user(`say news of ${PHRASE} today`) }, opts(streamBlock)));
  assert.ok(b.error instanceof OpenAIAPIError, String(b.error));
  assert.ok(!b.text.toLowerCase().includes('nightingale'), b.text);
  await assertAudit(streamBlock, { status: 200, outcome: 'blocked', surface: 'chat', upstreamApi: 'messages', stream: true, decisions: [D.outBlock] });
});

test('openai sdk → claude: responses.create is translated to Messages', async () => {
  const rid = newId('openai-responses');
  const { r, hits } = await hitsDuring(() => openai().responses.create({ model: 'claude-sonnet-4-5',
    instructions: 'Answer plainly.', input: 'say hello from responses' }, opts(rid)));
  assert.equal(hits[0].path, '/v1/messages');
  assert.equal(hits[0].body.system, 'Answer plainly.');
  assert.equal(hits[0].body.max_tokens, 4096);
  assert.equal(lastUserText(hits[0].body), 'say hello from responses');
  assert.equal(r.object, 'response');
  assert.equal(r.output_text, 'hello from responses');
  await assertAudit(rid, { status: 200, outcome: 'allowed', surface: 'responses', upstreamApi: 'messages', stream: false });

  const tool = newId('openai-responses-tool');
  const t = await openai().responses.create({ model: 'claude-sonnet-4-5', tools: [{ type: 'function', name: A_TOOL.name,
    description: A_TOOL.description, parameters: A_TOOL.input_schema }],
  input: `tool get_account_balance ${JSON.stringify(TOOL_BAD)}` }, opts(tool)).catch((e) => e);
  assert.ok(t instanceof OpenAIAPIError, `blocked: ${JSON.stringify(t)}`);
  assert.equal(t.status, 409);
  assert.equal(t.code, 'tool_blocked');
  await assertAudit(tool, { status: 409, outcome: 'blocked', surface: 'responses', upstreamApi: 'messages', decisions: [D.toolBlock] });
});

test('openai sdk → claude: 529 overloaded_error is a 503, 429 passes with retry-after', async () => {
  const over = newId('openai-529');
  const { hits } = await hitsDuring(async () => {
    const e = await rejectsOpenAI(openai().chat.completions.create({ model: 'claude-sonnet-4-5',
      messages: user('overloaded') }, opts(over)), { status: 503, code: 'overloaded_error' });
    assert.equal(e.headers.get('retry-after'), '2');
    assert.match(e.message, /Overloaded/);
  });
  assert.equal(hits.length, 1, 'maxRetries: 0, one upstream request');
  await assertAudit(over, { status: 503, outcome: 'upstream_error', surface: 'chat', upstreamApi: 'messages', code: 'upstream_status_529' });

  const limited = newId('openai-429');
  const e = await rejectsOpenAI(openai().chat.completions.create({ model: 'claude-sonnet-4-5',
    messages: user('ratelimit') }, opts(limited)), { status: 429, code: 'rate_limit_error' });
  assert.equal(e.headers.get('retry-after'), '7');
  assert.match(e.message, /rate limit/);
  await assertAudit(limited, { status: 429, outcome: 'upstream_error', surface: 'chat', upstreamApi: 'messages', code: 'upstream_status_429' });

  // The stream asks the same: the error before any event is the HTTP error.
  const streamed = newId('openai-529-stream');
  await rejectsOpenAI(openai().chat.completions.create({ model: 'claude-sonnet-4-5', stream: true,
    messages: user('overloaded') }, opts(streamed)), { status: 503, code: 'overloaded_error' });
  await assertAudit(streamed, { status: 503, outcome: 'upstream_error', surface: 'chat', upstreamApi: 'messages', stream: true });
});

// =============================================================================
// 4. count_tokens
// =============================================================================

test('anthropic sdk: messages.countTokens, with the input stage applied', async () => {
  const rid = newId('count');
  const params = { model: 'claude-sonnet-4-5', system: 'count me', messages: user('how many tokens is this?') };
  const { r, hits } = await hitsDuring(() => anthropic().messages.countTokens(params, opts(rid)));
  assert.equal(hits.length, 1);
  assert.equal(hits[0].path, '/v1/messages/count_tokens');
  assert.deepEqual(hits[0].body, params);
  assert.equal(hits[0].headers['anthropic-version'], '2023-06-01');
  assert.equal(hits[0].headers['x-api-key'], API_KEY);
  assert.deepEqual(r, { input_tokens: JSON.stringify(params.messages).length });
  await assertAudit(rid, { status: 200, outcome: 'allowed', surface: 'count_tokens', upstreamApi: undefined });

  const blocked = newId('count-block');
  const { hits: h2 } = await hitsDuring(() => rejectsAnthropic(anthropic().messages.countTokens({ model: 'claude-sonnet-4-5',
    messages: user('count the contraband') }, opts(blocked)), { status: 409, code: 'contraband_in_prompt', rid: blocked }));
  assert.equal(h2.length, 0);
  await assertAudit(blocked, { status: 409, outcome: 'blocked', surface: 'count_tokens', decisions: [D.inBlock] });

  const redacted = newId('count-redact');
  const { hits: h3 } = await hitsDuring(() => anthropic().messages.countTokens({ model: 'claude-sonnet-4-5',
    messages: user(`count ${EMAIL}`) }, opts(redacted)));
  assert.deepEqual(h3[0].body.messages, user('count [EMAIL_REDACTED]'));
  await assertAudit(redacted, { status: 200, outcome: 'allowed', surface: 'count_tokens', decisions: [D.inRedact] });
});

test('the gateway stayed up', () => {
  assert.equal(gw.proc.exitCode, null, gw.stderr());
});
