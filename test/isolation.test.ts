/**
 * Isolation (issue 12): one tenant or one inferlet can never starve, crash or
 * break the others. A deliberately misbehaving route inferlet
 * (test/inferlets/hostile.ts) runs beside ordinary traffic.
 */
import { request } from 'node:http';
import { describe, expect, it } from 'vitest';
import { expectNothingHeld, servedEngine } from './gateway-helpers.ts';
import { randomModelDir } from './helpers.ts';
import type { InferletHost } from '../src/runtime/host/host.ts';

const HOSTILE_ROUTE = `
[[routes]]
method = "POST"
path = "/v1/hostile"
inferlet = "test/inferlets/hostile.ts"
`;

describe('isolation', () => {
  const s = servedEngine(() => randomModelDir(), {}, { extra: HOSTILE_ROUTE });
  const hostile = async (body: object) => {
    const res = await fetch(`${s.server.url}/v1/hostile`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, unknown> };
  };

  it('lets no route frame the response: framing and hop-by-hop headers and statuses outside 200..599 fail the inferlet, never reach the wire', async () => {
    for (const name of ['Content-Length', 'transfer-encoding', 'Connection', 'keep-alive', 'upgrade', 'TE', 'trailer']) {
      const r = await hostile({ action: 'header', name, value: '0' });
      expect(r.status, name).toBe(500);
      expect(JSON.stringify(r.json), name).toMatch(/header is the server's to set/);
    }
    const fine = await hostile({ action: 'header', name: 'x-fine', value: 'yes' });
    expect(fine.status).toBe(200);
    expect(fine.headers.get('x-fine')).toBe('yes');
    for (const status of [100, 101, 199, 600]) {
      const r = await hostile({ action: 'status', status });
      expect(r.status, String(status)).toBe(500);
      expect(JSON.stringify(r.json)).toMatch(/not in 200\.\.599/);
    }
    // The connection still frames the next response on keep-alive: two requests on one socket both answer.
    const agentBodies = await new Promise<string[]>((resolve, reject) => {
      const out: string[] = [];
      const url = new URL(`${s.server.url}/v1/hostile`);
      const send = (n: number) => {
        const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { 'content-type': 'application/json', connection: 'keep-alive' } }, (res) => {
          let data = '';
          res.on('data', (d) => (data += d));
          res.on('end', () => {
            out.push(data);
            if (n > 1) send(n - 1);
            else resolve(out);
          });
        });
        req.on('error', reject);
        req.end(JSON.stringify({ action: 'header', name: 'content-length', value: '1' }));
      };
      send(2);
    });
    expect(agentBodies).toHaveLength(2);
    for (const b of agentBodies) expect(b).toMatch(/server's to set/);
  });

  it("answers a prompt no context can hold with a 400 at once, and the other requests on the same workers all succeed", async () => {
    const post = (path: string, body: object) => fetch(`${s.server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const huge = 'word '.repeat(600_000); // 3 MB
    const host = s.server.serving.gateway.runtime().host as InferletHost; // the test's engine runs on this thread
    const restarts = host.stats().workerRestarts;
    const ordinary = Array.from({ length: 6 }, (_, i) => post('/v1/chat/completions', { model: s.model, messages: [{ role: 'user', content: `Hello ${i}` }], max_tokens: 4 }));
    const [chat, completion] = await Promise.all([
      post('/v1/chat/completions', { model: s.model, messages: [{ role: 'user', content: huge }], max_tokens: 4 }),
      post('/v1/completions', { model: s.model, prompt: huge, max_tokens: 4 }),
    ]);
    for (const r of [chat, completion]) {
      expect(r.status).toBe(400);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('context_length_exceeded');
    }
    for (const r of await Promise.all(ordinary)) expect(r.status).toBe(200);
    expect(host.stats().workerRestarts).toBe(restarts);
    await expectNothingHeld(s.engine);
  });

  it("applies OpenAI's limits to what a stored response keeps: metadata (16 pairs, keys of 64, values of 512 characters) and user", async () => {
    const post = async (body: object) => {
      const res = await fetch(`${s.server.url}/v1/responses`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: s.model, input: 'Hi', max_output_tokens: 1, ...body }) });
      return { status: res.status, json: (await res.json()) as { id?: string; error?: { param: string } } };
    };
    const pairs = (n: number, key = (i: number) => `k${i}`, value = 'v') => Object.fromEntries(Array.from({ length: n }, (_, i) => [key(i), value]));
    for (const [metadata, param] of [
      [pairs(17), 'metadata'],
      [pairs(1, () => 'k'.repeat(65)), 'metadata'],
      [pairs(1, undefined, 'v'.repeat(513)), 'metadata.k0'],
    ] as const) {
      const r = await post({ metadata });
      expect(r.status, JSON.stringify(r.json)).toBe(400);
      expect(r.json.error!.param.startsWith(param)).toBe(true);
    }
    expect((await post({ user: 'u'.repeat(513) })).status).toBe(400);
    const ok = await post({ metadata: pairs(16, (i) => `${i}`.padEnd(64, 'k'), 'v'.repeat(512)), user: 'u'.repeat(512), store: false });
    expect(ok.status).toBe(200);
    await expectNothingHeld(s.engine);
  });

  it("evicts snapshots an inferlet hoards when others need the pages: a hoarder cannot pin the pool, and others' chats succeed", async () => {
    const pool = s.engine.kv.pool;
    const r = await hostile({ action: 'hoard', count: 40, tokens: 200 }); // 40 × 13 pages, the pool has 256
    expect(r.status).toBe(200);
    // Within its tenant's quota (half the pool), its least recently used went as it saved more.
    expect(pool.numInUse).toBeLessThanOrEqual(pool.numPages / 2 + 13);
    const chats = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        fetch(`${s.server.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: s.model, messages: [{ role: 'user', content: `Story ${i}` }], max_tokens: 600 }) }),
      ),
    );
    for (const c of chats) expect(c.status).toBe(200);
    for (const name of s.engine.listSnapshots('default')) s.engine.deleteSnapshot(name, 'default');
    await expectNothingHeld(s.engine);
  });
});

