/**
 * Models from the Hugging Face hub and its cache:
 *
 *   pie model download REPO[:REVISION] [--include GLOB]... [--exclude GLOB]...
 *   pie model list
 *   pie model rm REPO
 *   pie model info REPO|DIR
 *   pie model quantize DIR|REPO OUT_DIR --bits 4|8 [--block 32] [--zero-points] [--head-bits 4|8|float]
 *   pie model import-gguf FILE.gguf OUT_DIR [--quantize q4|q8]
 *
 * The cache is the hub's own ($HF_HUB_CACHE, else $HF_HOME/hub, else
 * ~/.cache/huggingface/hub), shared with Python's huggingface_hub.
 */
import { existsSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModelConfig } from '../model/load.ts';
import { cachedSnapshot, hubCacheDir, listCached, parseRepoRef, repoFolder } from '../model/hub/cache.ts';
import { downloadModel, HubError, snapshotComplete } from '../model/hub/download.ts';
import { describeQuantization } from '../model/weights.ts';
import { quantizeModelDir } from '../model/quantize-dir.ts';
import { BLOCKS } from '../model/quantize.ts';
import { importGguf } from '../model/gguf/import-gguf.ts';
import { readGgufHeader } from '../model/gguf/gguf-file.ts';
import { checkTensorNames, ggufConfig, isGgufPath } from '../model/gguf/gguf-model.ts';
import { ggufTokenizer } from '../model/gguf/gguf-tokenizer.ts';
import { ggmlTypeName, isSupportedType } from '../model/gguf/ggml-types.ts';
import { quantizationFor } from '../model/config.ts';
import { resolveModelSource } from '../model/hub/resolve.ts';
import { byteProgress, type Progress } from './progress.ts';
import { UsageError } from './inferlet-commands.ts';

const mb = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : `${(n / 1e6).toFixed(1)} MB`);

/** Whether the engine can serve a model folder, and why not. */
export function servable(dir: string): { ok: true; summary: string } | { ok: false; why: string } {
  try {
    if (isGgufPath(dir)) {
      const file = readGgufHeader(dir);
      const c = ggufConfig(file);
      ggufTokenizer(file.metadata, file.path);
      checkTensorNames(file, c);
      const types = new Map<string, number>();
      for (const t of file.tensors.values()) types.set(ggmlTypeName(t.type), (types.get(ggmlTypeName(t.type)) ?? 0) + 1);
      const unsupported = [...file.tensors.values()].find((t) => !isSupportedType(t.type));
      if (unsupported) return { ok: false, why: `tensor ${unsupported.name} has type ${ggmlTypeName(unsupported.type)}, which this engine does not read` };
      const list = [...types].map(([t, n]) => `${n} ${t}`).join(', ');
      return { ok: true, summary: `GGUF ${c.architecture}, ${c.numLayers} layers, hidden ${c.hiddenSize}, vocabulary ${c.vocabSize}, context ${c.maxPositionEmbeddings}; tensors: ${list}` };
    }
    const c = loadModelConfig(dir);
    if (!existsSync(join(dir, 'tokenizer.json'))) return { ok: false, why: 'no tokenizer.json' };
    if (!snapshotComplete(dir)) return { ok: false, why: 'its safetensors weights are missing (or some of the shards its index names)' };
    const quantized = c.quantization ? `, quantized: ${describeQuantization(c.quantization)}` : '';
    return { ok: true, summary: `${c.architecture}, ${c.numLayers} layers, hidden ${c.hiddenSize}, vocabulary ${c.vocabSize}, context ${c.maxPositionEmbeddings}${quantized}` };
  } catch (err) {
    return { ok: false, why: (err as Error).message };
  }
}

export async function modelDownloadCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { include: { type: 'string', multiple: true }, exclude: { type: 'string', multiple: true } } });
  if (positionals.length !== 1) throw new UsageError('model download takes one REPO[:REVISION]');
  const ref = parseRepoRef(positionals[0]!);
  if (!ref) throw new UsageError(`"${positionals[0]}" is not a repository name (ORG/NAME, optionally :REVISION)`);
  let progress: Progress | null = null;
  const got = await downloadModel(ref, {
    ...(values.include ? { include: values.include } : {}),
    ...(values.exclude ? { exclude: values.exclude } : {}),
    checkArchitecture: !values.include, // a chosen set of files need not be a model
    onPlan: (files) => (progress = byteProgress(ref.repo)).plan(files.map((f) => ({ name: f.path, size: f.size, done: f.cached }))),
    onProgress: (file, done) => progress?.update(file, done),
    onDone: () => progress?.stop(),
  });
  console.log(`${ref.repo}@${got.commit.slice(0, 12)}: ${got.files.length} files in ${got.dir}${got.fetchedBytes === 0 ? ' (all were in the cache)' : ` (${mb(got.fetchedBytes)} fetched)`}`);
  console.log(`serve it: npx pie serve --model ${positionals[0]}`);
}

