/**
 * The main thread's side of the engine thread (src/runtime/host/engine-thread.ts):
 * starts it, and stands for its inferlet host, models and snapshots here
 * (the interfaces of src/runtime/host/port.ts). Invocations are proxies
 * whose events, token times and end arrive as messages, a batch per engine
 * step; stats are read from the last refresh.
 *
 * The engine thread going down (a crash of the thread itself; the driver's
 * own worker is restarted inside it) fails every running invocation and
 * every later one as refused (503), and tells `onLost` listeners: the server
 * is then not ready, and `pie serve` exits so that a supervisor restarts it.
 */
import { Worker } from 'node:worker_threads';
import { ConfigError } from '../config.ts';
import { EngineError } from '../engine/errors.ts';
import type { EngineStats, StepStats } from '../engine/index.ts';
import { ModelLoadError } from '../model/errors.ts';
import { HubError } from '../model/hub/download.ts';
import { BuildError } from '../runtime/host/build.ts';
import { ComponentLoadError } from '../runtime/host/component-store.ts';
import type { StoredComponent } from '../runtime/host/component-store.ts';
import type { ComponentResolver, HostStats, InvokeOptions } from '../runtime/host/host.ts';
import { inputJson } from '../runtime/host/input-json.ts';
import { InvocationError, SessionError, type InvocationObserver, type InvocationResult, type InvocationState, type OutputEvent } from '../runtime/host/invocation.ts';
import type { EngineAloneRequest, EngineAloneResult, EngineThreadInit, ErrorWire, FromEngine, Held, ModelFacts, OutRecord, Snapshot, ToEngine } from '../runtime/host/link-protocol.ts';
import { cancelOnAbort, OutputQueue, type EngineSide, type HostPort, type RunningInvocation, type ServedModel, type Snapshots } from '../runtime/host/port.ts';
import type { EngineSideOptions } from '../startup.ts';

const ENGINE_THREAD = new URL('../runtime/host/engine-thread.ts', import.meta.url);

/** An epoch time from the engine thread on this thread's performance.now() (0 stays 0: never). */
const local = (epochMs: number) => (epochMs === 0 ? 0 : epochMs - performance.timeOrigin);

/** The errors callers tell apart by class (the CLI's clean one-line failures, the gateway's statuses), rebuilt by name. */
const CLASSES: Record<string, (w: ErrorWire) => Error> = {
  ConfigError: (w) => new ConfigError(w.message),
  ModelLoadError: (w) => new ModelLoadError(w.message),
  ComponentLoadError: (w) => new ComponentLoadError(w.message),
  BuildError: (w) => new BuildError(w.message),
  EngineError: (w) => new EngineError(w.code ?? 'internal', w.message),
  SessionError: (w) => new SessionError((w.code ?? 'ended') as SessionError['code'], w.message),
  HubError: (w) => new HubError(w.message),
};

function errorOf(w: ErrorWire): Error {
  if (w.kind) return new InvocationError(w.kind, w.message);
  const e = CLASSES[w.name]?.(w) ?? Object.assign(new Error(w.message), { name: w.name }, w.code ? { code: w.code } : {});
  if (w.stack) e.stack = w.stack; // where it was thrown, on the engine thread
  return e;
}

/** The engine thread could not start, or is gone. */
export class EngineThreadError extends Error {
  override name = 'EngineThreadError';
}

/** How long a stats refresh (a metrics scrape) waits for the engine thread before it uses the last stats, and close() before it terminates the thread. */
const REFRESH_TIMEOUT_MS = 2000;
const CLOSE_TIMEOUT_MS = 30_000;

/** An invocation running on the engine thread, as its caller here sees it. */
class RemoteInvocation implements RunningInvocation {
  readonly id: number;
  state: InvocationState = 'running';
  readonly result: Promise<InvocationResult>;
  status = 200;
  headers: Record<string, string> = {};
  numTokens = 0;
  numPromptTokens = 0;
  maxGenerationTokens = 0;
  instantiateMs = 0;
  observer: InvocationObserver | null = null;
  private readonly output = new OutputQueue(() => this.done);
  private resolve!: (r: InvocationResult) => void;
  private reject!: (e: Error) => void;
  private readonly onCancel: (reason: string) => void;
  private readonly ask: { deliver: (message: string) => Promise<number>; pages: () => Promise<number> };

