/**
 * What the gateway (main thread) sees of the engine thread: the inferlet
 * host, the served models and their KV snapshots, as interfaces. Two sides
 * implement them: the objects themselves when everything runs on one thread
 * (tests, `pie run`), and the main thread's link to the engine thread
 * (src/gateway/engine-link.ts), whose answers arrive as messages.
 */
import type { EngineStats, StepStats } from '../../engine/index.ts';
import type { StoredComponent } from './component-store.ts';
import type { ComponentResolver, HostStats, InvokeOptions } from './host.ts';
import type { InvocationObserver, InvocationResult, InvocationState, OutputEvent } from './invocation.ts';

/** One running invocation as its caller sees it: events, result, cancel, and the counts the metrics read at its end. */
export interface RunningInvocation {
  readonly id: number;
  readonly state: InvocationState;
  /** Rejects with an InvocationError. */
  readonly result: Promise<InvocationResult>;
  /** What it answers with so far (read when its stream starts). */
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly numTokens: number;
  readonly numPromptTokens: number;
  readonly maxGenerationTokens: number;
  /** Time its worker took to get an instance ready (0: a warm one was waiting); known once it has ended. */
  readonly instantiateMs: number;
  /** Sees its tokens as they are produced (metrics); set it right after invoke. */
  observer: InvocationObserver | null;
  /** Asks it to stop. On the engine thread it ends a little later (its result settles then), not before this returns. */
  cancel(reason?: string): void;
  /** Distinct KV pages it (and its children) hold now; 0 once it has ended. */
  kvPages(): Promise<number>;
  /** Queues a message from the client for its session.receive; resolves to the messages waiting unread, rejects with a SessionError. */
  deliver(message: string): Promise<number>;
  /** Receives events as they are emitted (then `events()` sees none). */
  onEvent(listener: (e: OutputEvent) => void): void;
  events(): AsyncIterable<OutputEvent>;
}

export interface HostPort {
  /** Loads (transpiles and caches) a component from bytes or a .wasm path. */
  load(source: Uint8Array | string): Promise<StoredComponent>;
  invoke(component: StoredComponent, options?: InvokeOptions): RunningInvocation;
  /** Drops what is kept for a component that will not run again (a deleted upload); what runs it goes on. */
  forget(component: StoredComponent): void;
  /** How runtime.launch finds a tenant's components other than `self` (the gateway's uploads). */
  resolveComponentsWith(resolver: ComponentResolver): void;
  stats(): HostStats;
  close(): Promise<void>;
}

/** A served model: its name and files, its engine's counters and steps. */
export interface ServedModel {
  readonly model: { readonly name: string; readonly dir: string; readonly config: { readonly maxPositionEmbeddings: number } };
  stats(): EngineStats;
  /** Called after every step of its engine; returns what removes it. */
  addStepListener(listener: (s: StepStats) => void): () => void;
}

/** KV snapshots kept for Responses follow-ups (snapshot-keeper.ts), by model name. */
export interface Snapshots {
  /** Whether snapshots are kept at all. */
  readonly enabled: boolean;
  /** A snapshot an invocation saved on `model`: kept for follow-ups, the oldest evicted beyond the cap. */
  keep(model: string, tenant: string, name: string): void;
  /** Deletes one now (its response was deleted, or never stored). */
  drop(model: string, tenant: string, name: string): void;
}

/** Everything the gateway serves with, however it is run. */
export interface EngineSide {
  host: HostPort;
  models: ServedModel[];
  snapshots: Snapshots;
  /** Brings `stats()` of the host and models up to date (before a metrics scrape); absent where they are read live. */
  refresh?(): Promise<void>;
  /** Calls `listener` once if the engine side goes down for good (its thread died); absent where it cannot without the process. */
  onLost?(listener: (reason: string) => void): void;
  close(): Promise<void>;
}

/**
 * An invocation's output events on the caller's side: delivered to
 * listeners as they come, else queued for `drain` (consumed once), which
 * ends once `ended()` says so and the queue is empty.
 */
export class OutputQueue {
  private readonly queue: OutputEvent[] = [];
  private readonly listeners: Array<(e: OutputEvent) => void> = [];
  private wake: (() => void) | null = null;
  private readonly ended: () => boolean;

  constructor(ended: () => boolean) {
    this.ended = ended;
  }

  push(e: OutputEvent): void {
    if (this.listeners.length > 0) for (const l of this.listeners) l(e);
    else this.queue.push(e);
    this.wake?.();
  }

  listen(listener: (e: OutputEvent) => void): void {
    this.listeners.push(listener);
  }

  /** The invocation ended: a waiting `drain` finishes. */
  end(): void {
    this.wake?.();
  }

  async *drain(): AsyncIterable<OutputEvent> {
    for (;;) {
      while (this.queue.length > 0) yield this.queue.shift()!;
      if (this.ended()) return;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
  }
}

/** Cancels `inv` when `signal` aborts (at once if it has), until the invocation ends. */
export function cancelOnAbort(inv: RunningInvocation, signal: AbortSignal | undefined): void {
  if (!signal) return;
  const onAbort = () => inv.cancel('the caller went away');
  if (signal.aborted) return onAbort();
  signal.addEventListener('abort', onAbort, { once: true });
  void inv.result.finally(() => signal.removeEventListener('abort', onAbort)).catch(() => {});
}
