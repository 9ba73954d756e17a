/**
 * Reading and writing the safetensors format: an 8-byte little-endian header
 * length, a JSON header naming each tensor's dtype, shape and byte range, then
 * the raw bytes. Float tensors are widened to float32 on read (F16 and BF16
 * too); U8 tensors (quantized weights) are kept as bytes.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { readFully, writeFully } from '../util/fs-io.ts';
import { ModelLoadError } from './errors.ts';

export interface Tensor {
  data: Float32Array;
  shape: number[];
}

/** A U8 tensor, as bytes. */
export interface ByteTensor {
  bytes: Uint8Array;
  shape: number[];
}

const DTYPE_BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2, U8: 1 };

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/**
 * Reads every tensor in a .safetensors file, or only those whose names `want`
 * accepts. U8 tensors go to `bytes` where given; without it they are refused.
 */
export function readSafetensors(path: string, want: (name: string) => boolean = () => true, bytes?: Map<string, ByteTensor>): Map<string, Tensor> {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const fail = (why: string): never => {
      throw new ModelLoadError(`${path}: corrupt safetensors file: ${why}`);
    };
    if (size < 8) fail('shorter than its 8-byte header length');
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen <= 0 || 8 + headerLen > size) fail(`header length ${headerLen} does not fit in ${size} bytes`);
    const headerBuf = Buffer.alloc(headerLen);
    readSync(fd, headerBuf, 0, headerLen, 8);
    let header: Record<string, HeaderEntry>;
    try {
      header = JSON.parse(headerBuf.toString('utf8'));
    } catch (err) {
      return fail(`header is not valid JSON (${(err as Error).message})`);
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header is not a JSON object');
    const dataStart = 8 + headerLen;
    const readWhole = (into: Uint8Array, position: number) => {
      if (!readFully(fd, into, position)) fail(`unexpected end of file reading ${into.length} bytes at ${position}`);
    };
    const out = new Map<string, Tensor>();
    for (const [name, entry] of Object.entries(header)) {
      if (name === '__metadata__' || !want(name)) continue;
      const size1 = DTYPE_BYTES[entry?.dtype];
      if (!size1 || (entry.dtype === 'U8' && !bytes)) fail(`tensor ${name} has dtype ${entry?.dtype}; supported: F32, F16, BF16${bytes ? ', U8' : ''}`);
      const [begin, end] = entry.data_offsets ?? [];
      const count = (entry.shape ?? []).reduce((a, b) => a * b, 1);
      if (typeof begin !== 'number' || typeof end !== 'number' || end - begin !== count * size1! || dataStart + end > size) {
        fail(`tensor ${name}: byte range [${begin}, ${end}) does not match shape [${entry.shape}] ${entry.dtype} within the file`);
      }
      if (entry.dtype === 'U8') {
        const raw = new Uint8Array(end - begin);
        readWhole(raw, dataStart + begin);
        bytes!.set(name, { bytes: raw, shape: [...entry.shape] });
        continue;
      }
      if (entry.dtype === 'F32') {
        // Straight into the tensor: no second copy of the file's bytes.
        const data = new Float32Array(count);
        readWhole(new Uint8Array(data.buffer), dataStart + begin);
        out.set(name, { data, shape: [...entry.shape] });
        continue;
      }
      const raw = Buffer.alloc(end - begin);
      readWhole(raw, dataStart + begin);
      out.set(name, { data: toFloat32(raw, entry.dtype, count), shape: [...entry.shape] });
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

/** F16 or BF16 bytes widened to float32. */
function toFloat32(raw: Buffer, dtype: string, count: number): Float32Array {
  const u16 = new Uint16Array(count);
  new Uint8Array(u16.buffer).set(raw);
  const out = new Float32Array(count);
  if (dtype === 'BF16') {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) bits[i] = u16[i]! << 16;
  } else {
    for (let i = 0; i < count; i++) out[i] = halfToFloat(u16[i]!);
  }
  return out;
}

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

export function floatToHalf(f: number): number {
  const buf = new DataView(new ArrayBuffer(4));
  buf.setFloat32(0, f);
  const x = buf.getUint32(0);
  const sign = (x >>> 16) & 0x8000;
  let exp = ((x >>> 23) & 0xff) - 127 + 15;
  let mant = x & 0x7fffff;
  if (((x >>> 23) & 0xff) === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  if (exp >= 31) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - exp;
    const half = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rem > mid || (rem === mid && half & 1) ? 1 : 0));
  }
  const half = (exp << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  return sign | (half + (rem > 0x1000 || (rem === 0x1000 && half & 1) ? 1 : 0));
}

export type WriteDType = 'F32' | 'F16' | 'BF16';

/** Bytes the tensors hold in memory (float ones as float32). */
export function tensorBytes(tensors: Iterable<Tensor | ByteTensor>): number {
  let n = 0;
  for (const t of tensors) n += 'bytes' in t ? t.bytes.byteLength : t.data.byteLength;
  return n;
}

/**
 * Writes tensors to a safetensors file: float ones (given as float32) in the
 * chosen dtype, byte ones as U8. Written tensor by tensor, never the whole
 * file in memory at once.
 */
export function writeSafetensors(path: string, tensors: Map<string, Tensor | ByteTensor>, dtype: WriteDType = 'F32'): void {
  const floatBytes = DTYPE_BYTES[dtype]!;
  const header: Record<string, HeaderEntry | Record<string, string>> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, t] of tensors) {
    const isBytes = 'bytes' in t;
    const len = isBytes ? t.bytes.length : t.data.length * floatBytes;
    header[name] = { dtype: isBytes ? 'U8' : dtype, shape: t.shape, data_offsets: [offset, offset + len] };
    offset += len;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const fd = openSync(path, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(headerBytes.length), 0);
    writeFully(fd, len);
    writeFully(fd, headerBytes);
    for (const t of tensors.values()) {
      if ('bytes' in t) writeFully(fd, t.bytes);
      else if (dtype === 'F32') writeFully(fd, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
      else {
        const out = new Uint16Array(t.data.length);
        const bits = new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length);
        for (let i = 0; i < t.data.length; i++) out[i] = dtype === 'BF16' ? bf16Round(bits[i]!) : floatToHalf(t.data[i]!);
        writeFully(fd, new Uint8Array(out.buffer));
      }
    }
  } finally {
    closeSync(fd);
  }
}

function bf16Round(bits: number): number {
  if ((bits & 0x7f800000) === 0x7f800000 && bits & 0x7fffff) return (bits >>> 16) | 0x40;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}
