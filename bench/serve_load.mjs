#!/usr/bin/env node
// Load generator for OpenAI-compatible servers (coppice serve, llama.cpp's llama-server, ...).
// Keeps C streaming requests in flight for a fixed time per concurrency level, with a mix of
// short and long prompts, and reports output tokens/s, TTFT and TPOT (p50/p99) per level.
// Node 18+ only (built-in fetch); no packages needed.
//
//   node bench/serve_load.mjs --url http://127.0.0.1:8080/v1 --concurrency 1,4,16 --duration 30
//   node bench/serve_load.mjs --url http://127.0.0.1:8081/v1 --extra '{"ignore_eos":true}'   # llama-server
//
// TTFT: request sent -> first non-empty text chunk. TPOT: (last chunk - first chunk) /
// (output tokens - 1) per request. Output tokens come from the usage chunk
// (stream_options.include_usage) when the server sends one, else from the chunk count.
import { parseArgs } from 'node:util';

const { values: a } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:8080/v1' },
    model: { type: 'string', default: '' },
    'api-key': { type: 'string', default: process.env.OPENAI_API_KEY ?? '' },
    concurrency: { type: 'string', default: '1,4' },
    duration: { type: 'string', default: '10' },          // seconds per concurrency level
    'max-tokens': { type: 'string', default: '128' },
    'long-fraction': { type: 'string', default: '0.25' },  // share of long prompts
    'long-words': { type: 'string', default: '600' },      // size of a long prompt
    endpoint: { type: 'string', default: 'completions' },  // completions | chat
    temperature: { type: 'string', default: '0' },
    extra: { type: 'string', default: '{}' },              // merged into every request body
    seed: { type: 'string', default: '1' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (a.help) {
  console.log('usage: serve_load.mjs [--url URL/v1] [--model ID] [--api-key KEY] [--concurrency 1,4,16,64]\n' +
    '  [--duration SEC] [--max-tokens N] [--long-fraction F] [--long-words W] [--endpoint completions|chat]\n' +
    '  [--temperature T] [--extra JSON] [--seed S] [--json]');
  process.exit(0);
}

const base = a.url.replace(/\/+$/, '');
const headers = { 'Content-Type': 'application/json' };
if (a['api-key']) headers.Authorization = `Bearer ${a['api-key']}`;
const extra = JSON.parse(a.extra);

// Deterministic prompt mix (xorshift32), so runs against different servers see the same load.
let rng = Number(a.seed) >>> 0 || 1;
const rand = () => { rng ^= rng << 13; rng >>>= 0; rng ^= rng >>> 17; rng ^= rng << 5; rng >>>= 0; return rng / 2 ** 32; };
const openers = ['Once upon a time', 'The little dog', 'Tom and Sue went to the park', 'One day, a bird',
  'Lily had a red ball', 'There was a big tree', 'The sun was hot and', 'Mom said'];
const story = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. ' +
  'One day, she saw a big red ball under a tree. She ran to get it, but a small dog got there first. ';
function makePrompt() {
  const opener = openers[Math.floor(rand() * openers.length)];
  if (rand() >= Number(a['long-fraction'])) return { kind: 'short', text: opener };
  const words = story.split(' ');
  const n = Number(a['long-words']);
  const out = [];
  for (let i = 0; out.length < n; ++i) out.push(words[(i + Math.floor(rand() * words.length)) % words.length]);
  return { kind: 'long', text: out.join(' ') + '. ' + opener };
}

async function modelId() {
  if (a.model) return a.model;
  const r = await fetch(`${base}/models`, { headers });
  if (!r.ok) throw new Error(`GET /models: ${r.status} ${await r.text()}`);
  return (await r.json()).data[0].id;
}

async function oneRequest(model, prompt) {
  const chat = a.endpoint === 'chat';
  const body = {
    model, max_tokens: Number(a['max-tokens']), temperature: Number(a.temperature), stream: true,
    stream_options: { include_usage: true }, ...extra,
  };
  if (chat) body.messages = [{ role: 'user', content: prompt.text }];
  else body.prompt = prompt.text;
  const t0 = performance.now();
  const res = await fetch(`${base}/${chat ? 'chat/completions' : 'completions'}`, {
    method: 'POST', headers, body: JSON.stringify(body),
  });
  if (!res.ok) return { ok: false, status: res.status, error: (await res.text()).slice(0, 200) };
  let first = 0, last = 0, chunks = 0, usageTokens = 0, buf = '';
  const decoder = new TextDecoder();
  for await (const part of res.body) {
    buf += decoder.decode(part, { stream: true });
    let at;
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, at).trim();
      buf = buf.slice(at + 2);
      if (!ev.startsWith('data:')) continue;
      const data = ev.slice(5).trim();
      if (data === '[DONE]') continue;
      const j = JSON.parse(data);
      if (j.usage?.completion_tokens) usageTokens = j.usage.completion_tokens;
      for (const c of j.choices ?? []) {
        const text = chat ? c.delta?.content : c.text;
        if (!text) continue;
        const now = performance.now();
        if (!first) first = now;
        last = now;
        ++chunks;
      }
    }
  }
  const tokens = usageTokens || chunks;
  return {
    ok: true, kind: prompt.kind, tokens, ttft: first ? first - t0 : NaN,
    tpot: tokens > 1 && first ? (last - first) / (tokens - 1) : NaN, total: performance.now() - t0,
  };
}

