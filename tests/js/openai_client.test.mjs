// `coppice serve` driven by the official OpenAI JavaScript client (npm `openai`, pinned in
// package.json). Starts the server on a random loopback port; run with `node --test`.
// Env: COPPICE_BIN (the coppice binary), COPPICE_SHARED_DIR (holds models/stories260K.gguf).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
if (!existsSync(path.join(here, 'node_modules', 'openai'))) {
  console.log('js_openai_client: SKIPPED: tests/js/node_modules is missing (run scripts/setup.sh or npm ci in tests/js)');
  process.exit(0);
}
const { default: OpenAI } = await import('openai');

const bin = process.env.COPPICE_BIN ?? path.join(here, '../../build/release/bin/coppice');
const shared = process.env.COPPICE_SHARED_DIR ?? path.join(here, '../../../shared');
const model = path.join(shared, 'models/stories260K.gguf');
const KEY = 'sk-js-test-' + Math.random().toString(16).slice(2);

let server;
let baseURL;
let client;
let stderr = '';

before(async () => {
  server = spawn(bin, ['serve', '-m', model, '--port', '0', '--api-key', KEY, '-t', '2', '-c', '512'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server.stderr.on('data', (d) => { stderr += d; });
  baseURL = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('server did not start:\n' + stderr)), 30000);
    server.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[0-9.]+:\d+)/);
      if (m) { clearTimeout(timer); resolve(m[1] + '/v1'); }
    });
    server.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited ${code}:\n${stderr}`)); });
  });
  client = new OpenAI({ apiKey: KEY, baseURL, maxRetries: 0, timeout: 60000 });
});

after(async () => {
  if (!server || server.exitCode !== null) return;
  const exited = new Promise((resolve) => server.on('exit', (code, sig) => resolve({ code, sig })));
  server.kill('SIGTERM');
  const { code } = await exited;
  assert.equal(code, 0, 'graceful shutdown exits 0');
});

const MODEL = 'stories260K';
const greedy = { model: MODEL, temperature: 0 };

test('models lists the loaded model', async () => {
  const list = await client.models.list();
  const ids = list.data.map((m) => m.id);
  assert.deepEqual(ids, ['stories260K.gguf']);
});

test('completions: greedy continuation', async () => {
  const r = await client.completions.create({ ...greedy, prompt: 'Once upon a time', max_tokens: 20 });
  assert.equal(r.object, 'text_completion');
  assert.match(r.choices[0].text, /^, there was a little girl named Lily/);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 20);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 20);
});

test('chat: non-streaming', async () => {
  const r = await client.chat.completions.create({
    ...greedy,
    messages: [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'Tell me a story.' }],
    max_completion_tokens: 16,
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 0);
});

test('chat: streaming with include_usage equals the non-streaming text', async () => {
  const body = { ...greedy, messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 24 };
  const whole = await client.chat.completions.create(body);
  const stream = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta?.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.ok(usage, 'a usage chunk arrives');
  assert.equal(usage.completion_tokens, whole.usage.completion_tokens);
  assert.equal(usage.prompt_tokens, whole.usage.prompt_tokens);
});

test('completions: streaming', async () => {
  const whole = await client.completions.create({ ...greedy, prompt: 'The little dog', max_tokens: 20 });
  const stream = await client.completions.create({ ...greedy, prompt: 'The little dog', max_tokens: 20, stream: true });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
  assert.equal(text, whole.choices[0].text);
});

test('n = 3 gives three seeded choices', async () => {
  const body = { model: MODEL, messages: [{ role: 'user', content: 'Tell me about a cat.' }], n: 3, seed: 11,
                 temperature: 1.0, max_tokens: 12 };
  const a = await client.chat.completions.create(body);
  const b = await client.chat.completions.create(body);
  assert.equal(a.choices.length, 3);
  assert.deepEqual(a.choices.map((c) => c.index), [0, 1, 2]);
  assert.deepEqual(a.choices.map((c) => c.message.content), b.choices.map((c) => c.message.content));
  const stream = await client.chat.completions.create({ ...body, stream: true });
  const texts = ['', '', ''];
  for await (const chunk of stream) for (const c of chunk.choices) texts[c.index] += c.delta?.content ?? '';
  assert.deepEqual(texts, a.choices.map((c) => c.message.content));
});

test('logprobs and top_logprobs', async () => {
  const r = await client.chat.completions.create({
    ...greedy, messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 8, logprobs: true, top_logprobs: 3,
  });
  const lp = r.choices[0].logprobs.content;
  assert.equal(lp.length, r.usage.completion_tokens);
  for (const t of lp) {
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 3);
    assert.equal(t.top_logprobs[0].token, t.token);
    assert.ok(Array.isArray(t.bytes));
  }
  const c = await client.completions.create({ ...greedy, prompt: 'Once upon a time', max_tokens: 5, logprobs: 2 });
  assert.equal(c.choices[0].logprobs.tokens.length, 5);
  assert.equal(c.choices[0].logprobs.token_logprobs.length, 5);
  assert.equal(Object.keys(c.choices[0].logprobs.top_logprobs[0]).length, 2);
});

test('stop sequences end the text before the stop string, streaming too', async () => {
  const full = (await client.completions.create({ ...greedy, prompt: 'Once upon a time', max_tokens: 40 })).choices[0].text;
  const stop = 'little girl';
  const at = full.indexOf(stop);
  assert.ok(at > 0, full);
  const r = await client.completions.create({ ...greedy, prompt: 'Once upon a time', max_tokens: 40, stop: [stop, 'zzz'] });
  assert.equal(r.choices[0].text, full.slice(0, at));
  assert.equal(r.choices[0].finish_reason, 'stop');
  const stream = await client.completions.create({ ...greedy, prompt: 'Once upon a time', max_tokens: 40, stop, stream: true });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
  assert.equal(text, full.slice(0, at));
});

test('errors surface as APIError with the right status', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], bogus_field: 1 }),
    (e) => e instanceof OpenAI.APIError && e.status === 400 && e instanceof OpenAI.BadRequestError && /bogus_field/.test(e.message));
  await assert.rejects(
    client.completions.create({ model: MODEL, prompt: 'x', temperature: 'hot' }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'temperature');
  await assert.rejects(
    client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
    (e) => e instanceof OpenAI.NotFoundError && e.status === 404 && e.code === 'model_not_found');
  const wrong = new OpenAI({ apiKey: 'sk-wrong', baseURL, maxRetries: 0 });
  await assert.rejects(
    wrong.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }),
    (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  await assert.rejects(
    client.completions.create({ model: MODEL, prompt: 'Once upon a time '.repeat(200), max_tokens: 4 }),
    (e) => e instanceof OpenAI.BadRequestError && e.code === 'context_length_exceeded');
});
