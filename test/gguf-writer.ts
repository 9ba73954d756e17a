/**
 * A small GGUF writer for tests: metadata, tensors, and ggml's block layouts
 * (ggml-common.h; the reference quantizers of ggml-quants.c, simplified where
 * only the layout matters) for F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q5_1, Q4_K
 * and Q6_K.
 * Each quantizer also gives the values ggml's own dequantization reads back,
 * in row order, computed from the quantized numbers rather than by reading
 * its bytes back: the test oracle for the loader's block mappings.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { floatToHalf, halfToFloat, readSafetensors } from '../src/model/safetensors.ts';

export type GgufType = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0' | 'Q5_0' | 'Q5_1' | 'Q4_K' | 'Q6_K';
export const GGUF_TYPE_IDS: Record<GgufType, number> = { F32: 0, F16: 1, Q4_0: 2, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q4_K: 12, Q6_K: 14, BF16: 30 };

export type MetaValue =
  | { u32: number }
  | { i32: number }
  | { f32: number }
  | { bool: boolean }
  | { str: string }
  | { u64: number }
  | { strings: string[] }
  | { f32s: number[] }
  | { i32s: number[] };

export interface WriterTensor {
  name: string;
  /** ggml order: a row's length first. */
  dims: number[];
  /** ggml type id (any number, to write types the reader refuses). */
  type: number;
  data: Uint8Array;
}

