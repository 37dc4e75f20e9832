// Every OpenAI surface through the one pipeline, driven by the official
// `openai` npm package against the real `kt gateway run` binary: responses
// (JSON, streams, function tools), legacy completions, embeddings and
// models. The policies are written once, on the chat shape; each case checks
// what the client sees and what the audit trail records (decision events
// with stage, policy, verdict and mode; the request event's status, outcome,
// surface and upstream_api).
//
// Upstreams: the built-in mock (chat and embeddings only, so responses and
// completions reach it translated), once cutting its streams into 1-byte
// chunks; and our own node `http` server that speaks every surface itself
// (a fixed `response` object, a native semantic-event stream with an email
// split over text deltas and a call's arguments split over argument deltas,
// text_completion, embeddings), reached natively by one gateway and as a
// chat-only upstream (`--upstream URL --upstream-apis chat`) by another; a
// third runs with `--fail-mode allow` for the parts no stage can read.
//
// Skipped cases name a bug outside the surfaces (see each one's comment).
//
//   tests/gateway/run.sh build/cli/kt surfaces_test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import OpenAI, { APIError } from 'openai';

const KT = process.env.KT_BIN || path.resolve('build/cli/kt');
const API_KEY = 'sk-surfaces-0123456789abcdefghijkl';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-surfaces-test-'));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

// --- the policies ----------------------------------------------------------

const EMAIL = 'ann.lee@example.org';
const BLOCKED_PHRASE = 'project nightingale';
const TOOL = { type: 'function', name: 'get_account_balance', description: 'the balance of an account',
  parameters: { type: 'object', properties: { account_id: { type: 'string' } }, required: ['account_id'] } };

function policies(nodeUrl) {
  return `import std.pii

// Models mock-1* stream a byte per chunk.
provider mock_bytes {
  kind: mock
  models: ["mock-1*"]
  chunk_size: 1
}

provider node {
  kind: openai
  base_url: "${nodeUrl}"
  models: ["node-*"]
  apis: ["chat", "responses", "completions", "embeddings"]
}

provider mock {
  kind: mock
  models: ["*"]
}

policy "block-contraband" {
  on input
  when any m in input.messages: m.content matches words("contraband")
  then block "the prompt names contraband" code "contraband_in_prompt"
}

// Models named *raw* keep their prompts' emails, so the mock can be told to
// write one back for the output stage.
policy "redact-input-email" {
  on input
  when not (input.model contains "raw")
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
  when output.text matches "${BLOCKED_PHRASE}"i
  then block "the answer names a confidential project" code "output_blocked"
}

// The same kind of block written with \`contains\` (see the skipped case).
policy "block-bluebird" {
  on output
  when output.text contains "operation bluebird"
  then block "the answer names a confidential operation" code "output_blocked"
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

// Written on chat's finish_reason, as every output rule is.
policy "observe-truncated" {
  on output
  mode observe
  when output.finish_reason == "length"
  then flag "the answer was cut off" code "truncated_output"
}
`;
}

// --- a node upstream that speaks every surface itself ---------------------
//
// What it answers is steered by the last user text it receives:
//   node: say TEXT          the answer is TEXT ({at} becomes @, so the input
//                           stage never sees the email the answer carries)
//   node: call NAME JSON    one function call
//   anything else           "node heard: <the text>"
// Streams cut text into 3-byte deltas and arguments into 4-byte ones.
// `node: [SHAPE] say|call …` picks another shape: `length` (cut off at the
// token bound, on every surface), and for the Responses stream `whole`,
// `bare` and `noadded` (see nativeResponses).

function textOf(content) {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.filter((p) => ['text', 'input_text', 'output_text'].includes(p.type)).map((p) => p.text).join('');
}

function lastUserOf(messages) {
  return textOf((messages || []).filter((m) => m.role === 'user' && (m.type ?? 'message') === 'message').at(-1)?.content);
}

function replyTo(prompt) {
  // A stream shape for the native Responses stream: `node: [whole] say …`.
  const shape = prompt.match(/node: \[(\w+)\] /)?.[1] ?? 'full';
  prompt = prompt.replace(/node: \[\w+\] /, 'node: ');
  const call = prompt.match(/node: call (\S+) (.*)$/s);
  if (call) return { shape, call: { name: call[1], arguments: call[2] } };
  const say = prompt.match(/node: say (.*)$/s);
  if (say) return { shape, text: say[1].replaceAll('{at}', '@') };
  return { shape, text: `node heard: ${prompt}` };
}

const pieces = (s, n) => Array.from({ length: Math.ceil(s.length / n) }, (_, i) => s.slice(i * n, (i + 1) * n));
const sse = (events) => events.map((e) => (e.event ? `event: ${e.event}\n` : '') + `data: ${typeof e.data === 'string' ? e.data : JSON.stringify(e.data)}\n\n`).join('');
const usageChat = { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 };
const usageResponses = { input_tokens: 11, input_tokens_details: { cached_tokens: 0 }, output_tokens: 7,
  output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 18 };

function responseObject(model, status, output, usage) {
  return { id: 'resp_node', object: 'response', created_at: 1700000000, status, model, output, usage,
    error: null, incomplete_details: null, instructions: null, tools: [], tool_choice: 'auto',
    parallel_tool_calls: true, metadata: {}, text: { format: { type: 'text' } }, temperature: null,
    top_p: null, max_output_tokens: null, previous_response_id: null, reasoning: null };
}
const messageItem = (text, status = 'completed') => ({ type: 'message', id: 'msg_node', status, role: 'assistant',
  content: status === 'in_progress' ? [] : [{ type: 'output_text', text, annotations: [], logprobs: [] }] });
const callItem = (call, status = 'completed') => ({ type: 'function_call', id: 'fc_node', call_id: 'call_node',
  name: call.name, arguments: status === 'in_progress' ? '' : call.arguments, status });

function nativeResponses(body, res) {
  const r = replyTo(lastUserOf(typeof body.input === 'string' ? [{ role: 'user', content: body.input }] : body.input));
  const item = r.call ? callItem(r.call) : messageItem(r.text, r.shape === 'length' ? 'incomplete' : 'completed');
  if (!body.stream && r.shape === 'length') {
    return json(res, { ...responseObject(body.model, 'incomplete', [item], usageResponses), incomplete_details: { reason: 'max_output_tokens' } });
  }
  if (!body.stream) return json(res, responseObject(body.model, 'completed', [item], usageResponses));
  let seq = 0;
  const ev = (type, data) => ({ event: type, data: { type, ...data, sequence_number: seq++ } });
  const events = [ev('response.created', { response: responseObject(body.model, 'in_progress', [], null) }),
    ev('response.in_progress', { response: responseObject(body.model, 'in_progress', [], null) })];
  // Shapes a server may choose: `full` as the API sends it; `whole` without
  // text deltas or done events (the text only in output_item.done and
  // response.completed); `bare` with only response.created and
  // response.completed; `noadded`, a call whose output_item.added is missing.
  if (r.shape === 'bare') {
    events.push(ev('response.completed', { response: responseObject(body.model, 'completed', [item], usageResponses) }));
    return stream(res, sse(events));
  }
  if (r.call) {
    if (r.shape !== 'noadded') events.push(ev('response.output_item.added', { output_index: 0, item: callItem(r.call, 'in_progress') }));
    for (const d of pieces(r.call.arguments, 4)) {
      events.push(ev('response.function_call_arguments.delta', { item_id: 'fc_node', output_index: 0, delta: d }));
    }
    events.push(ev('response.function_call_arguments.done', { item_id: 'fc_node', output_index: 0, name: r.call.name, arguments: r.call.arguments }));
  } else {
    const at = { item_id: 'msg_node', output_index: 0, content_index: 0 };
    events.push(ev('response.output_item.added', { output_index: 0, item: messageItem('', 'in_progress') }));
    if (r.shape !== 'whole') {
      events.push(ev('response.content_part.added', { ...at, part: { type: 'output_text', text: '', annotations: [] } }));
      for (const d of pieces(r.text, 3)) events.push(ev('response.output_text.delta', { ...at, delta: d, logprobs: [] }));
      events.push(ev('response.output_text.done', { ...at, text: r.text, logprobs: [] }));
      events.push(ev('response.content_part.done', { ...at, part: { type: 'output_text', text: r.text, annotations: [] } }));
    }
  }
  events.push(ev('response.output_item.done', { output_index: 0, item }));
  events.push(ev('response.completed', { response: responseObject(body.model, 'completed', [item], usageResponses) }));
  return stream(res, sse(events));
}

