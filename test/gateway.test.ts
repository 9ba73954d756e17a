/**
 * The gateway end to end: a real listening server on the tiny random model
 * (portable driver), driven with the official openai package and raw HTTP.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEngine, type Engine } from '../src/engine/index.ts';
import { dataLines, EXAMPLE_ROUTE, startGateway, type TestServer } from './gateway-helpers.ts';
import { randomModelDir } from './helpers.ts';

let engine: Engine;
let server: TestServer;
let client: OpenAI;
let model: string;
const user = (content: string) => [{ role: 'user' as const, content }];

beforeAll(async () => {
  engine = await startEngine(randomModelDir(), { threads: 1, numPages: 512, pageSize: 16 });
  model = engine.model.name;
  server = await startGateway([engine], { extra: EXAMPLE_ROUTE });
  client = server.client();
});

afterAll(async () => {
  await server?.close();
  expect(engine.numContexts, 'contexts left behind by the gateway').toBe(0);
  await engine?.close();
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const json = async (res: Response): Promise<any> => await res.json();

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

describe('chat completions', () => {
  it('answers chat.completions.create with text, usage and finish_reason', async () => {
    const r = await client.chat.completions.create({ model, messages: user('Tell me a story.'), max_tokens: 12, temperature: 0 });
    expect(r.object).toBe('chat.completion');
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r.model).toBe(model);
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0]!.finish_reason).toBe('length');
    expect(r.choices[0]!.message.role).toBe('assistant');
    expect(typeof r.choices[0]!.message.content).toBe('string');
    expect(r.usage!.completion_tokens).toBe(12);
    expect(r.usage!.total_tokens).toBe(r.usage!.prompt_tokens + 12);
  });

  it('streams the same text it answers, read with chat.completions.stream().finalChatCompletion()', async () => {
    const params = { model, messages: user('Once upon a time'), max_completion_tokens: 16, temperature: 0 };
    const plain = await client.chat.completions.create(params);
    const final = await client.chat.completions.stream(params).finalChatCompletion();
    expect(final.choices[0]!.message.content).toBe(plain.choices[0]!.message.content);
    expect(final.choices[0]!.finish_reason).toBe('length');
  });

  it('returns n choices forked from one prompt', async () => {
    const r = await client.chat.completions.create({ model, messages: user('Hi'), max_tokens: 6, n: 2, temperature: 0 });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(r.choices[0]!.message.content).toBe(r.choices[1]!.message.content); // greedy: the same
    expect(r.usage!.completion_tokens).toBe(12);
    const sampled = await client.chat.completions.create({ model, messages: user('Hi'), max_tokens: 12, n: 3, temperature: 1.5, seed: 5 });
    expect(new Set(sampled.choices.map((c) => c.message.content)).size).toBeGreaterThan(1); // each choice its own seed
  });

  it('returns logprobs with top alternatives and token bytes', async () => {
    const r = await client.chat.completions.create({ model, messages: user('Hi'), max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 3 });
    const content = r.choices[0]!.logprobs!.content!;
    expect(content).toHaveLength(5);
    for (const t of content) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(t.top_logprobs).toHaveLength(3);
      expect(t.top_logprobs[0]!.logprob).toBeGreaterThanOrEqual(t.top_logprobs[2]!.logprob);
      expect(t.logprob).toBeCloseTo(t.top_logprobs[0]!.logprob, 4); // greedy picks the most likely
      expect(Array.isArray(t.bytes)).toBe(true);
    }
  });

  it('streams logprobs chunk by chunk', async () => {
    const stream = await client.chat.completions.create({ model, messages: user('Hi'), max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 2, stream: true });
    let tokens = 0;
    for await (const chunk of stream) tokens += chunk.choices[0]?.logprobs?.content?.length ?? 0;
    expect(tokens).toBe(4);
  });

  it('stops at a stop string that spans tokens, without including it', async () => {
    const full = (await client.chat.completions.create({ model, messages: user('Go on'), max_tokens: 24, temperature: 0 })).choices[0]!.message.content!;
    const chars = [...full];
    let stop = '';
    for (let i = 2; i < chars.length - 2 && !stop; i++) {
      const s = chars.slice(i, i + 2).join('');
      if (!s.includes('\uFFFD') && s.trim().length === 2 && full.indexOf(s) === chars.slice(0, i).join('').length) stop = s;
    }
    expect(stop).not.toBe('');
    const r = await client.chat.completions.create({ model, messages: user('Go on'), max_tokens: 24, temperature: 0, stop: [stop, 'never-seen'] });
    expect(r.choices[0]!.message.content).toBe(full.slice(0, full.indexOf(stop)));
    expect(r.choices[0]!.finish_reason).toBe('stop');
  });

  it('repeats a sampled answer for the same seed', async () => {
    const params = { model, messages: user('Hello'), max_tokens: 16, temperature: 1.2, top_p: 0.95, seed: 1234 };
    const a = await client.chat.completions.create(params);
    const b = await client.chat.completions.create(params);
    const c = await client.chat.completions.create({ ...params, seed: 4321 });
    expect(b.choices[0]!.message.content).toBe(a.choices[0]!.message.content);
    expect(c.choices[0]!.message.content).not.toBe(a.choices[0]!.message.content);
  });

  it('applies logit_bias and the penalties', async () => {
    const target = engine.model.tokenizer.encode('z', { addBos: false })[0]!;
    const r = await client.chat.completions.create({ model, messages: user('Hi'), max_tokens: 4, temperature: 0, logit_bias: { [target]: 100 } });
    expect(r.choices[0]!.message.content!.replaceAll(' ', '')).toBe('zzzz'); // the piece is "▁z"
    expect(r.choices[0]!.finish_reason).toBe('length');
    const penalised = await client.chat.completions.create({
      model,
      messages: user('Hi'),
      max_tokens: 4,
      temperature: 0,
      logit_bias: { [target]: 8 },
      frequency_penalty: 2,
      presence_penalty: 2,
    });
    expect(penalised.choices[0]!.message.content).not.toBe(r.choices[0]!.message.content);
    const outside = await client.chat.completions.create({ model, messages: user('Hi'), logit_bias: { '999999': 1 } }).catch((e) => e);
    expect(outside).toBeInstanceOf(OpenAI.BadRequestError);
    expect(outside.param).toBe('logit_bias');
  });

  it('accepts every message role and text parts', async () => {
    const r = await client.chat.completions.create({
      model,
      max_tokens: 2,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'developer', content: 'Really.' },
        { role: 'user', content: [{ type: 'text', text: 'What is' }, { type: 'text', text: 'the weather?' }] },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: 'sunny' },
      ],
    });
    expect(r.usage!.prompt_tokens).toBeGreaterThan(10);
  });

  it('sends Server-Sent Events exactly as OpenAI does', async () => {
    const res = await post('/v1/chat/completions', { model, messages: user('Hi'), max_tokens: 3, temperature: 0, stream: true, stream_options: { include_usage: true } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const raw = await res.text();
    expect(raw.endsWith('data: [DONE]\n\n')).toBe(true);
    for (const block of raw.split('\n\n').slice(0, -1)) expect(block).toMatch(/^data: [^\n]+$/); // one data line per event, no event names
    const events = dataLines(raw);
    const chunks = events.slice(0, -1).map((d) => JSON.parse(d));
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '', refusal: null });
    const finish = chunks.at(-2);
    expect(finish.choices[0]).toMatchObject({ delta: {}, finish_reason: 'length' });
    const usage = chunks.at(-1);
    expect(usage.choices).toEqual([]);
    expect(usage.usage.completion_tokens).toBe(3);
    for (const c of chunks.slice(0, -1)) expect(c).toMatchObject({ object: 'chat.completion.chunk', id: chunks[0].id, model, usage: null });
    expect(chunks.slice(1, -2).map((c) => c.choices[0].delta.content).join('')).toBe(
      (await client.chat.completions.create({ model, messages: user('Hi'), max_tokens: 3, temperature: 0 })).choices[0]!.message.content,
    );
  });

  it('refuses a prompt longer than the model context with context_length_exceeded', async () => {
    const err = await client.chat.completions.create({ model, messages: user('word '.repeat(3000)), max_tokens: 4 }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.code).toBe('context_length_exceeded');
    expect(err.param).toBe('messages');
  });
});

describe('completions', () => {
  it('completes text, a list of texts and token ids, with echo', async () => {
    const one = await client.completions.create({ model, prompt: 'The cat', max_tokens: 5, temperature: 0 });
    expect(one.object).toBe('text_completion');
    expect(one.choices[0]!.finish_reason).toBe('length');
    const many = await client.completions.create({ model, prompt: ['The cat', 'A dog'], max_tokens: 5, temperature: 0, n: 2 });
    expect(many.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(many.choices[0]!.text).toBe(one.choices[0]!.text);
    const ids = engine.model.tokenizer.encode('The cat', { addBos: true });
    const byIds = await client.completions.create({ model, prompt: ids, max_tokens: 5, temperature: 0 });
    expect(byIds.choices[0]!.text).toBe(one.choices[0]!.text);
    const echoed = await client.completions.create({ model, prompt: 'The cat', max_tokens: 5, temperature: 0, echo: true });
    expect(echoed.choices[0]!.text).toBe('The cat' + one.choices[0]!.text);
    expect(echoed.usage!.prompt_tokens).toBe(ids.length);
  });

  it('returns legacy logprobs and streams', async () => {
    const r = await client.completions.create({ model, prompt: 'The cat', max_tokens: 4, temperature: 0, logprobs: 2 });
    expect(r.choices[0]!.logprobs!.token_logprobs).toHaveLength(4);
    expect(Object.keys(r.choices[0]!.logprobs!.top_logprobs![0]!).length).toBeLessThanOrEqual(2);
    let text = '';
    for await (const c of await client.completions.create({ model, prompt: 'The cat', max_tokens: 4, temperature: 0, stream: true })) text += c.choices[0]?.text ?? '';
    expect(text).toBe(r.choices[0]!.text);
    const streamed: number[] = [];
    for await (const c of await client.completions.create({ model, prompt: 'The cat', max_tokens: 4, temperature: 0, logprobs: 2, stream: true })) {
      streamed.push(...(c.choices[0]?.logprobs?.token_logprobs ?? []));
    }
    expect(streamed).toEqual(r.choices[0]!.logprobs!.token_logprobs);
  });

  it('rejects suffix and best_of clearly', async () => {
    const err = await client.completions.create({ model, prompt: 'x', suffix: 'y' }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.param).toBe('suffix');
    expect(err.message).toMatch(/suffix is not supported/);
    const bestOf = await client.completions.create({ model, prompt: 'x', best_of: 3 }).catch((e) => e);
    expect(bestOf.param).toBe('best_of');
  });

  it('refuses a bad request with a 400 before it starts streaming', async () => {
    for (const path of ['/v1/completions', '/v1/chat/completions']) {
      const body = path === '/v1/completions' ? { model, prompt: 'x', stream: true } : { model, messages: user('x'), stream: true };
      const res = await post(path, { ...body, logit_bias: { '999999': 1 } });
      expect(res.status, path).toBe(400);
      expect((await json(res)).error.param).toBe('logit_bias');
    }
  });
});

describe('models and health', () => {
  it('lists and retrieves models; an unknown one is model_not_found', async () => {
    const list = [];
    for await (const m of client.models.list()) list.push(m);
    expect(list.map((m) => m.id)).toEqual([model]);
    expect((await client.models.retrieve(model)).object).toBe('model');
    const err = await client.models.retrieve('nope').catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    const chat = await client.chat.completions.create({ model: 'nope', messages: user('x') }).catch((e) => e);
    expect(chat).toBeInstanceOf(OpenAI.NotFoundError);
    expect(chat.code).toBe('model_not_found');
  });

  it('answers /health and /ready', async () => {
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    expect(await json(await fetch(`${server.url}/ready`))).toEqual({ status: 'ready' }); // no model names to anyone unauthenticated
  });
});

describe('validation', () => {
  it('takes a lone UTF-16 surrogate in any text as U+FFFD instead of trapping the inferlet', async () => {
    // JSON text with the escape as is: JSON.parse makes it a lone surrogate.
    const raw = (path: string, body: string) => fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const m = JSON.stringify(model);
    for (const [path, body] of [
      ['/v1/chat/completions', `{"model": ${m}, "messages": [{"role": "user", "content": "\\ud800x"}], "max_tokens": 2, "stop": ["\\udc00"]}`],
      ['/v1/completions', `{"model": ${m}, "prompt": "a\\udfffb", "max_tokens": 2}`],
      ['/v1/responses', `{"model": ${m}, "input": "\\ud800", "max_output_tokens": 2, "metadata": {"k": "\\ud83d"}}`],
    ] as const) {
      const res = await raw(path, body);
      expect(res.status, `${path} ${body}`).toBe(200);
    }
  });

  it('answers bodies it cannot read with the 4xx they are, in OpenAI error JSON', async () => {
    const body = JSON.stringify({ model, messages: user('x'), max_tokens: 1 });
    const send = (headers: Record<string, string>, path = '/v1/chat/completions') => fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
    for (const [headers, status] of [
      [{ 'content-type': 'application/json; charset=latin1' }, 415],
      [{ 'content-encoding': 'foo' }, 415],
      [{ 'content-encoding': 'gzip' }, 400], // not gzip
    ] as const) {
      const res = await send(headers);
      expect(res.status, JSON.stringify(headers)).toBe(status);
      const { error } = await json(res);
      expect(error.type).toBe('invalid_request_error');
      expect(error.message).not.toMatch(/server had an error/);
    }
    const path = await fetch(`${server.url}/v1/models/%E0%A4%A`);
    expect(path.status).toBe(400);
    expect((await json(path)).error.type).toBe('invalid_request_error');
  });

  it('refuses a token id outside the vocabulary, however large, and an empty previous_response_id', async () => {
    for (const id of [4294967301, 2 ** 53 - 1, 1e6]) {
      const res = await post('/v1/completions', { model, prompt: [1, id], max_tokens: 1 });
      expect(res.status, String(id)).toBe(400);
      expect((await json(res)).error.param).toBe('prompt');
    }
    const res = await post('/v1/responses', { model, input: 'x', previous_response_id: '', max_output_tokens: 1 });
    expect(res.status).toBe(400);
    expect((await json(res)).error.param).toBe('previous_response_id');
  });

  it('answers bad requests with OpenAI error JSON naming the field', async () => {
    const cases: Array<[unknown, string | null, RegExp]> = [
      [{ model, messages: user('x'), foo: 1 }, 'foo', /Unrecognized request argument supplied: foo/],
      [{ model, messages: user('x'), temperature: 5 }, 'temperature', /must be <= 2/],
      [{ model, messages: user('x'), functions: [{ name: 'f' }] }, 'functions', /functions is not supported/],
      [{ model, messages: user('x'), tools: [{ type: 'function', function: { name: 'f g' } }] }, 'tools.0.function.name', /pattern/],
      [{ model, messages: user('x'), response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: '((' } } } }, 'response_format', /parenthesis is not closed/],
      [{ model, messages: user('x'), response_format: { type: 'yaml' } }, 'response_format.type', /./],
      [{ model }, 'messages', /required/],
      [{ model, messages: [{ role: 'wizard', content: 'x' }] }, 'messages.0.role', /./],
    ];
    for (const [body, param, message] of cases) {
      const res = await post('/v1/chat/completions', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      const { error } = await json(res);
      expect(Object.keys(error).sort()).toEqual(['code', 'message', 'param', 'type']);
      expect(error.type).toBe('invalid_request_error');
      expect(error.param).toBe(param);
      expect(error.message).toMatch(message);
    }
  });

  it('answers malformed JSON, an oversized body and an unknown URL as errors', async () => {
    const bad = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":' });
    expect(bad.status).toBe(400);
    expect((await json(bad)).error.code).toBe('invalid_json');
    const big = await post('/v1/chat/completions', { model, messages: user('x'.repeat(5 * 1024 * 1024)) });
    expect(big.status).toBe(413);
    const unknown = await fetch(`${server.url}/v1/nothing`);
    expect(unknown.status).toBe(404);
    expect((await json(unknown)).error.code).toBe('unknown_url');
  });
});

describe('custom routes', () => {
  it('serves the example route as JSON and as a stream', async () => {
    const res = await post('/v1/examples/best-of/3', { prompt: 'Once upon a time', max_tokens: 6, seed: 3 });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-best-of-n')).toBe('3');
    const body = await json(res);
    expect(body.candidates).toHaveLength(3);
    expect(body.score).toBe(Math.max(...body.candidates.map((c: { score: number }) => c.score)));
    const streamed = await post('/v1/examples/best-of/2', { prompt: 'Once upon a time', max_tokens: 6 }, { accept: 'text/event-stream' });
    const raw = await streamed.text();
    expect(raw.match(/^event: candidate$/gm)).toHaveLength(2);
    expect(raw).toMatch(/event: result\ndata: \{/);
    const invalid = await post('/v1/examples/best-of/99', { prompt: 'x' });
    expect(invalid.status).toBe(400);
    expect((await json(invalid)).error.param).toBe('n');
  });
});

describe('metrics', () => {
  it('exposes request, latency, token and engine metrics after traffic', async () => {
    await client.chat.completions.create({ model, messages: user('Hi'), max_tokens: 4, stream: false });
    const text = await (await fetch(`${server.url}/metrics`)).text();
    expect(text).toMatch(/pie_http_requests_total\{route="\/v1\/chat\/completions",method="POST",status="200"\} \d+/);
    expect(text).toMatch(/pie_time_to_first_token_seconds_bucket\{le="0\.001",model="[^"]+"\}/);
    expect(text).toMatch(/pie_inter_token_latency_seconds_count\{model="[^"]+"\} [1-9]/);
    expect(text).toMatch(/pie_e2e_request_latency_seconds_count/);
    expect(text).toMatch(/pie_generation_tokens_total\{model="[^"]+"\} [1-9]/);
    expect(text).toMatch(/pie_prompt_tokens_total\{model="[^"]+"\} [1-9]/);
    expect(text).toMatch(/pie_kv_pages_in_use\{model="[^"]+"\} \d+/);
    expect(text).toMatch(/pie_prefix_cache_hits_total/);
    expect(text).toMatch(/pie_batch_size_count\{model="[^"]+"\} [1-9]/);
    expect(text).toMatch(/pie_num_requests_running/);
    expect(text).toMatch(/pie_process_cpu_seconds_total/);
    for (const line of text.split('\n').filter((l) => l && !l.startsWith('#'))) expect(line).toMatch(/^pie_[a-z0-9_]+[{ ]/);
  });
});
