/**
 * Reading GGUF, llama.cpp's file format (versions 2 and 3): a header of
 * typed key–value metadata and tensor descriptions, then the tensors' data,
 * each at an aligned offset. Only the header is read here; a tensor's bytes
 * are read when asked for (`readTensor`), so the file is never in memory
 * whole.
 *
 *   "GGUF" u32 version, u64 tensor count, u64 metadata count
 *   metadata: string key, u32 type, value (arrays: u32 item type, u64 count, items)
 *   tensors:  string name, u32 dims, u64[dims] (the fastest-moving first:
 *             ne[0] is a row's length), u32 ggml type, u64 offset in the data
 *   data:     from the header's end rounded up to `general.alignment` (32)
 * Strings are a u64 byte length and UTF-8 bytes; everything is little-endian.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { readFully } from '../../util/fs-io.ts';
import { ModelLoadError } from '../errors.ts';
import { GGML_TYPES, ggmlTypeName, type GgmlType } from './ggml-types.ts';

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  /** ggml order: dims[0] is a row's length (a Hugging Face [out, in] weight is [in, out] here). */
  dims: number[];
  type: number;
  /** Byte offset in the file. */
  offset: number;
  bytes: number;
}

export interface GgufFile {
  path: string;
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: Map<string, GgufTensorInfo>;
}

const MAGIC = 0x46554747; // "GGUF"
/** GGUF's metadata value types. */
const T = { U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9, U64: 10, I64: 11, F64: 12 } as const;

/** More items than any metadata array of a model holds: a corrupt count, refused before it is allocated. */
const MAX_ARRAY_ITEMS = 2 ** 26;

/** The fewest bytes an array item of each type takes (a string: its 8-byte length). */
const ITEM_MIN_BYTES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 8: 8, 10: 8, 11: 8, 12: 8 };

/** Whether `path` is a file that starts with GGUF's magic (an Ollama blob has no .gguf in its name). */
export function hasGgufMagic(path: string): boolean {
  let fd: number | null = null;
  try {
    fd = openSync(path, 'r');
    if (!fstatSync(fd).isFile()) return false;
    const b = Buffer.alloc(4);
    return readSync(fd, b, 0, 4, 0) === 4 && b.readUInt32LE(0) === MAGIC;
  } catch {
    return false;
  } finally {
    if (fd !== null) closeSync(fd);
  }
}

/** Reads the header through a window over the file, grown as the header needs. */
class HeaderReader {
  private buf = Buffer.alloc(0);
  private start = 0; // file offset of buf[0]
  pos = 0; // file offset of the next read
  private readonly fd: number;
  private readonly size: number;
  private readonly path: string;
  constructor(fd: number, size: number, path: string) {
    this.fd = fd;
    this.size = size;
    this.path = path;
  }

  /** The window's offset of the next `n` bytes. It may replace the window: call it before reading `buf`. */
  private need(n: number): number {
    if (this.pos + n > this.size) throw new ModelLoadError(`${this.path}: not a whole GGUF file (its header runs past the end, at byte ${this.pos})`);
    if (this.pos + n > this.start + this.buf.length) {
      const want = Math.min(this.size - this.pos, Math.max(n, 1 << 20));
      this.buf = Buffer.alloc(want);
      this.start = this.pos;
      readSync(this.fd, this.buf, 0, want, this.pos);
    }
    const at = this.pos - this.start;
    this.pos += n;
    return at;
  }

  u8 = () => { const at = this.need(1); return this.buf.readUInt8(at); };
  i8 = () => { const at = this.need(1); return this.buf.readInt8(at); };
  u16 = () => { const at = this.need(2); return this.buf.readUInt16LE(at); };
  i16 = () => { const at = this.need(2); return this.buf.readInt16LE(at); };
  u32 = () => { const at = this.need(4); return this.buf.readUInt32LE(at); };
  i32 = () => { const at = this.need(4); return this.buf.readInt32LE(at); };
  f32 = () => { const at = this.need(4); return this.buf.readFloatLE(at); };
  f64 = () => { const at = this.need(8); return this.buf.readDoubleLE(at); };
  i64 = () => { const at = this.need(8); return this.buf.readBigInt64LE(at); };
  u64 = (): bigint => { const at = this.need(8); return this.buf.readBigUInt64LE(at); };

  remaining(): number {
    return this.size - this.pos;
  }

  /** A u64 that must fit in a JavaScript number. */
  count(what: string): number {
    const v = this.u64();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ModelLoadError(`${this.path}: ${what} ${v} is not a count this reader takes`);
    return Number(v);
  }

  string(): string {
    const len = this.count('string length');
    if (len > this.size) throw new ModelLoadError(`${this.path}: a string of ${len} bytes in a ${this.size}-byte file`);
    const at = this.need(len);
    return this.buf.toString('utf8', at, at + len);
  }
}

