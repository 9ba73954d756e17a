/**
 * The engine thread: a worker that owns the engines (KV, scheduler, sampler,
 * contexts, snapshots), the inferlet host and its guest workers, which it
 * starts itself, so guests' calls come here directly and never pass through
 * the main thread. The main thread (src/gateway/engine-link.ts) sends it
 * invocations and gets back what it writes to sockets: events, results, and
 * the token times and steps the metrics need (link-protocol.ts).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { startEngineSide, type LocalEngineSide } from '../../startup.ts';
import type { StoredComponent } from './component-store.ts';
import { engineAlone } from './engine-alone.ts';
import { InvocationError, SessionError, type Invocation, type InvocationResult } from './invocation.ts';
import type { EngineAloneRequest, EngineAloneResult, EngineThreadInit, ErrorWire, FromEngine, Held, OutRecord, Snapshot, ToEngine } from './link-protocol.ts';

const port = parentPort!;
const init = workerData as EngineThreadInit;
const send = (m: FromEngine) => port.postMessage(m);
const epoch = (now: number) => (now === 0 ? 0 : performance.timeOrigin + now);

export function errorWire(err: unknown): ErrorWire {
  if (err instanceof InvocationError) return { name: err.name, message: err.message, kind: err.kind };
  if (err instanceof Error) {
    const code = (err as Error & { code?: unknown }).code;
    return { name: err.name, message: err.message, ...(typeof code === 'string' ? { code } : {}), ...(err.stack ? { stack: err.stack } : {}) };
  }
  return { name: 'Error', message: String(err) };
}

/**
 * Output records leave in one message per turn of the event loop: a step's
 * events for all its rows go together, after the engine has handed its next
 * batch to the driver (the step loop continues in a microtask; the message
 * is not in the way of the next forward pass).
 */
let records: OutRecord[] = [];
function out(r: OutRecord): void {
  if (records.length === 0) setImmediate(flush);
  records.push(r);
}
function flush(): void {
  const batch = records;
  records = [];
  if (batch.length > 0) send({ t: 'out', records: batch });
}

const running = new Map<number, Invocation>();
let side: LocalEngineSide;

function snapshot(): Snapshot {
  return { host: side.host.stats(), models: side.engines.map((e) => e.stats()) };
}

function held(): Held[] {
  const invocations = side.host.stats().running;
  return side.engines.map((e) => ({ pagesInUse: e.kv.pool.numInUse, contexts: e.numContexts, snapshots: e.snapshots.size, invocations }));
}

/** The engine alone on the gateway's own engine (bench:serve's baseline). */
async function runEngineAlone(request: EngineAloneRequest): Promise<EngineAloneResult> {
  const engine = side.engines.find((e) => e.model.name === request.model);
  if (!engine) throw new Error(`no engine serves model "${request.model}"`);
  const result = await engineAlone(engine, request);
  await new Promise((r) => setImmediate(r)); // the reply after the records of its last step
  return result;
}

function invoke(m: Extract<ToEngine, { t: 'invoke' }>): void {
  const id = m.id;
  let inv: Invocation;
  try {
    inv = side.host.invoke(m.component, m.options);
  } catch (err) {
    out(['end', id, null, { ...errorWire(err), kind: 'refused' }, { numTokens: 0, numPromptTokens: 0, maxGenerationTokens: 0, instantiateMs: 0 }]);
    return;
  }
  running.set(id, inv);
  let sent = 0; // the status and headers the main thread has (answerVersion)
  inv.onEvent((e) => {
    if (inv.answerVersion !== sent) {
      sent = inv.answerVersion;
      out(['e', id, e.event, e.data, inv.status, { ...inv.headers }]);
    } else out(['e', id, e.event, e.data]);
  });
  inv.observer = {
    tokens: (count, gapMs, now) => out(['t', id, count, gapMs, epoch(now)]),
    prompt: (added) => out(['p', id, added]),
    generation: (g) => out(['g', id, { ...g, queuedAt: epoch(g.queuedAt), scheduledAt: epoch(g.scheduledAt), firstTokenAt: epoch(g.firstTokenAt), lastTokenAt: epoch(g.lastTokenAt) }]),
  };
  const end = (result: InvocationResult | null, error: ErrorWire | null) => {
    running.delete(id);
    out(['end', id, result, error, { numTokens: inv.numTokens, numPromptTokens: inv.numPromptTokens, maxGenerationTokens: inv.maxGenerationTokens, instantiateMs: inv.instantiateMs }]);
  };
  inv.result.then(
    (r) => end(r, null),
    (err: unknown) => end(null, errorWire(err)),
  );
}

async function answer(q: number, work: () => unknown): Promise<void> {
  try {
    send({ t: 'reply', q, ok: true, value: await work() });
  } catch (err) {
    send({ t: 'reply', q, ok: false, error: errorWire(err) });
  }
}

/** Components guests launch by name, found by the main thread (the uploads are there). */
const resolving = new Map<number, { resolve: (c: StoredComponent) => void; reject: (e: Error) => void }>();
let nextResolve = 1;
function resolveOnMain(tenant: string, ref: string): Promise<StoredComponent> {
  const r = nextResolve++;
  return new Promise((resolve, reject) => {
    resolving.set(r, { resolve, reject });
    send({ t: 'resolve', r, tenant, ref });
  });
}

function onMessage(m: ToEngine): void {
  switch (m.t) {
    case 'resolved': {
      const p = resolving.get(m.r);
      resolving.delete(m.r);
      if (m.ok) p?.resolve(m.component);
      else p?.reject(Object.assign(new Error(m.error.message), { name: m.error.name }));
      return;
    }
    case 'invoke':
      return invoke(m);
    case 'cancel':
      return running.get(m.id)?.cancel(m.reason);
    case 'forget':
      return side.host.forget(m.component);
    case 'pages':
      return void answer(m.q, () => running.get(m.id)?.kvPages() ?? 0);
    case 'deliver':
      return void answer(m.q, () => running.get(m.id)?.deliver(m.message) ?? Promise.reject(new SessionError('ended', 'the invocation has ended')));
    case 'keep':
      return side.snapshots.keep(m.model, m.tenant, m.name);
    case 'drop':
      return side.snapshots.drop(m.model, m.tenant, m.name);
    case 'load':
      return void answer(m.q, () => side.host.load(m.source));
    case 'refresh':
      return void answer(m.q, snapshot);
    case 'held':
      return void answer(m.q, held);
    case 'engine-alone':
      return void answer(m.q, () => runEngineAlone(m.request));
    case 'close':
      return void answer(m.q, async () => {
        flush();
        await side.close();
        flush();
      });
  }
}

try {
  side = await startEngineSide({
    config: init.config,
    ...(init.models ? { models: init.models } : {}),
    shares: new Map(init.shares),
    tenants: init.tenants,
    log: (line) => send({ t: 'log', line }),
  });
  side.engines.forEach((e, i) => e.addStepListener((s) => out(['step', i, s])));
  side.host.resolveComponentsWith(resolveOnMain);
  port.on('message', onMessage);
  send({ t: 'ready', models: side.engines.map((e) => ({ name: e.model.name, dir: e.model.dir, config: { maxPositionEmbeddings: e.model.config.maxPositionEmbeddings } })), stats: snapshot() });
} catch (err) {
  send({ t: 'failed', error: errorWire(err) });
}
