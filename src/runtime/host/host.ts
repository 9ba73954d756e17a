/**
 * The inferlet host: runs invocations of components on a few guest workers
 * and answers their calls against the engines, on the caller's thread.
 *
 *   invoke ─► pick the least-loaded healthy worker ─► start
 *   worker batch of calls ─► handler (handlers/, one table for every operation of ops.ts)
 *                          ─► replies batched back per worker
 *   done / cancel / wall time / watchdog ─► release contexts, generations,
 *                          subscriptions ─► settle the invocation
 *
 * Watchdog: each worker bumps a shared counter from its event loop and at
 * every host call. A worker whose counter stops is passed over for new work at
 * once, and once it has spent `stallMs` of its own CPU time since the last
 * bump it is terminated: the invocation that was running fails as stuck, the
 * others it hosted fail as collateral, and a fresh worker takes its place. CPU
 * time, not wall time: a healthy worker starved of the CPU by a loaded
 * machine is not mistaken for a stuck one. A guest that beats (it calls the
 * host in a loop) but goes on running `cancelGraceMs` after its invocation
 * was cancelled or passed its wall time is terminated the same way: it would
 * otherwise hold its worker for ever.
 */
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Engine } from '../../engine/index.ts';
import { AbiError } from '../abi.ts';
import type { Handler, HostSide } from './handlers/host-side.ts';
import { HANDLERS } from './handlers/index.ts';
import { ComponentStore, type StoredComponent } from './component-store.ts';
import { Invocation, InvocationError, MAX_FAMILY } from './invocation.ts';
import { DEFAULT_LIMITS, resolveLimits } from './limits.ts';
import { inputJson } from './input-json.ts';
import { MessageHub, type MessageLimits } from './message-hub.ts';
import { isOpName, type OpName, type WitChildLimits } from '../ops.ts';
import { MAX_CHILD_INPUT } from '../output-rules.ts';
import { cancelOnAbort } from './port.ts';
import { HEARTBEAT, type Call, type HostToWorker, type InstanceLimits, type ModelDescriptor, type Reply, type WorkerToHost } from '../protocol.ts';

export interface HostOptions {
  /** The engines inferlets may use, by their model's served name. */
  engines: Engine[];
  /** Guest worker threads (default: 2, at most the number of cores). */
  workers?: number;
  /** Default per-invocation limits (kvPages defaults to each pool's size). */
  limits?: Partial<InstanceLimits>;
  /** Where transpiled components are cached (default: a folder in the OS temp dir). */
  cacheDir?: string;
  /** A worker that spends this much CPU time without its event loop turning is terminated (default 2000 ms). */
  stallMs?: number;
  /** A guest still running this long after its invocation was cancelled or timed out has its worker terminated (default 2000 ms). */
  cancelGraceMs?: number;
  /** Bounds on inferlets' messages, per tenant (message-hub.ts has the defaults). */
  messageLimits?: Partial<MessageLimits>;
  /** Instances kept instantiated ahead of need, per component and worker (default 2). */
  warmInstances?: number;
  /**
   * A tenant whose guest got its worker terminated (it did not yield, or ran
   * on past its end) has its invocations on a worker of their own for this
   * long, so that doing it again loses nobody else's (default 0: never; the
   * gateway sets it when it serves several tenants). Needs two workers or more.
   */
  quarantineMs?: number;
  /** Where guests' log lines go (default: stderr). */
  log?: (line: string) => void;
}

export interface InvokeOptions {
  /** The invocation's input: any JSON value (default null). */
  input?: unknown;
  /** The input already as JSON text, as input-json.ts writes it (every string well-formed; not checked again): used instead of `input`. */
  inputJson?: string;
  tenant?: string;
  /** Models it may load (default: all). */
  models?: string[];
  limits?: Partial<InstanceLimits>;
  signal?: AbortSignal;
  /**
   * Run on an instance an earlier invocation of this component finished with,
   * and hand it back afterwards: no instantiation and no first-call cost, but
   * module state survives between invocations. Only for trusted components
   * that keep none (the gateway's built-in inferlets).
   */
  reuseInstance?: boolean;
}

