/**
 * What a guest's imports see inside its worker: the invocation's identity,
 * the models it may load (tokenizers live in the worker, so tokenizing and
 * chat rendering cost no message), and the two ways to reach the host.
 */
import type { ModelText } from '../../model/load.ts';
import type { ErrorCode } from '../abi.ts';
import type { ArgsOf, CallOp, ReplyOf, SendOp } from '../ops.ts';
import type { ModelDescriptor } from '../protocol.ts';

export interface GuestEnv {
  readonly inv: number;
  readonly instanceId: string;
  readonly tenant: string;
  readonly input: string;
  readonly models: ReadonlyMap<string, ModelDescriptor>;
  /** The caller went away or the host stopped the invocation. */
  readonly cancelled: boolean;
  /** The model's tokenizer and chat template, loaded once per worker. */
  modelText(name: string): ModelText;
  /** A call the guest waits on (the guest's stack is suspended meanwhile). */
  call<K extends CallOp>(op: K, args: ArgsOf<K>): Promise<ReplyOf<K>>;
  /** A call with no answer; it reaches the host in order with the others. */
  send<K extends SendOp>(op: K, args: ArgsOf<K>): void;
  /** A fresh handle id for a host-side object of this invocation. */
  handle(): number;
  /** Waits `ms` (a WASI sleep); rejects if the invocation is stopped meanwhile. */
  sleep(ms: number): Promise<void>;
  /** A line for the invocation's log (runtime.log, WASI stdout and stderr), within its budget. */
  output(level: string, line: string): void;
  /** Runs `hook` as each invocation on this instance ends, before its last calls leave (a partial line of stdout goes). */
  atEnd(hook: () => void): void;
}

/**
 * An expected failure handed to the guest as `err(error)`: jco turns a thrown
 * value with an own `payload` into the error case of a `result`.
 */
export class GuestResultError extends Error {
  readonly payload: { code: ErrorCode; message: string };
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.payload = { code, message };
  }
}