class Bytes {
  private chunks: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  i32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  concat(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

function writeValue(out: Bytes, v: MetaValue): void {
  if ('u32' in v) (out.u32(4), out.u32(v.u32));
  else if ('i32' in v) (out.u32(5), out.i32(v.i32));
  else if ('f32' in v) (out.u32(6), out.f32(v.f32));
  else if ('bool' in v) (out.u32(7), out.push(Buffer.of(v.bool ? 1 : 0)));
  else if ('str' in v) (out.u32(8), out.str(v.str));
  else if ('u64' in v) (out.u32(10), out.u64(v.u64));
  else if ('strings' in v) {
    out.u32(9);
    out.u32(8);
    out.u64(v.strings.length);
    for (const s of v.strings) out.str(s);
  } else if ('f32s' in v) {
    out.u32(9);
    out.u32(6);
    out.u64(v.f32s.length);
    for (const x of v.f32s) out.f32(x);
  } else {
    out.u32(9);
    out.u32(5);
    out.u64(v.i32s.length);
    for (const x of v.i32s) out.i32(x);
  }
}

export function writeGguf(path: string, metadata: Record<string, MetaValue>, tensors: WriterTensor[], alignment = 32): void {
  const out = new Bytes();
  out.u32(0x46554747);
  out.u32(3);
  out.u64(tensors.length);
  out.u64(Object.keys(metadata).length);
  for (const [k, v] of Object.entries(metadata)) {
    out.str(k);
    writeValue(out, v);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    out.str(t.name);
    out.u32(t.dims.length);
    for (const d of t.dims) out.u64(d);
    out.u32(t.type);
    offsets.push(offset);
    out.u64(offset);
    offset = Math.ceil((offset + t.data.length) / alignment) * alignment;
  }
  const pad = (n: number) => Buffer.alloc((alignment - (n % alignment)) % alignment);
  out.push(pad(out.length));
  tensors.forEach((t, i) => {
    out.push(Buffer.from(t.data));
    if (i < tensors.length - 1) out.push(pad(offsets[i]! + t.data.length));
  });
  writeFileSync(path, out.concat());
}

const f16 = (x: number) => halfToFloat(floatToHalf(x));

/** ggml's blocks for `x` (rows of whole blocks), and the values its dequantization reads back. */
export function quantizeGgml(type: GgufType, x: Float32Array): { data: Uint8Array; values: Float32Array } {
  const values = new Float32Array(x.length);
  switch (type) {
    case 'F32':
      values.set(x);
      return { data: new Uint8Array(x.buffer.slice(x.byteOffset, x.byteOffset + x.byteLength)), values };
    case 'F16': {
      const b = Buffer.alloc(x.length * 2);
      x.forEach((v, i) => {
        b.writeUInt16LE(floatToHalf(v), i * 2);
        values[i] = f16(v);
      });
      return { data: b, values };
    }
    case 'BF16': {
      const b = Buffer.alloc(x.length * 2);
      const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
      const back = new Uint32Array(values.buffer);
      x.forEach((_, i) => {
        const h = (bits[i]! + 0x7fff + ((bits[i]! >>> 16) & 1)) >>> 16; // round to nearest even
        b.writeUInt16LE(h, i * 2);
        back[i] = h << 16;
      });
      return { data: b, values };
    }
    case 'Q8_0': {
      const b = Buffer.alloc((x.length / 32) * 34);
      for (let blk = 0; blk < x.length / 32; blk++) {
        let amax = 0;
        for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[blk * 32 + i]!));
        const d = amax / 127;
        const id = d ? 1 / d : 0;
        b.writeUInt16LE(floatToHalf(d), blk * 34);
        for (let i = 0; i < 32; i++) {
          const q = Math.round(x[blk * 32 + i]! * id) || 0; // never -0: ggml reads back an integer 0
          b.writeInt8(q, blk * 34 + 2 + i);
          values[blk * 32 + i] = f16(d) * q;
        }
      }
      return { data: b, values };
    }
    case 'Q4_0': {
      const b = Buffer.alloc((x.length / 32) * 18);
      for (let blk = 0; blk < x.length / 32; blk++) {
        let max = 0;
        for (let i = 0; i < 32; i++) if (Math.abs(x[blk * 32 + i]!) > Math.abs(max)) max = x[blk * 32 + i]!;
        const d = max / -8;
        const id = d ? 1 / d : 0;
        b.writeUInt16LE(floatToHalf(d), blk * 18);
        const q = (i: number) => Math.min(15, Math.trunc(x[blk * 32 + i]! * id + 8.5));
        for (let j = 0; j < 16; j++) {
          const lo = q(j);
          const hi = q(j + 16);
          b[blk * 18 + 2 + j] = lo | (hi << 4);
          values[blk * 32 + j] = f16(d) * (lo - 8);
          values[blk * 32 + j + 16] = f16(d) * (hi - 8);
        }
      }
      return { data: b, values };
    }
    case 'Q5_0':
    case 'Q5_1': {
      const size = type === 'Q5_0' ? 22 : 24;
      const b = Buffer.alloc((x.length / 32) * size);
      for (let blk = 0; blk < x.length / 32; blk++) {
        const v = x.subarray(blk * 32, blk * 32 + 32);
        let d: number;
        let min = 0;
        const q: number[] = [];
        if (type === 'Q5_0') {
          let max = 0;
          for (const y of v) if (Math.abs(y) > Math.abs(max)) max = y;
          d = max / -16;
          const id = d ? 1 / d : 0;
          for (const y of v) q.push(Math.min(31, Math.trunc(y * id + 16.5)));
          b.writeUInt16LE(floatToHalf(d), blk * size);
        } else {
          min = Math.min(...v);
          d = (Math.max(...v) - min) / 31;
          const id = d ? 1 / d : 0;
          for (const y of v) q.push(Math.min(31, Math.trunc((y - min) * id + 0.5)));
          b.writeUInt16LE(floatToHalf(d), blk * size);
          b.writeUInt16LE(floatToHalf(min), blk * size + 2);
        }
        let qh = 0;
        const qs = blk * size + (type === 'Q5_0' ? 6 : 8);
        for (let j = 0; j < 16; j++) {
          b[qs + j] = (q[j]! & 0xf) | ((q[j + 16]! & 0xf) << 4);
          qh |= ((q[j]! >> 4) & 1) << j;
          qh |= ((q[j + 16]! >> 4) & 1) << (j + 16);
        }
        b.writeUInt32LE(qh >>> 0, qs - 4);
        for (let i = 0; i < 32; i++) values[blk * 32 + i] = type === 'Q5_0' ? f16(d) * (q[i]! - 16) : f16(d) * q[i]! + f16(min);
      }
      return { data: b, values };
    }
    case 'Q4_K':
      return q4k(x, values);
    case 'Q6_K':
      return q6k(x, values);
  }
}

