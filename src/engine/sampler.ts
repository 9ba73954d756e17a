/**
 * Sampling, one row at a time, by one of two routes.
 *
 * From the driver's sampling head (`usesHead`: temperature > 0, no repetition
 * penalty, no log-probabilities): the driver applies the mask, bias and
 * presence/frequency penalties (`adjustments`), temperature and min-p in its
 * graph and returns each row's candidates and tail draws, from which
 * `sampleHead` draws as src/engine/sampling.ts defines; a row they cannot
 * decide is drawn from its full distribution next step (`sampleRow`), with the
 * same uniforms and so the same token, and rows whose top-k keeps more than
 * the head holds come with their full distribution from the start.
 *
 * From full logits on the host (`sample`), in place:
 *   processors: logit bias → repetition penalty → presence / frequency penalties → mask
 *   selection:  greedy (temperature 0)  |  temperature → min-p → top-k → top-p → draw
 *
 * Log-probabilities are those of the processed logits (after bias, penalties
 * and mask, before temperature and truncation), so a constrained token's
 * log-probability is taken among the tokens the constraint allows.
 *
 * Tokens whose weight is below e^-30 of the best are never drawn: the whole
 * tail of a 32k vocabulary then weighs less than 1e-8, below float32
 * resolution, and skipping it saves an exponential per token.
 */
import { maskRow } from '../../drivers/driver.ts';
import { Rng } from '../util/rng.ts';
import { drawFromHead, drawFromRow, HEAD_SIZE, type Drawn, type HeadRow } from './sampling.ts';

export interface SamplingParams {
  /** 0 means greedy. Default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens (0: off). */
  topK?: number;
  /** Keep the smallest set whose probability reaches p (1: off). */
  topP?: number;
  /** Drop tokens less likely than min-p × the most likely one (0: off). */
  minP?: number;
  /** Hugging Face style, over prompt and output (1: off). */
  repetitionPenalty?: number;
  /** OpenAI style, over output tokens (0: off). */
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** Added to the logit of each listed token. */
  logitBias?: ReadonlyMap<number, number> | Readonly<Record<number, number>>;
  /** Seed of this request's generator; the same seed gives the same tokens. */
  seed?: number;
  /** Return the chosen token's log-probability and this many top alternatives. */
  logprobs?: number;
}

export interface TopLogprob {
  token: number;
  logprob: number;
}

export interface SampleResult {
  token: number;
  logprob?: number;
  top?: TopLogprob[];
}

/** Allowed tokens as a bitset: bit t of word t >>> 5. */
export type TokenMask = Uint32Array;

/** Token counts a request has seen, for the penalties. */
export class TokenHistory {
  /** Counts over prompt and output (repetition penalty). */
  readonly all = new Map<number, number>();
  /** Counts over output only (presence and frequency penalties). */
  readonly output = new Map<number, number>();

  addPrompt(tokens: Iterable<number>): void {
    for (const t of tokens) this.all.set(t, (this.all.get(t) ?? 0) + 1);
  }

  addOutput(token: number): void {
    this.all.set(token, (this.all.get(token) ?? 0) + 1);
    this.output.set(token, (this.output.get(token) ?? 0) + 1);
  }
}

const TAIL = 30;
/** Temperatures below this sample greedily. */
const MIN_TEMPERATURE = 1e-6;
let scratchIdx = new Int32Array(0);
let scratchW = new Float64Array(0);

export class Sampler {
  readonly params: Readonly<SamplingParams>;
  private readonly rng: Rng;
  private readonly bias: [number, number][];

  constructor(params: SamplingParams = {}) {
    this.params = params;
    this.rng = new Rng(params.seed ?? (Math.random() * 2 ** 32) >>> 0);
    const b = params.logitBias;
    this.bias = !b ? [] : b instanceof Map ? [...b] : Object.entries(b).map(([k, v]) => [Number(k), v]);
  }

  /** Temperature 0, or one so small (under 1e-6) that 1 / temperature would overflow the softmax: the likeliest token. */
  get isGreedy(): boolean {
    return (this.params.temperature ?? 1) < MIN_TEMPERATURE;
  }

  /** Greedy with nothing that changes the logits and no alternatives wanted: the driver's own argmax will do. */
  get isPlainGreedy(): boolean {
    const p = this.params;
    return (
      this.isGreedy &&
      this.bias.length === 0 &&
      (p.repetitionPenalty ?? 1) === 1 &&
      (p.presencePenalty ?? 0) === 0 &&
      (p.frequencyPenalty ?? 0) === 0 &&
      (p.logprobs ?? 0) === 0
    );
  }