describe('isolation: KV capacity', () => {
  // 64 pages of 16 tokens: 1024 tokens for everyone.
  const s = servedEngine(() => randomModelDir(), { numPages: 64, queueTimeoutMs: 3000 });
  const chat = (body: object) =>
    fetch(`${s.server.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: s.model, messages: [{ role: 'user', content: 'Tell me a story.' }], ...body }) });

  it('serves concurrent n = 16 requests whose choices together need more than the pool: finished choices give their pages back', async () => {
    // Each fits the pool alone (its worst case is within the invocation's page limit); together they do not.
    const results = await Promise.all([chat({ n: 16, max_tokens: 20 }), chat({ n: 16, max_tokens: 20 }), ...Array.from({ length: 4 }, () => chat({ n: 5, max_tokens: 40 }))]);
    for (const r of results) {
      const body = (await r.json()) as { choices?: unknown[]; error?: unknown };
      expect(r.status, JSON.stringify(body.error)).toBe(200);
    }
    await expectNothingHeld(s.engine);
  });

  it("answers a transient lack of room with a 503 and Retry-After (not context_length_exceeded), and a prompt that could never fit with context_length_exceeded", async () => {
    // Fill the pool with contexts that cannot give their pages back (custom attention), as a hostile program could.
    const engine = s.engine;
    const hog = engine.createContext('hog');
    engine.append(hog, Array.from({ length: 60 * 16 }, (_, i) => 3 + (i % 300)));
    await engine.forward(hog, { attend: (pos, key) => key <= pos, numLogits: 0 });
    try {
      const r = await chat({ max_tokens: 200, ignore_eos: true }); // it cannot end early by chance
      expect(r.status).toBe(503);
      expect(r.headers.get('retry-after')).toBe('1');
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('overloaded');
    } finally {
      engine.release(hog);
    }
    const ok = await chat({ max_tokens: 8 });
    expect(ok.status).toBe(200);
    await expectNothingHeld(s.engine);
  });
});

describe('isolation: a flooding tenant beside an ordinary one', () => {
  const KEYS = `
[[keys]]
key = "sk-flood"
tenant = "flood"
scopes = ["*"]
[[keys]]
key = "sk-calm"
tenant = "calm"
scopes = ["*"]
`;
  const s = servedEngine(() => randomModelDir(), { numPages: 128, queueTimeoutMs: 10_000 }, { extra: HOSTILE_ROUTE + KEYS });
  const post = (key: string, path: string, body: object) =>
    fetch(`${s.server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify(body) });

  it("serves every ordinary chat while the other tenant floods with huge prompts, 16-way forks, snapshot hoarding and messages; afterwards everything is accounted for", async () => {
    const huge = 'word '.repeat(600_000);
    const flood = [
      ...Array.from({ length: 3 }, () => post('sk-flood', '/v1/chat/completions', { model: s.model, messages: [{ role: 'user', content: huge }], max_tokens: 4 })),
      ...Array.from({ length: 3 }, () => post('sk-flood', '/v1/chat/completions', { model: s.model, messages: [{ role: 'user', content: 'Go' }], n: 16, max_tokens: 30 })),
      post('sk-flood', '/v1/hostile', { action: 'hoard', count: 30, tokens: 200 }),
      post('sk-flood', '/v1/hostile', { action: 'flood-messages', count: 200 }),
    ];
    const calm = Array.from({ length: 12 }, (_, i) => post('sk-calm', '/v1/chat/completions', { model: s.model, messages: [{ role: 'user', content: `Hello ${i}` }], max_tokens: 16 }));
    const calmResults = await Promise.all(calm);
    for (const r of calmResults) expect(r.status).toBe(200);
    const floodStatuses = await Promise.all(flood.map(async (p) => (await p).status));
    expect(floodStatuses.every((st) => st < 500)).toBe(true); // refused or served, never a server error
    // Accounted for: no invocation running, no context, no page outside snapshots, the hoarder's snapshots within its quota.
    const host = s.server.serving.gateway.runtime().host as InferletHost; // the test's engine runs on this thread
    expect(host.stats().running).toBe(0);
    expect(host.hub.usage('flood').chars).toBeLessThanOrEqual(host.hub.limits.maxCharsPerTenant);
    const engine = s.engine;
    expect(engine.numContexts).toBe(0);
    const snapshotPages = new Set<number>();
    for (const t of ['flood', 'calm']) for (const n of engine.listSnapshots(t)) for (const p of engine.snapshots.get(n, t)!.pageTable) snapshotPages.add(p);
    expect(engine.kv.pool.numInUse).toBe(snapshotPages.size);
    expect(snapshotPages.size).toBeLessThanOrEqual(engine.kv.pool.numPages / 2);
    for (const t of ['flood', 'calm']) for (const n of engine.listSnapshots(t)) engine.deleteSnapshot(n, t);
    expect(engine.kv.pool.numInUse).toBe(0);
  }, 120_000);
});


