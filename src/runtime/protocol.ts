/**
 * Messages between the inferlet host (the engine thread, or the caller's thread) and its guest workers.
 *
 *   host → worker: start an invocation, replies to its calls, cancel it
 *   worker → host: batches of calls (one message per event-loop turn, from
 *                  all the worker's instances), and each invocation's end
 *
 * A call with id 0 expects no reply (release, emit, push...): the port keeps
 * order, so the host sees it before any later call of the same instance.
 */
import type { ErrorCode } from './abi.ts';

/** What a worker needs to know about a model to tokenize and render chats locally. */
export interface ModelDescriptor {
  name: string;
  dir: string;
  chatTemplate: string;
  pageSize: number;
  /** The engine's: what a fill the guest side checks must agree with. */
  vocabSize: number;
  contextLength: number;
}

export interface InstanceLimits {
  /** Linear memory of one instance, in bytes (checked at every host call). */
  memoryBytes: number;
  /** KV pages the invocation's contexts may hold at once. */
  kvPages: number;
  /** Tokens the invocation may generate or sample in all. */
  tokens: number;
  /** Wall time of the invocation, in milliseconds. */
  wallTimeMs: number;
}

export interface StartMessage {
  t: 'start';
  inv: number;
  instanceId: string;
  componentDir: string;
  input: string;
  tenant: string;
  models: ModelDescriptor[];
  limits: InstanceLimits;
  /** Run on a used instance and keep it for the next invocation (see InvokeOptions.reuseInstance). */
  reuse: boolean;
}

/** [invocation, call id, op, args]. */
export type Call = [number, number, string, unknown[]];
/** [call id, ok, value or error]. */
export type Reply = [number, true, unknown] | [number, false, WireError];

export interface WireError {
  /** An ABI error (returned to the guest as a result) or a trap (fails the invocation). */
  kind: 'abi' | 'trap';
  code: ErrorCode;
  message: string;
}

export type HostToWorker =
  | StartMessage
  | { t: 'replies'; replies: Reply[] }
  | { t: 'cancel'; inv: number; reason: string }
  | { t: 'warm'; componentDir: string; count: number }
  /** The component will not run again (its upload was deleted): its warm instances and compiled modules go. */
  | { t: 'forget'; componentDir: string };

export type WorkerToHost =
  | { t: 'ready' }
  | { t: 'calls'; calls: Call[] }
  /** `calls`: the worker's calls not yet sent (the guest's last one-way calls among them), dispatched before the end. */
  | { t: 'done'; inv: number; error: string | null; limit: boolean; peakMemoryBytes: number; instantiateMs: number; calls: Call[] }
  | { t: 'log'; level: string; message: string };

/** Shared words each worker updates so the host's watchdog can see it without a message. */
export const HEARTBEAT = {
  /** Incremented by the worker's event loop every beat. */
  beat: 0,
  /** The invocation whose guest code is running now (0: none). */
  running: 1,
  /** 1 while the worker runs host-side work for a guest's call (tokenizing): not a stall. */
  hostWork: 2,
  size: 3,
} as const;