  /** Whether the penalties need the token history at all. */
  get usesHistory(): boolean {
    const p = this.params;
    return (p.repetitionPenalty ?? 1) !== 1 || (p.presencePenalty ?? 0) !== 0 || (p.frequencyPenalty ?? 0) !== 0;
  }

  /** Whether this sampler draws from the driver's sampling head (see the top of this file). */
  get usesHead(): boolean {
    return !this.isGreedy && (this.params.repetitionPenalty ?? 1) === 1 && this.params.logprobs === undefined;
  }

  /** 1 / temperature, for the driver's softmax. */
  get invTemperature(): number {
    return this.isGreedy ? 1 : 1 / (this.params.temperature ?? 1);
  }

  /** Logit adjustments for the driver: bias, then presence and frequency penalties of the output so far (token → amount). */
  adjustments(vocab: number, history?: TokenHistory): Map<number, number> {
    const out = new Map<number, number>();
    for (const [t, v] of this.bias) if (t >= 0 && t < vocab) out.set(t, (out.get(t) ?? 0) + v);
    const pres = this.params.presencePenalty ?? 0;
    const freq = this.params.frequencyPenalty ?? 0;
    if (history && (pres !== 0 || freq !== 0)) for (const [t, n] of history.output) out.set(t, (out.get(t) ?? 0) - (pres + freq * n));
    return out;
  }

  /** The uniforms the next draw starts from (the generator moves only when a token is drawn). */
  nextUniforms(n: number): number[] {
    const u = this.uniforms();
    return Array.from({ length: n }, (_, j) => u(j));
  }

  /** Whether the head can never decide this sampler's rows: top-k keeps more than the head holds. */
  keepsBeyondHead(vocab: number): boolean {
    const k = this.params.topK ?? 0;
    return k > HEAD_SIZE && k < vocab;
  }

  /** Draws from the driver's head for this row; null when only the full row can decide (then call `sampleRow` with it). */
  sampleHead(row: HeadRow): SampleResult | null {
    return this.commit(drawFromHead(row, this.truncation, this.uniforms()));
  }

  /** Draws from the row's full distribution as the driver computed it (mask, adjustments, temperature and min-p applied). */
  sampleRow(probs: Float32Array): SampleResult {
    return this.commit(drawFromRow(probs, this.truncation, this.uniforms()))!;
  }

  private get truncation() {
    return { topK: this.params.topK ?? 0, topP: this.params.topP ?? 1 };
  }

  /** The generator's next uniforms, read ahead without moving it. */
  private uniforms(): (j: number) => number {
    const r = this.rng.clone();
    const seen: number[] = [];
    return (j) => {
      while (seen.length <= j) seen.push(r.next());
      return seen[j]!;
    };
  }

  private commit(drawn: Drawn | null): SampleResult | null {
    if (!drawn) return null;
    for (let i = 0; i < drawn.used; i++) this.rng.next();
    return { token: drawn.token };
  }

  /** Samples one token from `logits` (modified in place). */
  sample(logits: Float32Array, history?: TokenHistory, mask?: TokenMask): SampleResult {
    this.process(logits, history, mask);
    const token = this.isGreedy ? argmax(logits) : this.draw(logits);
    if (logits[token] === -Infinity) throw new Error('sampler: every token is masked');
    if (this.params.logprobs === undefined) return { token };
    const lse = logSumExp(logits);
    const result: SampleResult = { token, logprob: logits[token]! - lse };
    // Alternatives are drawn from the allowed tokens only: a masked token is not an alternative.
    if (this.params.logprobs > 0) result.top = topK(logits, this.params.logprobs).filter((t) => logits[t] !== -Infinity).map((t) => ({ token: t, logprob: logits[t]! - lse }));
    return result;
  }

  private process(logits: Float32Array, history?: TokenHistory, mask?: TokenMask): void {
    for (const [t, v] of this.bias) if (t >= 0 && t < logits.length) logits[t]! += v;
    const p = this.params;
    if (history) {
      const rep = p.repetitionPenalty ?? 1;
      if (rep !== 1) {
        for (const t of history.all.keys()) {
          const l = logits[t]!;
          logits[t] = l > 0 ? l / rep : l * rep;
        }
      }
      const pres = p.presencePenalty ?? 0;
      const freq = p.frequencyPenalty ?? 0;
      if (pres !== 0 || freq !== 0) {
        for (const [t, n] of history.output) logits[t]! -= pres + freq * n;
      }
    }
    if (mask) maskRow(logits, mask, -Infinity);
  }