describe("isolation: each key's share of the KV pool", () => {
  const KEYS = `
[[keys]]
key = "sk-small"
tenant = "small"
scopes = ["*"]
kv_pages = 4
[[keys]]
key = "sk-big"
tenant = "big"
scopes = ["*"]
kv_weight = 3
`;
  // Pages of 16 tokens: the small tenant's running work holds at most 64 tokens.
  const s = servedEngine(() => randomModelDir(), { numPages: 64 }, { extra: KEYS });
  const post = (key: string, path: string, body: object) =>
    fetch(`${s.server.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ model: s.model, ...body }),
    });
  const chat = (key: string, content: string, body: object = {}) => post(key, '/v1/chat/completions', { messages: [{ role: 'user', content }], ...body });

  it("holds a capped key's tenant to its pages: a prompt past the cap is a 400, a long answer stops with length; other tenants are not capped", async () => {
    const long = 'one two three four five six seven eight nine ten '.repeat(12);
    const refused = await chat('sk-small', long, { max_tokens: 4 });
    expect(refused.status).toBe(400);
    const err = ((await refused.json()) as { error: { code: string; message: string } }).error;
    expect(err.code).toBe('context_length_exceeded');
    expect(err.message).toMatch(/this tenant's running work may hold at most 4/);
    // Streamed, on the completions route (whose stream the host writes): still a 400 before anything went out.
    const streamed = await post('sk-small', '/v1/completions', { prompt: long, max_tokens: 4, stream: true });
    expect(streamed.status).toBe(400);
    expect(((await streamed.json()) as { error: { code: string } }).error.code).toBe('context_length_exceeded');
    const stopped = (await (await chat('sk-small', 'Hi', { max_tokens: 500, temperature: 0 })).json()) as { choices: Array<{ finish_reason: string }>; usage: { total_tokens: number } };
    expect(stopped.choices[0]!.finish_reason).toBe('length');
    expect(stopped.usage.total_tokens).toBeLessThanOrEqual(64);
    expect((await chat('sk-big', long, { max_tokens: 4 })).status).toBe(200);
    expect(s.engine.shareOf('big')).toEqual({ weight: 3, maxPages: Infinity });
    await expectNothingHeld(s.engine);
  });
});
