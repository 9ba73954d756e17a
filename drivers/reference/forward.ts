/**
 * A plain TypeScript forward pass: the test oracle for every driver. It runs
 * one sequence from scratch with no cache and no batching, written to follow
 * the Hugging Face modelling code line by line rather than to be fast.
 */
import type { ModelConfig } from '../../src/model/config.ts';
import { ropeInverseFrequencies } from '../../src/model/config.ts';
import { isQuantized, linearValues, type Linear, type ModelWeights } from '../../src/model/weights.ts';
import type { Tensor } from '../../src/model/safetensors.ts';

/** Logits [tokens.length, vocab] for every position of `tokens` (positions 0..n-1). */
export function referenceForward(config: ModelConfig, weights: ModelWeights, tokens: number[]): Float32Array[] {
  const c = config;
  const H = c.hiddenSize;
  const HD = c.headDim;
  const G = c.numHeads / c.numKvHeads;
  const n = tokens.length;
  const invFreq = Float32Array.from(ropeInverseFrequencies(c));
  const embed = valuesOf(weights.embed);
  let x: Float32Array[] = tokens.map((t) => embed.slice(t * H, (t + 1) * H));
  for (const w of weights.layers) {
    const h = x.map((row) => rmsNorm(row, w.inputNorm.data, c.rmsNormEps));
    const q = h.map((row) => addBias(linear(row, w.q), w.qBias));
    const k = h.map((row) => addBias(linear(row, w.k), w.kBias));
    const v = h.map((row) => addBias(linear(row, w.v), w.vBias));
    for (let t = 0; t < n; t++) {
      for (let head = 0; head < c.numHeads; head++) normAndRope(q[t]!, head, HD, w.qNorm, c.rmsNormEps, t, invFreq);
      for (let head = 0; head < c.numKvHeads; head++) normAndRope(k[t]!, head, HD, w.kNorm, c.rmsNormEps, t, invFreq);
    }
    const attnOut = x.map(() => new Float32Array(c.numHeads * HD));
    for (let t = 0; t < n; t++) {
      const first = c.slidingWindow ? Math.max(0, t - c.slidingWindow + 1) : 0;
      for (let head = 0; head < c.numHeads; head++) {
        const kvHead = Math.floor(head / G);
        const scores: number[] = [];
        for (let s = first; s <= t; s++) {
          let dot = 0;
          for (let d = 0; d < HD; d++) dot += q[t]![head * HD + d]! * k[s]![kvHead * HD + d]!;
          scores.push(dot / Math.sqrt(HD));
        }
        const max = Math.max(...scores);
        const exps = scores.map((s) => Math.exp(s - max));
        const sum = exps.reduce((a, b) => a + b, 0);
        for (let d = 0; d < HD; d++) {
          let acc = 0;
          for (let s = first; s <= t; s++) acc += (exps[s - first]! / sum) * v[s]![kvHead * HD + d]!;
          attnOut[t]![head * HD + d] = acc;
        }
      }
    }
    x = x.map((row, t) => add(row, linear(attnOut[t]!, w.o)));
    const h2 = x.map((row) => rmsNorm(row, w.postNorm.data, c.rmsNormEps));
    x = x.map((row, t) => {
      const gate = linear(h2[t]!, w.gate);
      const up = linear(h2[t]!, w.up);
      const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!);
      return add(row, linear(act, w.down));
    });
  }
  return x.map((row) => linear(rmsNorm(row, weights.norm.data, c.rmsNormEps), weights.lmHead));
}

function rmsNorm(x: Float32Array, w: Float32Array, eps: number): Float32Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * inv * w[i]!);
}

/** Quantized weights as the float values they stand for, each dequantized once. */
const dequantized = new WeakMap<Linear, Float32Array>();

function valuesOf(w: Linear): Float32Array {
  if (!isQuantized(w)) return w.data;
  let data = dequantized.get(w);
  if (!data) dequantized.set(w, (data = linearValues(w)));
  return data;
}

/** y = W x for W in [out, in] layout (a quantized W: with the values it stands for, activations in float). */
function linear(x: Float32Array, w: Linear): Float32Array {
  const [out, inDim] = w.shape as [number, number];
  const data = valuesOf(w);
  const y = new Float32Array(out);
  for (let o = 0; o < out; o++) {
    let acc = 0;
    const base = o * inDim;
    for (let i = 0; i < inDim; i++) acc += data[base + i]! * x[i]!;
    y[o] = acc;
  }
  return y;
}

function addBias(x: Float32Array, b: Tensor | null): Float32Array {
  return b ? x.map((v, i) => v + b.data[i]!) : x;
}

function add(a: Float32Array, b: Float32Array): Float32Array {
  return a.map((v, i) => v + b[i]!);
}

/** Optional per-head RMSNorm (Qwen3), then rotate-half RoPE, in place. */
function normAndRope(row: Float32Array, head: number, HD: number, norm: Tensor | null, eps: number, pos: number, invFreq: Float32Array): void {
  const seg = row.subarray(head * HD, (head + 1) * HD);
  if (norm) seg.set(rmsNorm(seg, norm.data, eps));
  const half = HD / 2;
  for (let i = 0; i < half; i++) {
    const angle = Math.fround(pos * invFreq[i]!);
    const cos = Math.cos(angle);
    const sin = Math.sin(angle);
    const x1 = seg[i]!;
    const x2 = seg[i + half]!;
    seg[i] = x1 * cos - x2 * sin;
    seg[i + half] = x2 * cos + x1 * sin;
  }
}
