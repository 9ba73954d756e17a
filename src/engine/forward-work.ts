/**
 * A step-level forward request: compute a context's pending tokens and hand
 * back the logits of the last few (see Engine.forward).
 */
import type { Context } from './context.ts';
import type { Work } from './scheduler.ts';

export class ForwardWork implements Work {
  admittedAt = -1;
  numCachedTokens = 0;
  readonly needs = 'logits';
  readonly invTemperature = 1;
  readonly ctx: Context;
  readonly numSample: number;
  readonly window: number | null;
  readonly attend: ((pos: number, keyPos: number) => boolean) | undefined;
  readonly rows: Float32Array[] = [];
  resolve!: (rows: Float32Array[]) => void;
  reject!: (err: Error) => void;
  readonly done: Promise<Float32Array[]>;

  constructor(ctx: Context, numSample: number, window: number | null, attend?: (pos: number, keyPos: number) => boolean) {
    this.ctx = ctx;
    this.numSample = numSample;
    this.window = window;
    this.attend = attend;
    this.done = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
  }
}
