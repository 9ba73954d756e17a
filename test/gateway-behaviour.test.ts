/**
 * What users rely on, on a mock engine: a disconnect frees the pages within a
 * step, streams never split a character, API keys and scopes, readiness.
 */
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.ts';
import { serve } from '../src/gateway/start.ts';
import { dataLines, startGateway, type TestServer } from './gateway-helpers.ts';
import { mockEngine, REPO_ROOT } from './helpers.ts';
import { COMPONENT_CACHE } from './inferlet-helpers.ts';

const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

async function gateway(...args: Parameters<typeof startGateway>): Promise<TestServer> {
  const s = await startGateway(...args);
  servers.push(s);
  return s;
}

const chat = (url: string, body: object, init: RequestInit = {}) =>
  fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), ...init });

describe('gateway behaviour', () => {
  it('is ready only once warm: each built-in has run on every worker and the engine has stepped, with nothing kept or counted', async () => {
    const { engine } = await mockEngine({ numPages: 64 });
    const s = await gateway([engine]);
    const host = s.serving.gateway.runtime().host.stats();
    expect(host.succeeded).toBe(4 * host.workers); // chat, completions, responses, tokenize
    expect(host.failed).toBe(0);
    expect(engine.stats().steps).toBeGreaterThan(0);
    expect(engine.stats().snapshots).toBe(0);
    expect(engine.numContexts).toBe(0);
    expect(engine.kv.pool.numInUse).toBe(0);
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).not.toMatch(/_request_success_total\{[^}]*\} [1-9]/);
  });

  it('cancels the invocation of a client that disconnects: its pages are free within one engine step', async () => {
    const { engine } = await mockEngine({ stepDelayMs: 20, numPages: 256, behaviour: () => 100 }); // never the end of sequence
    const s = await gateway([engine]);
    const abort = new AbortController();
    const body = { model: engine.model.name, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 500, temperature: 0, stream: true };
    const res = await chat(s.url, body, { signal: abort.signal });
    const reader = res.body!.getReader();
    let seen = '';
    while (!seen.includes('"content":"') || seen.split('data: ').length < 4) seen += new TextDecoder().decode((await reader.read()).value);
    expect(engine.kv.pool.numInUse).toBeGreaterThan(0);
    const stepsAtAbort = engine.numSteps;
    abort.abort();
    const t0 = performance.now();
    while (engine.kv.pool.numInUse > 0 && performance.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 1));
    expect(engine.kv.pool.numInUse).toBe(0);
    expect(engine.numSteps - stepsAtAbort).toBeLessThanOrEqual(1);
    expect(engine.numContexts).toBe(0);
    expect(s.serving.gateway.runtime().host.stats().cancelled).toBe(1);
  });

  it('runs a chat request again when its invocation is lost with its worker before anything was sent: the client gets its answer', async () => {
    const { engine } = await mockEngine({ stepDelayMs: 20, numPages: 256, behaviour: () => 100 });
    const s = await gateway([engine]);
    const host = s.serving.gateway.runtime().host;
    const body = { model: engine.model.name, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 20, temperature: 0 };
    const stepsBefore = engine.numSteps;
    const pending = chat(s.url, body);
    // Killed once it has generated some tokens (the lost run's timings must not count as the request's).
    while (host.stats().running === 0 || engine.numSteps < stepsBefore + 8) await new Promise((r) => setTimeout(r, 5));
    for (const slot of (host as unknown as { slots: Array<{ worker: { terminate(): Promise<number> } }> }).slots) await slot.worker.terminate();
    const res = await pending;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(20);
    expect(host.stats().workerRestarts).toBeGreaterThan(0);
    // One request in the metrics: the run that was lost is not counted as a failed request of its own.
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    const requests = [...metrics.matchAll(/^pie_request_success_total\{[^}]*finished_reason="(\w+)"[^}]*\} (\d+)/gm)].filter((m) => m[2] !== '0');
    expect(requests.map((m) => [m[1], m[2]])).toEqual([['length', '1']]);
    for (const name of ['time_to_first_token_seconds', 'request_queue_time_seconds', 'request_prefill_time_seconds', 'e2e_request_latency_seconds']) {
      expect(metrics, name).toMatch(new RegExp(`^pie_${name}_count\\{[^}]*\\} 1$`, 'm'));
    }
  });

  it('takes KV pages back from kept conversation snapshots when a request needs them', async () => {
    const { engine } = await mockEngine({ numPages: 64, pageSize: 4, behaviour: () => 100, snapshotPagesPerTenant: 64 }); // no quota in the way
    const s = await gateway([engine]);
    const client = s.client();
    const model = engine.model.name;
    for (let i = 0; i < 6; i++) await client.responses.create({ model, input: `Conversation ${i}`, max_output_tokens: 16, temperature: 0 });
    expect(engine.stats().snapshots).toBe(6);
    const held = engine.kv.pool.numInUse;
    expect(held).toBeGreaterThan(30); // most of the 64 pages
    const r = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 150, temperature: 0 });
    expect(r.usage!.completion_tokens).toBe(150);
    expect(engine.stats().snapshots).toBeLessThan(6); // the oldest were evicted
    for (const name of engine.listSnapshots('default')) engine.deleteSnapshot(name, 'default');
  });

  it('cancels a streaming response through POST /v1/responses/{id}/cancel: its stream ends, it is stored as cancelled', async () => {
    const { engine } = await mockEngine({ stepDelayMs: 20, numPages: 256, behaviour: () => 100 });
    const s = await gateway([engine]);
    const startedBefore = s.serving.gateway.runtime().host.stats().started; // the warm-up's
    const res = await fetch(`${s.url}/v1/responses`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: engine.model.name, input: 'Hi', max_output_tokens: 400, temperature: 0, stream: true }),
    });
    const reader = res.body!.getReader();
    let raw = '';
    while (!raw.includes('response.output_text.delta')) raw += new TextDecoder().decode((await reader.read()).value);
    const id = JSON.parse(dataLines(raw)[0]!).response.id as string;
    expect((await s.client().responses.retrieve(id)).status).toBe('in_progress');
    await expect(s.client().responses.delete(id)).rejects.toBeInstanceOf(OpenAI.BadRequestError); // cancel first
    const cancelled = await s.client().responses.cancel(id);
    expect(cancelled).toMatchObject({ id, object: 'response', status: 'cancelled' });
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      raw += new TextDecoder().decode(value);
    }
    expect(raw).toMatch(/event: error\ndata: \{"type":"error","code":"cancelled"/);
    expect((await s.client().responses.retrieve(id)).status).toBe('cancelled');
    expect(s.serving.gateway.runtime().host.stats().started - startedBefore).toBe(1);
    expect(engine.kv.pool.numInUse).toBe(0);
    await expect(s.client().responses.cancel(id)).rejects.toBeInstanceOf(OpenAI.BadRequestError);
  });

  it('leaves no page, context or invocation behind after a storm of clients, half of which go away mid-stream', async () => {
    const { engine } = await mockEngine({ stepDelayMs: 2, numPages: 512, behaviour: () => 100 });
    const s = await gateway([engine]);
    const startedBefore = s.serving.gateway.runtime().host.stats().started; // the warm-up's
    const model = engine.model.name;
    const one = async (i: number) => {
      const abort = new AbortController();
      const stream = i % 3 !== 2;
      const body = { model, messages: [{ role: 'user', content: `Hi ${i}` }], max_tokens: 40, temperature: 0, stream, n: 1 + (i % 2) };
      const res = await chat(s.url, body, { signal: abort.signal }).catch(() => null);
      if (!res) return;
      if (i % 2 === 0 && stream) {
        const reader = res.body!.getReader();
        await reader.read().catch(() => {});
        abort.abort();
        return;
      }
      await res.text();
    };
    await Promise.all(Array.from({ length: 48 }, (_, i) => one(i)));
    const host = s.serving.gateway.runtime().host;
    const t0 = performance.now();
    while ((host.stats().running > 0 || engine.kv.pool.numInUse > 0) && performance.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
    expect(host.stats().running).toBe(0);
    expect(engine.kv.pool.numInUse).toBe(0);
    expect(engine.numContexts).toBe(0);
    expect(host.stats().started - startedBefore).toBe(48);
  });

  it('never splits a UTF-8 character across stream events', async () => {
    let tokenizer!: { tokenToId(t: string): number | undefined };
    let eos = 0;
    const text = '😀你é'; // no byte repeats: the mock follows a chain from each byte to the next
    const bytes = [...new TextEncoder().encode(text)];
    const next = new Map<number, number>();
    const { engine } = await mockEngine({
      numPages: 256,
      behaviour: (visible) => {
        const id = (b: number) => tokenizer.tokenToId(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`)!;
        if (next.size === 0) bytes.forEach((b, i) => next.set(id(b), i + 1 < bytes.length ? id(bytes[i + 1]!) : -1));
        const n = next.get(visible.at(-1)!);
        return n === undefined ? id(bytes[0]!) : n === -1 ? eos : n;
      },
    });
    tokenizer = engine.model.tokenizer;
    eos = engine.model.eosTokenIds[0]!;
    const s = await gateway([engine]);
    const raw = await (await chat(s.url, { model: engine.model.name, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 30, temperature: 0, stream: true })).text();
    const deltas = dataLines(raw)
      .slice(0, -1)
      .map((d) => JSON.parse(d).choices[0]?.delta?.content)
      .filter((c): c is string => typeof c === 'string' && c !== '');
    expect(deltas.join('')).toBe(text);
    expect(deltas.length).toBeGreaterThan(1); // it did stream, character by character
    for (const d of deltas) {
      expect(d.isWellFormed()).toBe(true);
      expect(d).not.toContain('\uFFFD');
    }
    expect(new TextDecoder().decode(new TextEncoder().encode(raw))).toBe(raw);
  });

  it('gives a key that names no tenant a tenant of its own: its stored responses are not another such key\'s, nor the admin key\'s', async () => {
    const { engine } = await mockEngine();
    const model = engine.model.name;
    const keys = ['sk-one', 'sk-two'].map((k) => `[[keys]]\nkey = "${k}"\nscopes = ["*"]\n`).join('');
    const s = await gateway([engine], { extra: `${keys}[[keys]]\nkey = "sk-admin"\ntenant = "default"\nscopes = ["*"]\n` });
    const mine = await s.client('sk-one').responses.create({ model, input: 'Hi', max_output_tokens: 2 });
    expect((await s.client('sk-one').responses.retrieve(mine.id)).id).toBe(mine.id);
    for (const other of ['sk-two', 'sk-admin']) await expect(s.client(other).responses.retrieve(mine.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    // An unauthenticated probe learns nothing about what is served.
    expect(await (await fetch(`${s.url}/ready`)).json()).toEqual({ status: 'ready' });
    await s.client('sk-one').responses.delete(mine.id); // and its KV snapshot
  });

  it('requires an API key with the route scope and the model', async () => {
    const { engine } = await mockEngine();
    const model = engine.model.name;
    const s = await gateway([engine], {
      extra: `
[[keys]]
key = "sk-chat"
tenant = "a"
scopes = ["chat"]
[[keys]]
key_env = "TEST_KEY"
tenant = "b"
scopes = ["completions", "metrics"]
models = ["some-other-model"]
`,
      env: { TEST_KEY: 'sk-from-env' },
    });
    const messages = [{ role: 'user' as const, content: 'Hi' }];
    const missing = await chat(s.url, { model, messages });
    expect(missing.status).toBe(401);
    expect((await missing.json()) as object).toMatchObject({ error: { type: 'invalid_request_error', code: 'invalid_api_key' } });
    await expect(s.client('sk-wrong').chat.completions.create({ model, messages })).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    const r = await s.client('sk-chat').chat.completions.create({ model, messages, max_tokens: 2 });
    expect(r.choices).toHaveLength(1);
    await expect(s.client('sk-chat').completions.create({ model, prompt: 'x', max_tokens: 2 })).rejects.toBeInstanceOf(OpenAI.PermissionDeniedError);
    await expect(s.client('sk-from-env').chat.completions.create({ model, messages })).rejects.toBeInstanceOf(OpenAI.PermissionDeniedError);
    // The env key's scope covers completions, but not this model: it looks like it does not exist.
    await expect(s.client('sk-from-env').completions.create({ model, prompt: 'x', max_tokens: 2 })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect((await s.client('sk-from-env').models.list()).data).toEqual([]);
    expect((await fetch(`${s.url}/health`)).status).toBe(200);
    expect((await fetch(`${s.url}/metrics`, { headers: { authorization: 'Bearer sk-chat' } })).status).toBe(403);
    expect((await fetch(`${s.url}/metrics`, { headers: { authorization: 'Bearer sk-from-env' } })).status).toBe(200);
  });

  it('binds to loopback when no key is configured, and says /ready 503 until the models are loaded', async () => {
    const { engine } = await mockEngine();
    const lines: string[] = [];
    const config = parseConfig(`[server]\nhost = "0.0.0.0"\nport = 0\napi_key_env = ""\ndata_dir = "/tmp/pie-gateway-test-data"\n[inferlets]\ncache_dir = ${JSON.stringify(COMPONENT_CACHE)}\n`, 't.toml', REPO_ROOT);
    const serving = await serve({ config, engines: [engine], log: (l) => lines.push(l), env: {} });
    try {
      expect(serving.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(lines.join('\n')).toMatch(/no API key is configured, so the server binds to 127\.0\.0\.1 only/);
      if (!serving.gateway.ready) {
        expect((await fetch(`${serving.url}/ready`)).status).toBe(503);
        expect((await chat(serving.url, { model: engine.model.name, messages: [] })).status).toBe(503);
      }
      expect((await fetch(`${serving.url}/health`)).status).toBe(200);
      await serving.loaded;
      expect((await fetch(`${serving.url}/ready`)).status).toBe(200);
    } finally {
      await serving.close();
    }
  });
});
