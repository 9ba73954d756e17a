import { quantizedBytes } from '../src/model/quantize.ts';
import type { Tensor } from '../src/model/safetensors.ts';
import { isQuantized, type Linear, type ModelWeights } from '../src/model/weights.ts';

/** A model's parameters and the bytes its weights take (a tied head counted once). */
export function weightBytes(w: ModelWeights): { params: number; bytes: number } {
  const seen = new Set<Linear>();
  let params = 0;
  let bytes = 0;
  const add = (t: Linear | Tensor | null) => {
    if (!t || seen.has(t)) return;
    seen.add(t);
    params += t.shape.reduce((a, b) => a * b, 1);
    bytes += isQuantized(t) ? quantizedBytes(t.quantized) : t.data.byteLength;
  };
  add(w.embed);
  add(w.norm);
  add(w.lmHead);
  for (const l of w.layers) for (const t of Object.values(l)) add(t);
  return { params, bytes };
}
