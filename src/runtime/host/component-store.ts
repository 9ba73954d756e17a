/**
 * Components on disk: a component's bytes are hashed, transpiled once with jco
 * (JSPI mode: the guest's synchronous calls to suspending imports await the
 * host's promises) and the output kept under the cache folder by hash, so a
 * later load of the same bytes, in this process or the next, skips jco.
 * Imports are checked first: anything outside the ABI refuses the component.
 *
 * The transpiler is jco-transpile 0.1.1 (jco 1.15's code generator), not jco
 * 1.35's: 1.35 runs every import call through its component-model-async task
 * machinery (a task, a subtask and a waitable per call, even for synchronous
 * imports), which cost a guest ~1.1 ms of its worker's CPU per chat request;
 * 1.15's glue calls suspending imports through `WebAssembly.Suspending`
 * directly. Measured on 300 sequential chat requests: the guest workers' CPU
 * per request went from 3.0–3.7 ms to 2.0–2.3 ms. jco 1.35 stays for reading
 * a component's WIT and for the SDK's types.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ASYNC_IMPORTS, checkImport, missingWasiFunctions, wasiSuspending } from '../abi.ts';

export interface StoredComponent {
  /** sha256 of the component's bytes (hex). */
  hash: string;
  /** Folder with the transpiled module (`component.js`) and its core wasm files. */
  dir: string;
  /** The interfaces the component imports, with versions. */
  imports: string[];
  sizeBytes: number;
}

export class ComponentLoadError extends Error {
  override name = 'ComponentLoadError';
}

const ENTRY = 'component';
/** Bump when the transpile options change, so stale cache entries are not reused. */
const CACHE_FORMAT = 5;

const SUSPENDING_KEY = createHash('sha256').update(ASYNC_IMPORTS.join('\n')).digest('hex').slice(0, 8);

export class ComponentStore {
  readonly cacheDir: string;
  private readonly loaded = new Map<string, Promise<StoredComponent>>();

  constructor(cacheDir: string) {
    this.cacheDir = cacheDir;
  }

  /** Whether it holds a component in memory (loaded, or being loaded). */
  has(hash: string): boolean {
    return this.loaded.has(hash);
  }

  /** Forgets a component (its folder stays in the cache on disk, for a later load of the same bytes). */
  forget(hash: string): void {
    this.loaded.delete(hash);
  }

  /** Loads a component from bytes or a file path; cached on disk and in memory by content hash. */
  load(source: Uint8Array | string): Promise<StoredComponent> {
    let bytes: Uint8Array;
    try {
      bytes = typeof source === 'string' ? readFileSync(source) : source;
    } catch (err) {
      return Promise.reject(new ComponentLoadError(`cannot read ${String(source)}: ${(err as Error).message}`));
    }
    const hash = createHash('sha256').update(bytes).digest('hex');
    let entry = this.loaded.get(hash);
    if (!entry) {
      entry = this.prepare(hash, bytes);
      this.loaded.set(hash, entry);
      entry.catch(() => this.loaded.delete(hash));
    }
    return entry;
  }

  private async prepare(hash: string, bytes: Uint8Array): Promise<StoredComponent> {
    // The transpiled code depends on which imports suspend: a change to that list is a new cache entry.
    const dir = join(this.cacheDir, `v${CACHE_FORMAT}-${SUSPENDING_KEY}-${hash}`);
    const manifestPath = join(dir, 'manifest.json');
    if (existsSync(manifestPath)) {
      const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as { imports: string[] };
      return { hash, dir, imports: manifest.imports, sizeBytes: bytes.length };
    }
    const { componentWit } = await import('@bytecodealliance/jco');
    const { transpileBytes } = await import('@bytecodealliance/jco-transpile');
    let wit: string;
    try {
      wit = await componentWit(bytes);
    } catch (err) {
      throw new ComponentLoadError(`not a valid WebAssembly component: ${(err as Error).message ?? err}`);
    }
    // The world's own lines (two-space indent), with versions, which jco's import list drops.
    const imports = [...wit.matchAll(/^ {2}import (\S+?)(?:;|:\s)/gm)].map((m) => m[1]!);
    const refused = imports.map(checkImport).filter((v) => !v.ok);
    if (refused.length > 0) throw new ComponentLoadError(`component refused: ${refused.map((v) => (v.ok ? '' : v.reason)).join('; ')}`);
    if (!/^ {2}export run: func\(\) -> result<_, string>;/m.test(wit)) {
      throw new ComponentLoadError('component refused: it does not export `run: func() -> result<_, string>` (world pie:inferlet/inferlet)');
    }
    let out: Awaited<ReturnType<typeof transpileBytes>>;
    try {
      out = await transpileBytes(bytes, {
        name: ENTRY,
        instantiation: 'async',
        asyncMode: 'jspi',
        // A granted WASI sleep suspends too, at the versions this component imports (so the key above need not name them).
        asyncImports: [...ASYNC_IMPORTS, ...wasiSuspending(imports)],
        asyncExports: ['run'],
        emitTypescriptDeclarations: false,
      });
    } catch (err) {
      throw new ComponentLoadError(`not a valid WebAssembly component: ${(err as Error).message ?? err}`);
    }
    const glue = new TextDecoder().decode(out.files[`${ENTRY}.js`]);
    const missing = missingWasiFunctions(glue);
    if (missing.length > 0) throw new ComponentLoadError(`component refused: it needs WASI functions this server does not provide (${missing.join('; ')})`);
    // Write beside, then rename: a concurrent process never sees half a folder.
    const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
    for (const [name, data] of Object.entries(out.files)) {
      const path = join(tmp, name);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, name.endsWith('.js') ? withoutDebugLog(new TextDecoder().decode(data)) : data);
    }
    writeFileSync(join(tmp, 'manifest.json'), JSON.stringify({ imports, exports: out.exports }));
    mkdirSync(this.cacheDir, { recursive: true });
    try {
      renameSync(tmp, dir);
    } catch {
      rmSync(tmp, { recursive: true, force: true }); // another process won the race; its copy is identical
    }
    return { hash, dir, imports, sizeBytes: bytes.length };
  }
}

/** The transpiled module's entry file inside a stored component's folder. */
export function entryFile(component: StoredComponent): string {
  return join(component.dir, `${ENTRY}.js`);
}

/**
 * jco's glue calls `_debugLog` on every task, waitable and lowering step, and
 * each call reads `process.env.JCO_DEBUG` (a native lookup): in a CPU profile
 * of 400 chat invocations on reused instances it took ~0.1 ms of each ~2.4 ms.
 * Unless JCO_DEBUG is set when transpiling, the helper becomes a no-op.
 */
export function withoutDebugLog(js: string): string {
  if (process.env.JCO_DEBUG) return js;
  return js.replace(/const _debugLog = \(\.\.\.args\) => \{[^}]*\{ return; \}[^}]*\};?/, 'const _debugLog = () => {};');
}
