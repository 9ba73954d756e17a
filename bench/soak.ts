/**
 * Soak: one server, several tenants, hostile traffic and crashes, bounded
 * (two phases of --seconds each, loopback only).
 *
 *   npm run soak [-- --seconds 60 --clients 4 --model DIR]
 *
 * The server is `serve()` on the portable driver (the tiny random model by
 * default: the soak is about staying up and accounting, not speed), with
 * three keys: tenants `calm-a` and `calm-b` send ordinary chats (half
 * streamed, one in ten dropped after its first chunk), tenant `hostile`
 * sends 3 MB prompts, n = 16 chats, snapshot hoards, 1 MB message floods and
 * a guest that spins through its cancellation (test/inferlets/hostile.ts).
 *
 *   phase 1  calm tenants alone (the baseline for their latency);
 *   phase 2  calm and hostile together; a third of the way in a guest worker
 *            is killed, two thirds of the way the driver's worker dies
 *            mid-step (after a run, before its reply).
 *
 * Prints requests per outcome per tenant, 5xx counts, what is held after
 * (pages outside snapshots, contexts, invocations running: all must be 0),
 * RSS at start and end, driver and worker restarts, and the calm tenants'
 * p50/p99 latency in each phase. Writes bench/results/soak.json.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseConfig } from '../src/config.ts';
import type { PortableDriver } from '../drivers/portable/driver.ts';
import { startEngine } from '../src/engine/index.ts';
import { serve } from '../src/gateway/start.ts';
import { createRandomModel, PRESETS } from '../src/model/random.ts';
import { median, p99 } from './stats.ts';

const { values: args } = parseArgs({ options: { seconds: { type: 'string', default: '60' }, clients: { type: 'string', default: '4' }, model: { type: 'string' } } });
const SECONDS = Number(args.seconds);
const CLIENTS = Number(args.clients);
const ROOT = join(import.meta.dirname, '..');

const modelDir = args.model ?? join(mkdtempSync(join(tmpdir(), 'pie-soak-')), 'model');
if (!args.model) createRandomModel(modelDir, PRESETS.tiny, 1);
const engine = await startEngine(modelDir, { numPages: 256, pageSize: 16, queueTimeoutMs: 5000 });
const model = engine.model.name;
const config = parseConfig(
  `[server]\nport = 0\napi_key_env = ""\ndata_dir = ${JSON.stringify(mkdtempSync(join(tmpdir(), 'pie-soak-data-')))}\n` +
    `[inferlets]\ncache_dir = ${JSON.stringify(join(tmpdir(), 'pie-soak-components'))}\ncancel_grace_ms = 1000\n` +
    ['calm-a', 'calm-b', 'hostile'].map((t) => `[[keys]]\nkey = "sk-${t}"\ntenant = "${t}"\nscopes = ["*"]\n`).join('') +
    `[[routes]]\nmethod = "POST"\npath = "/v1/hostile"\ninferlet = "test/inferlets/hostile.ts"\nwall_time_s = 2\n`,
  'soak.toml',
  ROOT,
);
const serving = await serve({ config, engines: [engine], log: () => {} });
await serving.loaded;
const url = serving.url;
const host = serving.gateway.runtime().host;
const rssStart = process.memoryUsage().rss;

type Outcome = string;
const outcomes = new Map<string, Map<Outcome, number>>();
const count = (tenant: string, o: Outcome) => {
  const m = outcomes.get(tenant) ?? outcomes.set(tenant, new Map()).get(tenant)!;
  m.set(o, (m.get(o) ?? 0) + 1);
};
const latencies: Record<string, number[]> = { baseline: [], hostile: [] };

async function request(tenant: string, path: string, body: object, options: { drop?: boolean } = {}): Promise<number> {
  const abort = new AbortController();
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer sk-${tenant}` }, body: JSON.stringify(body), signal: abort.signal });
  if (options.drop && res.body) {
    await res.body.getReader().read();
    abort.abort();
    return -1;
  }
  await res.arrayBuffer();
  return res.status;
}

let phase: 'baseline' | 'hostile' = 'baseline';
let running = true;

async function calmClient(tenant: string, seed: number): Promise<void> {
  for (let i = 0; running; i++) {
    const stream = (i + seed) % 2 === 0;
    const drop = stream && (i * 7 + seed) % 10 === 0;
    const t0 = performance.now();
    try {
      const status = await request(tenant, '/v1/chat/completions', { model, messages: [{ role: 'user', content: `Tell me story ${i} of ${tenant}.` }], max_tokens: 32, stream }, { drop });
      if (status === -1) count(tenant, 'dropped');
      else {
        count(tenant, String(status));
        if (status === 200) latencies[phase]!.push(performance.now() - t0);
      }
    } catch (err) {
      count(tenant, `client error: ${(err as Error).message}`);
    }
  }
}

async function hostileClient(seed: number): Promise<void> {
  const huge = 'word '.repeat(600_000);
  const moves = [
    () => request('hostile', '/v1/chat/completions', { model, messages: [{ role: 'user', content: huge }], max_tokens: 4 }),
    () => request('hostile', '/v1/chat/completions', { model, messages: [{ role: 'user', content: 'Go' }], n: 16, max_tokens: 64 }),
    () => request('hostile', '/v1/hostile', { action: 'hoard', count: 20, tokens: 200 }),
    () => request('hostile', '/v1/hostile', { action: 'flood-messages', count: 100 }),
    () => request('hostile', '/v1/hostile', { action: 'spin' }),
  ];
  for (let i = seed; running && phase === 'hostile'; i++) {
    try {
      count('hostile', String(await moves[i % moves.length]!()));
    } catch (err) {
      count('hostile', `client error: ${(err as Error).message}`);
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Phase 1: calm alone.
let clients = Array.from({ length: CLIENTS }, (_, i) => calmClient(i % 2 ? 'calm-b' : 'calm-a', i));
await sleep(SECONDS * 1000);
running = false;
await Promise.all(clients);

// Phase 2: calm and hostile, a guest worker and the driver's worker killed along the way.
running = true;
phase = 'hostile';
clients = [...Array.from({ length: CLIENTS }, (_, i) => calmClient(i % 2 ? 'calm-b' : 'calm-a', i)), hostileClient(0), hostileClient(2)];
await sleep((SECONDS * 1000) / 3);
const restartsBefore = host.stats().workerRestarts;
await (host as unknown as { slots: Array<{ worker: { terminate(): Promise<number> } }> }).slots[0]!.worker.terminate();
await sleep((SECONDS * 1000) / 3);
while (engine.stats().running === 0) await sleep(1); // mid-step: something is running
// The way a fault in its JavaScript would end it: terminating it from outside can abort the process when it
// lands inside an ONNX Runtime run (PortableDriver.crashAfterNextRun says why).
(engine.driver as PortableDriver).crashAfterNextRun();
await sleep((SECONDS * 1000) / 3);
running = false;
await Promise.all(clients);

// Quiet: what is left held.
await sleep(3000);
const snapshotPages = new Set<number>();
for (const t of ['calm-a', 'calm-b', 'hostile']) for (const n of engine.listSnapshots(t)) for (const p of engine.snapshots.get(n, t)!.pageTable) snapshotPages.add(p);
const leaked = { pages: engine.kv.pool.numInUse - snapshotPages.size, contexts: engine.numContexts, invocations: host.stats().running };
const rssEnd = process.memoryUsage().rss;
const calm5xx = ['calm-a', 'calm-b'].reduce((n, t) => n + [...(outcomes.get(t) ?? new Map())].filter(([o]) => o.startsWith('5')).reduce((a, [, c]) => a + c, 0), 0);
const result = {
  date: new Date().toISOString(),
  cores: cpus().length,
  secondsPerPhase: SECONDS,
  clients: CLIENTS,
  outcomes: Object.fromEntries([...outcomes].map(([t, m]) => [t, Object.fromEntries(m)])),
  calm5xx,
  leaked,
  rssMb: { start: Math.round(rssStart / 2 ** 20), end: Math.round(rssEnd / 2 ** 20) },
  workerRestarts: host.stats().workerRestarts - restartsBefore,
  driverRestarts: engine.numDriverRestarts,
  calmLatencyMs: Object.fromEntries(Object.entries(latencies).map(([k, v]) => [k, { n: v.length, p50: Math.round(median(v)), p99: Math.round(p99(v)) }])),
};
console.log('\nSoak (tiny model, portable driver, %d cores, %d s per phase, %d calm clients)\n', result.cores, SECONDS, CLIENTS);
console.log('| tenant | outcomes |');
console.log('|---|---|');
for (const [t, o] of Object.entries(result.outcomes)) console.log(`| ${t} | ${Object.entries(o).map(([k, v]) => `${k}: ${v}`).join(', ')} |`);
console.log(`\ncalm 5xx: ${calm5xx}; held after: ${JSON.stringify(leaked)}; RSS ${result.rssMb.start} → ${result.rssMb.end} MB; guest worker restarts ${result.workerRestarts}, driver restarts ${result.driverRestarts}`);
console.log('\n| calm latency | requests | p50 ms | p99 ms |\n|---|---:|---:|---:|');
for (const [k, v] of Object.entries(result.calmLatencyMs)) console.log(`| ${k} | ${v.n} | ${v.p50} | ${v.p99} |`);
mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
writeFileSync(join(ROOT, 'bench', 'results', 'soak.json'), JSON.stringify(result, null, 2) + '\n');
await serving.close();
await engine.close();