function readValue(r: HeaderReader, type: number, path: string, key: string): GgufValue {
  switch (type) {
    case T.U8:
      return r.u8();
    case T.I8:
      return r.i8();
    case T.U16:
      return r.u16();
    case T.I16:
      return r.i16();
    case T.U32:
      return r.u32();
    case T.I32:
      return r.i32();
    case T.F32:
      return r.f32();
    case T.BOOL:
      return r.u8() !== 0;
    case T.STRING:
      return r.string();
    case T.U64: {
      const v = r.u64();
      return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
    }
    case T.I64: {
      const v = r.i64();
      return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
    }
    case T.F64:
      return r.f64();
    case T.ARRAY: {
      const itemType = r.u32();
      const n = r.count(`length of ${key}`);
      // A count past what the rest of the file could hold is a corrupt header, not an allocation to try.
      // (The largest arrays are vocabularies, a few hundred thousand items.)
      if (n * (ITEM_MIN_BYTES[itemType] ?? 1) > r.remaining() || n > MAX_ARRAY_ITEMS) throw new ModelLoadError(`${path}: metadata ${key} claims ${n} items, more than the file holds`);
      if (itemType === T.ARRAY) throw new ModelLoadError(`${path}: metadata ${key} is an array of arrays, which this reader does not take`);
      const out: GgufValue[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = readValue(r, itemType, path, key);
      return out;
    }
    default:
      throw new ModelLoadError(`${path}: metadata ${key} has value type ${type}, which GGUF does not define`);
  }
}

/** Reads a GGUF file's header: metadata and tensor descriptions (no tensor data). */
export function readGgufHeader(path: string): GgufFile {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new ModelLoadError(`cannot open ${path}: ${(err as Error).message}`);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new ModelLoadError(`${path} is not a file (a GGUF model is one file)`);
    const size = stat.size;
    const r = new HeaderReader(fd, size, path);
    if (size < 24 || r.u32() !== MAGIC) throw new ModelLoadError(`${path}: not a GGUF file (no "GGUF" magic)`);
    const version = r.u32();
    if (version !== 2 && version !== 3) throw new ModelLoadError(`${path}: GGUF version ${version}; this reader takes versions 2 and 3`);
    const numTensors = r.count('tensor count');
    const numKv = r.count('metadata count');
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < numKv; i++) {
      const key = r.string();
      metadata.set(key, readValue(r, r.u32(), path, key));
    }
    const infos: Omit<GgufTensorInfo, 'offset' | 'bytes'>[] = [];
    const offsets: number[] = [];
    for (let i = 0; i < numTensors; i++) {
      const name = r.string();
      const nd = r.u32();
      if (nd < 1 || nd > 4) throw new ModelLoadError(`${path}: tensor ${name} has ${nd} dimensions`);
      const dims: number[] = [];
      for (let d = 0; d < nd; d++) dims.push(r.count(`dimension of ${name}`));
      const type = r.u32();
      offsets.push(r.count(`offset of ${name}`));
      infos.push({ name, dims, type });
    }
    const alignment = metadata.get('general.alignment') ?? 32;
    if (typeof alignment !== 'number' || alignment <= 0 || (alignment & (alignment - 1)) !== 0) throw new ModelLoadError(`${path}: general.alignment ${String(alignment)} is not a power of two`);
    const dataStart = Math.ceil(r.pos / alignment) * alignment;
    const tensors = new Map<string, GgufTensorInfo>();
    infos.forEach((info, i) => {
      const t = GGML_TYPES[info.type as GgmlType];
      const count = info.dims.reduce((a, b) => a * b, 1);
      // An unknown or unsupported type is reported by whoever reads the tensor, naming it; its size is unknown here.
      const bytes = t ? (count / t.blockSize) * t.blockBytes : 0;
      if (t && info.dims[0]! % t.blockSize !== 0) throw new ModelLoadError(`${path}: tensor ${info.name} has rows of ${info.dims[0]} values, not whole ${ggmlTypeName(info.type)} blocks of ${t.blockSize}`);
      const offset = dataStart + offsets[i]!;
      if (offsets[i]! % alignment !== 0) throw new ModelLoadError(`${path}: tensor ${info.name} is not aligned to ${alignment} bytes`);
      if (offset + bytes > size) throw new ModelLoadError(`${path}: tensor ${info.name} runs past the end of the file (truncated?)`);
      if (tensors.has(info.name)) throw new ModelLoadError(`${path}: tensor ${info.name} appears twice`);
      tensors.set(info.name, { ...info, offset, bytes });
    });
    return { path, version, metadata, tensors };
  } finally {
    closeSync(fd);
  }
}

/** A tensor's raw bytes, read from the file. */
export function readTensorBytes(file: GgufFile, info: GgufTensorInfo): Uint8Array {
  const out = new Uint8Array(info.bytes);
  const fd = openSync(file.path, 'r');
  try {
    if (!readFully(fd, out, info.offset)) throw new ModelLoadError(`${file.path}: tensor ${info.name} ends early`);
  } finally {
    closeSync(fd);
  }
  return out;
}