function pct(xs, p) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((x, y) => x - y);
  if (!v.length) return NaN;
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil((p / 100) * v.length) - 1))];
}

async function level(model, conc, seconds) {
  const results = [];
  const end = performance.now() + seconds * 1000;
  const t0 = performance.now();
  async function worker() {
    while (performance.now() < end) {
      try {
        results.push(await oneRequest(model, makePrompt()));
      } catch (e) {
        results.push({ ok: false, status: 0, error: String(e).slice(0, 200) });
      }
    }
  }
  await Promise.all(Array.from({ length: conc }, worker));
  const wall = (performance.now() - t0) / 1000;
  const ok = results.filter((r) => r.ok);
  const tokens = ok.reduce((s, r) => s + r.tokens, 0);
  return {
    concurrency: conc, requests: ok.length, errors: results.length - ok.length, wall_s: wall,
    output_tok_s: tokens / wall, req_s: ok.length / wall,
    ttft_p50_ms: pct(ok.map((r) => r.ttft), 50), ttft_p99_ms: pct(ok.map((r) => r.ttft), 99),
    tpot_p50_ms: pct(ok.map((r) => r.tpot), 50), tpot_p99_ms: pct(ok.map((r) => r.tpot), 99),
    long_ttft_p50_ms: pct(ok.filter((r) => r.kind === 'long').map((r) => r.ttft), 50),
    first_error: results.find((r) => !r.ok)?.error,
  };
}

const model = await modelId();
const rows = [];
for (const c of a.concurrency.split(',').map(Number)) rows.push(await level(model, c, Number(a.duration)));

if (a.json) {
  console.log(JSON.stringify({ url: base, model, endpoint: a.endpoint, max_tokens: Number(a['max-tokens']), rows }, null, 2));
} else {
  const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  console.log(`# ${base}  model ${model}  ${a.endpoint}  max_tokens ${a['max-tokens']}  ` +
    `long prompts ${a['long-fraction']} x ${a['long-words']} words  ${a.duration} s per level`);
  console.log('| conc | requests | errors | out tok/s | req/s | TTFT p50 ms | TTFT p99 ms | TPOT p50 ms | TPOT p99 ms | long TTFT p50 ms |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows)
    console.log(`| ${r.concurrency} | ${r.requests} | ${r.errors} | ${f(r.output_tok_s)} | ${f(r.req_s, 2)} | ` +
      `${f(r.ttft_p50_ms)} | ${f(r.ttft_p99_ms)} | ${f(r.tpot_p50_ms, 2)} | ${f(r.tpot_p99_ms, 2)} | ${f(r.long_ttft_p50_ms)} |`);
  for (const r of rows) if (r.first_error) console.log(`conc ${r.concurrency}: first error: ${r.first_error}`);
}