/**
 * Finds a component an invocation of `tenant` names in runtime.launch
 * (other than `self`): on a server, an inferlet the tenant uploaded, by id
 * or name. Rejects when there is none.
 */
export type ComponentResolver = (tenant: string, ref: string) => Promise<StoredComponent>;

/** Detached children one tenant may have running, and children in all (detached or not). */
export const MAX_DETACHED_PER_TENANT = 16;
export const MAX_CHILDREN_PER_TENANT = 256;


export interface HostStats {
  workers: number;
  running: number;
  started: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  workerRestarts: number;
  /** Tenants whose invocations run on a worker of their own (HostOptions.quarantineMs). */
  quarantined: number;
  /** Components the workers have been asked to keep instances of (warm_instances > 0), until forgotten. */
  components: number;
}

class WorkerSlot {
  readonly worker: Worker;
  readonly heartbeat = new Int32Array(new SharedArrayBuffer(HEARTBEAT.size * 4));
  /** Invocations it hosts, by id, until it reports them done. */
  readonly invocations = new Map<number, Invocation>();
  readonly ready: Promise<void>;
  lastBeat = -1;
  lastBeatAt = performance.now();
  /** The worker thread's CPU time (µs) when its counter last moved; null where it cannot be read. */
  cpuAtBeat: number | null = null;
  /** Invocations the host has ended that the guest has not yet returned from, with when. */
  readonly ending = new Map<number, number>();
  replies: Reply[] = [];
  warmed = new Set<string>();
  dead = false;
  /** It has loaded and said so: only then can it stall (loading its modules is not a guest's doing). */
  started = false;
  /** A check of it is under way. */
  watching = false;

  constructor() {
    this.worker = new Worker(new URL('../guest/worker.ts', import.meta.url), { workerData: { heartbeat: this.heartbeat.buffer } });
    this.ready = new Promise((resolve) => {
      const onReady = (m: WorkerToHost) => {
        if (m.t !== 'ready') return;
        this.started = true;
        this.worker.off('message', onReady);
        resolve();
      };
      this.worker.on('message', onReady);
    });
  }

  send(m: HostToWorker): void {
    if (!this.dead) this.worker.postMessage(m);
  }

  /** Replies leave in one message per microtask checkpoint: all calls of a batch answered at once go together, without waiting for the next turn. */
  reply(r: Reply): void {
    if (this.replies.length === 0) queueMicrotask(() => this.flushReplies());
    this.replies.push(r);
  }

  private flushReplies(): void {
    const replies = this.replies;
    this.replies = [];
    if (replies.length > 0) this.send({ t: 'replies', replies });
  }

  /** Whether it made progress recently (the watchdog samples the beat every 100 ms at most). */
  get responsive(): boolean {
    return performance.now() - this.lastBeatAt < 250;
  }
}

export class InferletHost implements HostSide {
  readonly store: ComponentStore;
  readonly hub: MessageHub;
  private readonly engines = new Map<string, Engine>();
  private readonly slots: WorkerSlot[] = [];
  private readonly where = new Map<number, WorkerSlot>();
  private readonly running = new Map<number, Invocation>();
  private readonly limits: InstanceLimits;
  private readonly stallMs: number;
  private readonly cancelGraceMs: number;
  private readonly warmInstances: number;
  private readonly quarantineMs: number;
  /** Tenants in quarantine, with until when. */
  private readonly quarantined = new Map<string, number>();
  private readonly logLine: (line: string) => void;
  private readonly watchdog: NodeJS.Timeout;
  private nextInv = 1;
  private closed = false;
  private resolver: ComponentResolver | null = null;
  /** Components loaded through load() (built-ins, routes): forget() leaves them. */
  private readonly pinned = new Set<string>();
  /** Detached children running, and children in all, per tenant. */
  private readonly detachedBy = new Map<string, number>();
  private readonly launchedBy = new Map<string, number>();
  private readonly counts = { started: 0, succeeded: 0, failed: 0, cancelled: 0, workerRestarts: 0 };

