// A fake OpenAI upstream for kt's integration tests and benchmarks. It
// speaks the chat-completions wire format (JSON, SSE, tool calls, errors)
// and misbehaves on request, steered by a directive in the last user
// message:
//
//   fake:say TEXT             reply TEXT
//   fake:chunks A|B|C         stream exactly these content pieces ({at} is
//                             an @, so a prompt can ask for an email the
//                             gateway's input stage would redact)
//   fake:tool NAME JSON       reply with one tool call
//   fake:status CODE [KEY]    answer CODE (with retry-after: 0); with KEY,
//                             only the first request carrying KEY
//   fake:slow MS              wait MS before the response headers
//   fake:drip N               stream N pieces, 50 ms apart (cancellation)
//   fake:malformed            stream an event that is not JSON
//   fake:truncate             stream two pieces, then close without [DONE]
//   fake:badjson              answer 200 with a body that is not JSON
//   fake:hangup               close the connection without answering
//
// Every request is recorded (method, path, headers, body), and so is a
// client that went away before a response was complete (`cancelled`).
import http from 'node:http';
import https from 'node:https';

export function startFakeUpstream({ name = 'fake', port = 0, quiet = true, tls = null, record = true } = {}) {
  // `record: false` (benchmarks) keeps memory flat over millions of requests.
  const state = { name, record, requests: [], cancelled: [], seenKeys: new Set() };
  const server = (tls ? https : http).createServer(tls ?? {}, (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (body += c));
    req.on('end', () => handle(state, req, res, body));
  });
  server.keepAliveTimeout = 60000;
  return new Promise((resolve) => {
    server.listen(port, '127.0.0.1', () => {
      const url = `${tls ? 'https://localhost' : 'http://127.0.0.1'}:${server.address().port}/v1`;
      resolve({ url, state, close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }) });
      if (!quiet) console.log(`fake upstream ${name} on ${url}`);
    });
  });
}

function lastUser(messages) {
  let text = '';
  for (const m of messages || []) {
    if (m.role !== 'user') continue;
    text = typeof m.content === 'string' ? m.content
      : Array.isArray(m.content) ? m.content.filter((p) => p.type === 'text').map((p) => p.text).join('') : '';
  }
  return text;
}

function completion(model, message, finish) {
  return {
    id: 'chatcmpl-fake', object: 'chat.completion', created: 1700000000, model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: finish }],
    usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 },
  };
}

function chunk(model, delta, finish = null) {
  return { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 1700000000, model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function handle(state, req, res, raw) {
  if (req.method === 'GET' && req.url.endsWith('/models')) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ object: 'list', data: [{ id: 'gpt-4o', object: 'model', owned_by: state.name }] }));
    return;
  }
  let body;
  try { body = JSON.parse(raw); } catch { body = null; }
  const record = { method: req.method, path: req.url, headers: req.headers, body, raw };
  if (state.record) state.requests.push(record);
  if (!body || !Array.isArray(body.messages)) {
    res.writeHead(400, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'bad request', type: 'invalid_request_error' } }));
    return;
  }
  const prompt = lastUser(body.messages);
  const model = body.model;
  const directive = prompt.match(/fake:(\w+)\s*(.*)$/s);
  const verb = directive ? directive[1] : '';
  const arg = directive ? directive[2].trim() : '';
  let finished = false;
  res.on('close', () => { if (!finished && state.record) state.cancelled.push(record); });
  const end = (data) => { finished = true; res.end(data); };

  if (verb === 'status') {
    const [code, key] = arg.split(/\s+/);
    if (!key || !state.seenKeys.has(key)) {
      if (key) state.seenKeys.add(key);
      res.writeHead(Number(code), { 'content-type': 'application/json', 'retry-after': '0', 'x-ratelimit-remaining-requests': '0' });
      end(JSON.stringify({ error: { message: `fake ${code}`, type: 'rate_limit_error', code: 'rate_limit_exceeded' } }));
      return;
    }
  }
  if (verb === 'slow') await sleep(Number(arg));
  if (verb === 'badjson' && !body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    end('{"id": "chatcmpl-fake", "choices": [');
    return;
  }
  if (verb === 'hangup') {
    finished = true;
    req.socket.destroy();
    return;
  }

  let pieces = [`${state.name} says: `, 'hello ', 'from ', 'upstream'];
  let tool = null;
  if (verb === 'say') pieces = [arg];
  if (verb === 'chunks') pieces = arg.split('|').map((p) => p.replaceAll('{at}', '@'));
  if (verb === 'drip') pieces = Array.from({ length: Number(arg) }, (_, i) => `piece ${i} `);
  if (verb === 'tool') {
    const sp = arg.indexOf(' ');
    tool = { name: sp < 0 ? arg : arg.slice(0, sp), arguments: sp < 0 ? '{}' : arg.slice(sp + 1) };
  }
  const text = pieces.join('');

  if (!body.stream) {
    const message = tool
      ? { role: 'assistant', content: null, tool_calls: [{ id: 'call_fake1', type: 'function', function: tool }] }
      : { role: 'assistant', content: text };
    res.writeHead(200, { 'content-type': 'application/json' });
    end(JSON.stringify(completion(model, message, tool ? 'tool_calls' : 'stop')));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const send = (obj) => res.write(`data: ${typeof obj === 'string' ? obj : JSON.stringify(obj)}\n\n`);
  send(chunk(model, { role: 'assistant', content: tool ? null : '' }));
  if (verb === 'malformed') {
    send(chunk(model, { content: 'ok ' }));
    res.write('data: {this is not json\n\n');
    await sleep(20);
    end();
    return;
  }
  if (tool) {
    send(chunk(model, { tool_calls: [{ index: 0, id: 'call_fake1', type: 'function', function: { name: tool.name, arguments: '' } }] }));
    const args = tool.arguments;
    const mid = Math.floor(args.length / 2);
    for (const part of [args.slice(0, mid), args.slice(mid)]) {
      send(chunk(model, { tool_calls: [{ index: 0, function: { arguments: part } }] }));
    }
    send(chunk(model, {}, 'tool_calls'));
  } else {
    for (let i = 0; i < pieces.length; i++) {
      if (res.destroyed) return;
      send(chunk(model, { content: pieces[i] }));
      if (verb === 'drip') await sleep(50);
      if (verb === 'truncate' && i === 1) { await sleep(10); end(); return; }
    }
    send(chunk(model, {}, 'stop'));
  }
  if (body.stream_options?.include_usage) {
    send({ id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 1700000000, model, choices: [],
      usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 } });
  }
  send('[DONE]');
  end();
}

// Standalone: `node fake_upstream.mjs [PORT]` (the gateway benchmark uses it).
if (import.meta.url === `file://${process.argv[1]}`) {
  startFakeUpstream({ port: Number(process.argv[2] || 0), quiet: false, record: false });
}