  constructor(id: number, onCancel: (reason: string) => void, ask: RemoteInvocation['ask']) {
    this.id = id;
    this.onCancel = onCancel;
    this.ask = ask;
    this.result = new Promise((res, rej) => ((this.resolve = res), (this.reject = rej)));
    this.result.catch(() => {}); // a caller that only reads events must not see an unhandled rejection
  }

  get done(): boolean {
    return this.state !== 'running';
  }

  cancel(reason = 'cancelled by the caller'): void {
    if (!this.done) this.onCancel(reason);
  }

  deliver(message: string): Promise<number> {
    if (this.done) return Promise.reject(new SessionError('ended', `the invocation has ended (${this.state})`));
    return this.ask.deliver(message);
  }

  kvPages(): Promise<number> {
    return this.done ? Promise.resolve(0) : this.ask.pages();
  }

  onEvent(listener: (e: OutputEvent) => void): void {
    this.output.listen(listener);
  }

  events(): AsyncIterable<OutputEvent> {
    return this.output.drain();
  }

  /** One output record of the engine thread about this invocation. */
  take(r: OutRecord): void {
    switch (r[0]) {
      case 'e': {
        if (r[4] !== undefined) {
          this.status = r[4];
          this.headers = r[5] ?? {};
        }
        return this.output.push({ event: r[2], data: r[3] });
      }
      case 't':
        return this.observer?.tokens(r[2], r[3], local(r[4]));
      case 'p':
        this.numPromptTokens += r[2];
        return this.observer?.prompt(r[2]);
      case 'g': {
        const g = r[2];
        return this.observer?.generation({ ...g, queuedAt: local(g.queuedAt), scheduledAt: local(g.scheduledAt), firstTokenAt: local(g.firstTokenAt), lastTokenAt: local(g.lastTokenAt) });
      }
      case 'end': {
        const [, , result, error, counts] = r;
        Object.assign(this, counts);
        if (result) {
          this.state = 'succeeded';
          this.status = result.status;
          this.headers = result.headers;
          this.resolve(result);
        } else {
          const err = errorOf(error ?? { name: 'Error', message: 'the invocation failed' });
          this.state = err instanceof InvocationError && err.kind === 'cancelled' ? 'cancelled' : 'failed';
          this.reject(err);
        }
        return this.output.end();
      }
    }
  }

  /** The engine thread is gone (refused: a 503, not a guest's failure the gateway would run again). */
  lose(message: string): void {
    if (this.done) return;
    this.take(['end', this.id, null, { name: 'InvocationError', kind: 'refused', message }, { numTokens: this.numTokens, numPromptTokens: this.numPromptTokens, maxGenerationTokens: this.maxGenerationTokens, instantiateMs: 0 }]);
  }
}

class RemoteModel implements ServedModel {
  readonly model: ModelFacts;
  last: EngineStats;
  readonly listeners = new Set<(s: StepStats) => void>();

  constructor(facts: ModelFacts, stats: EngineStats) {
    this.model = facts;
    this.last = stats;
  }

  stats(): EngineStats {
    return this.last;
  }

  addStepListener(listener: (s: StepStats) => void): () => void {
    const l = (s: StepStats) => listener(s); // one registration per call, as Engine's
    this.listeners.add(l);
    return () => void this.listeners.delete(l);
  }
}

/** The engine side on its own thread. */
export class EngineThread implements EngineSide, HostPort {
  readonly host: HostPort = this;
  readonly models: RemoteModel[] = [];
  readonly snapshots: Snapshots;
  private readonly worker: Worker;
  private readonly running = new Map<number, RemoteInvocation>();
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private lastHost: HostStats | null = null;
  private nextId = 1;
  private nextQ = 1;
  private lost: string | null = null;
  private readonly lostListeners: Array<(reason: string) => void> = [];
  private closed = false;
  private readonly log: (line: string) => void;
  private resolver: ComponentResolver | null = null;