  private draw(logits: Float32Array): number {
    const p = this.params;
    const temp = p.temperature ?? 1;
    const V = logits.length;
    if (scratchIdx.length < V) {
      scratchIdx = new Int32Array(V);
      scratchW = new Float64Array(V);
    }
    const max = logits[argmax(logits)]!;
    if (max === -Infinity) throw new Error('sampler: every token is masked');
    // Candidates within the tail cut, with weights relative to the best (best = 1).
    const cut = max - TAIL * temp;
    let n = 0;
    for (let i = 0; i < V; i++) {
      const l = logits[i]!;
      if (l > cut) {
        scratchIdx[n] = i;
        scratchW[n++] = Math.exp((l - max) / temp);
      }
    }
    const minP = p.minP ?? 0;
    if (minP > 0) n = keepWhere(n, (w) => w >= minP);
    const k = p.topK ?? 0;
    if (k > 0 && k < n) n = keepTopK(n, k);
    const topP = p.topP ?? 1;
    if (topP < 1) n = keepTopP(n, topP);
    let total = 0;
    for (let i = 0; i < n; i++) total += scratchW[i]!;
    let u = this.rng.next() * total;
    for (let i = 0; i < n; i++) {
      u -= scratchW[i]!;
      if (u < 0) return scratchIdx[i]!;
    }
    return scratchIdx[n - 1]!;
  }
}

export function argmax(x: Float32Array): number {
  let best = 0;
  let bestV = x[0]!;
  for (let i = 1; i < x.length; i++) {
    const v = x[i]!;
    if (v > bestV) {
      bestV = v;
      best = i;
    }
  }
  return best;
}

export function logSumExp(x: Float32Array): number {
  const max = x[argmax(x)]!;
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v > max - 40) sum += Math.exp(v - max);
  }
  return max + Math.log(sum);
}

/** Indices of the k largest values, largest first (ties: lower index first). */
export function topK(x: Float32Array, k: number): number[] {
  const heap: number[] = [];
  const less = (a: number, b: number) => x[a]! < x[b]! || (x[a] === x[b] && a > b);
  for (let i = 0; i < x.length; i++) {
    if (heap.length < k) {
      heap.push(i);
      if (heap.length === k) heap.sort((a, b) => (less(a, b) ? -1 : 1));
    } else if (less(heap[0]!, i)) {
      // Insert into the sorted (ascending) array, dropping the smallest.
      let j = 1;
      while (j < k && less(heap[j]!, i)) {
        heap[j - 1] = heap[j]!;
        j++;
      }
      heap[j - 1] = i;
    }
  }
  if (heap.length < k) heap.sort((a, b) => (less(a, b) ? -1 : 1));
  return heap.reverse();
}

function keepWhere(n: number, keep: (w: number) => boolean): number {
  let m = 0;
  for (let i = 0; i < n; i++) {
    if (keep(scratchW[i]!)) {
      scratchIdx[m] = scratchIdx[i]!;
      scratchW[m++] = scratchW[i]!;
    }
  }
  return m;
}

/** Keeps the k heaviest candidates (ties at the boundary: lowest token ids). */
function keepTopK(n: number, k: number): number {
  const sorted = scratchW.slice(0, n).sort();
  const threshold = sorted[n - k]!;
  let above = 0;
  for (let i = 0; i < n; i++) if (scratchW[i]! > threshold) above++;
  let tiesLeft = k - above;
  return keepWhere(n, (w) => w > threshold || (w === threshold && tiesLeft-- > 0));
}

/** Keeps the heaviest candidates whose total reaches p of the whole. */
function keepTopP(n: number, p: number): number {
  const sorted = scratchW.slice(0, n).sort().reverse();
  let total = 0;
  for (let i = 0; i < n; i++) total += sorted[i]!;
  let acc = 0;
  let threshold = sorted[n - 1]!;
  for (let i = 0; i < n; i++) {
    acc += sorted[i]!;
    if (acc >= p * total) {
      threshold = sorted[i]!;
      break;
    }
  }
  return keepWhere(n, (w) => w >= threshold);
}
