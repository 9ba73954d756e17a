/**
 * The gateway with its engines and inferlet host on a thread of their own
 * (`[engine] own_thread`, what `pie serve` runs): answers equal those of the
 * same model served on one thread; the metrics see its tokens, their times
 * and its steps; cancelling (a client gone, the Responses cancel) ends the
 * work there; snapshots are kept and capped there; nothing is held after
 * requests end; errors keep their class across the thread; and the thread
 * dying leaves a server that says so (503, not ready) instead of failing
 * requests one by one.
 */
import { mkdtempSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config.ts';
import { EngineThread } from '../src/gateway/engine-link.ts';
import { serve, type Serving } from '../src/gateway/start.ts';
import { ModelLoadError } from '../src/model/errors.ts';
import { ComponentLoadError } from '../src/runtime/host/component-store.ts';
import type { RunningInvocation } from '../src/runtime/host/port.ts';
import { dataLines, EXAMPLE_ROUTE, servedEngine } from './gateway-helpers.ts';
import { readFileSync } from 'node:fs';
import { buildInferlet, COMPONENT_CACHE, echoComponent } from './inferlet-helpers.ts';
import { randomModelDir, REPO_ROOT } from './helpers.ts';

function threadedConfig(modelPath: string, server = '', extra = '') {
  const dataDir = mkdtempSync(join(tmpdir(), 'pie-engine-thread-'));
  return parseConfig(
    `[model]\npath = ${JSON.stringify(modelPath)}\nname = "m"\ncreate_if_missing = ""\n` +
      `[server]\nport = 0\ndata_dir = ${JSON.stringify(dataDir)}\napi_key_env = ""\n${server}\n` +
      `[engine]\nthreads = 1\npage_size = 16\nkv_memory_mb = 8\nown_thread = true\n` +
      `[inferlets]\ncache_dir = ${JSON.stringify(COMPONENT_CACHE)}\nwarm_instances = 1\n${extra}`,
    'test.toml',
    REPO_ROOT,
  );
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are checked field by field
const json = async (r: Response): Promise<any> => await r.json();
const post = (url: string, path: string, body: unknown) => fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

/** Starts a threaded server on the tiny model; its link to the engine thread. */
async function startThreaded(server = '', extra = ''): Promise<{ serving: Serving; link: EngineThread }> {
  const serving = await serve({ config: threadedConfig(randomModelDir(), server, extra), log: () => {}, env: {} });
  await serving.loaded;
  return { serving, link: serving.gateway.runtime().host as EngineThread };
}

describe('the engine on its own thread', () => {
  const local = servedEngine(() => randomModelDir());
  let serving: Serving;
  let link: EngineThread;

  beforeAll(async () => {
    ({ serving, link } = await startThreaded('max_snapshots = 1', EXAMPLE_ROUTE));
  }, 60_000);
  afterAll(async () => {
    await serving?.close();
  });

  /** The engine thread's host counters, read now. */
  const hostStats = async () => (await link.refresh(), link.stats());
  /** Once the invocations that answered have ended: nothing held there but what kept snapshots hold. */
  const expectNothingHeld = async (snapshots = 0) => {
    for (let i = 0; i < 100 && link.stats().running > 0; i++) await new Promise((r) => setTimeout(r, 10));
    const [held] = await link.held();
    expect(link.stats().running).toBe(0);
    expect(held!.invocations, 'invocations still running on the engine thread').toBe(0);
    expect(held!.contexts).toBe(0);
    expect(held!.snapshots).toBe(snapshots);
    if (snapshots === 0) expect(held!.pagesInUse).toBe(0);
  };
  const scrape = async () => await (await fetch(serving.url + '/metrics')).text();
  const metric = (text: string, name: string, labels = 'model="m"') => Number(new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);

  it('runs the engines and the host on another thread than the gateway', () => {
    expect(link).toBeInstanceOf(EngineThread);
    expect([...serving.gateway.runtime().engines.keys()]).toEqual(['m']);
  });

  it('answers chat and completions as the same model served on one thread, streamed and not', async () => {
    const chat = { messages: [{ role: 'user', content: 'Tell me something' }], max_tokens: 12, temperature: 0 };
    const completion = { prompt: 'Once upon a time', max_tokens: 12, temperature: 0, logprobs: 2 };
    for (const [path, body] of [['/v1/chat/completions', chat], ['/v1/completions', completion]] as const) {
      const ours = await json(await post(serving.url, path, { ...body, model: 'm' }));
      const theirs = await json(await post(local.server.url, path, { ...body, model: local.model }));
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

  it('answers a refused request with its status, and one for another model without starting an invocation', async () => {
    const started = (await hostStats()).started;
    const tooLong = await post(serving.url, '/v1/completions', { model: 'm', prompt: 'word '.repeat(5000), max_tokens: 4 });
    expect(tooLong.status).toBe(400);
    expect((await json(tooLong)).error.code).toBe('context_length_exceeded');
    expect((await hostStats()).started).toBe(started + 1);
    const unknown = await post(serving.url, '/v1/chat/completions', { model: 'nope', messages: [{ role: 'user', content: 'x' }] });
    expect(unknown.status).toBe(404);
    expect((await hostStats()).started).toBe(started + 1);
    await expectNothingHeld();
  });

  it("carries the status and headers an inferlet sets before its first event, and a component's load error of its class", async () => {
    const streamed = await fetch(`${serving.url}/v1/examples/best-of/2`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream' }, body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 6 }) });
    expect(streamed.headers.get('x-best-of-n')).toBe('2'); // set on the engine thread before the stream began
    expect((await streamed.text()).match(/^event: candidate$/gm)).toHaveLength(2);
    const invalid = await post(serving.url, '/v1/examples/best-of/99', { prompt: 'x' });
    expect(invalid.status).toBe(400);
    await expect(link.load(new Uint8Array([0, 97, 115, 109]))).rejects.toBeInstanceOf(ComponentLoadError);
    await expectNothingHeld();
  });

  it('runs an uploaded component there, streamed to its end', async () => {
    const up = await json(await fetch(`${serving.url}/v1/inferlets`, { method: 'POST', headers: { 'content-type': 'application/wasm' }, body: await echoComponent('thrd') }));
    const r = await fetch(`${serving.url}/v1/inferlets/${up.id}/runs`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream' }, body: JSON.stringify({ input: { hello: 1 } }) });
    const text = await r.text();
    expect(text).toMatch(/^id: 1\nevent: thrd\ndata: \{"hello":1\}$/m);
    const end = JSON.parse(/event: run.ended\ndata: (.*)/.exec(text)![1]!);
    expect(end.status).toBe('succeeded');
    expect(JSON.parse(end.result.data)).toEqual({ hello: 1 });
    expect((await fetch(`${serving.url}/v1/inferlets/${up.id}`, { method: 'DELETE' })).status).toBe(200);
    await expectNothingHeld();
  });

  it("delivers a client's messages to a run there, and refuses one once the run has ended", async () => {
    const bytes = readFileSync(await buildInferlet(join(REPO_ROOT, 'test/inferlets/session-echo.ts')));
    const up = await json(await fetch(`${serving.url}/v1/inferlets`, { method: 'POST', headers: { 'content-type': 'application/wasm' }, body: bytes }));
    const run = await json(await fetch(`${serving.url}/v1/inferlets/${up.id}/runs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }));
    const say = (message: string) => fetch(`${serving.url}/v1/runs/${run.id}/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message }) });
    const running = await json(await fetch(`${serving.url}/v1/runs/${run.id}`));
    expect(running).toMatchObject({ status: 'running', pages: 0 }); // asked of the engine thread: it holds no context
    expect((await say('over')).status).toBe(202);
    expect((await say('end')).status).toBe(202);
    const text = await (await fetch(`${serving.url}/v1/runs/${run.id}/events`)).text();
    expect(text).toMatch(/^id: 1\nevent: session.message\ndata: echo:over$/m);
    const end = JSON.parse(/event: run.ended\ndata: (.*)/.exec(text)![1]!);
    expect(JSON.parse(end.result.data)).toEqual({ received: 2, timed_out: false });
    const late = await say('late');
    expect(late.status).toBe(400);
    expect((await fetch(`${serving.url}/v1/inferlets/${up.id}`, { method: 'DELETE' })).status).toBe(200);
    await expectNothingHeld();
  });

  it('launches a child there by the id of an upload, found on the main thread', async () => {
    const bytes = readFileSync(await buildInferlet(join(REPO_ROOT, 'test/inferlets/family.ts')));
    const up = await json(await fetch(`${serving.url}/v1/inferlets`, { method: 'POST', headers: { 'content-type': 'application/wasm' }, body: bytes }));
    const input = { action: 'launch', component: up.id, child_input: { action: 'leaf', i: 3 } };
    const text = await (await fetch(`${serving.url}/v1/inferlets/${up.id}/runs`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream' }, body: JSON.stringify({ input }) })).text();
    const end = JSON.parse(/event: run.ended\ndata: (.*)/.exec(text)![1]!);
    expect(JSON.parse(end.result.data)).toEqual({ end: { status: 'succeeded', result: '{"i":3}' } });
    expect((await fetch(`${serving.url}/v1/inferlets/${up.id}`, { method: 'DELETE' })).status).toBe(200);
    await expectNothingHeld();
  });

  it('counts tokens and their times, the prompt, the phases and the steps in the metrics', async () => {
    const before = await scrape();
    const t0 = performance.now();
    const r = await post(serving.url, '/v1/chat/completions', { model: 'm', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5, temperature: 0, stream: true, stream_options: { include_usage: true } });
    const usage = JSON.parse(dataLines(await r.text()).at(-2)!).usage;
    const wallS = (performance.now() - t0) / 1000;
    const after = await scrape();
    const delta = (name: string) => metric(after, name) - metric(before, name);
    expect(delta('pie_generation_tokens_total')).toBe(5);
    expect(delta('pie_prompt_tokens_total')).toBe(usage.prompt_tokens);
    expect(delta('pie_time_to_first_token_seconds_count')).toBe(1);
    // Token times cross the thread: the time to first token lies within the request's own wall time.
    expect(delta('pie_time_to_first_token_seconds_sum')).toBeGreaterThan(0);
    expect(delta('pie_time_to_first_token_seconds_sum')).toBeLessThan(wallS);
    expect(delta('pie_request_queue_time_seconds_count')).toBe(1);
    expect(delta('pie_request_decode_time_seconds_sum')).toBeGreaterThan(0);
    expect(metric(after, 'pie_batch_size_count')).toBeGreaterThan(metric(before, 'pie_batch_size_count')); // steps reach the main thread
    // The engine's own counters, read from the engine thread at each scrape.
    expect(metric(after, 'pie_prefix_cache_queries_total')).toBeGreaterThan(metric(before, 'pie_prefix_cache_queries_total'));
  });

  it('cancels the invocation of a client that goes away mid-stream, and releases everything', async () => {
    const before = await hostStats();
    const aborts = metric(await scrape(), 'pie_request_success_total', 'model="m",finished_reason="abort"');
    await new Promise<void>((resolve, reject) => {
      const u = new URL(serving.url + '/v1/completions');
      const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      req.end(JSON.stringify({ model: 'm', prompt: 'Hello', max_tokens: 200, ignore_eos: true, stream: true }));
      setTimeout(() => reject(new Error('no first chunk')), 20_000);
    });
    await expectNothingHeld();
    const after = await hostStats();
    expect(after.cancelled).toBe(before.cancelled + 1); // stopped there, not run to its end
    expect(after.succeeded).toBe(before.succeeded);
    expect(metric(await scrape(), 'pie_request_success_total', 'model="m",finished_reason="abort"')).toBe(aborts + 1);
  });

  it('continues a stored response from its KV snapshot; keeps the newest snapshots within the cap; drops one with its response', async () => {
    const first = await json(await post(serving.url, '/v1/responses', { model: 'm', input: 'Hello there', max_output_tokens: 4, temperature: 0 }));
    await expectNothingHeld(1);
    const next = await post(serving.url, '/v1/responses', { model: 'm', input: 'And then?', max_output_tokens: 4, temperature: 0, previous_response_id: first.id });
    expect(next.status).toBe(200);
    const second = await json(next);
    expect(second.usage.input_tokens_details.cached_tokens).toBeGreaterThan(0);
    await expectNothingHeld(1); // max_snapshots = 1: the keeper on the engine thread evicted the first
    for (const id of [second.id, first.id]) expect((await fetch(`${serving.url}/v1/responses/${id}`, { method: 'DELETE' })).status).toBe(200);
    await expectNothingHeld();
  });

  it('answers a Responses cancel once the run has ended and is stored cancelled; a second cancel meanwhile gets a 400', async () => {
    // Each cancel reaches the engine thread 50 ms late, as behind a long engine step.
    const invoke = link.invoke.bind(link);
    link.invoke = (component, options) => {
      const inv = invoke(component, options) as RunningInvocation & { cancel(reason?: string): void };
      const cancel = inv.cancel.bind(inv);
      inv.cancel = (reason) => void setTimeout(() => cancel(reason), 50);
      return inv;
    };
    try {
      const res = await post(serving.url, '/v1/responses', { model: 'm', input: 'Tell me a story', max_output_tokens: 200, temperature: 0, stream: true });
      const reader = res.body!.getReader();
      let text = '';
      while (!/"id":"(resp_[^"]+)"/.test(text)) {
        const chunk = await reader.read();
        if (chunk.done) throw new Error(`the stream ended without a response id: ${text}`);
        text += new TextDecoder().decode(chunk.value);
      }
      const id = /"id":"(resp_[^"]+)"/.exec(text)![1]!;
      const [cancel, again] = await Promise.all([post(serving.url, `/v1/responses/${id}/cancel`, {}), post(serving.url, `/v1/responses/${id}/cancel`, {})]);
      expect(cancel.status).toBe(200);
      expect((await json(cancel)).status).toBe('cancelled');
      expect(again.status).toBe(400);
      expect((await json(again)).error.message).toMatch(/its status is cancelled/);
      // At once: stored as cancelled, no longer cancellable, deletable.
      expect((await json(await fetch(`${serving.url}/v1/responses/${id}`))).status).toBe('cancelled');
      expect((await post(serving.url, `/v1/responses/${id}/cancel`, {})).status).toBe(400);
      expect((await fetch(`${serving.url}/v1/responses/${id}`, { method: 'DELETE' })).status).toBe(200);
      await reader.cancel().catch(() => {});
    } finally {
      delete (link as { invoke?: unknown }).invoke;
    }
    await expectNothingHeld();
  });
});

describe('starting and losing the engine thread', () => {
  it('fails loading with the error the engine thread gave, of its class, and the server stays up to say so', async () => {
    const serving = await serve({ config: threadedConfig(join(tmpdir(), 'no-such-model-dir')), log: () => {}, env: {} });
    try {
      const err = await serving.loaded.then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(ModelLoadError); // the CLI prints these as one line
      expect((err as Error).message).toMatch(/no-such-model-dir/);
      expect((await fetch(serving.url + '/health')).status).toBe(200);
      expect((await fetch(serving.url + '/ready')).status).toBe(503);
    } finally {
      await serving.close();
    }
  }, 60_000);

  it('refuses engines already started on this thread, and carries a configuration error as one', async () => {
    const config = threadedConfig(randomModelDir());
    await expect(EngineThread.start({ config, engines: [], log: () => {} })).rejects.toThrow(/cannot move/);
    await expect(EngineThread.start({ config, models: [`a=${randomModelDir()}`, `a=${randomModelDir()}`], log: () => {} })).rejects.toBeInstanceOf(ConfigError);
  }, 60_000);

  it('closes with a stream in flight: the stream ends and nothing waits for ever', async () => {
    const { serving, link } = await startThreaded();
    const res = await post(serving.url, '/v1/completions', { model: 'm', prompt: 'Hello', max_tokens: 200, ignore_eos: true, stream: true });
    const body = res.text().catch(() => 'reset');
    await serving.close();
    expect(typeof (await body)).toBe('string');
    expect(link.stats().running).toBe(0);
  }, 60_000);

  it('says when the engine thread dies: requests and /ready answer 503, `stopped` resolves, running work fails', async () => {
    const { serving, link } = await startThreaded();
    try {
      const running = post(serving.url, '/v1/completions', { model: 'm', prompt: 'Hello', max_tokens: 200, ignore_eos: true });
      for (let i = 0; i < 500 && link.stats().running === 0; i++) await new Promise((r) => setTimeout(r, 2));
      expect(link.stats().running).toBe(1); // on the engine thread when it dies
      await (link as unknown as { worker: Worker }).worker.terminate();
      expect(await serving.stopped).toMatch(/exited/);
      const failed = await running;
      expect(failed.status).toBe(503);
      expect((await fetch(serving.url + '/health')).status).toBe(200);
      expect((await fetch(serving.url + '/ready')).status).toBe(503);
      const after = await post(serving.url, '/v1/chat/completions', { model: 'm', messages: [{ role: 'user', content: 'Hi' }] });
      expect(after.status).toBe(503);
      expect((await json(after)).error.message).toMatch(/engine thread stopped; the server must be restarted/);
      expect(serving.gateway.ready).toBe(false);
      expect(link.stats().running).toBe(0);
    } finally {
      await serving.close();
    }
  }, 60_000);
});