function chat(body, res) {
  const r = replyTo(lastUserOf(body.messages));
  const base = { id: 'chatcmpl-node', created: 1700000000, model: body.model };
  if (!body.stream) {
    const message = r.call
      ? { role: 'assistant', content: null, tool_calls: [{ id: 'call_node', type: 'function', function: r.call }] }
      : { role: 'assistant', content: r.text };
    const finish = r.call ? 'tool_calls' : r.shape === 'length' ? 'length' : 'stop';
    return json(res, { ...base, object: 'chat.completion', usage: usageChat,
      choices: [{ index: 0, message, logprobs: null, finish_reason: finish }] });
  }
  const chunk = (delta, finish = null) => ({ data: { ...base, object: 'chat.completion.chunk',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] } });
  const events = [chunk({ role: 'assistant', content: r.call ? null : '' })];
  if (r.call) {
    events.push(chunk({ tool_calls: [{ index: 0, id: 'call_node', type: 'function', function: { name: r.call.name, arguments: '' } }] }));
    for (const d of pieces(r.call.arguments, 4)) events.push(chunk({ tool_calls: [{ index: 0, function: { arguments: d } }] }));
  } else {
    for (const d of pieces(r.text, 3)) events.push(chunk({ content: d }));
  }
  events.push(chunk({}, r.call ? 'tool_calls' : r.shape === 'length' ? 'length' : 'stop'));
  if (body.stream_options?.include_usage) events.push({ data: { ...base, object: 'chat.completion.chunk', choices: [], usage: usageChat } });
  events.push({ data: '[DONE]' });
  return stream(res, sse(events));
}

function completions(body, res) {
  const prompts = typeof body.prompt === 'string' ? [body.prompt] : body.prompt;
  const replies = prompts.map((p) => (typeof p === 'string' ? replyTo(p) : { text: `node read ${p.length} tokens` }));
  const texts = replies.map((r) => r.text ?? '');
  const base = { id: 'cmpl-node', object: 'text_completion', created: 1700000000, model: body.model };
  if (!body.stream) {
    return json(res, { ...base, usage: usageChat,
      choices: texts.map((text, index) => ({ index, text, logprobs: null, finish_reason: replies[index].shape === 'length' ? 'length' : 'stop' })) });
  }
  const events = [];
  texts.forEach((text, index) => {
    for (const d of pieces(text, 3)) events.push({ data: { ...base, choices: [{ index, text: d, logprobs: null, finish_reason: null }] } });
    events.push({ data: { ...base, choices: [{ index, text: '', logprobs: null, finish_reason: 'stop' }] } });
  });
  events.push({ data: '[DONE]' });
  return stream(res, sse(events));
}

function embeddings(body, res) {
  const inputs = typeof body.input === 'string' || typeof body.input[0] === 'number' ? [body.input] : body.input;
  const data = inputs.map((input, index) => {
    const v = Float32Array.from({ length: 4 }, (_, i) => (JSON.stringify(input).length + i) / 100);
    const embedding = body.encoding_format === 'base64' ? Buffer.from(v.buffer).toString('base64') : Array.from(v);
    return { object: 'embedding', index, embedding };
  });
  return json(res, { object: 'list', data, model: body.model, usage: { prompt_tokens: 3, total_tokens: 3 } });
}

function json(res, obj) {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(obj));
}

// A stream, one write per event.
async function stream(res, text) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  for (const frame of text.split(/(?<=\n\n)/)) {
    res.write(frame);
    await sleep(0);
  }
  res.end();
}

const HANDLERS = { '/v1/responses': nativeResponses, '/v1/chat/completions': chat, '/v1/completions': completions,
  '/v1/embeddings': embeddings };

