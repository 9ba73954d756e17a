/**
 * The gateway with its engines and inferlet host on a thread of their own
 * (`[engine] own_thread`, what `pie serve` runs): answers equal those of the
 * same model served on one thread, the metrics see its tokens and steps, and
 * nothing is held after requests that finish, are cancelled by the client
 * going away, or store a response whose KV snapshot is later deleted.
 */
import { mkdtempSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config.ts';
import { EngineThread } from '../src/gateway/engine-link.ts';
import { serve, type Serving } from '../src/gateway/start.ts';
import { dataLines, servedEngine } from './gateway-helpers.ts';
import { COMPONENT_CACHE } from './inferlet-helpers.ts';
import { randomModelDir, REPO_ROOT } from './helpers.ts';

function threadedConfig(modelPath: string, extra = '') {
  const dataDir = mkdtempSync(join(tmpdir(), 'pie-engine-thread-'));
  return parseConfig(
    `[model]\npath = ${JSON.stringify(modelPath)}\nname = "m"\ncreate_if_missing = ""\n` +
      `[server]\nport = 0\ndata_dir = ${JSON.stringify(dataDir)}\napi_key_env = ""\n` +
      `[engine]\nthreads = 1\npage_size = 16\nkv_memory_mb = 8\nown_thread = true\n` +
      `[inferlets]\ncache_dir = ${JSON.stringify(COMPONENT_CACHE)}\nwarm_instances = 1\n${extra}`,
    'test.toml',
    REPO_ROOT,
  );
}

describe('the engine on its own thread', () => {
  const local = servedEngine(() => randomModelDir());
  let serving: Serving;
  let link: EngineThread;

  beforeAll(async () => {
    serving = await serve({ config: threadedConfig(randomModelDir()), log: () => {}, env: {} });
    await serving.loaded;
    link = serving.gateway.runtime().host as EngineThread;
  }, 60_000);
  afterAll(async () => {
    await serving?.close();
  });

  const post = (url: string, path: string, body: unknown) => fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  /** Once the invocations that answered have ended: nothing held but what kept snapshots hold. */
  const expectNothingHeld = async (snapshots = 0) => {
    for (let i = 0; i < 100 && link.stats().running > 0; i++) await new Promise((r) => setTimeout(r, 10));
    const [held] = await link.held();
    expect(link.stats().running).toBe(0);
    expect(held!.contexts).toBe(0);
    expect(held!.snapshots).toBe(snapshots);
    if (snapshots === 0) expect(held!.pagesInUse).toBe(0);
  };

  it('runs the engines and the host on another thread than the gateway', () => {
    expect(link).toBeInstanceOf(EngineThread);
    expect([...serving.gateway.runtime().engines.keys()]).toEqual(['m']);
  });

  it('answers chat and completions as the same model served on one thread, streamed and not', async () => {
    const chat = { messages: [{ role: 'user', content: 'Tell me something' }], max_tokens: 12, temperature: 0 };
    const completion = { prompt: 'Once upon a time', max_tokens: 12, temperature: 0, logprobs: 2 };
    for (const [path, body] of [['/v1/chat/completions', chat], ['/v1/completions', completion]] as const) {
      const ours = await (await post(serving.url, path, { ...body, model: 'm' })).json();
      const theirs = await (await post(local.server.url, path, { ...body, model: local.model })).json();
      expect(ours.choices).toEqual(theirs.choices);
      expect(ours.usage).toEqual(theirs.usage);
      const streamed = await (await post(serving.url, path, { ...body, model: 'm', stream: true })).text();
      const chunks = dataLines(streamed);
      expect(chunks.at(-1)).toBe('[DONE]');
      const text = chunks
        .slice(0, -1)
        .map((c) => JSON.parse(c).choices[0])
        .map((c) => c?.delta?.content ?? c?.text ?? '')
        .join('');
      expect(text).toBe(path === '/v1/completions' ? theirs.choices[0].text : theirs.choices[0].message.content);
    }
    await expectNothingHeld();
  });

  it('answers a refused request with its status, and a malformed one without reaching the engine thread', async () => {
    const tooLong = await post(serving.url, '/v1/completions', { model: 'm', prompt: 'word '.repeat(5000), max_tokens: 4 });
    expect(tooLong.status).toBe(400);
    expect((await tooLong.json()).error.code).toBe('context_length_exceeded');
    const unknown = await post(serving.url, '/v1/chat/completions', { model: 'nope', messages: [{ role: 'user', content: 'x' }] });
    expect(unknown.status).toBe(404);
    await expectNothingHeld();
  });

  it('counts tokens, time to first token and steps in the metrics', async () => {
    const before = await (await fetch(serving.url + '/metrics')).text();
    const count = (text: string, name: string) => Number(new RegExp(`^${name}\\{model="m"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
    await post(serving.url, '/v1/chat/completions', { model: 'm', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5, temperature: 0, stream: true }).then((r) => r.text());
    const after = await (await fetch(serving.url + '/metrics')).text();
    expect(count(after, 'pie_generation_tokens_total') - count(before, 'pie_generation_tokens_total')).toBe(5);
    expect(count(after, 'pie_time_to_first_token_seconds_count') - count(before, 'pie_time_to_first_token_seconds_count')).toBe(1);
    expect(count(after, 'pie_batch_size_count')).toBeGreaterThan(count(before, 'pie_batch_size_count')); // steps reach the main thread
    // The engine's own counters, read from the engine thread at each scrape.
    expect(count(after, 'pie_prefix_cache_queries_total')).toBeGreaterThan(count(before, 'pie_prefix_cache_queries_total'));
    expect(count(after, 'pie_kv_pages_capacity')).toBeGreaterThan(0);
  });

  it('cancels the invocation of a client that goes away mid-stream, and releases everything', async () => {
    await new Promise<void>((resolve, reject) => {
      const u = new URL(serving.url + '/v1/completions');
      const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      req.end(JSON.stringify({ model: 'm', prompt: 'Hello', max_tokens: 100_000, ignore_eos: true, stream: true }));
      setTimeout(() => reject(new Error('no first chunk')), 20_000);
    });
    await expectNothingHeld();
  });

  it('continues a stored response from its KV snapshot, and drops the snapshot with the response', async () => {
    const first = await (await post(serving.url, '/v1/responses', { model: 'm', input: 'Hello there', max_output_tokens: 4, temperature: 0 })).json();
    await expectNothingHeld(1);
    const next = await post(serving.url, '/v1/responses', { model: 'm', input: 'And then?', max_output_tokens: 4, temperature: 0, previous_response_id: first.id });
    expect(next.status).toBe(200);
    const second = await next.json();
    expect(second.usage.input_tokens_details.cached_tokens).toBeGreaterThan(0);
    await expectNothingHeld(2);
    for (const id of [second.id, first.id]) expect((await fetch(`${serving.url}/v1/responses/${id}`, { method: 'DELETE' })).status).toBe(200);
    await expectNothingHeld();
  });
});

describe('starting the engine thread', () => {
  it('fails loading with the reason the engine thread gave, and the server stays up to say so', async () => {
    const serving = await serve({ config: threadedConfig(join(tmpdir(), 'no-such-model-dir'), ''), log: () => {}, env: {} });
    try {
      const err = await serving.loaded.then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/no-such-model-dir/);
      expect((await fetch(serving.url + '/health')).status).toBe(200);
      expect((await fetch(serving.url + '/ready')).status).toBe(503);
    } finally {
      await serving.close();
    }
  }, 60_000);

  it('refuses engines already started on this thread', async () => {
    await expect(EngineThread.start({ config: threadedConfig(randomModelDir()), engines: [], log: () => {} })).rejects.toThrow(/cannot move/);
  });

  it('carries a configuration error as one', async () => {
    const config = threadedConfig(randomModelDir());
    await expect(EngineThread.start({ config, models: [`a=${randomModelDir()}`, `a=${randomModelDir()}`], log: () => {} })).rejects.toBeInstanceOf(ConfigError);
  }, 60_000);
});