  private constructor(options: HostOptions) {
    for (const e of options.engines) this.engines.set(e.model.name, e);
    const smallestPool = Math.min(...options.engines.map((e) => e.numPages));
    this.limits = resolveLimits({ ...DEFAULT_LIMITS, kvPages: smallestPool }, options.limits);
    this.store = new ComponentStore(options.cacheDir ?? join(tmpdir(), 'pie-components'));
    this.stallMs = options.stallMs ?? 2000;
    this.cancelGraceMs = options.cancelGraceMs ?? 2000;
    this.hub = new MessageHub(options.messageLimits);
    this.warmInstances = options.warmInstances ?? 2;
    this.quarantineMs = options.quarantineMs ?? 0;
    this.logLine = options.log ?? ((l) => process.stderr.write(l + '\n'));
    const n = Math.max(1, options.workers ?? Math.min(2, cpus().length));
    for (let i = 0; i < n; i++) this.slots.push(this.spawn());
    this.watchdog = setInterval(() => void this.watch(), Math.max(10, Math.min(100, this.stallMs / 4, this.cancelGraceMs / 4)));
    this.watchdog.unref();
  }

  static async start(options: HostOptions): Promise<InferletHost> {
    if (options.engines.length === 0) throw new Error('an inferlet host needs at least one engine');
    const host = new InferletHost(options);
    await Promise.all(host.slots.map((s) => s.ready));
    return host;
  }

  /** Loads (transpiles and caches) a component from bytes or a .wasm path; it is never forgotten (the gateway's built-ins and routes). */
  async load(source: Uint8Array | string): Promise<StoredComponent> {
    const c = await this.store.load(source);
    this.pinned.add(c.dir);
    return c;
  }

  /** Starts an invocation; its events, result and cancel are on the returned handle. */
  invoke(component: StoredComponent, options: InvokeOptions = {}): Invocation {
    return this.start(component, options, null);
  }

  /**
   * A component will not be invoked again (its upload was deleted): the
   * workers drop the instances kept warm for it and its compiled modules.
   * Invocations running it go on.
   */
  forget(component: StoredComponent): void {
    if (this.pinned.has(component.dir)) return; // the same bytes serve a built-in or a route
    this.store.forget(component.hash);
    for (const slot of this.slots) {
      slot.warmed.delete(component.dir);
      slot.send({ t: 'forget', componentDir: component.dir });
    }
  }

  /** How runtime.launch finds components other than `self` (without one, only `self` can be launched). */
  resolveComponentsWith(resolver: ComponentResolver): void {
    this.resolver = resolver;
  }

  private start(component: StoredComponent, options: InvokeOptions, parent: Invocation | null): Invocation {
    if (this.closed) throw new Error('the inferlet host is closed');
    const input = options.inputJson ?? inputJson(options.input); // throws before anything is registered
    const limits = resolveLimits(this.limits, options.limits);
    const inv = new Invocation(this.nextInv++, options.tenant ?? 'default', limits, (i, reason) => this.end(i, new InvocationError('cancelled', reason)));
    const models = options.models ?? [...this.engines.keys()];
    for (const m of models) if (!this.engines.has(m)) throw new Error(`no engine serves model "${m}"`);
    inv.allowedModels = new Set(models);
    inv.component = component;
    if (parent) {
      inv.parent = parent;
      parent.kids.add(inv);
    }
    const slot = this.pick(inv.tenant);
    this.counts.started++;
    this.running.set(inv.id, inv);
    this.where.set(inv.id, slot);
    slot.invocations.set(inv.id, inv);
    if (this.warmInstances > 0 && !slot.warmed.has(component.dir)) {
      slot.warmed.add(component.dir);
      slot.send({ t: 'warm', componentDir: component.dir, count: this.warmInstances });
    }
    slot.send({
      t: 'start',
      inv: inv.id,
      instanceId: inv.instanceId,
      componentDir: component.dir,
      input,
      tenant: inv.tenant,
      models: models.map((name) => this.describe(name)),
      limits,
      reuse: options.reuseInstance ?? false,
    });
    const timer = setTimeout(() => this.end(inv, new InvocationError('limit', `the invocation exceeded its wall time of ${limits.wallTimeMs} ms`)), limits.wallTimeMs);
    timer.unref();
    void inv.result.finally(() => clearTimeout(timer)).catch(() => {});
    cancelOnAbort(inv, options.signal);
    return inv;
  }

