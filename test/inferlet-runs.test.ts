/**
 * Programs on a running server: components uploaded over HTTP, kept across a
 * restart, visible to their tenant only (and to an admin key), and run as
 * invocations that outlive their request, streamed, attached to again after a
 * dropped connection without losing an event, and cancelled; every limit a
 * clear 4xx, and nothing held afterwards.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.ts';
import { startEngine } from '../src/engine/index.ts';
import { serve } from '../src/gateway/start.ts';
import type { InferletHost } from '../src/runtime/host/host.ts';
import { SESSION_LIMITS } from '../src/runtime/host/invocation.ts';
import { expectNothingHeld, servedEngine } from './gateway-helpers.ts';
import { buildInferlet, COMPONENT_CACHE, componentImporting, echoComponent } from './inferlet-helpers.ts';
import { randomModelDir, REPO_ROOT, runPie } from './helpers.ts';

const KEYS = `
[[keys]]
key = "sk-a"
tenant = "a"
scopes = ["inferlets"]

[[keys]]
key = "sk-b"
tenant = "b"
scopes = ["inferlets"]

[[keys]]
key = "sk-admin"
tenant = "ops"
scopes = ["inferlets", "admin"]

[[keys]]
key = "sk-chat"
tenant = "c"
scopes = ["chat"]
`;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are checked field by field
type Json = any;

/** The `id:`, `event:` and `data:` of each SSE event in a text. */
function sseEvents(text: string): Array<{ id: number | null; event: string; data: string }> {
  return text
    .split('\n\n')
    .filter((b) => b.trim() !== '')
    .map((b) => {
      const lines = b.split('\n');
      const id = lines.find((l) => l.startsWith('id: '));
      return {
        id: id ? Number(id.slice(4)) : null,
        event: lines.find((l) => l.startsWith('event: '))?.slice(7) ?? 'message',
        data: lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n'),
      };
    });
}

/** A component's bytes with a custom section appended: the same program, bytes (and hash) of its own. */
function salted(bytes: Uint8Array, salt: string): Uint8Array {
  const body = new TextEncoder().encode(`\u000dpie-test-salt${salt}`); // name length 13, name, payload
  const out = new Uint8Array(bytes.length + 2 + body.length);
  out.set(bytes);
  out.set([0, body.length, ...body], bytes.length); // section id 0 (custom); the size fits one LEB128 byte
  return out;
}

/** The pie command against the test's server (no key or server from the environment), with `stdin` typed into it. */
const NO_REMOTE = { PIE_API_KEY: '', PIE_SERVER: '' };
const pie = (...args: string[]) => runPie(args, { env: NO_REMOTE });
const pieTyping = (stdin: string, ...args: string[]) => runPie(args, { env: NO_REMOTE, stdin });