function startNode() {
  const hits = [];
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => {
      let body = null;
      try { body = JSON.parse(Buffer.concat(parts).toString('utf8')); } catch { /* answered below */ }
      hits.push({ path: req.url, body, rid: req.headers['x-request-id'] });
      const handler = HANDLERS[req.url];
      if (!handler || !body) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: `node has no ${req.url}`, type: 'invalid_request_error', code: 'node_404' } }));
        return;
      }
      Promise.resolve(handler(body, res)).catch(() => res.destroy());
    });
  });
  server.keepAliveTimeout = 30000;
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${server.address().port}/v1`, hits,
    // The upstream request a gateway request made (its x-request-id is passed on).
    hit: (rid) => hits.find((h) => h.rid === rid),
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  })));
}

// --- the gateways ----------------------------------------------------------

async function startGateway(name, args) {
  const port = await freePort();
  const audit = path.join(tmp, `${name}-audit.jsonl`);
  const proc = spawn(KT, ['gateway', 'run', '--listen', `127.0.0.1:${port}`, '--audit-log', audit,
    '--threads', '2', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(proc);
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null) throw new Error(`gateway ${name} exited: ${stderr}`);
    try {
      if ((await fetch(`${base}/readyz`)).status === 200) break;
    } catch { /* not listening yet */ }
    if (i > 400) throw new Error(`gateway ${name} did not become ready: ${stderr}`);
    await sleep(25);
  }
  return {
    name, proc, base, url: `${base}/v1`,
    events: () => (fs.existsSync(audit) ? fs.readFileSync(audit, 'utf8') : '').split('\n').filter(Boolean).map((l) => JSON.parse(l)),
    stop: () => new Promise((r) => { if (proc.exitCode !== null) return r(); proc.once('exit', r); proc.kill('SIGTERM'); }),
  };
}

let node, gw, gwChat, gwAllow;

before(async () => {
  if (!fs.existsSync(KT)) throw new Error(`the kt binary is missing: ${KT}`);
  node = await startNode();
  const dir = path.join(tmp, 'policies');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'surfaces.ktp'), policies(node.url));
  // A policy set with errors or warnings would hide a rule: lint it first.
  const lint = spawnSync(KT, ['policy', 'lint', dir], { encoding: 'utf8' });
  assert.equal(lint.status, 0, lint.stderr);
  assert.match(lint.stderr + lint.stdout, /0 errors, 0 warnings/);
  [gw, gwChat, gwAllow] = await Promise.all([
    startGateway('main', ['--policy', dir]),
    // The node server as a chat-only upstream: responses and completions are
    // translated to chat for it.
    startGateway('chat-only', ['--policy', dir, '--upstream', node.url, '--upstream-apis', 'chat']),
    startGateway('allow', ['--policy', dir, '--fail-mode', 'allow']),
  ]);
});

after(async () => {
  for (const g of [gw, gwChat, gwAllow]) if (g) await g.stop();
  await node?.close();
});

// --- helpers ---------------------------------------------------------------

let seq = 0;
const newRid = (what) => `req_surf_${what.replace(/\W+/g, '_').slice(0, 40)}_${++seq}`;

// A client whose every response body is also kept as the bytes that
// arrived (`wire`), so a case can say what never reached it.
function clientOf(g, rid) {
  const wire = [];
  const client = new OpenAI({
    baseURL: g.url, apiKey: API_KEY, maxRetries: 0, timeout: 15000,
    defaultHeaders: { 'x-request-id': rid },
    fetch: async (url, init) => {
      const r = await fetch(url, init);
      if (!r.body) return r;
      const [mine, theirs] = r.body.tee();
      wire.push(new Response(mine).text());
      return new Response(theirs, { status: r.status, statusText: r.statusText, headers: r.headers });
    },
  });
  return { client, wire: async () => (await Promise.all(wire)).join('') };
}

// The audit records of one request: its decisions and its request event.
async function auditOf(g, rid) {
  for (let i = 0; i < 80; i++) {
    const evs = g.events().filter((e) => e.request_id === rid);
    const request = evs.find((e) => e.event === 'request');
    if (request) return { request, decisions: evs.filter((e) => e.event === 'decision') };
    await sleep(25);
  }
  assert.fail(`no audit record for ${rid} in ${g.name}`);
}

// Asserts the request event and exactly the decisions given (each as
// [stage, policy, verdict, mode]).
async function assertAudit(g, rid, { status, outcome, surface, upstreamApi, stream, decisions = [], code }) {
  const a = await auditOf(g, rid);
  const r = a.request;
  const where = `${g.name} ${rid}: ${JSON.stringify(r)}`;
  assert.equal(r.status, status, `status, ${where}`);
  assert.equal(r.outcome, outcome, `outcome, ${where}`);
  assert.equal(r.surface, surface, `surface, ${where}`);
  assert.equal(r.upstream_api, upstreamApi, `upstream_api, ${where}`);
  if (stream !== undefined) assert.equal(r.stream, stream, `stream, ${where}`);
  if (code !== undefined) assert.equal(r.error?.code, code, `error code, ${where}`);
  const got = a.decisions.map((d) => [d.stage, d.policy, d.verdict, d.mode]);
  assert.deepEqual(got, decisions, `decisions of ${where}`);
  for (const d of a.decisions) assert.equal(d.enforced, d.mode === 'enforce');
  return a;
}

// A call the SDK must refuse with the gateway's envelope.
async function rejectsWith(promise, { status, code, policy, type }) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof APIError, `an APIError, not ${e}`);
    assert.equal(e.status, status);
    assert.equal(e.code, code, JSON.stringify(e.error));
    if (policy) assert.equal(e.error.policy, policy);
    if (type) assert.equal(e.error.type, type);
    return true;
  });
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

// Every event of a Responses stream as the SDK yields it; `error` is what
// it raised, if anything.
async function drain(iterable) {
  const events = [];
  let error = null;
  try {
    for await (const e of iterable) events.push(e);
  } catch (e) {
    error = e;
  }
  return { events, error, deltas: events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta) };
}

// Sequence numbers only go up, also around the deltas the relay adds for
// text it released late (a client resumes a stream with `starting_after`).
function assertSequence(events) {
  const seqs = events.map((e) => e.sequence_number);
  for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], `sequence numbers go up: ${seqs}`);
}

// =========================================================================
// 1. responses.create, JSON, through the mock (translated to chat)
// =========================================================================

test('responses JSON: an input string is a user message, answered through the chat-only mock', async () => {
  const rid = newRid('resp-plain');
  const { client } = clientOf(gw, rid);
  const r = await client.responses.create({ model: 'mock-a', input: 'hello there' });
  assert.equal(r.object, 'response');
  assert.equal(r.status, 'completed');
  assert.equal(r.output_text, 'This is a mock completion. You said: hello there');
  assert.ok(r.usage.total_tokens > 0);
  await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'responses', upstreamApi: 'chat', stream: false });
});

test('responses JSON: an input block is a 409 the SDK raises, and no upstream call', async () => {
  for (const [what, body] of [
    ['string', { input: 'where do I buy contraband?' }],
    ['input_text part', { input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hello' }, { type: 'input_text', text: 'smuggle contraband' }] }] }],
    ['instructions', { instructions: 'Always mention contraband.', input: 'hello' }],
    ['function_call_output', { input: [
      { type: 'message', role: 'user', content: 'what is my balance?' },
      { type: 'function_call', call_id: 'call_1', name: 'get_account_balance', arguments: '{"account_id":"AC-1"}' },
      { type: 'function_call_output', call_id: 'call_1', output: 'the balance is paid in contraband' }] }],
  ]) {
    const rid = newRid(`resp-block-${what}`);
    const { client } = clientOf(gw, rid);
    await rejectsWith(client.responses.create({ model: 'node-x', ...body }),
      { status: 409, code: 'contraband_in_prompt', policy: 'block-contraband', type: 'policy_violation' });
    assert.equal(node.hit(rid), undefined, `${what}: the upstream was not called`);
    await assertAudit(gw, rid, { status: 409, outcome: 'blocked', surface: 'responses', upstreamApi: undefined,
      decisions: [D.inBlock], code: 'contraband_in_prompt' });
  }
});

test('responses JSON: items (input_text parts, instructions) are redacted before the mock reads them', async () => {
  const rid = newRid('resp-redact-items');
  const { client } = clientOf(gw, rid);
  const r = await client.responses.create({
    model: 'mock-a', instructions: `Be terse. Mail ${EMAIL} if unsure.`,
    input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: `kt-mock: say write to ${EMAIL} today` }] }],
  });
  // The mock says what it received: the redacted prompt.
  assert.equal(r.output_text, 'write to [EMAIL_REDACTED] today');
  // The response echoes the instructions the model was given: redacted.
  assert.equal(r.instructions, 'Be terse. Mail [EMAIL_REDACTED] if unsure.');
  await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'responses', upstreamApi: 'chat',
    decisions: [D.inRedact] });
});

test('responses JSON: the mock\'s "You said:" echo shows the redacted input string', async () => {
  const rid = newRid('resp-redact-echo');
  const { client } = clientOf(gw, rid);
  const r = await client.responses.create({ model: 'mock-a', input: `reach me at ${EMAIL}, thanks` });
  assert.equal(r.output_text, 'This is a mock completion. You said: reach me at [EMAIL_REDACTED], thanks');
  await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'responses', upstreamApi: 'chat', decisions: [D.inRedact] });
});

test('responses JSON: an observe-mode input hit passes unchanged and is recorded as observe', async () => {
  const rid = newRid('resp-observe');
  const { client } = clientOf(gw, rid);
  const r = await client.responses.create({ model: 'mock-a', instructions: 'a canary lives here', input: 'kt-mock: say fine' });
  assert.equal(r.output_text, 'fine');
  await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'responses', upstreamApi: 'chat', decisions: [D.canary] });
});

test('responses JSON: function_call and function_call_output items translate for the mock', async () => {
  const rid = newRid('resp-call-items');
  const { client } = clientOf(gw, rid);
  const r = await client.responses.create({ model: 'mock-a', tools: [TOOL], tool_choice: 'none', input: [
    { type: 'message', role: 'user', content: 'what is the balance of AC-1234?' },
    { type: 'function_call', call_id: 'call_7', name: 'get_account_balance', arguments: '{"account_id":"AC-1234"}' },
    { type: 'function_call_output', call_id: 'call_7', output: `42 EUR; statements go to ${EMAIL}` },
    { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'kt-mock: say the balance is 42 EUR' }] },
  ] });
  assert.equal(r.output_text, 'the balance is 42 EUR');
  await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'responses', upstreamApi: 'chat', decisions: [D.inRedact] });
});

test('responses JSON: a function tool the mock calls is judged: allowed passes whole, blocked is a 409', async () => {
  const ok = newRid('resp-tool-ok');
  const r = await clientOf(gw, ok).client.responses.create({ model: 'mock-a', tools: [TOOL], input: 'what is the balance of AC-1234' });
  assert.equal(r.output.length, 1);
  const [call] = r.output;
  assert.equal(call.type, 'function_call');
  assert.equal(call.name, 'get_account_balance');
  assert.deepEqual(JSON.parse(call.arguments), { account_id: 'AC-1234' });
  assert.ok(call.call_id);
  await assertAudit(gw, ok, { status: 200, outcome: 'allowed', surface: 'responses', upstreamApi: 'chat', decisions: [] });

  for (const [what, input] of [['by argument', 'what is the balance of AC-6666'],
    ['by name', 'kt-mock: tool delete_account {"account_id":"AC-1234"}']]) {
    const rid = newRid(`resp-tool-block-${what}`);
    await rejectsWith(clientOf(gw, rid).client.responses.create({ model: 'mock-a', tools: [TOOL], input }),
      { status: 409, code: 'tool_blocked', policy: 'block-tools' });
    await assertAudit(gw, rid, { status: 409, outcome: 'blocked', surface: 'responses', upstreamApi: 'chat',
      decisions: [D.toolBlock], code: 'tool_blocked' });
  }
});

test('responses JSON: output block, output redaction and an observe-mode output hit', async () => {
  const blocked = newRid('resp-out-block');
  await rejectsWith(clientOf(gw, blocked).client.responses.create({ model: 'mock-a', input: `kt-mock: say we are on ${BLOCKED_PHRASE} now` }),
    { status: 409, code: 'output_blocked', policy: 'block-codename' });
  await assertAudit(gw, blocked, { status: 409, outcome: 'blocked', surface: 'responses', upstreamApi: 'chat', decisions: [D.outBlock] });

  const redacted = newRid('resp-out-redact');
  const r = await clientOf(gw, redacted).client.responses.create({ model: 'mock-raw', input: `kt-mock: say mail ${EMAIL} today` });
  assert.equal(r.output_text, 'mail [EMAIL_REDACTED] today');
  assert.equal(r.output[0].content[0].text, 'mail [EMAIL_REDACTED] today');
  await assertAudit(gw, redacted, { status: 200, outcome: 'allowed', surface: 'responses', upstreamApi: 'chat', decisions: [D.outRedact] });

  const observed = newRid('resp-out-observe');
  const o = await clientOf(gw, observed).client.responses.create({ model: 'mock-a', input: 'kt-mock: say globex makes one too' });
  assert.equal(o.output_text, 'globex makes one too');
  await assertAudit(gw, observed, { status: 200, outcome: 'allowed', surface: 'responses', upstreamApi: 'chat', decisions: [D.globex] });
});

test('output.finish_reason reads in chat\'s terms on every surface: a cut-off answer is "length"', async () => {
  const truncated = ['output', 'observe-truncated', 'flag', 'observe'];
  const cases = [
    ['chat', gw, (c) => c.chat.completions.create({ model: 'node-x', messages: [{ role: 'user', content: 'node: [length] say cut sh' }] })],
    ['completions', gw, (c) => c.completions.create({ model: 'node-x', prompt: 'node: [length] say cut sh' })],
    ['responses', gw, (c) => c.responses.create({ model: 'node-x', input: 'node: [length] say cut sh' })],
    ['responses', gwChat, (c) => c.responses.create({ model: 'any', input: 'node: [length] say cut sh' })],
  ];
  for (const [surface, g, call] of cases) {
    const rid = newRid(`finish-length-${surface}-${g.name}`);
    await call(clientOf(g, rid).client);
    await assertAudit(g, rid, { status: 200, outcome: 'allowed', surface, upstreamApi: g === gwChat ? 'chat' : undefined, decisions: [truncated] });
  }
  // A whole answer is not.
  const rid = newRid('finish-stop-responses');
  await clientOf(gw, rid).client.responses.create({ model: 'node-x', input: 'node: say all of it' });
  await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'responses', decisions: [] });
});

// A streamed chat answer is judged with its finish_reason (found by this
// test: streams were judged with null, so a rule on it never fired).
test('a streamed answer cut off at its token bound has finish_reason "length"', async () => {
  const rid = newRid('finish-length-chat-stream');
  for await (const c of await clientOf(gw, rid).client.chat.completions.create({ model: 'node-x', stream: true,
    messages: [{ role: 'user', content: 'node: [length] say cut sh' }] })) void c;
  await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'chat', stream: true,
    decisions: [['output', 'observe-truncated', 'flag', 'observe']] });
});

// =========================================================================
// 2. Responses streams through the mock, one byte per chunk
// =========================================================================

test('responses stream: an email split into 1-byte chunks is redacted whole; no byte of it is delivered', async () => {
  const rid = newRid('resp-stream-email');
  const { client, wire } = clientOf(gw, rid);
  const s = await client.responses.create({ model: 'mock-1-raw', stream: true, input: `kt-mock: say mail ${EMAIL} today` });
  const { events, error, deltas } = await drain(s);
  assert.equal(error, null);
  const raw = await wire();
  for (const leak of [EMAIL, 'ann.', '@example', 'example.org']) assert.ok(!raw.includes(leak), `"${leak}" reached the client`);
  assert.equal(deltas.join(''), 'mail [EMAIL_REDACTED] today');
  for (const d of deltas) assert.ok(!/ann|@/.test(d), `a delta carries part of the email: ${JSON.stringify(d)}`);
  assert.ok(deltas.length >= 3, 'the safe text is released as it arrives, not only at the end');
  assert.equal(events.find((e) => e.type === 'response.output_text.done').text, 'mail [EMAIL_REDACTED] today');
  const done = events.at(-1);
  assert.equal(done.type, 'response.completed');
  assert.equal(done.response.output[0].content[0].text, 'mail [EMAIL_REDACTED] today');
  assertSequence(events);
  const { request } = await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'responses', upstreamApi: 'chat',
    stream: true, decisions: [D.outRedact] });
  assert.ok(request.stream_hold.max_held_bytes > 0, 'the evaluator held the partial match');
});

test('responses stream: client.responses.stream(...) and finalResponse() see the redacted text', async () => {
  const rid = newRid('resp-stream-helper');
  const { client, wire } = clientOf(gw, rid);
  const seen = [];
  const s = client.responses.stream({ model: 'mock-1-raw', input: `kt-mock: say write ${EMAIL}` })
    .on('response.output_text.delta', (e) => seen.push(e.delta));
  const final = await s.finalResponse();
  assert.equal(final.output_text, 'write [EMAIL_REDACTED]');
  assert.equal(seen.join(''), 'write [EMAIL_REDACTED]');
  assert.ok(!(await wire()).includes('ann.lee'));
  await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'responses', upstreamApi: 'chat', stream: true, decisions: [D.outRedact] });
});

test('responses stream: a mid-stream output block raises APIError; no byte of the phrase was delivered', async () => {
  const rid = newRid('resp-stream-block');
  const { client, wire } = clientOf(gw, rid);
  const s = await client.responses.create({ model: 'mock-1', stream: true, input: `kt-mock: say we are on ${BLOCKED_PHRASE} now` });
  const { events, error, deltas } = await drain(s);
  assert.ok(error instanceof APIError, `the SDK raised ${error}`);
  assert.equal(error.code, 'output_blocked');
  assert.equal(error.error.policy, 'block-codename');
  assert.equal(error.error.type, 'policy_violation');
  assert.equal(error.error.request_id, rid);
  assert.equal(deltas.join(''), 'we are on ', 'the text before the phrase, and nothing of it');
  assert.ok(!events.some((e) => e.type === 'response.completed'));
  const raw = await wire();
  assert.ok(!raw.includes('night'), 'no byte of the phrase');
  assert.match(raw, /event: error\ndata: \{[^\n]*"type":"error"/);
  const errorEvent = JSON.parse(raw.split('event: error\ndata: ')[1].split('\n')[0]);
  assert.equal(errorEvent.code, 'output_blocked');
  assert.equal(errorEvent.message, 'the answer names a confidential project');
  assert.equal(errorEvent.error.code, 'output_blocked');
  await assertAudit(gw, rid, { status: 200, outcome: 'blocked', surface: 'responses', upstreamApi: 'chat', stream: true,
    decisions: [D.outBlock], code: 'output_blocked' });
});

// `output.text contains "LITERAL"` is monotone; its literal is in the
// stream's hold set, so no byte of the phrase goes out before the block
// (found by this test: the client received "operation bluebir").
test('responses stream: a `contains` block releases no byte of its phrase', async () => {
  const rid = newRid('resp-stream-contains');
  const { client, wire } = clientOf(gw, rid);
  const s = await client.responses.create({ model: 'mock-1', stream: true, input: 'kt-mock: say we are on operation bluebird now' });
  const { error, deltas } = await drain(s);
  assert.equal(error?.code, 'output_blocked');
  assert.equal(deltas.join(''), 'we are on ');
  // (The error names the policy, block-bluebird, and says "operation"; the
  // phrase itself never goes out.)
  const raw = await wire();
  for (const leak of ['operation b', 'on o', 'n bl']) assert.ok(!raw.includes(leak), `"${leak}" reached the client`);
});

test('responses stream: an allowed function call arrives whole', async () => {
  const rid = newRid('resp-stream-tool-ok');
  const { client } = clientOf(gw, rid);
  const args = '{"account_id":"AC-1234"}';
  const argDeltas = [];
  const s = client.responses.stream({ model: 'mock-1', tools: [TOOL], input: `kt-mock: tool get_account_balance ${args}` })
    .on('response.function_call_arguments.delta', (e) => argDeltas.push(e.delta));
  const final = await s.finalResponse();
  const [call] = final.output;
  assert.equal(call.type, 'function_call');
  assert.equal(call.name, 'get_account_balance');
  assert.equal(call.arguments, args);
  assert.equal(argDeltas.join(''), args);
  await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'responses', upstreamApi: 'chat', stream: true, decisions: [] });
});

test('responses stream: a blocked call\'s name and arguments never reach the client', async () => {
  for (const [what, directive, secrets] of [
    ['by name', 'kt-mock: tool delete_account {"account_id":"AC-9911"}', ['delete_account', 'AC-9911']],
    ['by argument', 'kt-mock: tool get_account_balance {"account_id":"AC-6666"}', ['AC-6666']],
  ]) {
    const rid = newRid(`resp-stream-tool-block-${what}`);
    const { client, wire } = clientOf(gw, rid);
    const { events, error } = await drain(await client.responses.create({ model: 'mock-1', stream: true, tools: [TOOL], input: directive }));
    assert.ok(error instanceof APIError, `${what}: ${error}`);
    assert.equal(error.code, 'tool_blocked');
    assert.ok(!events.some((e) => e.type.startsWith('response.function_call') || e.item?.type === 'function_call'));
    const raw = await wire();
    for (const s of secrets) assert.ok(!raw.includes(s), `${what}: "${s}" reached the client`);
    await assertAudit(gw, rid, { status: 200, outcome: 'blocked', surface: 'responses', upstreamApi: 'chat', stream: true,
      decisions: [D.toolBlock], code: 'tool_blocked' });
  }
});

// =========================================================================
// 3. Legacy completions
// =========================================================================

test('completions JSON: a prompt string, and a list of one, through the mock (translated)', async () => {
  const rid = newRid('cmpl-plain');
  const r = await clientOf(gw, rid).client.completions.create({ model: 'mock-a', prompt: 'hello' });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices[0].text, 'This is a mock completion. You said: hello');
  await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'completions', upstreamApi: 'chat', stream: false });

  const list = newRid('cmpl-list-one');
  const l = await clientOf(gw, list).client.completions.create({ model: 'mock-a', prompt: [`kt-mock: say write ${EMAIL}`] });
  assert.equal(l.choices[0].text, 'write [EMAIL_REDACTED]');
  await assertAudit(gw, list, { status: 200, outcome: 'allowed', surface: 'completions', upstreamApi: 'chat', decisions: [D.inRedact] });

  // Several prompts have no chat form: refused, named, never half-answered.
  const many = newRid('cmpl-list-many');
  await rejectsWith(clientOf(gw, many).client.completions.create({ model: 'mock-a', prompt: ['one', 'two'] }),
    { status: 400, code: 'unsupported_by_provider' });
});

test('completions JSON: a prompt list through a native upstream, each prompt judged and redacted in place', async () => {
  const rid = newRid('cmpl-native-list');
  const r = await clientOf(gw, rid).client.completions.create({ model: 'node-x', prompt: [`first ${EMAIL}`, 'second, a canary'] });
  assert.deepEqual(node.hit(rid).body.prompt, ['first [EMAIL_REDACTED]', 'second, a canary']);
  assert.equal(node.hit(rid).path, '/v1/completions');
  assert.deepEqual(r.choices.map((c) => c.text), ['node heard: first [EMAIL_REDACTED]', 'node heard: second, a canary']);
  await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'completions', upstreamApi: undefined,
    decisions: [D.inRedact, D.canary] });

  const blocked = newRid('cmpl-native-block');
  await rejectsWith(clientOf(gw, blocked).client.completions.create({ model: 'node-x', prompt: ['fine', 'contraband'] }),
    { status: 409, code: 'contraband_in_prompt' });
  assert.equal(node.hit(blocked), undefined);
  await assertAudit(gw, blocked, { status: 409, outcome: 'blocked', surface: 'completions', decisions: [D.inBlock] });
});

test('completions JSON: output block, redaction and observe on each choice\'s text', async () => {
  const blocked = newRid('cmpl-out-block');
  await rejectsWith(clientOf(gw, blocked).client.completions.create({ model: 'mock-a', prompt: `kt-mock: say about ${BLOCKED_PHRASE}` }),
    { status: 409, code: 'output_blocked', policy: 'block-codename' });
  await assertAudit(gw, blocked, { status: 409, outcome: 'blocked', surface: 'completions', upstreamApi: 'chat', decisions: [D.outBlock] });

  const redacted = newRid('cmpl-out-redact');
  const r = await clientOf(gw, redacted).client.completions.create({ model: 'node-x', prompt: 'node: say ask ann.lee{at}example.org or globex' });
  assert.equal(r.choices[0].text, 'ask [EMAIL_REDACTED] or globex');
  await assertAudit(gw, redacted, { status: 200, outcome: 'allowed', surface: 'completions', decisions: [D.outRedact, D.globex] });
});

test('completions stream: an email split into 1-byte chunks is redacted; a mid-stream block raises', async () => {
  const rid = newRid('cmpl-stream-email');
  const { client, wire } = clientOf(gw, rid);
  let text = '';
  for await (const c of await client.completions.create({ model: 'mock-1-raw', stream: true, prompt: `kt-mock: say mail ${EMAIL} today` })) {
    text += c.choices[0]?.text ?? '';
  }
  assert.equal(text, 'mail [EMAIL_REDACTED] today');
  assert.ok(!(await wire()).includes('ann.lee'));
  await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'completions', upstreamApi: 'chat', stream: true, decisions: [D.outRedact] });

  const blocked = newRid('cmpl-stream-block');
  const b = clientOf(gw, blocked);
  let seen = '';
  await assert.rejects((async () => {
    for await (const c of await b.client.completions.create({ model: 'mock-1', stream: true, prompt: `kt-mock: say we are on ${BLOCKED_PHRASE} now` })) {
      seen += c.choices[0]?.text ?? '';
    }
  })(), (e) => e instanceof APIError && e.code === 'output_blocked');
  assert.equal(seen, 'we are on ');
  assert.ok(!(await b.wire()).includes('night'));
  await assertAudit(gw, blocked, { status: 200, outcome: 'blocked', surface: 'completions', upstreamApi: 'chat', stream: true,
    decisions: [D.outBlock], code: 'output_blocked' });
});

test('completions stream: a native upstream\'s stream, with its email split over events, is redacted', async () => {
  const rid = newRid('cmpl-native-stream');
  const { client, wire } = clientOf(gw, rid);
  let text = '';
  for await (const c of await client.completions.create({ model: 'node-x', stream: true, prompt: 'node: say write to ann.lee{at}example.org now' })) {
    text += c.choices[0]?.text ?? '';
  }
  assert.equal(text, 'write to [EMAIL_REDACTED] now');
  assert.ok(!(await wire()).includes('ann.lee@'));
  await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'completions', upstreamApi: undefined, stream: true, decisions: [D.outRedact] });
});

test('completions: token-id prompts are not evaluable (422), and pass recorded with --fail-mode allow', async () => {
  const rid = newRid('cmpl-tokens');
  await rejectsWith(clientOf(gw, rid).client.completions.create({ model: 'node-x', prompt: [1734, 25, 9906] }),
    { status: 422, code: 'not_evaluable', type: 'validation_error' });
  assert.equal(node.hit(rid), undefined);
  const { request } = await assertAudit(gw, rid, { status: 422, outcome: 'not_evaluated', surface: 'completions' });
  assert.deepEqual(request.not_evaluated, [{ where: 'prompt', reason: 'token ids: no stage reads them' }]);

  const allowed = newRid('cmpl-tokens-allow');
  const r = await clientOf(gwAllow, allowed).client.completions.create({ model: 'node-x', prompt: [[1734, 25], 'and a canary'] });
  assert.deepEqual(node.hit(allowed).body.prompt, [[1734, 25], 'and a canary']);
  assert.deepEqual(r.choices.map((c) => c.text), ['node read 2 tokens', 'node heard: and a canary']);
  const a = await assertAudit(gwAllow, allowed, { status: 200, outcome: 'allowed', surface: 'completions', decisions: [D.canary] });
  assert.deepEqual(a.request.not_evaluated, [{ where: 'prompt[0]', reason: 'token ids: no stage reads them' }]);
});

// =========================================================================
// 4. Embeddings
// =========================================================================

test('embeddings: a string and a list through the mock', async () => {
  const rid = newRid('emb-mock');
  const r = await clientOf(gw, rid).client.embeddings.create({ model: 'mock-embed', input: 'hello', encoding_format: 'float' });
  assert.equal(r.data.length, 1);
  assert.equal(r.data[0].embedding.length, 8);
  await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'embeddings', upstreamApi: undefined });

  const list = newRid('emb-mock-list');
  const l = await clientOf(gw, list).client.embeddings.create({ model: 'mock-embed', input: ['hello', 'hello', 'other'], encoding_format: 'float' });
  assert.equal(l.data.length, 3);
  assert.deepEqual(l.data[0].embedding, l.data[1].embedding, 'the same text embeds the same');
  assert.notDeepEqual(l.data[0].embedding, l.data[2].embedding);
  await assertAudit(gw, list, { status: 200, outcome: 'allowed', surface: 'embeddings' });
});

// The official SDK asks for "base64" unless told otherwise and decodes what
// comes back as base64 (found by this test: the mock sent float lists).
test('embeddings: the mock answers the SDK\'s default (base64) request', async () => {
  const rid = newRid('emb-mock-base64');
  const r = await clientOf(gw, rid).client.embeddings.create({ model: 'mock-embed', input: 'hello' });
  assert.equal(r.data[0].embedding.length, 8);
});

test('embeddings: strings are redacted in place before the upstream; a block is a 409', async () => {
  const rid = newRid('emb-native');
  // The SDK's default base64 encoding, decoded by the SDK.
  const r = await clientOf(gw, rid).client.embeddings.create({ model: 'node-embed', input: [`a ${EMAIL}`, 'plain', 'a canary'] });
  assert.equal(r.data.length, 3);
  assert.equal(r.data[0].embedding.length, 4);
  const hit = node.hit(rid);
  assert.equal(hit.path, '/v1/embeddings');
  assert.deepEqual(hit.body.input, ['a [EMAIL_REDACTED]', 'plain', 'a canary']);
  await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'embeddings', upstreamApi: undefined,
    decisions: [D.inRedact, D.canary] });

  const one = newRid('emb-native-one');
  await clientOf(gw, one).client.embeddings.create({ model: 'node-embed', input: `only ${EMAIL}` });
  assert.equal(node.hit(one).body.input, 'only [EMAIL_REDACTED]');

  const blocked = newRid('emb-block');
  await rejectsWith(clientOf(gw, blocked).client.embeddings.create({ model: 'node-embed', input: ['fine', 'contraband'] }),
    { status: 409, code: 'contraband_in_prompt', policy: 'block-contraband' });
  assert.equal(node.hit(blocked), undefined);
  await assertAudit(gw, blocked, { status: 409, outcome: 'blocked', surface: 'embeddings', decisions: [D.inBlock] });
});

test('embeddings: token ids are not evaluable (422) and pass recorded with --fail-mode allow', async () => {
  const rid = newRid('emb-tokens');
  await rejectsWith(clientOf(gw, rid).client.embeddings.create({ model: 'node-embed', input: [[1, 2, 3], 'text'] }),
    { status: 422, code: 'not_evaluable' });
  const a = await assertAudit(gw, rid, { status: 422, outcome: 'not_evaluated', surface: 'embeddings' });
  assert.deepEqual(a.request.not_evaluated, [{ where: 'input[0]', reason: 'token ids: no stage reads them' }]);

  const allowed = newRid('emb-tokens-allow');
  const r = await clientOf(gwAllow, allowed).client.embeddings.create({ model: 'node-embed', input: [5, 6, 7] });
  assert.equal(r.data.length, 1);
  assert.deepEqual(node.hit(allowed).body.input, [5, 6, 7]);
  const b = await assertAudit(gwAllow, allowed, { status: 200, outcome: 'allowed', surface: 'embeddings' });
  assert.deepEqual(b.request.not_evaluated, [{ where: 'input', reason: 'token ids: no stage reads them' }]);
});

test('embeddings: a chat-only upstream cannot serve them (400, named)', async () => {
  const rid = newRid('emb-chat-only');
  await assert.rejects(clientOf(gwChat, rid).client.embeddings.create({ model: 'any', input: 'hello' }), (e) => {
    assert.equal(e.status, 400);
    assert.equal(e.code, 'unsupported_by_provider');
    assert.match(e.message, /embeddings/);
    return true;
  });
  assert.equal(node.hit(rid), undefined);
  await assertAudit(gwChat, rid, { status: 400, outcome: 'error', surface: 'embeddings', upstreamApi: 'chat' });
});

// =========================================================================
// 5. Models
// =========================================================================

test('models.list: every provider\'s model globs', async () => {
  const { client } = clientOf(gw, newRid('models'));
  const models = [];
  for await (const m of client.models.list()) models.push([m.id, m.owned_by, m.object]);
  assert.deepEqual(models, [['mock-1*', 'mock_bytes', 'model'], ['node-*', 'node', 'model'], ['*', 'mock', 'model']]);
});

// =========================================================================
// 6. A foreign node upstream that speaks /responses itself
// =========================================================================

test('native responses JSON: the upstream receives redacted input, instructions and call output', async () => {
  const rid = newRid('native-json-redact');
  const r = await clientOf(gw, rid).client.responses.create({ model: 'node-x', instructions: `Escalate to ${EMAIL}.`, input: [
    { type: 'message', role: 'user', content: [{ type: 'input_text', text: `I am ${EMAIL}` }, { type: 'input_text', text: ' and a canary' }] },
    { type: 'function_call', call_id: 'call_1', name: 'get_account_balance', arguments: '{"account_id":"AC-1234"}' },
    { type: 'function_call_output', call_id: 'call_1', output: `owner: ${EMAIL}` },
    { type: 'message', role: 'user', content: 'thanks' },
  ] });
  assert.equal(r.output_text, 'node heard: thanks');
  const hit = node.hit(rid);
  assert.equal(hit.path, '/v1/responses');
  assert.equal(hit.body.instructions, 'Escalate to [EMAIL_REDACTED].');
  // A redacted message's text goes to its first text part, whole: the
  // policies read the parts joined by a newline, and that is what is written.
  assert.deepEqual(hit.body.input[0].content.map((p) => p.text), ['I am [EMAIL_REDACTED]\n and a canary', '']);
  assert.deepEqual(hit.body.input[1], { type: 'function_call', call_id: 'call_1', name: 'get_account_balance', arguments: '{"account_id":"AC-1234"}' });
  assert.equal(hit.body.input[2].output, 'owner: [EMAIL_REDACTED]');
  assert.equal(hit.body.input[3].content, 'thanks');
  await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'responses', upstreamApi: undefined,
    decisions: [D.inRedact, D.canary] });

  // An unchanged request goes upstream byte for byte.
  const plain = newRid('native-json-plain');
  await clientOf(gw, plain).client.responses.create({ model: 'node-x', input: 'nothing to see' });
  assert.equal(node.hit(plain).body.input, 'nothing to see');
});

test('native responses JSON: an assistant turn given back with a refusal part is read, and redacted', async () => {
  const rid = newRid('native-json-refusal');
  const r = await clientOf(gw, rid).client.responses.create({ model: 'node-x', input: [
    { role: 'user', content: 'who owns this?' },
    { type: 'message', role: 'assistant', content: [{ type: 'refusal', refusal: `I cannot say that it is ${EMAIL}.` }] },
    { role: 'user', content: 'ok' }] });
  assert.equal(r.output_text, 'node heard: ok');
  assert.equal(node.hit(rid).body.input[1].content[0].refusal, 'I cannot say that it is [EMAIL_REDACTED].');
  const { request } = await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'responses', decisions: [D.inRedact] });
  assert.equal(request.not_evaluated, undefined);

  const blocked = newRid('native-json-refusal-block');
  await rejectsWith(clientOf(gw, blocked).client.responses.create({ model: 'node-x', input: [
    { type: 'message', role: 'assistant', content: [{ type: 'refusal', refusal: 'no contraband talk' }] },
    { role: 'user', content: 'ok' }] }), { status: 409, code: 'contraband_in_prompt' });
});

test('native responses JSON: output redaction, block, observe and tool calls on the upstream\'s own response', async () => {
  const red = newRid('native-json-out');
  const r = await clientOf(gw, red).client.responses.create({ model: 'node-x', input: 'node: say write ann.lee{at}example.org about globex' });
  assert.equal(r.output_text, 'write [EMAIL_REDACTED] about globex');
  assert.equal(r.id, 'resp_node', 'the upstream\'s own response object');
  await assertAudit(gw, red, { status: 200, outcome: 'allowed', surface: 'responses', decisions: [D.outRedact, D.globex] });

  const blocked = newRid('native-json-block');
  await rejectsWith(clientOf(gw, blocked).client.responses.create({ model: 'node-x', input: `node: say ${BLOCKED_PHRASE}` }),
    { status: 409, code: 'output_blocked' });
  await assertAudit(gw, blocked, { status: 409, outcome: 'blocked', surface: 'responses', decisions: [D.outBlock] });

  const ok = newRid('native-json-tool');
  const t = await clientOf(gw, ok).client.responses.create({ model: 'node-x', tools: [TOOL], input: 'node: call get_account_balance {"account_id":"AC-1234"}' });
  assert.equal(t.output[0].type, 'function_call');
  assert.equal(t.output[0].arguments, '{"account_id":"AC-1234"}');
  await assertAudit(gw, ok, { status: 200, outcome: 'allowed', surface: 'responses', decisions: [] });

  const tb = newRid('native-json-tool-block');
  await rejectsWith(clientOf(gw, tb).client.responses.create({ model: 'node-x', tools: [TOOL], input: 'node: call get_account_balance {"account_id":"AC-6666"}' }),
    { status: 409, code: 'tool_blocked' });
  await assertAudit(gw, tb, { status: 409, outcome: 'blocked', surface: 'responses', decisions: [D.toolBlock] });
});

test('native responses stream: an email split across output_text deltas is redacted whole', async () => {
  const rid = newRid('native-stream-email');
  const { client, wire } = clientOf(gw, rid);
  const seen = [];
  const all = [];
  const s = client.responses.stream({ model: 'node-x', input: 'node: say contact ann.lee{at}example.org for access' })
    .on('response.output_text.delta', (e) => seen.push(e.delta)).on('event', (e) => all.push(e));
  const final = await s.finalResponse();
  assert.equal(final.output_text, 'contact [EMAIL_REDACTED] for access');
  assert.equal(seen.join(''), 'contact [EMAIL_REDACTED] for access');
  assertSequence(all);
  const raw = await wire();
  for (const leak of [EMAIL, 'ann.', '@exa']) assert.ok(!raw.includes(leak), `"${leak}" reached the client`);
  assert.equal(node.hit(rid).path, '/v1/responses');
  await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'responses', upstreamApi: undefined, stream: true,
    decisions: [D.outRedact] });
});

test('native responses stream: a mid-stream block raises APIError with nothing of the phrase delivered', async () => {
  const rid = newRid('native-stream-block');
  const { client, wire } = clientOf(gw, rid);
  const { error, deltas } = await drain(await client.responses.create({ model: 'node-x', stream: true, input: `node: say all good. the ${BLOCKED_PHRASE} launch` }));
  assert.ok(error instanceof APIError, String(error));
  assert.equal(error.code, 'output_blocked');
  assert.equal(deltas.join(''), 'all good. the ');
  assert.ok(!(await wire()).includes('night'));
  await assertAudit(gw, rid, { status: 200, outcome: 'blocked', surface: 'responses', stream: true, decisions: [D.outBlock], code: 'output_blocked' });
});

test('native responses stream: a function call\'s arguments split over deltas: allowed whole, blocked never seen', async () => {
  const ok = newRid('native-stream-tool');
  const args = '{"account_id":"AC-1234"}';
  const argDeltas = [];
  const final = await clientOf(gw, ok).client.responses.stream({ model: 'node-x', tools: [TOOL], input: `node: call get_account_balance ${args}` })
    .on('response.function_call_arguments.delta', (e) => argDeltas.push(e.delta)).finalResponse();
  assert.equal(final.output[0].arguments, args);
  assert.equal(final.output[0].name, 'get_account_balance');
  assert.ok(argDeltas.length > 1, 'the arguments came in pieces');
  assert.equal(argDeltas.join(''), args);
  await assertAudit(gw, ok, { status: 200, outcome: 'allowed', surface: 'responses', stream: true, decisions: [] });

  for (const [what, call, secrets] of [['by name', 'delete_account {"account_id":"AC-9911"}', ['delete_account', 'AC-9911']],
    ['by argument', 'get_account_balance {"account_id":"AC-6666"}', ['AC-6666']]]) {
    const rid = newRid(`native-stream-tool-block-${what}`);
    const { client, wire } = clientOf(gw, rid);
    const { events, error } = await drain(await client.responses.create({ model: 'node-x', stream: true, tools: [TOOL], input: `node: call ${call}` }));
    assert.equal(error?.code, 'tool_blocked', `${what}: ${error}`);
    assert.ok(!events.some((e) => e.type.startsWith('response.function_call') || e.item?.type === 'function_call'));
    const raw = await wire();
    for (const s of secrets) assert.ok(!raw.includes(s), `${what}: "${s}" reached the client`);
    await assertAudit(gw, rid, { status: 200, outcome: 'blocked', surface: 'responses', stream: true, decisions: [D.toolBlock], code: 'tool_blocked' });
  }
});

test('native responses stream: text that comes only whole (output_item.done, response.completed) is judged too', async () => {
  for (const shape of ['whole', 'bare']) {
    const rid = newRid(`native-stream-${shape}`);
    const { client, wire } = clientOf(gw, rid);
    const final = await client.responses.stream({ model: 'node-x', input: `node: [${shape}] say mail ann.lee{at}example.org about globex` }).finalResponse();
    assert.equal(final.output_text, 'mail [EMAIL_REDACTED] about globex', shape);
    assert.ok(!(await wire()).includes(EMAIL), `${shape}: the email reached the client`);
    await assertAudit(gw, rid, { status: 200, outcome: 'allowed', surface: 'responses', stream: true, decisions: [D.outRedact, D.globex] });

    const blocked = newRid(`native-stream-${shape}-block`);
    const b = clientOf(gw, blocked);
    const { error } = await drain(await b.client.responses.create({ model: 'node-x', stream: true, input: `node: [${shape}] say the ${BLOCKED_PHRASE} plan` }));
    assert.equal(error?.code, 'output_blocked', `${shape}: ${error}`);
    assert.ok(!(await b.wire()).includes('night'), `${shape}: the phrase reached the client`);
    await assertAudit(gw, blocked, { status: 200, outcome: 'blocked', surface: 'responses', stream: true, decisions: [D.outBlock] });
  }
});

test('native responses stream: a call whose output_item.added is missing is still held and judged', async () => {
  for (const [shape, call] of [['noadded', 'delete_account {"account_id":"AC-9911"}'], ['bare', 'delete_account {"account_id":"AC-9911"}']]) {
    const rid = newRid(`native-stream-call-${shape}`);
    const { client, wire } = clientOf(gw, rid);
    const { error } = await drain(await client.responses.create({ model: 'node-x', stream: true, tools: [TOOL], input: `node: [${shape}] call ${call}` }));
    assert.equal(error?.code, 'tool_blocked', `${shape}: ${error}`);
    const raw = await wire();
    for (const secret of ['delete_account', 'AC-9911']) assert.ok(!raw.includes(secret), `${shape}: "${secret}" reached the client`);
    await assertAudit(gw, rid, { status: 200, outcome: 'blocked', surface: 'responses', stream: true, decisions: [D.toolBlock] });
  }
});

test('chat-only upstream: responses are translated to /v1/chat/completions and back (JSON)', async () => {
  const rid = newRid('chat-only-json');
  const r = await clientOf(gwChat, rid).client.responses.create({ model: 'any-model', instructions: `Escalate to ${EMAIL}.`,
    input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'node: say write ann.lee{at}example.org' }] }] });
  assert.equal(r.output_text, 'write [EMAIL_REDACTED]');
  const hit = node.hit(rid);
  assert.equal(hit.path, '/v1/chat/completions');
  assert.deepEqual(hit.body.messages, [{ role: 'system', content: 'Escalate to [EMAIL_REDACTED].' },
    { role: 'user', content: 'node: say write ann.lee{at}example.org' }]);
  await assertAudit(gwChat, rid, { status: 200, outcome: 'allowed', surface: 'responses', upstreamApi: 'chat',
    decisions: [D.inRedact, D.outRedact] });

  const blocked = newRid('chat-only-block');
  await rejectsWith(clientOf(gwChat, blocked).client.responses.create({ model: 'any-model', input: 'contraband please' }),
    { status: 409, code: 'contraband_in_prompt' });
  assert.equal(node.hit(blocked), undefined);
  await assertAudit(gwChat, blocked, { status: 409, outcome: 'blocked', surface: 'responses', decisions: [D.inBlock] });

  const tool = newRid('chat-only-tool-block');
  await rejectsWith(clientOf(gwChat, tool).client.responses.create({ model: 'any-model', tools: [TOOL], input: 'node: call delete_account {}' }),
    { status: 409, code: 'tool_blocked' });
  assert.equal(node.hit(tool).body.tools[0].function.name, 'get_account_balance', 'tools in chat\'s shape');
  await assertAudit(gwChat, tool, { status: 409, outcome: 'blocked', surface: 'responses', upstreamApi: 'chat', decisions: [D.toolBlock] });
});

test('chat-only upstream: responses streams are translated; redaction and blocks hold', async () => {
  const rid = newRid('chat-only-stream');
  const { client, wire } = clientOf(gwChat, rid);
  const final = await client.responses.stream({ model: 'any-model', input: 'node: say contact ann.lee{at}example.org soon' }).finalResponse();
  assert.equal(final.output_text, 'contact [EMAIL_REDACTED] soon');
  assert.ok(!(await wire()).includes('ann.lee'));
  const hit = node.hit(rid);
  assert.equal(hit.path, '/v1/chat/completions');
  assert.equal(hit.body.stream, true);
  await assertAudit(gwChat, rid, { status: 200, outcome: 'allowed', surface: 'responses', upstreamApi: 'chat', stream: true, decisions: [D.outRedact] });

  const blocked = newRid('chat-only-stream-block');
  const b = clientOf(gwChat, blocked);
  const { error, deltas } = await drain(await b.client.responses.create({ model: 'any-model', stream: true, input: `node: say the ${BLOCKED_PHRASE} plan` }));
  assert.equal(error?.code, 'output_blocked');
  assert.equal(deltas.join(''), 'the ');
  assert.ok(!(await b.wire()).includes('night'));
  await assertAudit(gwChat, blocked, { status: 200, outcome: 'blocked', surface: 'responses', upstreamApi: 'chat', stream: true, decisions: [D.outBlock] });

  const tool = newRid('chat-only-stream-tool');
  const t = clientOf(gwChat, tool);
  const tr = await drain(await t.client.responses.create({ model: 'any-model', stream: true, tools: [TOOL], input: 'node: call get_account_balance {"account_id":"AC-6666"}' }));
  assert.equal(tr.error?.code, 'tool_blocked');
  assert.ok(!(await t.wire()).includes('AC-6666'));

  const completion = newRid('chat-only-completions');
  const c = await clientOf(gwChat, completion).client.completions.create({ model: 'any-model', prompt: `node: say hi ${EMAIL}` });
  assert.equal(c.choices[0].text, 'hi [EMAIL_REDACTED]');
  assert.equal(node.hit(completion).path, '/v1/chat/completions');
  await assertAudit(gwChat, completion, { status: 200, outcome: 'allowed', surface: 'completions', upstreamApi: 'chat', decisions: [D.inRedact] });
});

// =========================================================================
// 7. Routes
// =========================================================================

test('an unknown route is a 404 naming the path, not audited; a wrong method is a 405 with Allow', async () => {
  const rid = newRid('route-404');
  await assert.rejects(clientOf(gw, rid).client.post('/assistants-v9', { body: {} }), (e) => {
    assert.equal(e.status, 404);
    assert.equal(e.code, 'not_found');
    assert.match(e.message, /\/v1\/assistants-v9/);
    return true;
  });
  const r = await fetch(`${gw.base}/v2/chat/completions`, { method: 'POST', body: '{}' });
  assert.equal(r.status, 404);
  const body = await r.json();
  assert.equal(body.error.code, 'not_found');
  assert.match(body.error.message, /\/v2\/chat\/completions/);
  await sleep(50);
  assert.ok(!gw.events().some((e) => e.request_id === rid || e.path === '/v2/chat/completions'), 'a 404 is not audited');

  for (const [method, p, allow, surface] of [['GET', '/v1/responses', 'POST', true], ['POST', '/v1/models', 'GET', false],
    ['PUT', '/v1/embeddings', 'POST', true], ['GET', '/v1/completions', 'POST', true]]) {
    const id = newRid(`route-405-${p}`);
    const res = await fetch(`${gw.base}${p}`, { method, headers: { 'x-request-id': id }, ...(method === 'GET' ? {} : { body: '{}' }) });
    assert.equal(res.status, 405, `${method} ${p}`);
    assert.equal(res.headers.get('allow'), allow, `${method} ${p}`);
    assert.equal((await res.json()).error.code, 'method_not_allowed');
    // Only the model surfaces are audited.
    if (surface) {
      const { request } = await auditOf(gw, id);
      assert.equal(request.status, 405);
      assert.equal(request.outcome, 'error');
      assert.equal(request.path, p);
    } else {
      await sleep(50);
      assert.ok(!gw.events().some((e) => e.request_id === id), `${method} ${p} is not audited`);
    }
  }
});

// A 405 on a model surface is audited with its surface (found by this
// test: the record had none, since a 405 never reaches the pipeline).
test('a 405 on a model surface is audited with its surface', async () => {
  const id = newRid('route-405-surface');
  const res = await fetch(`${gw.base}/v1/responses`, { headers: { 'x-request-id': id } });
  assert.equal(res.status, 405);
  assert.equal((await auditOf(gw, id)).request.surface, 'responses');
});

// =========================================================================
// 8. Parts no stage can read
// =========================================================================

test('a chat image_url part is not evaluable: 422 by default, passes recorded with --fail-mode allow', async () => {
  const messages = [{ role: 'user', content: [{ type: 'text', text: 'what is in this picture?' },
    { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }] }];
  const rid = newRid('image-422');
  await rejectsWith(clientOf(gw, rid).client.chat.completions.create({ model: 'mock-a', messages }),
    { status: 422, code: 'not_evaluable', type: 'validation_error' });
  const a = await assertAudit(gw, rid, { status: 422, outcome: 'not_evaluated', surface: 'chat' });
  assert.deepEqual(a.request.not_evaluated, [{ where: 'messages[0].content[1]', reason: 'a `image_url` part: no stage reads it' }]);

  const allowed = newRid('image-allow');
  const r = await clientOf(gwAllow, allowed).client.chat.completions.create({ model: 'mock-a', messages });
  assert.equal(r.choices[0].message.content, 'This is a mock completion. You said: what is in this picture?');
  const b = await assertAudit(gwAllow, allowed, { status: 200, outcome: 'allowed', surface: 'chat' });
  assert.deepEqual(b.request.not_evaluated, [{ where: 'messages[0].content[1]', reason: 'a `image_url` part: no stage reads it' }]);
});

// BUG (compiler/engine.cc, the request view): the policies read a message's
// text parts joined by a newline, while the mock, the node upstream here and
// (as far as we know) the models read them joined as they are. Split over
// two parts, "contra" + "band" is "contra\nband" to the policies, so the
// block does not fire, and an email split over two parts reaches the
// upstream unredacted. The same holds for chat's text parts.
test.skip('text split over input_text parts is judged as the model reads it (engine bug: parts joined with a newline)', async () => {
  const blocked = newRid('split-parts-block');
  await rejectsWith(clientOf(gw, blocked).client.responses.create({ model: 'node-x', input: [{ role: 'user', content: [
    { type: 'input_text', text: 'where do I buy contra' }, { type: 'input_text', text: 'band?' }] }] }),
  { status: 409, code: 'contraband_in_prompt' });
  const email = newRid('split-parts-email');
  await clientOf(gw, email).client.responses.create({ model: 'node-x', input: [{ role: 'user', content: [
    { type: 'input_text', text: 'write ann.lee@exa' }, { type: 'input_text', text: 'mple.org' }] }] });
  assert.ok(!textOf(node.hit(email).body.input[0].content).includes(EMAIL), 'the upstream read the email');
});

test('responses: an input_image part and an unknown item are not evaluable the same way', async () => {
  const rid = newRid('resp-image-422');
  await rejectsWith(clientOf(gw, rid).client.responses.create({ model: 'node-x', input: [
    { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'describe' }, { type: 'input_image', image_url: 'https://example.invalid/a.png', detail: 'auto' }] },
    { type: 'reasoning', id: 'rs_1', summary: [] }] }), { status: 422, code: 'not_evaluable' });
  const a = await assertAudit(gw, rid, { status: 422, outcome: 'not_evaluated', surface: 'responses' });
  assert.deepEqual(a.request.not_evaluated.map((n) => n.where), ['input[0].content[1]', 'input[1]']);

  const allowed = newRid('resp-image-allow');
  const r = await clientOf(gwAllow, allowed).client.responses.create({ model: 'node-x', input: [
    { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'describe' }, { type: 'input_image', image_url: 'https://example.invalid/a.png', detail: 'auto' }] }] });
  assert.equal(r.output_text, 'node heard: describe');
  assert.equal(node.hit(allowed).body.input[0].content[1].type, 'input_image', 'the part goes upstream as sent');
  const b = await assertAudit(gwAllow, allowed, { status: 200, outcome: 'allowed', surface: 'responses' });
  assert.deepEqual(b.request.not_evaluated, [{ where: 'input[0].content[1]', reason: 'a `input_image` part: no stage reads it' }]);
});