function q4k(x: Float32Array, values: Float32Array): { data: Uint8Array; values: Float32Array } {
  const b = Buffer.alloc((x.length / 256) * 144);
  for (let sb = 0; sb < x.length / 256; sb++) {
    const base = sb * 144;
    const scales: number[] = [];
    const mins: number[] = [];
    for (let j = 0; j < 8; j++) {
      let lo = 0;
      let hi = -Infinity;
      for (let i = 0; i < 32; i++) {
        const v = x[sb * 256 + j * 32 + i]!;
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
      scales.push((hi - lo) / 15);
      mins.push(-lo);
    }
    const maxScale = Math.max(...scales);
    const maxMin = Math.max(...mins);
    const invScale = maxScale > 0 ? 63 / maxScale : 0;
    const invMin = maxMin > 0 ? 63 / maxMin : 0;
    const s = Buffer.alloc(12);
    const ls: number[] = [];
    const lm: number[] = [];
    for (let j = 0; j < 8; j++) {
      ls.push(Math.min(63, Math.round(invScale * scales[j]!)));
      lm.push(Math.min(63, Math.round(invMin * mins[j]!)));
      if (j < 4) {
        s[j] = ls[j]!;
        s[j + 4] = lm[j]!;
      } else {
        s[j + 4] = (ls[j]! & 0xf) | ((lm[j]! & 0xf) << 4);
        s[j - 4] = s[j - 4]! | ((ls[j]! >> 4) << 6);
        s[j] = s[j]! | ((lm[j]! >> 4) << 6);
      }
    }
    const d = maxScale / 63;
    const dmin = maxMin / 63;
    b.writeUInt16LE(floatToHalf(d), base);
    b.writeUInt16LE(floatToHalf(dmin), base + 2);
    s.copy(b, base + 4);
    const L = new Uint8Array(256);
    for (let j = 0; j < 8; j++) {
      const dd = f16(d) * ls[j]!;
      const dm = f16(dmin) * lm[j]!;
      for (let i = 0; i < 32; i++) {
        const at = j * 32 + i;
        L[at] = dd ? Math.min(15, Math.max(0, Math.round((x[sb * 256 + at]! + dm) / dd))) : 0;
        values[sb * 256 + at] = dd * L[at]! - dm;
      }
    }
    for (let j = 0; j < 256; j += 64) for (let l = 0; l < 32; l++) b[base + 16 + j / 2 + l] = L[j + l]! | (L[j + l + 32]! << 4);
  }
  return { data: b, values };
}

function q6k(x: Float32Array, values: Float32Array): { data: Uint8Array; values: Float32Array } {
  const b = Buffer.alloc((x.length / 256) * 210);
  for (let sb = 0; sb < x.length / 256; sb++) {
    const base = sb * 210;
    const sub: number[] = [];
    for (let j = 0; j < 16; j++) {
      let amax = 0;
      for (let i = 0; i < 16; i++) amax = Math.max(amax, Math.abs(x[sb * 256 + j * 16 + i]!));
      sub.push(amax / 31);
    }
    const maxScale = Math.max(...sub);
    const iscale = maxScale > 0 ? 127 / maxScale : 0;
    const d = iscale ? 1 / iscale : 0;
    const sc = sub.map((v) => Math.min(127, Math.round(iscale * v)));
    b.writeUInt16LE(floatToHalf(d), base + 208);
    sc.forEach((v, j) => b.writeInt8(v, base + 192 + j));
    const L = new Uint8Array(256);
    for (let j = 0; j < 16; j++) {
      const dd = f16(d) * sc[j]!;
      for (let i = 0; i < 16; i++) {
        const at = j * 16 + i;
        const q = dd ? Math.min(31, Math.max(-32, Math.round(x[sb * 256 + at]! / dd))) || 0 : 0;
        L[at] = q + 32;
        values[sb * 256 + at] = dd * q;
      }
    }
    for (let j = 0; j < 256; j += 128) {
      const ql = base + j / 2;
      const qh = base + 128 + j / 4;
      for (let l = 0; l < 32; l++) {
        b[ql + l] = (L[j + l]! & 0xf) | ((L[j + l + 64]! & 0xf) << 4);
        b[ql + l + 32] = (L[j + l + 32]! & 0xf) | ((L[j + l + 96]! & 0xf) << 4);
        b[qh + l] = (L[j + l]! >> 4) | ((L[j + l + 32]! >> 4) << 2) | ((L[j + l + 64]! >> 4) << 4) | ((L[j + l + 96]! >> 4) << 6);
      }
    }
  }
  return { data: b, values };
}

/** A Hugging Face tensor name as llama.cpp's converter names it. */
export function ggufName(name: string): string {
  const fixed: Record<string, string> = { 'model.embed_tokens.weight': 'token_embd.weight', 'model.norm.weight': 'output_norm.weight', 'lm_head.weight': 'output.weight' };
  if (fixed[name]) return fixed[name];
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  if (!m) throw new Error(`no GGUF name for ${name}`);
  const parts: Record<string, string> = {
    'input_layernorm.weight': 'attn_norm.weight',
    'post_attention_layernorm.weight': 'ffn_norm.weight',
    'self_attn.q_proj.weight': 'attn_q.weight',
    'self_attn.k_proj.weight': 'attn_k.weight',
    'self_attn.v_proj.weight': 'attn_v.weight',
    'self_attn.o_proj.weight': 'attn_output.weight',
    'self_attn.q_proj.bias': 'attn_q.bias',
    'self_attn.k_proj.bias': 'attn_k.bias',
    'self_attn.v_proj.bias': 'attn_v.bias',
    'self_attn.q_norm.weight': 'attn_q_norm.weight',
    'self_attn.k_norm.weight': 'attn_k_norm.weight',
    'mlp.gate_proj.weight': 'ffn_gate.weight',
    'mlp.up_proj.weight': 'ffn_up.weight',
    'mlp.down_proj.weight': 'ffn_down.weight',
  };
  return `blk.${m[1]}.${parts[m[2]!]}`;
}

/** llama.cpp's converter reorders a llama model's q and k rows from halves to pairs (and this puts them back). */
function permuteHeads(rows: Float32Array, heads: number, K: number, toGguf: boolean): Float32Array {
  const hd = rows.length / K / heads;
  const half = hd / 2;
  const out = new Float32Array(rows.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const hf = h * hd + j * half + i;
        const gg = h * hd + i * 2 + j;
        const [from, to] = toGguf ? [hf, gg] : [gg, hf];
        out.set(rows.subarray(from * K, (from + 1) * K), to * K);
      }
    }
  }
  return out;
}