describe('components and runs over HTTP', () => {
  const s = servedEngine(() => randomModelDir(), {}, { server: 'inferlet_max_mb = 3\ninferlets_per_tenant = 2\nruns_per_tenant = 2\nrun_replay_events = 8', extra: KEYS });
  let probe: Uint8Array;
  let sessionEcho: Uint8Array;
  let family: Uint8Array;

  beforeAll(async () => {
    probe = readFileSync(await buildInferlet(join(REPO_ROOT, 'test/inferlets/probe.ts')));
    sessionEcho = readFileSync(await buildInferlet(join(REPO_ROOT, 'test/inferlets/session-echo.ts')));
    family = readFileSync(await buildInferlet(join(REPO_ROOT, 'test/inferlets/family.ts')));
  }, 120_000);
  afterEach(async () => {
    for (let i = 0; i < 200 && s.server.serving.gateway.runtime().host.stats().running > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(s.server.serving.gateway.runtime().host.stats().running).toBe(0);
    await expectNothingHeld(s.engine);
    // Each test starts with no uploads: the admin key sees every tenant's.
    for (const e of (await call('sk-admin', 'GET', '/v1/inferlets')).json.data) await call('sk-admin', 'DELETE', `/v1/inferlets/${e.id}`);
  });

  const call = async (key: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const init: RequestInit = { method, headers: { authorization: `Bearer ${key}`, ...headers } };
    if (body instanceof Uint8Array) init.body = body;
    else if (body !== undefined) {
      init.body = JSON.stringify(body);
      (init.headers as Record<string, string>)['content-type'] = 'application/json';
    }
    const res = await fetch(s.server.url + path, init);
    const text = await res.text();
    let json: Json = null;
    try {
      json = JSON.parse(text);
    } catch {
      // an SSE text
    }
    return { status: res.status, json, text, headers: res.headers };
  };
  const upload = (key: string, bytes: Uint8Array, query = '') => call(key, 'POST', `/v1/inferlets${query}`, bytes, { 'content-type': 'application/wasm' });
  /** Starts a run of tenant a's `id` as a stream the test reads, and may drop (`ac.abort()`). */
  const openRun = async (id: string, body: unknown) => {
    const ac = new AbortController();
    const res = await fetch(`${s.server.url}/v1/inferlets/${id}/runs`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-a', 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify(body),
      signal: ac.signal,
    });
    return { reader: res.body!.getReader(), ac };
  };
  /** Polls a run until it has ended. */
  const ended = async (key: string, id: string): Promise<Json> => {
    for (let i = 0; i < 500; i++) {
      const r = await call(key, 'GET', `/v1/runs/${id}`);
      if (r.json.status !== 'running') return r.json;
      await new Promise((res) => setTimeout(res, 10));
    }
    throw new Error(`run ${id} did not end`);
  };

  it('uploads a component once per tenant, lists, finds it by id and by name, and deletes it', async () => {
    const first = await upload('sk-a', probe, '?name=probe&version=1');
    expect(first.status).toBe(201);
    expect(first.json).toMatchObject({ object: 'inferlet', name: 'probe', version: '1', bytes: probe.length, owned_by: 'a' });
    expect(first.json.id).toMatch(/^inf_/);
    expect(first.json.imports.every((i: string) => i.startsWith('pie:inferlet/'))).toBe(true);
    const again = await upload('sk-a', probe);
    expect(again.status).toBe(200); // the same bytes: the same upload
    expect(again.json.id).toBe(first.json.id);
    const other = await upload('sk-a', await echoComponent('ech3'));
    expect((await call('sk-a', 'GET', '/v1/inferlets')).json.data).toHaveLength(2);
    const list = await call('sk-a', 'GET', `/v1/inferlets?sha256=${first.json.sha256}`);
    expect(list.json.data.map((e: Json) => e.id)).toEqual([first.json.id]);
    expect((await call('sk-a', 'GET', '/v1/inferlets?name=probe')).json.data.map((e: Json) => e.id)).toEqual([first.json.id]);
    // The same bytes from another tenant are an upload of its own; deleting one leaves the other's bytes.
    const theirs = await upload('sk-b', probe);
    expect(theirs.status).toBe(201);
    expect(theirs.json.id).not.toBe(first.json.id);
    await call('sk-b', 'DELETE', `/v1/inferlets/${theirs.json.id}`);
    await call('sk-a', 'DELETE', `/v1/inferlets/${other.json.id}`);
    expect((await call('sk-a', 'GET', `/v1/inferlets/${first.json.id}`)).json.sha256).toBe(first.json.sha256);
    const byName = await call('sk-a', 'POST', '/v1/inferlets/probe/runs', { input: { action: 'echo' } });
    expect(byName.status).toBe(201);
    const done = await ended('sk-a', byName.json.id);
    expect(done.status).toBe('succeeded');
    expect(JSON.parse(done.result.data).input).toEqual({ action: 'echo' });
    expect((await call('sk-a', 'DELETE', `/v1/inferlets/${first.json.id}`)).json).toEqual({ id: first.json.id, object: 'inferlet', deleted: true });
    expect((await call('sk-a', 'GET', `/v1/inferlets/${first.json.id}`)).status).toBe(404);
  });

  it('streams a run to its end: numbered events, then run.ended with the result', async () => {
    const id = (await upload('sk-a', probe)).json.id;
    const r = await call('sk-a', 'POST', `/v1/inferlets/${id}/runs`, { input: { action: 'generate', max_tokens: 6 } }, { accept: 'text/event-stream' });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/text\/event-stream/);
    const events = sseEvents(r.text);
    const numbered = events.filter((e) => e.id !== null);
    expect(numbered.length).toBeGreaterThan(0);
    expect(numbered.map((e) => e.id)).toEqual(numbered.map((_, i) => i + 1));
    const last = events.at(-1)!;
    expect(last.event).toBe('run.ended');
    const run = JSON.parse(last.data);
    expect(run).toMatchObject({ object: 'run', status: 'succeeded', inferlet_id: id, events: numbered.length, owned_by: 'a' });
    expect(run.tokens).toBe(6);
    expect(JSON.parse(run.result.data).usage.completion_tokens).toBe(6);
  });

  it('announces events the replay buffer no longer holds, and refuses a Last-Event-ID the run has not reached', async () => {
    const id = (await upload('sk-a', probe)).json.id;
    const r = await call('sk-a', 'POST', `/v1/inferlets/${id}/runs`, { input: { action: 'generate', max_tokens: 20, ignore_eos: true } });
    const done = await ended('sk-a', r.json.id);
    expect(done.events).toBeGreaterThan(8);
    const events = sseEvents((await call('sk-a', 'GET', `/v1/runs/${r.json.id}/events?after=0`)).text);
    expect(events[0]).toEqual({ id: null, event: 'run.gap', data: JSON.stringify({ missed: done.events - 8 }) }); // run_replay_events = 8
    expect(events.filter((e) => e.id !== null).map((e) => e.id)).toEqual(Array.from({ length: 8 }, (_, i) => done.events - 7 + i));
    const ahead = await call('sk-a', 'GET', `/v1/runs/${r.json.id}/events`, undefined, { 'last-event-id': String(done.events + 1) });
    expect(ahead.status).toBe(400);
    expect(ahead.json.error.param).toBe('after');
  });

  it('cancels a streamed run whose client asked cancel_on_disconnect and went away', async () => {
    const id = (await upload('sk-a', probe)).json.id;
    const { reader, ac } = await openRun(id, { input: { action: 'hold', max_tokens: 100_000 }, cancel_on_disconnect: true });
    const first = new TextDecoder().decode((await reader.read()).value);
    const runId = JSON.parse(sseEvents(first)[0]!.data).id;
    ac.abort();
    const end = await ended('sk-a', runId);
    expect(end.status).toBe('cancelled');
  });

  it('goes on after the client drops its stream, and an attach with Last-Event-ID resumes without losing an event', async () => {
    const id = (await upload('sk-a', probe)).json.id;
    const { reader, ac } = await openRun(id, { input: { action: 'hold', max_tokens: 6 } });
    let text = '';
    /** The events received whole so far. */
    const whole = () => sseEvents(text.slice(0, text.lastIndexOf('\n\n') + 2));
    while (whole().filter((e) => e.id !== null).length < 3) {
      const chunk = await reader.read();
      if (chunk.done) throw new Error(`the stream ended early: ${text}`);
      text += new TextDecoder().decode(chunk.value);
    }
    ac.abort(); // dropped mid-run
    expect(whole()[0]!.event).toBe('run.started'); // the run's id comes first, to attach with
    const runId = JSON.parse(whole()[0]!.data).id;
    const seen = whole().filter((e) => e.id !== null);
    const lastSeen = seen.at(-1)!.id!;
    const rest = await call('sk-a', 'GET', `/v1/runs/${runId}/events`, undefined, { 'last-event-id': String(lastSeen), accept: 'text/event-stream' });
    const more = sseEvents(rest.text);
    const ids = [...seen.map((e) => e.id!), ...more.filter((e) => e.id !== null).map((e) => e.id!)];
    expect(ids).toEqual(ids.map((_, i) => i + 1)); // contiguous from 1: nothing lost, nothing twice
    const end = JSON.parse(more.at(-1)!.data);
    expect(more.at(-1)!.event).toBe('run.ended');
    expect(end.status).toBe('succeeded'); // it outlived its request
    expect(end.events).toBe(ids.length);
    expect(end.tokens).toBe(6);
    // A second attach from the start replays it all (it fits the 8 events the buffer keeps).
    const all = sseEvents((await call('sk-a', 'GET', `/v1/runs/${runId}/events?after=0`)).text);
    expect(all.filter((e) => e.id !== null).length).toBe(ids.length);
  });

  it('cancels a run: it ends cancelled, its pages released', async () => {
    const id = (await upload('sk-a', probe)).json.id;
    const run = await call('sk-a', 'POST', `/v1/inferlets/${id}/runs`, { input: { action: 'hold', max_tokens: 100_000 } });
    let pages = 0;
    for (let i = 0; i < 500 && pages === 0; i++) pages = (await call('sk-a', 'GET', `/v1/runs/${run.json.id}`)).json.pages;
    expect(pages).toBeGreaterThan(0); // the KV pages it holds, as it runs
    expect((await call('sk-a', 'GET', '/v1/runs')).json.data.find((r: Json) => r.id === run.json.id).pages).toBeGreaterThan(0);
    const cancelled = await call('sk-a', 'POST', `/v1/runs/${run.json.id}/cancel`);
    expect(cancelled.status).toBe(200);
    expect(cancelled.json.status).toBe('cancelled');
    expect(cancelled.json.error.kind).toBe('cancelled');
    expect(cancelled.json.pages).toBe(0);
    expect((await call('sk-a', 'POST', `/v1/runs/${run.json.id}/cancel`)).status).toBe(400);
  });

  it("keeps tenants apart: another tenant can neither see, run nor cancel a tenant's components and runs; an admin key sees all", async () => {
    const id = (await upload('sk-a', probe, '?name=secret')).json.id;
    const run = await call('sk-a', 'POST', `/v1/inferlets/${id}/runs`, { input: { action: 'hold', max_tokens: 100_000 } });
    expect((await call('sk-b', 'GET', `/v1/inferlets/${id}`)).status).toBe(404);
    expect((await call('sk-b', 'GET', '/v1/inferlets/secret')).status).toBe(404); // a's name means nothing to b
    expect((await call('sk-b', 'GET', '/v1/inferlets')).json.data).toEqual([]);
    expect((await call('sk-b', 'GET', '/v1/inferlets?name=secret')).json.data).toEqual([]);
    expect((await call('sk-b', 'POST', `/v1/inferlets/${id}/runs`, {})).status).toBe(404);
    expect((await call('sk-b', 'POST', '/v1/inferlets/secret/runs', {})).status).toBe(404);
    expect((await call('sk-b', 'GET', `/v1/runs/${run.json.id}`)).status).toBe(404);
    expect((await call('sk-b', 'POST', `/v1/runs/${run.json.id}/cancel`)).status).toBe(404);
    expect((await call('sk-b', 'GET', '/v1/runs')).json.data.map((r: Json) => r.id)).not.toContain(run.json.id);
    expect((await call('sk-chat', 'GET', '/v1/inferlets')).status).toBe(403); // no "inferlets" scope
    expect((await upload('sk-chat', new Uint8Array(4 * 1024 * 1024))).status).toBe(403); // refused before its body is read
    const admin = await call('sk-admin', 'GET', '/v1/inferlets');
    expect(admin.json.data.map((e: Json) => e.id)).toContain(id);
    expect((await call('sk-admin', 'GET', `/v1/runs/${run.json.id}`)).json.status).toBe('running');
    expect((await call('sk-admin', 'POST', `/v1/runs/${run.json.id}/cancel`)).json.status).toBe('cancelled');
  });

  it('pie submit uploads only what the server lacks, streams the run and prints its result; pie runs, attach and cancel', async () => {
    const wasm = await buildInferlet(join(REPO_ROOT, 'test/inferlets/probe.ts'));
    const remote = ['--server', s.server.url, '--key', 'sk-a'];
    const first = await pie('submit', wasm, ...remote, '--name', 'cli-probe', '--', '{"action":"generate","max_tokens":4}');
    expect(first.stderr).toMatch(/uploaded .* as inf_/);
    expect(first.code).toBe(0);
    const runId = /run (run_\w+) started/.exec(first.stderr)![1]!;
    expect(JSON.parse(first.stdout.trim().split('\n').at(-1)!).usage.completion_tokens).toBe(4);
    const again = await pie('submit', wasm, ...remote, '--', '{"action":"echo"}');
    expect(again.code).toBe(0);
    expect(again.stderr).not.toMatch(/uploaded/); // the server had those bytes
    expect((await pie('runs', ...remote)).stdout).toContain(runId);
    const attached = await pie('attach', runId, ...remote);
    expect(attached.code).toBe(0);
    expect(attached.stdout).toBe(first.stdout); // the whole run again, from its replay buffer
    const late = await pie('cancel', runId, ...remote);
    expect(late.code).toBe(1);
    expect(late.stderr).toMatch(/^pie: POST \/v1\/runs\/run_\w+\/cancel: 400 Run '.*' is not running \(its status is succeeded\)/);
    const refused = await pie('runs', '--server', s.server.url, '--key', 'sk-nope');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/401 Incorrect API key/);
    for (const e of (await call('sk-a', 'GET', '/v1/inferlets')).json.data) await call('sk-a', 'DELETE', `/v1/inferlets/${e.id}`);
  }, 120_000);

  it('exchanges messages both ways with a running run, in order; refuses them to an ended run, to another tenant, and malformed', async () => {
    const id = (await upload('sk-a', sessionEcho)).json.id;
    const run = await call('sk-a', 'POST', `/v1/inferlets/${id}/runs`, { input: { timeout_ms: 60_000 } });
    const sent = await call('sk-a', 'POST', `/v1/runs/${run.json.id}/messages`, { message: 'hello' });
    expect(sent.status).toBe(202);
    expect(sent.json).toMatchObject({ object: 'run.message', run_id: run.json.id });
    expect(sent.json.queued).toBeGreaterThanOrEqual(0);
    await call('sk-a', 'POST', `/v1/runs/${run.json.id}/messages`, { message: 'there' });
    expect((await call('sk-b', 'POST', `/v1/runs/${run.json.id}/messages`, { message: 'intruder' })).status).toBe(404);
    for (const [body, param] of [[{}, 'message'], [{ message: 3 }, 'message'], [{ message: 'x', extra: 1 }, 'extra']] as const) {
      const bad = await call('sk-a', 'POST', `/v1/runs/${run.json.id}/messages`, body);
      expect(bad.status, JSON.stringify(body)).toBe(400);
      expect(bad.json.error.param).toBe(param);
    }
    const long = await call('sk-a', 'POST', `/v1/runs/${run.json.id}/messages`, { message: 'x'.repeat((1 << 20) + 1) });
    expect(long.status).toBe(400);
    expect(long.json.error.code).toBe('string_above_max_length');
    await call('sk-a', 'POST', `/v1/runs/${run.json.id}/messages`, { message: 'end' });
    const done = await ended('sk-a', run.json.id);
    expect(done.status).toBe('succeeded');
    expect(JSON.parse(done.result.data)).toEqual({ received: 3, timed_out: false });
    const events = sseEvents((await call('sk-a', 'GET', `/v1/runs/${run.json.id}/events?after=0`)).text);
    expect(events.filter((e) => e.id !== null)).toEqual([
      { id: 1, event: 'session.message', data: 'echo:hello' },
      { id: 2, event: 'session.message', data: 'echo:there' },
    ]);
    const late = await call('sk-a', 'POST', `/v1/runs/${run.json.id}/messages`, { message: 'anyone?' });
    expect(late.status).toBe(400);
    expect(late.json.error.message).toMatch(/is not running \(its status is succeeded\)/);
  });

  it("answers a message past the run's unread queue with a 429, and the run reads every one queued", async () => {
    const id = (await upload('sk-a', sessionEcho)).json.id;
    const run = await call('sk-a', 'POST', `/v1/inferlets/${id}/runs`, { input: { gate: 'gate' } });
    for (let i = 0; i < SESSION_LIMITS.maxQueued; i++) expect((await call('sk-a', 'POST', `/v1/runs/${run.json.id}/messages`, { message: `m${i}` })).status).toBe(202);
    const full = await call('sk-a', 'POST', `/v1/runs/${run.json.id}/messages`, { message: 'one more' });
    expect(full.status).toBe(429);
    expect(full.json.error.code).toBe('session_queue_full');
    (s.server.serving.gateway.runtime().host as InferletHost).hub.push('a', 'gate', 'open');
    for (let i = 0; i < 500 && (await call('sk-a', 'GET', `/v1/runs/${run.json.id}`)).json.events < SESSION_LIMITS.maxQueued; i++) await new Promise((r) => setTimeout(r, 10));
    expect((await call('sk-a', 'POST', `/v1/runs/${run.json.id}/messages`, { message: 'end' })).status).toBe(202);
    const done = await ended('sk-a', run.json.id);
    expect(JSON.parse(done.result.data).received).toBe(SESSION_LIMITS.maxQueued + 1);
  });

  it('pie submit sends the lines typed on its stdin to an inferlet that reads the session, and prints its messages', async () => {
    const wasm = await buildInferlet(join(REPO_ROOT, 'test/inferlets/session-echo.ts'));
    const r = await pieTyping('hello\nworld\nend\n', 'submit', wasm, '--server', s.server.url, '--key', 'sk-a');
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')).toEqual(['echo:hello', 'echo:world', JSON.stringify({ received: 3, timed_out: false }), '']);
  }, 60_000);

  it("launches a child by the name of the tenant's upload, and cancels it with its run; another tenant's upload is not found", async () => {
    const id = (await upload('sk-a', family, '?name=family')).json.id;
    await upload('sk-b', await echoComponent('bbbb'), '?name=b-only');
    const byName = await call('sk-a', 'POST', `/v1/inferlets/${id}/runs`, { input: { action: 'launch', component: 'family', child_input: { action: 'leaf', i: 7 } } });
    expect(JSON.parse((await ended('sk-a', byName.json.id)).result.data)).toEqual({ end: { status: 'succeeded', result: '{"i":7}' } });
    const theirs = await call('sk-a', 'POST', `/v1/inferlets/${id}/runs`, { input: { action: 'launch', component: 'b-only' } });
    expect(JSON.parse((await ended('sk-a', theirs.json.id)).result.data)).toMatchObject({ code: 'not-found', message: 'no inferlet "b-only" uploaded by this tenant' });
    const holding = await call('sk-a', 'POST', `/v1/inferlets/${id}/runs`, { input: { action: 'launch-and-leave', queue: 'wait' } });
    const host = s.server.serving.gateway.runtime().host as InferletHost;
    for (let i = 0; i < 500 && host.stats().running < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(host.stats().running).toBe(2); // the run and its child
    expect((await call('sk-a', 'POST', `/v1/runs/${holding.json.id}/cancel`)).json.status).toBe('cancelled');
    for (let i = 0; i < 500 && host.stats().running > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(host.stats().running).toBe(0); // the child ended with it
  });

  it('drops what the host keeps for a deleted upload once no tenant has those bytes; uploaded again, they run again', async () => {
    const bytes = await echoComponent('fgt1');
    const host = s.server.serving.gateway.runtime().host as InferletHost;
    const runOnce = async (key: string, id: string) => (await ended(key, (await call(key, 'POST', `/v1/inferlets/${id}/runs`, { input: 1 })).json.id)).status;
    const a = (await upload('sk-a', bytes)).json;
    const b = (await upload('sk-b', bytes)).json;
    const kept = host.stats().components;
    expect(await runOnce('sk-a', a.id)).toBe('succeeded');
    expect(host.stats().components).toBe(kept + 1); // its instances kept warm on the workers
    await call('sk-a', 'DELETE', `/v1/inferlets/${a.id}`);
    await new Promise((r) => setTimeout(r, 50));
    expect(host.stats().components).toBe(kept + 1); // tenant b still has them
    await call('sk-b', 'DELETE', `/v1/inferlets/${b.id}`);
    for (let i = 0; i < 100 && host.stats().components > kept; i++) await new Promise((r) => setTimeout(r, 10));
    expect(host.stats().components).toBe(kept);
    const again = (await upload('sk-a', bytes)).json;
    expect(await runOnce('sk-a', again.id)).toBe('succeeded');
  });

  it('refuses a component that imports wasi:sockets, naming the import', async () => {
    const r = await upload('sk-b', await componentImporting('wasi:sockets/tcp@0.2.3'));
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('invalid_component');
    expect(r.json.error.message).toContain('wasi:sockets/tcp@0.2.3');
    expect((await call('sk-b', 'GET', '/v1/inferlets')).json.data).toEqual([]);
  });

  it('answers each limit with a clear 4xx: size, count, running runs, and malformed requests', async () => {
    const big = await upload('sk-b', new Uint8Array(4 * 1024 * 1024));
    expect(big.status).toBe(413);
    expect((await upload('sk-b', new Uint8Array([1, 2, 3]))).json.error.code).toBe('invalid_component');
    const plain = await call('sk-b', 'POST', '/v1/inferlets', probe, { 'content-type': 'text/plain' });
    expect(plain.status).toBe(415);
    expect(plain.json.error.code).toBe('unsupported_media_type');
    expect((await upload('sk-b', probe, '?name=bad/name')).json.error.param).toBe('name');
    const id = (await upload('sk-b', probe, '?name=p&version=1')).json.id;
    const wat = await echoComponent('ech1');
    expect((await upload('sk-b', wat, '?name=p&version=1')).json.error.code).toBe('inferlet_exists');
    const second = await upload('sk-b', wat);
    expect(second.status).toBe(201);
    const third = await upload('sk-b', await echoComponent('ech2'));
    expect(third.status).toBe(409);
    expect(third.json.error.code).toBe('inferlet_limit_reached');
    // One place left, two uploads at once (each checked and transpiled meanwhile): one is taken.
    await call('sk-b', 'DELETE', `/v1/inferlets/${second.json.id}`);
    // Bytes of their own each time (never transpiled yet): the wait that let both through before is there.
    const tag = () => `e${Math.random().toString(36).slice(2, 5).padEnd(3, '0')}`;
    const [ech4, ech5] = [await echoComponent(tag()), await echoComponent(tag())];
    const both = await Promise.all([upload('sk-b', ech4), upload('sk-b', ech5)]);
    expect(both.map((r) => r.status).sort()).toEqual([201, 409]);
    await call('sk-b', 'DELETE', `/v1/inferlets/${both.find((r) => r.status === 201)!.json.id}`);
    // Four runs at once against a cap of two, on bytes never run before (their component gets ready meanwhile): two start.
    const fresh = (await upload('sk-b', salted(probe, `runs-cap-${Date.now()}`))).json.id;
    const four = await Promise.all([0, 1, 2, 3].map(() => call('sk-b', 'POST', `/v1/inferlets/${fresh}/runs`, { input: { action: 'hold', max_tokens: 100_000 } })));
    expect(four.map((r) => r.status).sort()).toEqual([201, 201, 429, 429]);
    expect(four.find((r) => r.status === 429)!.json.error.code).toBe('too_many_runs');
    expect((await call('sk-a', 'GET', '/v1/runs')).json.data.filter((r: Json) => r.status === 'running')).toEqual([]); // another tenant's count
    const holds = four.filter((r) => r.status === 201);
    const [c1, c2] = await Promise.all([call('sk-b', 'POST', `/v1/runs/${holds[0]!.json.id}/cancel`), call('sk-b', 'POST', `/v1/runs/${holds[0]!.json.id}/cancel`)]);
    expect([c1.status, c2.status].sort()).toEqual([200, 400]); // a second cancel on its way is refused
    await call('sk-b', 'POST', `/v1/runs/${holds[1]!.json.id}/cancel`);
    expect((await call('sk-b', 'POST', `/v1/inferlets/${id}/runs`, { input: {}, limits: { tokens: -1 } })).json.error.param).toBe('limits.tokens');
    expect((await call('sk-b', 'POST', `/v1/inferlets/${id}/runs`, { input: {}, limits: { kv_pages: 2.5 } })).json.error.param).toBe('limits.kv_pages');
    expect((await call('sk-b', 'POST', `/v1/inferlets/${id}/runs`, { input: {}, limits: { pages: 1 } })).json.error.param).toBe('limits.pages');
    expect((await call('sk-b', 'POST', `/v1/inferlets/${id}/runs`, { inputs: {} })).json.error.code).toBe('unknown_parameter');
    // A run's own limits bind it: a token limit below what it asks caps its generation, as max_tokens would.
    const limited = await call('sk-b', 'POST', `/v1/inferlets/${id}/runs`, { input: { action: 'generate', max_tokens: 20, ignore_eos: true }, limits: { tokens: 5 } });
    const end = await ended('sk-b', limited.json.id);
    expect(end.status).toBe('succeeded');
    expect(end.tokens).toBe(5);
    expect(JSON.parse(end.result.data).finish_reason).toBe('length');
    for (const e of (await call('sk-b', 'GET', '/v1/inferlets')).json.data) await call('sk-b', 'DELETE', `/v1/inferlets/${e.id}`);
  });
});

