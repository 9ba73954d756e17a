/**
 * Watermarking with a custom sampler (Kirchenbauer et al., 2023): at each
 * step the server returns the top-k next tokens; a keyed hash of the previous
 * token splits the vocabulary into a "green" fraction `gamma`, green tokens
 * get `delta` added to their logits, and the inferlet samples from the
 * re-weighted top-k itself. Anyone with the key can detect the watermark: the
 * share of green tokens is far above `gamma` (a z-score).
 *
 *   pie run watermark.wasm -- '{"prompt": "Once upon a time", "max_tokens": 40}'
 *   pie run watermark.wasm -- '{"detect": [<previous token>, ...tokens]}'
 */
import { inferlet, Model } from '@pie/inferlet';

interface Input {
  prompt?: string;
  max_tokens?: number;
  top_k?: number;
  gamma?: number;
  delta?: number;
  key?: number;
  seed?: number;
  /** Tokens to test: the first is the context the second follows. */
  detect?: number[];
}

/** A keyed hash of (previous token, token) in [0, 1). */
function unit(key: number, prev: number, token: number): number {
  let h = Math.imul(key ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(prev + 1, 0xc2b2ae35) ^ Math.imul(token + 1, 0x27d4eb2f);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return (h >>> 0) / 2 ** 32;
}

/** mulberry32: a small seeded generator for the inferlet's own sampling. */
function generator(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

function zScore(tokens: number[], key: number, gamma: number): number {
  const n = tokens.length - 1;
  if (n <= 0) return 0;
  let green = 0;
  for (let i = 1; i < tokens.length; i++) if (unit(key, tokens[i - 1]!, tokens[i]!) < gamma) green++;
  return (green - gamma * n) / Math.sqrt(n * gamma * (1 - gamma));
}

export const run = inferlet<Input>((input) => {
  const key = input.key ?? 42;
  const gamma = input.gamma ?? 0.5;
  if (input.detect) return { z: zScore(input.detect, key, gamma) };
  const model = Model.load();
  const delta = input.delta ?? 4;
  const random = generator(input.seed ?? 1);
  const ctx = model.newContext();
  let pending = model.encode(input.prompt ?? '', { bos: true });
  let prev = pending[pending.length - 1]!;
  const out: number[] = [];
  const eos = new Set(model.info.eosTokenIds);
  while (out.length < (input.max_tokens ?? 40)) {
    const top = ctx.distribution(input.top_k ?? 40, { tokens: pending });
    const weights = top.map((t) => Math.exp(t.logprob + (unit(key, prev, t.token) < gamma ? delta : 0)));
    const total = weights.reduce((a, b) => a + b, 0);
    let r = random() * total;
    let i = 0;
    while (i < weights.length - 1 && (r -= weights[i]!) > 0) i++;
    const token = top[i]!.token;
    if (eos.has(token)) break;
    out.push(token);
    pending = [token];
    prev = token;
  }
  return { text: model.decode(out), tokens: out, z: zScore([model.encode(input.prompt ?? '', { bos: true }).at(-1)!, ...out], key, gamma) };
});