export function modelListCommand(argv: string[]): void {
  parseArgs({ args: argv, options: {} });
  const cacheDir = hubCacheDir();
  const models = listCached(cacheDir);
  if (models.length === 0) {
    console.log(`no models in ${cacheDir}`);
    return;
  }
  for (const m of models) {
    for (const s of m.snapshots) {
      const v = servable(s.dir);
      const refs = s.refs.length ? ` (${s.refs.join(', ')})` : '';
      console.log(`${m.repo.padEnd(40)} ${s.commit.slice(0, 12)}${refs.padEnd(8)} ${mb(m.bytes).padStart(9)}  ${v.ok ? `can serve: ${v.summary}` : `cannot serve: ${v.why}`}`);
    }
  }
}

export function modelRmCommand(argv: string[]): void {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
  const ref = positionals.length === 1 ? parseRepoRef(positionals[0]!) : null;
  if (!ref) throw new UsageError('model rm takes one REPO (ORG/NAME)');
  const cacheDir = hubCacheDir();
  const entry = listCached(cacheDir).find((m) => m.repo === ref.repo);
  if (!entry) throw new HubError(`${ref.repo} is not in the cache (${cacheDir})`);
  rmSync(repoFolder(cacheDir, ref.repo), { recursive: true, force: true });
  console.log(`removed ${ref.repo} (${mb(entry.bytes)})`);
}

export function modelInfoCommand(argv: string[]): void {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
  if (positionals.length !== 1) throw new UsageError('model info takes one REPO or DIR');
  const text = positionals[0]!;
  const ref = parseRepoRef(text);
  const dir = existsSync(resolve(text)) ? resolve(text) : ref ? cachedSnapshot(hubCacheDir(), ref) : null;
  if (!dir) throw new HubError(`${text} is neither a folder nor in the Hugging Face cache (${hubCacheDir()}): npx pie model download ${text}`);
  const v = servable(dir);
  console.log(`${text}\n  ${isGgufPath(dir) ? 'file' : 'folder'}: ${dir}\n  ${v.ok ? `can serve: ${v.summary}` : `cannot serve: ${v.why}`}`);
}

export async function modelQuantizeCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { bits: { type: 'string' }, block: { type: 'string', default: '32' }, 'zero-points': { type: 'boolean', default: false }, 'head-bits': { type: 'string', default: '8' } },
  });
  if (positionals.length !== 2) throw new UsageError('model quantize takes DIR|REPO OUT_DIR');
  const bits = Number(values.bits);
  if (bits !== 4 && bits !== 8) throw new UsageError(`--bits must be 4 or 8, got ${values.bits === undefined ? 'nothing' : `"${values.bits}"`}`);
  const block = Number(values.block);
  if (!(BLOCKS as readonly number[]).includes(block)) throw new UsageError(`--block must be one of ${BLOCKS.join(', ')}, got "${values.block}"`);
  const head = values['head-bits'];
  if (head !== '4' && head !== '8' && head !== 'float') throw new UsageError(`--head-bits must be 4, 8 or float, got "${head}"`);
  const q = { bits: bits as 4 | 8, block, zeroPoints: values['zero-points'], headBits: head === 'float' ? null : (Number(head) as 4 | 8) };
  const source = await resolveModelSource(positionals[0]!, { download: false });
  const t0 = performance.now();
  const r = quantizeModelDir(source.dir, positionals[1]!, q);
  console.log(`wrote ${resolve(positionals[1]!)} (${describeQuantization(q)}): weights ${mb(r.inBytes)} as float32 → ${mb(r.outBytes)} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  console.log(`serve it: npx pie serve --model ${positionals[1]}`);
}

export function modelImportGgufCommand(argv: string[]): void {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { quantize: { type: 'string' } } });
  if (positionals.length !== 2) throw new UsageError('model import-gguf takes FILE.gguf OUT_DIR');
  const q = values.quantize;
  if (q !== undefined && q !== 'q4' && q !== 'q8') throw new UsageError(`--quantize must be q4 or q8, got "${q}"`);
  const t0 = performance.now();
  const r = importGguf(positionals[0]!, positionals[1]!, q ? quantizationFor(q) : null);
  console.log(`wrote ${resolve(positionals[1]!)}: ${r.files.join(', ')} (weights ${mb(r.bytes)}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  console.log(`serve it: npx pie serve --model ${positionals[1]}`);
}