  stats(): HostStats {
    this.expireQuarantines();
    const components = new Set(this.slots.flatMap((s) => [...s.warmed])).size;
    return { workers: this.slots.length, running: this.running.size, ...this.counts, quarantined: this.quarantined.size, components };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.watchdog);
    this.hub.close();
    for (const inv of [...this.running.values()]) this.end(inv, new InvocationError('cancelled', 'the server is shutting down'));
    await Promise.all(this.slots.map((s) => ((s.dead = true), s.worker.terminate())));
  }

  // ---- HostSide (what the handlers see) ----

  engine(inv: Invocation, model: string): Engine {
    const e = inv.allowedModels.has(model) ? this.engines.get(model) : undefined;
    if (!e) throw new AbiError('not-found', `no model named "${model}"`);
    return e;
  }

  log(inv: Invocation, level: string, message: string): void {
    this.logLine(`[${inv.instanceId}] ${level}: ${message}`);
  }

  async launch(parent: Invocation, ref: string, input: string, asked: WitChildLimits | null): Promise<Invocation> {
    // The guest side checked the input is JSON (its worker parses it, not this thread); its size is checked again here.
    if (input.length > MAX_CHILD_INPUT) throw new AbiError('invalid-argument', `a child's input is at most ${MAX_CHILD_INPUT} characters, got ${input.length}`);
    for (const [key, v] of Object.entries(asked ?? {})) if (v !== undefined && !(v > 0)) throw new AbiError('invalid-argument', `the child's ${key} limit must be positive`);
    this.checkRoomForChild(parent);
    let component = parent.component;
    if (ref !== 'self') {
      if (!this.resolver) throw new AbiError('not-found', `no component "${ref}" here: only "self" can be launched (a server also launches the tenant's uploaded inferlets)`);
      try {
        component = await this.resolver(parent.tenant, ref);
      } catch (err) {
        throw new AbiError('not-found', err instanceof Error ? err.message : String(err));
      }
      this.checkRoomForChild(parent); // again: the parent may have ended, or others started, meanwhile
    }
    if (!component) throw new AbiError('not-found', 'this invocation has no component of its own to launch');
    // Each at most what the parent has left: its tokens (the family's), its pages, the rest of its wall time.
    const tokensLeft = parent.tokensLeft();
    const wallLeft = parent.startedAt + parent.limits.wallTimeMs - performance.now();
    if (tokensLeft <= 0) throw new AbiError('limit-exceeded', 'no tokens are left of the limit for a child');
    if (wallLeft < 1) throw new AbiError('limit-exceeded', 'no wall time is left of the limit for a child');
    const limits = {
      tokens: Math.min(asked?.tokens ?? Infinity, tokensLeft),
      kvPages: Math.min(asked?.kvPages ?? Infinity, parent.limits.kvPages),
      wallTimeMs: Math.min(asked?.wallTimeMs ?? Infinity, wallLeft),
      memoryBytes: parent.limits.memoryBytes,
    };
    const child = this.start(component, { inputJson: input, tenant: parent.tenant, models: [...parent.allowedModels], limits }, parent);
    child.launched = true;
    this.launchedBy.set(child.tenant, (this.launchedBy.get(child.tenant) ?? 0) + 1);
    // Its tokens are its run's (GET /v1/runs) and its request's (metrics): they go to the parent's observer, up to the root's.
    // Through the live link: a detached child's tokens stop counting there.
    child.observer = { tokens: (count, _gap, now) => child.parent?.observer?.tokens(count, null, now), prompt: () => {}, generation: () => {} };
    return child;
  }

  /** Throws unless `parent` may launch a child now: it runs, its family has room, its tenant has room. */
  private checkRoomForChild(parent: Invocation): void {
    if (parent.done) throw new AbiError('cancelled', 'the invocation has ended');
    const members = parent.family().length;
    if (members >= MAX_FAMILY) throw new AbiError('limit-exceeded', `the invocation's family has ${members} invocations running, the most it may`);
    const launched = this.launchedBy.get(parent.tenant) ?? 0;
    if (launched >= MAX_CHILDREN_PER_TENANT) throw new AbiError('limit-exceeded', `the tenant has ${launched} child invocations running, the most it may`);
  }

  detach(child: Invocation): void {
    if (child.done || child.detached) return;
    const n = this.detachedBy.get(child.tenant) ?? 0;
    if (n >= MAX_DETACHED_PER_TENANT) throw new AbiError('limit-exceeded', `the tenant has ${n} detached invocations running, the most it may`);
    this.detachedBy.set(child.tenant, n + 1);
    child.detached = true;
    if (child.parent) {
      // It leaves the family with what it may still generate set aside out of the family's tokens: what it generated and
      // may generate stays the family's, and it can never take more than the family had left. From now on it is the root of
      // a family of its own (its wall time still ends by its parent's).
      const parent = child.parent;
      const allowance = child.numTokens + child.reservedTokensNow() + Math.max(0, Math.min(child.limits.tokens - child.numTokens - child.reservedTokensNow(), parent.tokensLeft()));
      child.limits.tokens = allowance;
      parent.childTokens += allowance + child.childTokens;
      parent.kids.delete(child);
      child.parent = null;
    }
  }

  // ---- workers ----

  private spawn(): WorkerSlot {
    const slot = new WorkerSlot();
    slot.worker.on('message', (m: WorkerToHost) => this.onMessage(slot, m));
    slot.worker.on('error', (err) => this.lose(slot, `its worker crashed: ${err.message}`, null));
    slot.worker.on('exit', () => {
      if (!slot.dead) this.lose(slot, 'its worker exited', null);
    });
    return slot;
  }

  /**
   * The least loaded worker that is making progress. While any tenant is in
   * quarantine, the first worker hosts those tenants' invocations and the
   * others everybody else's.
   */
  private pick(tenant: string): WorkerSlot {
    this.expireQuarantines();
    const slots = this.quarantined.size === 0 || this.slots.length < 2 ? this.slots : this.quarantined.has(tenant) ? this.slots.slice(0, 1) : this.slots.slice(1);
    // The least loaded of the workers seen making progress lately; when none was (a loaded machine samples
    // them late), of those not running a guest's code right now (a stuck guest's worker always is).
    const order = (s: WorkerSlot) => (s.responsive ? 0 : Atomics.load(s.heartbeat, HEARTBEAT.running) === 0 ? 1 : 2);
    let best: WorkerSlot | undefined;
    for (const s of slots) {
      if (s.dead) continue;
      if (!best || order(s) < order(best) || (order(s) === order(best) && s.invocations.size < best.invocations.size)) best = s;
    }
    // All workers being replaced: queue behind the least loaded anyway.
    return best ?? slots.reduce((a, b) => (b.invocations.size < a.invocations.size ? b : a));
  }

  private expireQuarantines(): void {
    const now = performance.now();
    for (const [t, until] of this.quarantined) if (until <= now) this.quarantined.delete(t);
  }

  /** Puts the tenant whose guest cost a worker in quarantine (see HostOptions.quarantineMs). */
  private quarantine(tenant: string): void {
    if (this.quarantineMs <= 0 || this.slots.length < 2) return;
    if (!this.quarantined.has(tenant)) {
      this.logLine(`pie: tenant "${tenant}" had an inferlet's worker terminated; its invocations run on a worker of their own for ${Math.round(this.quarantineMs / 1000)} s`);
    }
    this.quarantined.set(tenant, performance.now() + this.quarantineMs);
  }

  private watch(): void {
    // Each slot on its own: a worker slow to answer (busy in native code) holds back nobody else's check.
    for (const slot of this.slots) {
      if (slot.watching) continue;
      slot.watching = true;
      void this.watchSlot(slot).finally(() => (slot.watching = false));
    }
  }

  private async watchSlot(slot: WorkerSlot): Promise<void> {
    if (slot.dead || !slot.started) return;
    const cpu = await workerCpuMicros(slot.worker); // read before the counter: a bump after it still counts
    const beat = Atomics.load(slot.heartbeat, HEARTBEAT.beat);
    const now = performance.now();
    if (slot.dead) return;
    // Host-side work for a guest's call (tokenizing a long prompt) is progress, not a stall.
    if (beat !== slot.lastBeat || Atomics.load(slot.heartbeat, HEARTBEAT.hostWork) === 1) {
      slot.lastBeat = beat;
      slot.lastBeatAt = now;
      slot.cpuAtBeat = cpu;
    } else if (cpu !== null && slot.cpuAtBeat !== null ? cpu - slot.cpuAtBeat > this.stallMs * 1000 : now - slot.lastBeatAt > this.stallMs) {
      const stuck = Atomics.load(slot.heartbeat, HEARTBEAT.running);
      this.lose(slot, `its worker was stopped because another invocation on it did not yield for ${this.stallMs} ms of CPU time`, stuck);
      return;
    }
    const running = Atomics.load(slot.heartbeat, HEARTBEAT.running);
    for (const [id, at] of slot.ending) {
      // Only a guest still running its code counts (one waiting to start, or on the host, is not holding the worker).
      if (id !== running || now - at <= this.cancelGraceMs) continue;
      this.lose(slot, `its worker was stopped because another invocation on it went on running ${this.cancelGraceMs} ms after it was stopped`, id);
      return;
    }
  }

  /** Terminates a worker, fails what it hosted and replaces it. */
  private lose(slot: WorkerSlot, reason: string, stuck: number | null): void {
    if (slot.dead) return;
    slot.dead = true;
    void slot.worker.terminate();
    const culprit = stuck === null ? undefined : slot.invocations.get(stuck);
    if (culprit) this.quarantine(culprit.tenant);
    for (const inv of [...slot.invocations.values()]) {
      const err =
        inv.id === stuck
          ? new InvocationError('limit', `the inferlet ran for ${this.stallMs} ms without yielding (a loop that never calls the host?) and was stopped`)
          : new InvocationError('guest', `the invocation was lost: ${reason}`);
      this.end(inv, err);
    }
    const i = this.slots.indexOf(slot);
    if (i >= 0 && !this.closed) {
      this.counts.workerRestarts++;
      this.slots[i] = this.spawn();
    }
  }

  private onMessage(slot: WorkerSlot, m: WorkerToHost): void {
    switch (m.t) {
      case 'calls':
        for (const call of m.calls) this.dispatch(slot, call);
        return;
      case 'done': {
        for (const call of m.calls) this.dispatch(slot, call);
        const inv = this.running.get(m.inv);
        slot.invocations.delete(m.inv);
        slot.ending.delete(m.inv);
        if (!inv) return;
        inv.peakMemoryBytes = m.peakMemoryBytes;
        inv.instantiateMs = m.instantiateMs;
        this.end(inv, m.error === null ? null : new InvocationError(m.limit ? 'limit' : 'guest', m.error));
        return;
      }
      case 'log':
        this.logLine(`[inferlet worker] ${m.level}: ${m.message}`);
        return;
    }
  }

  private dispatch(slot: WorkerSlot, [invId, id, op, args]: Call): void {
    const inv = this.running.get(invId);
    const answer = (r: Reply): void => {
      if (id !== 0) slot.reply(r);
    };
    if (!inv) return answer([id, false, { kind: 'trap', code: 'cancelled', message: 'the invocation has ended' }]);
    const fail = (err: unknown) => {
      const message = err instanceof Error ? err.message : String(err);
      // A call without an answer has nobody to return an error to: it fails the invocation (a limit's as a limit).
      if (id === 0) return this.end(inv, new InvocationError(err instanceof AbiError && err.code === 'limit-exceeded' ? 'limit' : 'guest', `${op} failed: ${message}`));
      if (err instanceof AbiError) return answer([id, false, { kind: 'abi', code: err.code, message }]);
      answer([id, false, { kind: 'trap', code: 'internal', message: `${op} failed: ${message}` }]);
    };
    if (!isOpName(op)) return fail(new Error(`unknown call ${op}`));
    // One table answers every operation (ops.ts); the arguments are what the guest side passed for `op`.
    const handler = HANDLERS[op] as Handler<OpName>;
    try {
      const value = handler(inv, args as never, this);
      if (value instanceof Promise) value.then((v) => answer([id, true, v]), fail);
      else answer([id, true, value]);
    } catch (err) {
      fail(err);
    }
  }

  /** Ends an invocation on any path: tells its worker, releases everything it holds, settles it. */
  private end(inv: Invocation, error: InvocationError | null): void {
    if (inv.done) return;
    this.running.delete(inv.id);
    const slot = this.where.get(inv.id);
    this.where.delete(inv.id);
    if (error && slot && !slot.dead && slot.invocations.has(inv.id)) {
      slot.send({ t: 'cancel', inv: inv.id, reason: error.message });
      slot.ending.set(inv.id, performance.now()); // it has cancelGraceMs to return
    }
    for (const g of inv.generations.values()) g.gen.cancel();
    inv.generations.clear();
    inv.unstarted.clear();
    for (const { engine, ctx } of inv.contexts.values()) engine.release(ctx);
    inv.contexts.clear();
    for (const { matcher } of inv.matchers.values()) matcher.dispose();
    inv.matchers.clear();
    for (const { topic, box } of inv.subscriptions.values()) this.hub.unsubscribe(inv.tenant, topic, box);
    inv.subscriptions.clear();
    // Its family: its children (not detached ones) end with it; it leaves its parent's, its tokens still counted there.
    for (const kid of [...inv.kids]) this.end(kid, new InvocationError('cancelled', 'its parent invocation ended'));
    if (inv.parent) {
      inv.parent.kids.delete(inv);
      inv.parent.childTokens += inv.numTokens + inv.childTokens;
      inv.parent = null;
    }
    inv.kids.clear();
    const handles = [...inv.childHandles.values()];
    inv.childHandles.clear();
    for (const held of handles) held.waiter?.();
    for (const held of handles) held.events.length = 0; // nobody will read them
    if (inv.detached) countDown(this.detachedBy, inv.tenant);
    if (inv.launched) countDown(this.launchedBy, inv.tenant);
    inv.releaseReservations();
    if (!error) this.counts.succeeded++;
    else if (error.kind === 'cancelled') this.counts.cancelled++;
    else this.counts.failed++;
    inv.settle(error);
  }

  private describe(name: string): ModelDescriptor {
    const e = this.engines.get(name)!;
    const { vocabSize, maxPositionEmbeddings } = e.model.config;
    return { name, dir: e.model.dir, chatTemplate: e.model.chatTemplate.source, pageSize: e.pageSize, vocabSize, contextLength: maxPositionEmbeddings };
  }
}

function countDown(counts: Map<string, number>, key: string): void {
  const n = (counts.get(key) ?? 1) - 1;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
}

/** A worker thread's CPU time so far in µs (Node 24's `worker.cpuUsage()`), or null where it cannot be read. */
async function workerCpuMicros(worker: Worker): Promise<number | null> {
  const read = (worker as Worker & { cpuUsage?: () => Promise<{ user: number; system: number }> }).cpuUsage;
  if (!read) return null;
  // A read a dying worker never answers must not hold the watchdog: then wall time decides.
  let timer: NodeJS.Timeout | undefined;
  try {
    const u = await Promise.race([read.call(worker), new Promise<null>((r) => (timer = setTimeout(() => r(null), 250).unref()))]);
    return u ? u.user + u.system : null;
  } catch {
    return null; // exited
  } finally {
    clearTimeout(timer); // read every watchdog tick: its timeout must not outlive it
  }
}