/** The SentencePiece-style tokenizer metadata of a Llama tokenizer.json: pieces by id, scores that rank merges, token types. */
export function spmTokenizerMetadata(dir: string): Record<string, MetaValue> {
  const tok = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
  const cfg = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
  const pieces: string[] = [];
  for (const [p, id] of Object.entries(tok.model.vocab as Record<string, number>)) pieces[id] = p;
  const special = new Set<number>();
  for (const t of tok.added_tokens as { id: number; content: string; special: boolean }[]) {
    pieces[t.id] = t.content;
    if (t.special) special.add(t.id);
  }
  // A merged piece's score: minus the rank of the first merge that makes it (SentencePiece merges higher scores first).
  const rank = new Map<string, number>();
  (tok.model.merges as (string | string[])[]).forEach((m, r) => {
    const [a, b] = typeof m === 'string' ? m.split(' ') : m;
    if (!rank.has(a! + b!)) rank.set(a! + b!, r);
  });
  const types = pieces.map((p, i) => (p === tok.model.unk_token ? 2 : special.has(i) ? 3 : /^<0x[0-9A-F]{2}>$/.test(p) ? 6 : 1));
  const idOf = (t: unknown) => pieces.indexOf(typeof t === 'string' ? t : (t as { content: string }).content);
  return {
    'tokenizer.ggml.model': { str: 'llama' },
    'tokenizer.ggml.tokens': { strings: pieces },
    'tokenizer.ggml.scores': { f32s: pieces.map((p) => -(rank.get(p) ?? 1e9)) },
    'tokenizer.ggml.token_type': { i32s: types },
    'tokenizer.ggml.bos_token_id': { u32: idOf(cfg.bos_token) },
    'tokenizer.ggml.eos_token_id': { u32: idOf(cfg.eos_token) },
    'tokenizer.ggml.unknown_token_id': { u32: pieces.indexOf(tok.model.unk_token) },
    'tokenizer.ggml.add_bos_token': { bool: cfg.add_bos_token !== false },
  };
}

