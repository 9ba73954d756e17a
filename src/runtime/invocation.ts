/**
 * One run of an inferlet, as the host sees it: the caller's handle (events,
 * result, cancel) and the host-side state of its guest (contexts,
 * generations, subscriptions, limit counters). Everything it holds is
 * released when it ends, whatever the path.
 *
 *   running ──run returned──────────► succeeded   (result = set-result data)
 *      │  ├──guest error / trap─────► failed      (error names the cause)
 *      │  ├──limit / watchdog───────► failed
 *      │  └──cancel() / signal──────► cancelled
 */
import type { Context, Engine, Generation, GenerationChunk, Matcher } from '../engine/index.ts';
import type { HeldMatcher } from './bindings/grammar.ts';
import type { PageReservation } from './limits.ts';
import type { Mailbox } from './message-hub.ts';
import type { InstanceLimits } from './protocol.ts';

/** Gaps kept per invocation (a long generation's first ones are a fair sample). */
const MAX_GAPS = 4096;

export interface OutputEvent {
  event: string;
  data: string;
}

export interface InvocationResult {
  /** What the guest passed to `set-result` (null if it never did). */
  data: string | null;
  status: number;
  headers: Record<string, string>;
}

export type InvocationState = 'running' | 'succeeded' | 'failed' | 'cancelled';

export class InvocationError extends Error {
  override name = 'InvocationError';
  /** guest: the inferlet failed or trapped; limit: it exceeded a limit; cancelled; refused: it could not start. */
  readonly kind: 'guest' | 'limit' | 'cancelled' | 'refused';
  constructor(kind: InvocationError['kind'], message: string) {
    super(message);
    this.kind = kind;
  }
}

export interface HeldContext {
  engine: Engine;
  ctx: Context;
}

export interface HeldGeneration {
  gen: Generation;
  /** Chunks not yet pulled by the guest. */
  chunks: GenerationChunk[];
  /** A pending `next` call waiting for chunks. */
  waiter: ((chunks: GenerationChunk[] | null) => void) | null;
  /** When its previous chunk arrived (inter-token latency). */
  lastChunkAt: number;
  /** Events it streamed to the caller. */
  streamed: number;
  /** The guest's matcher constraining it, if any. */
  matcher: Matcher | null;
  /** Sends what its stream held back, once it has ended (tool-call streams). */
  end: (() => void) | null;
}

/** Token timing of an invocation's generations, for metrics. */
export interface TokenTiming {
  /** When the first generated token arrived (performance.now(); 0: none yet). */
  firstTokenAt: number;
  /** Gaps between successive chunks of each generation, in ms. */
  readonly gapsMs: number[];
}

export class Invocation {
  readonly id: number;
  readonly instanceId: string;
  readonly tenant: string;
  readonly limits: InstanceLimits;
  readonly startedAt = performance.now();
  /** The caller's result; rejects with an InvocationError. */
  readonly result: Promise<InvocationResult>;
  state: InvocationState = 'running';
  status = 200;
  headers: Record<string, string> = {};
  data: string | null = null;

  // host-side state of the guest
  readonly contexts = new Map<number, HeldContext>();
  readonly generations = new Map<number, HeldGeneration>();
  readonly subscriptions = new Map<number, { topic: string; box: Mailbox }>();
  readonly matchers = new Map<number, HeldMatcher>();
  /** Aborted when the invocation ends: ends its waits on other inferlets. */
  readonly signal: AbortSignal;
  private readonly abort = new AbortController();
  /** Models this invocation may load. */
  allowedModels: ReadonlySet<string> = new Set();
  numTokens = 0;
  /** Prompt tokens of the request: the longest prompt any of its generations started from. */
  numPromptTokens = 0;
  readonly timing: TokenTiming = { firstTokenAt: 0, gapsMs: [] };
  reservedTokens = 0;
  /** Pages set aside for running forwards and generations (see limits.ts). */
  readonly reservations = new Set<PageReservation>();
  peakMemoryBytes = 0;
  /** Time its worker took to get an instance ready, queued instantiations included (0 when a warm one was waiting). */
  instantiateMs = 0;

  private readonly queue: OutputEvent[] = [];
  private wake: (() => void) | null = null;
  private readonly listeners: Array<(e: OutputEvent) => void> = [];
  private resolve!: (r: InvocationResult) => void;
  private reject!: (e: Error) => void;
  private readonly onCancel: (inv: Invocation, reason: string) => void;

  constructor(id: number, tenant: string, limits: InstanceLimits, onCancel: (inv: Invocation, reason: string) => void) {
    this.id = id;
    this.instanceId = `inv-${id.toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    this.tenant = tenant;
    this.limits = limits;
    this.onCancel = onCancel;
    this.signal = this.abort.signal;
    this.result = new Promise((res, rej) => ((this.resolve = res), (this.reject = rej)));
    this.result.catch(() => {}); // a caller that only reads events must not see an unhandled rejection
  }

  get done(): boolean {
    return this.state !== 'running';
  }

  /** Stops the invocation: its guest is told, its engine work cancelled, its pages freed. */
  cancel(reason = 'cancelled by the caller'): void {
    if (this.done) return;
    this.onCancel(this, reason);
  }

  /** Output events as the guest emits them; consumed once. Ends when the invocation ends. */
  async *events(): AsyncIterable<OutputEvent> {
    for (;;) {
      while (this.queue.length > 0) yield this.queue.shift()!;
      if (this.done) return;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
  }

  /** Receives events as they are emitted instead of iterating (then `events()` sees none). */
  onEvent(listener: (e: OutputEvent) => void): void {
    this.listeners.push(listener);
  }

  /** A generation produced tokens: `gapMs` since its previous chunk (null for its first). */
  noteTokens(count: number, gapMs: number | null, now: number): void {
    if (count === 0) return;
    if (this.timing.firstTokenAt === 0) this.timing.firstTokenAt = now;
    if (gapMs !== null && this.timing.gapsMs.length < MAX_GAPS) this.timing.gapsMs.push(gapMs);
  }

  emit(event: string, data: string): void {
    if (this.done) return;
    const e = { event, data };
    if (this.listeners.length > 0) for (const l of this.listeners) l(e);
    else this.queue.push(e);
    this.wake?.();
  }

  /** Called by the host once everything the invocation held has been released. */
  settle(error: InvocationError | null): void {
    if (this.done) return;
    this.abort.abort();
    if (!error) {
      this.state = 'succeeded';
      this.resolve({ data: this.data, status: this.status, headers: this.headers });
    } else {
      this.state = error.kind === 'cancelled' ? 'cancelled' : 'failed';
      this.reject(error);
    }
    this.wake?.();
  }
}
