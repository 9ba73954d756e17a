/**
 * `pie build`: bundles a TypeScript or JavaScript inferlet (with the SDK) into
 * one ES module whose only imports are the ABI's, then componentizes it.
 *
 * Engines (measured in bench/inferlets.ts, see the README):
 *   qjs (default)  QuickJS via componentize-qjs: ~1.7 MB components, cheaper host calls
 *   sm             StarlingMonkey via componentize-js: ~12 MB components
 * Both are built without WASI by default: the component imports pie:inferlet and
 * nothing else. With `wasi`, the engine's own WASI imports stay (console output
 * to the log, clocks, randomness: the subset the server grants, abi.ts).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WIT_DIR, WORLD } from '../abi.ts';

export type GuestEngine = 'qjs' | 'sm';

export interface BuildOptions {
  engine?: GuestEngine;
  /** Keep the engine's WASI imports instead of stubbing them (console.log goes to the invocation's log). */
  wasi?: boolean;
}

export interface BuildResult {
  component: Uint8Array;
  /** The bundled module that was componentized. */
  source: string;
}

export class BuildError extends Error {
  override name = 'BuildError';
}

const SDK_ENTRY = fileURLToPath(new URL('../../../inferlets/sdk/src/index.ts', import.meta.url));

/** One ES module with the SDK inlined and only `pie:inferlet/*` left as imports. */
export async function bundle(entry: string): Promise<string> {
  const { rolldown } = await import('rolldown');
  let build;
  try {
    build = await rolldown({
      input: entry,
      external: [/^pie:inferlet\//],
      platform: 'neutral',
      resolve: { alias: { '@pie/inferlet': SDK_ENTRY } },
      // The ABI's modules have no side effects: an interface the inferlet does not use is not imported
      // (QuickJS sets up every imported interface on an instance's first call).
      treeshake: { moduleSideEffects: (id: string) => !id.startsWith('pie:inferlet/') },
      logLevel: 'silent',
    });
  } catch (err) {
    throw new BuildError(`cannot bundle ${entry}: ${(err as Error).message}`);
  }
  try {
    const { output } = await build.generate({ format: 'esm' });
    const chunk = output[0];
    const unexpected = chunk.imports.filter((i) => !i.startsWith('pie:inferlet/'));
    if (unexpected.length > 0) throw new BuildError(`${entry} imports ${unexpected.join(', ')}: an inferlet may import only the SDK and pie:inferlet`);
    if (!chunk.exports.includes('run')) throw new BuildError(`${entry} does not export \`run\` (export const run = inferlet(...))`);
    return chunk.code;
  } finally {
    await build.close();
  }
}

export async function build(entry: string, options: BuildOptions = {}): Promise<BuildResult> {
  const source = await bundle(entry);
  const engine = options.engine ?? 'qjs';
  try {
    if (engine === 'qjs') {
      const { componentize } = await import('componentize-qjs');
      const { component } = await componentize({ witPath: WIT_DIR, jsSource: source, world: WORLD, stubWasi: !options.wasi });
      return { component: new Uint8Array(component), source };
    }
    const { _setPreopens } = await import('@bytecodealliance/preview2-shim/filesystem');
    _setPreopens({ '/': '/' } as never); // componentize-js reads the WIT through WASI
    const { componentize } = await import('@bytecodealliance/componentize-js');
    const dir = mkdtempSync(join(tmpdir(), 'pie-build-'));
    try {
      const sourcePath = join(dir, 'inferlet.js');
      writeFileSync(sourcePath, source);
      const { component } = await componentize({ sourcePath, witPath: WIT_DIR, worldName: WORLD, disableFeatures: options.wasi ? ['http', 'fetch-event'] : ['stdio', 'random', 'clocks', 'http', 'fetch-event'] });
      return { component: new Uint8Array(component), source };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  } catch (err) {
    throw new BuildError(`componentize failed: ${(err as Error).message ?? err}`);
  }
}

/**
 * Builds `entry` into `cacheDir` unless a build of the same bundled source,
 * WIT and engine is there already (tests and benchmarks); returns the path.
 */
export async function buildCached(entry: string, cacheDir: string, options: BuildOptions & { onBuild?: () => void } = {}): Promise<string> {
  const engine = options.engine ?? 'qjs';
  const hash = createHash('sha256')
    .update(await bundle(entry))
    .update(readFileSync(join(WIT_DIR, 'inferlet.wit')))
    .update(engine)
    .update(options.wasi ? 'wasi' : '')
    .digest('hex')
    .slice(0, 16);
  const out = join(cacheDir, `${basename(entry, extname(entry))}-${hash}.wasm`);
  if (existsSync(out)) return out;
  options.onBuild?.();
  const { component } = await build(entry, { engine, ...(options.wasi ? { wasi: true } : {}) });
  mkdirSync(cacheDir, { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  writeFileSync(tmp, component); // written aside, then renamed: a concurrent reader never sees half a file
  renameSync(tmp, out);
  return out;
}