describe('uploaded components across a restart', () => {
  it('keeps them: listed and run by the next server on the same data folder', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'pie-inferlets-data-'));
    const config = parseConfig(`[server]\nport = 0\ndata_dir = ${JSON.stringify(dataDir)}\napi_key_env = ""\n[inferlets]\ncache_dir = ${JSON.stringify(COMPONENT_CACHE)}\nwarm_instances = 0\n`, 'test.toml', REPO_ROOT);
    const engine = await startEngine(randomModelDir(), { threads: 1, numPages: 64, pageSize: 16 });
    const probe = readFileSync(await buildInferlet(join(REPO_ROOT, 'test/inferlets/probe.ts')));
    try {
      const first = await serve({ config, engines: [engine], log: () => {}, env: {} });
      await first.loaded;
      const up: Json = await (await fetch(`${first.url}/v1/inferlets?name=probe`, { method: 'POST', headers: { 'content-type': 'application/wasm' }, body: probe })).json();
      await first.close();
      const second = await serve({ config, engines: [engine], log: () => {}, env: {} });
      try {
        await second.loaded;
        const list: Json = await (await fetch(`${second.url}/v1/inferlets`)).json();
        expect(list.data.map((e: Json) => e.id)).toEqual([up.id]);
        const r = await fetch(`${second.url}/v1/inferlets/probe/runs`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream' }, body: JSON.stringify({ input: { action: 'echo' } }) });
        const end = sseEvents(await r.text()).at(-1)!;
        expect(JSON.parse(end.data).status).toBe('succeeded');
      } finally {
        await second.close();
      }
      expect(engine.numContexts).toBe(0);
    } finally {
      await engine.close();
    }
  }, 120_000);
});
