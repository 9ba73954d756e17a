/**
 * A step-level forward request: compute a context's pending tokens and hand
 * back the logits of the last few (see Engine.forward), or pass each row to a
 * consumer as it comes (Engine.promptLogprobs), so a long prompt's rows are
 * never all held at once.
 */
import type { Context } from './context.ts';
import type { Work } from './scheduler.ts';

/** Receives the logits row computed at `position` (a view into the step's output: copy what is kept). */
export type RowConsumer = (position: number, logits: Float32Array) => void;

export class ForwardWork implements Work {
  admittedAt = -1;
  numCachedTokens = 0;
  readonly needs = 'logits';
  readonly invTemperature = 1;
  readonly ctx: Context;
  readonly numSample: number;
  readonly window: number | null;
  readonly attend: ((pos: number, keyPos: number) => boolean) | undefined;
  /** Kept rows by their place among the last `numSample` tokens (a preempted work delivers some twice). */
  private readonly rows: Float32Array[] = [];
  private readonly consume: RowConsumer | undefined;
  resolve!: (rows: Float32Array[]) => void;
  reject!: (err: Error) => void;
  readonly done: Promise<Float32Array[]>;

  constructor(ctx: Context, numSample: number, window: number | null, attend?: (pos: number, keyPos: number) => boolean, consume?: RowConsumer) {
    this.ctx = ctx;
    this.numSample = numSample;
    this.window = window;
    this.attend = attend;
    this.consume = consume;
    this.done = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
  }

  /** A computed row, at `position` in the context. */
  take(position: number, logits: Float32Array): void {
    if (this.consume) this.consume(position, logits);
    else this.rows[position - (this.ctx.length - this.numSample)] = logits.slice();
  }

  /** Everything is computed: hands over the kept rows. */
  complete(): void {
    this.resolve(this.rows);
  }
}