  private constructor(worker: Worker, log: (line: string) => void, snapshotsEnabled: boolean) {
    this.worker = worker;
    this.log = log;
    const post = (m: ToEngine) => this.post(m);
    this.snapshots = {
      enabled: snapshotsEnabled,
      keep: (model, tenant, name) => post({ t: 'keep', model, tenant, name }),
      drop: (model, tenant, name) => post({ t: 'drop', model, tenant, name }),
    };
  }

  /** Starts the engine thread and waits until its models and host are ready (rejects with why they could not start). */
  static async start(options: EngineSideOptions): Promise<EngineThread> {
    if (options.engines) throw new Error('engines started on this thread cannot move to the engine thread');
    const init: EngineThreadInit = { config: options.config, shares: [...(options.shares ?? new Map())], tenants: options.tenants ?? 1, ...(options.models ? { models: options.models } : {}) };
    const worker = new Worker(ENGINE_THREAD, { workerData: init, name: 'pie-engine' });
    const link = new EngineThread(worker, options.log, options.config.server.maxSnapshots > 0);
    let ready = () => {};
    await new Promise<void>((resolve, reject) => {
      const onMessage = (m: FromEngine) => {
        if (m.t === 'log') return options.log(m.line);
        if (m.t === 'failed') return reject(errorOf(m.error));
        if (m.t !== 'ready') return;
        m.models.forEach((facts, i) => link.models.push(new RemoteModel(facts, m.stats.models[i]!)));
        link.lastHost = m.stats.host;
        resolve();
      };
      const onExit = (code: number) => reject(new EngineThreadError(`the engine thread exited with code ${code} while starting`));
      const onError = (err: Error) => reject(new EngineThreadError(`the engine thread failed to start: ${err.message}`));
      worker.on('message', onMessage);
      worker.once('error', onError);
      worker.once('exit', onExit);
      ready = () => (worker.off('message', onMessage), worker.off('error', onError), worker.off('exit', onExit));
    }).catch(async (err: unknown) => {
      await worker.terminate();
      throw err;
    });
    ready();
    worker.on('message', (m: FromEngine) => link.onMessage(m));
    worker.on('error', (err) => link.goneWith(`the engine thread crashed: ${err.message}`));
    worker.on('exit', (code) => link.goneWith(`the engine thread exited with code ${code}`));
    return link;
  }

  load(source: Uint8Array | string): Promise<StoredComponent> {
    return this.request({ t: 'load', q: 0, source }) as Promise<StoredComponent>;
  }

  invoke(component: StoredComponent, options: InvokeOptions = {}): RunningInvocation {
    if (this.closed) throw new Error('the inferlet host is closed');
    const served = this.models.map((m) => m.model.name);
    for (const m of options.models ?? []) if (!served.includes(m)) throw new Error(`no engine serves model "${m}"`);
    const { signal, input, inputJson: given, ...rest } = options;
    const text = given ?? inputJson(input); // once, here; throws before anything is registered
    const id = this.nextId++;
    const inv = new RemoteInvocation(
      id,
      (reason) => this.post({ t: 'cancel', id, reason }),
      {
        deliver: (message) => this.request({ t: 'deliver', q: 0, id, message }) as Promise<number>,
        pages: () => this.request({ t: 'pages', q: 0, id }) as Promise<number>,
      },
    );
    if (this.lost !== null) {
      inv.lose(`the engine thread is gone (${this.lost}); the server must be restarted`);
      return inv;
    }
    this.post({ t: 'invoke', id, component, options: { ...rest, inputJson: text } });
    this.running.set(id, inv);
    cancelOnAbort(inv, signal);
    return inv;
  }

  forget(component: StoredComponent): void {
    this.post({ t: 'forget', component });
  }

  /** Answers the engine thread's requests for components guests launch by name. */
  resolveComponentsWith(resolver: ComponentResolver): void {
    this.resolver = resolver;
  }

  private resolveFor(r: number, tenant: string, ref: string): void {
    const found = this.resolver ? this.resolver(tenant, ref) : Promise.reject(new Error(`no component "${ref}" here: only "self" can be launched`));
    found.then(
      (component) => this.post({ t: 'resolved', r, ok: true, component }),
      (err: unknown) => this.post({ t: 'resolved', r, ok: false, error: { name: err instanceof Error ? err.name : 'Error', message: err instanceof Error ? err.message : String(err) } }),
    );
  }