const ARCH: Record<string, string> = { LlamaForCausalLM: 'llama', Qwen2ForCausalLM: 'qwen2', Qwen3ForCausalLM: 'qwen3' };

/**
 * Writes the model in `dir` as a GGUF file laid out as llama.cpp's converter
 * lays it out (names, metadata, a llama model's q and k rows reordered), its
 * 2-D tensors in the type `typeOf` gives and 1-D ones in F32. Returns what
 * ggml's dequantization reads back, by Hugging Face name and row order.
 */
export function writeGgufFromDir(dir: string, path: string, name: string, typeOf: (ggufName: string) => GgufType, extra: Record<string, MetaValue> = {}): Map<string, Float32Array> {
  const raw = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  const named = extra['general.architecture'];
  const arch = named && 'str' in named ? named.str : ARCH[raw.architectures[0]]!;
  const values = new Map<string, Float32Array>();
  const out: WriterTensor[] = [];
  for (const [hf, t] of readSafetensors(join(dir, 'model.safetensors'))) {
    const gg = ggufName(hf);
    const K = t.shape.length === 1 ? 1 : t.shape[1]!; // a row's length (a bias: one value a row)
    // A llama model's q and k rows, biases included, go to llama.cpp's order.
    const heads = /attn_q\.(weight|bias)$/.test(gg) ? raw.num_attention_heads : /attn_k\.(weight|bias)$/.test(gg) ? raw.num_key_value_heads : 0;
    const permute = arch === 'llama' && heads > 0;
    const rows = permute ? permuteHeads(t.data, heads, K, true) : t.data;
    const type = t.shape.length === 1 ? 'F32' : typeOf(gg);
    const q = quantizeGgml(type, rows);
    out.push({ name: gg, dims: [...t.shape].reverse(), type: GGUF_TYPE_IDS[type], data: q.data });
    values.set(hf, permute ? permuteHeads(q.values, heads, K, false) : q.values);
  }
  const a = (k: string) => `${arch}.${k}`;
  writeGguf(
    path,
    {
      'general.architecture': { str: arch },
      'general.name': { str: name },
      [a('context_length')]: { u32: raw.max_position_embeddings },
      [a('embedding_length')]: { u32: raw.hidden_size },
      [a('feed_forward_length')]: { u32: raw.intermediate_size },
      [a('block_count')]: { u32: raw.num_hidden_layers },
      [a('attention.head_count')]: { u32: raw.num_attention_heads },
      [a('attention.head_count_kv')]: { u32: raw.num_key_value_heads },
      [a('attention.layer_norm_rms_epsilon')]: { f32: raw.rms_norm_eps },
      [a('rope.freq_base')]: { f32: raw.rope_theta },
      ...spmTokenizerMetadata(dir),
      ...extra,
    },
    out,
  );
  return values;
}