  /** The host's counters as of the last refresh (see refresh), except `running`: the invocations started here that have not ended. */
  stats(): HostStats {
    return { ...this.lastHost!, running: this.running.size };
  }

  /** Reads the host's and the engines' counters (before a metrics scrape); keeps the last ones if the engine thread does not answer within 2 s or is gone. */
  async refresh(): Promise<void> {
    if (this.lost !== null) return;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<null>((r) => (timer = setTimeout(() => r(null), REFRESH_TIMEOUT_MS)));
    const s = (await Promise.race([this.request({ t: 'refresh', q: 0 }).catch(() => null), late])) as Snapshot | null;
    clearTimeout(timer);
    if (!s) return;
    this.lastHost = s.host;
    s.models.forEach((m, i) => (this.models[i]!.last = m));
  }

  /** Called once if the engine thread goes down (not when it is closed). */
  onLost(listener: (reason: string) => void): void {
    if (this.lost !== null && !this.closed) listener(this.lost);
    else this.lostListeners.push(listener);
  }

  /** Pages, contexts and snapshots held per model, in model order. */
  held(): Promise<Held[]> {
    return this.request({ t: 'held', q: 0 }) as Promise<Held[]>;
  }

  /** Runs greedy generations straight on a model's engine, with no HTTP and no inferlet (bench:serve's baseline). */
  engineAlone(request: EngineAloneRequest): Promise<EngineAloneResult> {
    return this.request({ t: 'engine-alone', q: 0, request }) as Promise<EngineAloneResult>;
  }

  /** Ends every invocation (the engine thread releases what they hold) and the thread; after 30 s without an answer it is terminated. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.lost === null) {
      let timer: NodeJS.Timeout | undefined;
      let late = false;
      const wait = new Promise<void>((r) => (timer = setTimeout(() => ((late = true), this.log('pie: the engine thread did not close within 30 s; terminating it'), r()), CLOSE_TIMEOUT_MS)));
      const closing = this.request({ t: 'close', q: 0 }).catch((err: Error) => void (late || this.log(`pie: closing the engine thread: ${err.message}`)));
      await Promise.race([closing, wait]);
      clearTimeout(timer);
    }
    this.goneWith('the server closed'); // settles anything left (the close ends every invocation first), before the thread's exit would say it died
    await this.worker.terminate();
  }

  private post(m: ToEngine): void {
    if (this.lost === null) this.worker.postMessage(m);
  }

  private request(m: ToEngine & { q: number }): Promise<unknown> {
    if (this.lost !== null) return Promise.reject(new EngineThreadError(`the engine thread is gone: ${this.lost}`));
    const q = this.nextQ++;
    return new Promise((resolve, reject) => {
      this.pending.set(q, { resolve, reject });
      this.worker.postMessage({ ...m, q });
    });
  }

  private onMessage(m: FromEngine): void {
    switch (m.t) {
      case 'out':
        for (const r of m.records) {
          if (r[0] === 'step') {
            for (const l of this.models[r[1]]!.listeners) l(r[2]);
            continue;
          }
          const inv = this.running.get(r[1]);
          if (!inv) continue;
          if (r[0] === 'end') this.running.delete(r[1]);
          inv.take(r);
        }
        return;
      case 'reply': {
        const p = this.pending.get(m.q);
        this.pending.delete(m.q);
        if (m.ok) p?.resolve(m.value);
        else p?.reject(errorOf(m.error));
        return;
      }
      case 'log':
        return this.log(m.line);
      case 'resolve':
        return this.resolveFor(m.r, m.tenant, m.ref);
    }
  }

  /** The thread is gone: everything running and waiting fails, and so does everything later. */
  private goneWith(reason: string): void {
    if (this.lost !== null) return;
    this.lost = reason;
    const message = this.closed ? 'the server is shutting down' : `the engine thread is gone (${reason}); the server must be restarted`;
    for (const inv of this.running.values()) inv.lose(message);
    this.running.clear();
    for (const p of this.pending.values()) p.reject(new EngineThreadError(`the engine thread is gone: ${reason}`));
    this.pending.clear();
    if (this.closed) return;
    this.log(`pie: ${reason}; running requests fail, and so will new ones until the server is restarted`);
    for (const l of this.lostListeners.splice(0)) l(reason);
  }
}
