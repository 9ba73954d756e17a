/**
 * Downloads a model from the Hugging Face hub's HTTP API into the hub's cache
 * layout (cache.ts):
 *
 *   GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true
 *       → the commit, and each file with its size, git blob id and (LFS) sha256
 *   config.json first: a repository whose architecture the engine cannot
 *       serve is refused before any weight is fetched
 *   each file: GET {endpoint}/{repo}/resolve/{commit}/{path} (redirects
 *       followed) into blobs/<etag>.incomplete, resumed with a Range after an
 *       interruption, hashed as it comes (sha256 for LFS files, the git blob
 *       id otherwise) and checked with its size before it is renamed to
 *       blobs/<etag>: a killed download never leaves a file that looks
 *       complete, a corrupted one is fetched again and never used
 *   snapshots/<commit>/<path> links, refs/<revision>
 *
 * Files already in the cache with the right size are not fetched again. A
 * few files download at once (`concurrency`). HF_ENDPOINT, HF_TOKEN (or the
 * token file the Hugging Face CLI writes) and HF_HUB_OFFLINE are honoured.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { once } from 'node:events';
import { SUPPORTED_ARCHITECTURES } from '../config.ts';
import { ModelLoadError } from '../errors.ts';
import { cachedSnapshot, hfHome, hubCacheDir, repoFolder, snapshotFiles, type RepoRef } from './cache.ts';

export class HubError extends Error {
  override name = 'HubError';
}

/** What the engine reads from a model repository (the default selection). */
export const ENGINE_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'chat_template.jinja', '*.safetensors', 'model.safetensors.index.json'];

export interface HubOptions {
  /** The hub (default $HF_ENDPOINT, else https://huggingface.co). */
  endpoint?: string;
  /** A token (default $HF_TOKEN, else the file the Hugging Face CLI writes). */
  token?: string | null;
  /** The cache folder (default hubCacheDir()). */
  cacheDir?: string;
  /** Only from the cache (default: $HF_HUB_OFFLINE set to 1 or true). */
  offline?: boolean;
  env?: NodeJS.ProcessEnv;
}

export interface DownloadOptions extends HubOptions {
  /** Globs of the files to fetch (default ENGINE_FILES); `*` matches across folders, as the hub's own tools do. */
  include?: string[];
  exclude?: string[];
  /** Files downloading at once (default 4). */
  concurrency?: number;
  /** Whether to check the architecture before fetching weights (default true). */
  checkArchitecture?: boolean;
  /** Progress: a file's bytes so far out of its size (called as they arrive, and once a file is complete or found in the cache). */
  onProgress?: (file: string, done: number, total: number) => void;
  /** Called when the download is over (done or failed). */
  onDone?: () => void;
  /** Called once the file list is known, with what will be fetched. */
  onPlan?: (files: Array<{ path: string; size: number; cached: boolean }>) => void;
  fetch?: typeof fetch;
}

export interface Downloaded {
  repo: string;
  commit: string;
  /** The snapshot folder: a model directory the engine loads. */
  dir: string;
  files: string[];
  /** Bytes fetched this time (0: all was in the cache). */
  fetchedBytes: number;
}

interface Sibling {
  rfilename: string;
  size?: number;
  blobId?: string;
  lfs?: { sha256?: string; oid?: string; size?: number };
}

/** One file of the revision, as it is fetched and checked. */
interface RemoteFile {
  path: string;
  size: number;
  /** Its name among the blobs: the sha256 of an LFS file, the git blob id of another. */
  etag: string;
  lfs: boolean;
}

function resolveOptions(o: HubOptions) {
  const env = o.env ?? process.env;
  const endpoint = (o.endpoint ?? env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
  const offline = o.offline ?? /^(1|true|yes|on)$/i.test(env.HF_HUB_OFFLINE ?? '');
  return { env, endpoint, offline, cacheDir: o.cacheDir ?? hubCacheDir(env), token: o.token === undefined ? hubToken(env) : o.token };
}

/** $HF_TOKEN, else the token file ($HF_TOKEN_PATH, else $HF_HOME/token); null without one. */
export function hubToken(env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.HF_TOKEN) return env.HF_TOKEN.trim();
  const path = env.HF_TOKEN_PATH || join(hfHome(env), 'token');
  try {
    return readFileSync(path, 'utf8').trim() || null;
  } catch {
    return null;
  }
}

/** A glob as the hub's tools read it (fnmatch: `*` and `?` match across `/`, `[...]` sets). */
export function globMatcher(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        re += `[${glob.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

const selected = (path: string, include: RegExp[], exclude: RegExp[]) => include.some((g) => g.test(path)) && !exclude.some((g) => g.test(path));

/** Asks the hub about a revision: its commit and files. Errors say what to do (a gated or private repo, a missing revision). */
export async function revisionInfo(ref: RepoRef, options: HubOptions & { fetch?: typeof fetch } = {}): Promise<{ commit: string; files: RemoteFile[] }> {
  const o = resolveOptions(options);
  const doFetch = options.fetch ?? fetch;
  const url = `${o.endpoint}/api/models/${ref.repo}/revision/${encodeURIComponent(ref.revision)}?blobs=true`;
  let res: Response;
  try {
    res = await doFetch(url, { headers: authHeaders(o.token) });
  } catch (err) {
    throw new HubError(`cannot reach ${o.endpoint}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message} (HF_HUB_OFFLINE=1 uses the cache only)`);
  }
  if (!res.ok) throw await hubFailure(res, ref, o.token !== null, o.endpoint);
  const body = (await res.json()) as { sha?: string; siblings?: Sibling[] };
  if (!body.sha || !Array.isArray(body.siblings)) throw new HubError(`${o.endpoint} answered an unexpected file list for ${ref.repo}@${ref.revision}`);
  const files = body.siblings.map((s): RemoteFile => {
    const sha256 = s.lfs?.sha256 ?? s.lfs?.oid;
    const size = s.lfs?.size ?? s.size;
    if (size === undefined || (!sha256 && !s.blobId)) throw new HubError(`${o.endpoint} gave no size or hash for ${s.rfilename} of ${ref.repo}`);
    // Names and hashes become paths: nothing may leave the snapshot or the blobs.
    if (typeof s.rfilename !== 'string' || s.rfilename.startsWith('/') || s.rfilename.split('/').some((p) => p === '' || p === '.' || p === '..') || !/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(sha256 ?? s.blobId!)) {
      throw new HubError(`${o.endpoint} listed a file of ${ref.repo} with a name or hash this server will not use: ${JSON.stringify(s.rfilename)}`);
    }
    return { path: s.rfilename, size, etag: sha256 ?? s.blobId!, lfs: sha256 !== undefined };
  });
  return { commit: body.sha, files };
}

function authHeaders(token: string | null): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** A refusal of the hub as an error that says which and what to do. */
async function hubFailure(res: Response, ref: RepoRef, hadToken: boolean, endpoint: string): Promise<HubError> {
  const code = res.headers.get('x-error-code') ?? '';
  const text = (await res.text().catch(() => '')).slice(0, 300);
  const page = `${endpoint}/${ref.repo}`;
  if (code === 'GatedRepo' || /gated/i.test(text)) {
    return new HubError(
      hadToken
        ? `${ref.repo} is a gated repository and this token has no access to it: accept its terms on ${page} with the account the token belongs to (${res.status})`
        : `${ref.repo} is a gated repository: accept its terms on ${page}, then set HF_TOKEN to a token of that account (or log in with the Hugging Face CLI) (${res.status})`,
    );
  }
  if (code === 'RevisionNotFound') return new HubError(`${ref.repo} has no revision "${ref.revision}" (${res.status})`);
  if (code === 'EntryNotFound') return new HubError(`a file of ${ref.repo} listed by the hub is missing there (${res.status}): ${text}`);
  if (res.status === 401 || res.status === 403 || res.status === 404 || code === 'RepoNotFound') {
    return new HubError(
      hadToken
        ? `no repository ${ref.repo} that this token can read (${res.status}): check the name, or that the token's account has access`
        : `no repository ${ref.repo} (${res.status}); if it is private or gated, set HF_TOKEN (or log in with the Hugging Face CLI)`,
    );
  }
  return new HubError(`the hub answered ${res.status} for ${ref.repo}@${ref.revision}: ${text}`);
}

/**
 * Downloads a revision's files (what the engine needs, by default) into the
 * cache; returns its snapshot folder. Offline, the cache alone answers.
 */
export async function downloadModel(ref: RepoRef, options: DownloadOptions = {}): Promise<Downloaded> {
  try {
    return await download(ref, options);
  } finally {
    options.onDone?.();
  }
}

async function download(ref: RepoRef, options: DownloadOptions): Promise<Downloaded> {
  const o = resolveOptions(options);
  const doFetch = options.fetch ?? fetch;
  if (o.offline) {
    const dir = cachedSnapshot(o.cacheDir, ref);
    if (!dir || !snapshotComplete(dir)) throw new HubError(`HF_HUB_OFFLINE is set and ${ref.repo}@${ref.revision} is not (wholly) in the cache (${o.cacheDir})`);
    return { repo: ref.repo, commit: basename(dir), dir, files: snapshotFiles(dir), fetchedBytes: 0 };
  }
  const { commit, files: all } = await revisionInfo(ref, { ...options, cacheDir: o.cacheDir, endpoint: o.endpoint, token: o.token });
  const byDefault = !options.include?.length;
  const include = (byDefault ? ENGINE_FILES : options.include!).map(globMatcher);
  const exclude = (options.exclude ?? []).map(globMatcher);
  let files = all.filter((f) => selected(f.path, include, exclude));
  if (files.length === 0) throw new HubError(`no file of ${ref.repo}@${ref.revision} matches what was asked (${all.length} files there)`);
  const folder = repoFolder(o.cacheDir, ref.repo);
  const snapshot = join(folder, 'snapshots', commit);
  const blobPath = (f: RemoteFile) => join(folder, 'blobs', f.etag);
  const inCache = (f: RemoteFile) => existsSync(blobPath(f)) && statSync(blobPath(f)).size === f.size;
  const abort = new AbortController(); // the first failure stops the others
  let fetchedBytes = 0;
  const one = async (f: RemoteFile) => {
    if (!inCache(f)) {
      const url = `${o.endpoint}/${ref.repo}/resolve/${commit}/${f.path.split('/').map(encodeURIComponent).join('/')}`;
      fetchedBytes += await withBlobLock(o.cacheDir, ref.repo, f, abort.signal, () => (inCache(f) ? Promise.resolve(0) : fetchBlob(f, url, blobPath(f), { ref, token: o.token, endpoint: o.endpoint, doFetch, onProgress: options.onProgress, signal: abort.signal })));
    } else options.onProgress?.(f.path, f.size, f.size);
    link(join(snapshot, f.path), blobPath(f));
  };
  // The configuration and the weights' index first: a repository the engine cannot serve is refused before its weights
  // are fetched, and only the shards the index names are (a repository may hold the same weights twice).
  const first = files.filter((f) => f.path === 'config.json' || f.path === 'model.safetensors.index.json');
  for (const f of first) await one(f);
  if (byDefault) {
    const index = first.find((f) => f.path === 'model.safetensors.index.json');
    const shards = index ? indexShards(join(snapshot, index.path)) : null;
    files = files.filter((f) => !f.path.endsWith('.safetensors') || (shards ? shards.has(f.path) : !f.path.includes('/')));
  }
  if (options.checkArchitecture ?? true) {
    const config = first.find((f) => f.path === 'config.json');
    if (!config) throw new HubError(`${ref.repo} has no config.json: it is not a model this server can serve`);
    const arch = (JSON.parse(readFileSync(join(snapshot, 'config.json'), 'utf8')) as { architectures?: string[] }).architectures?.[0];
    if (!arch || !Object.hasOwn(SUPPORTED_ARCHITECTURES, arch)) {
      throw new ModelLoadError(`${ref.repo} is a ${arch ?? 'model of no stated architecture'}, which this server cannot serve (it serves ${Object.keys(SUPPORTED_ARCHITECTURES).join(', ')}); its weights were not downloaded`);
    }
    const hasWeights = all.some((f) => f.path.endsWith('.safetensors'));
    if (!hasWeights) throw new ModelLoadError(`${ref.repo} has no safetensors weights${all.some((f) => f.path.endsWith('.bin')) ? ' (only PyTorch .bin files, which this server does not read)' : ''}; nothing more was downloaded`);
    if (!all.some((f) => f.path === 'tokenizer.json')) throw new ModelLoadError(`${ref.repo} has no tokenizer.json (this server reads Hugging Face tokenizers, not tokenizer.model alone); nothing more was downloaded`);
  }
  options.onPlan?.(files.map((f) => ({ path: f.path, size: f.size, cached: first.includes(f) || inCache(f) })));
  const rest = files.filter((f) => !first.includes(f));
  let next = 0;
  const workers = Array.from({ length: Math.max(1, Math.min(options.concurrency ?? 4, rest.length)) }, async () => {
    while (next < rest.length && !abort.signal.aborted) await one(rest[next++]!);
  });
  try {
    await Promise.all(workers.map((w) => w.catch((err: unknown) => (abort.abort(), Promise.reject(err)))));
  } catch (err) {
    await Promise.allSettled(workers); // the others stop before this fails: nothing goes on in the background
    throw err;
  }
  const refPath = join(folder, 'refs', ref.revision);
  if (ref.revision !== commit && (!existsSync(refPath) || readFileSync(refPath, 'utf8') !== commit)) {
    mkdirSync(dirname(refPath), { recursive: true });
    writeFileSync(refPath, commit); // only when it moved: a read-only cache of a downloaded model still works
  }
  return { repo: ref.repo, commit, dir: snapshot, files: files.map((f) => f.path), fetchedBytes };
}

/** The shard files a `model.safetensors.index.json` names. */
function indexShards(path: string): Set<string> {
  return new Set(Object.values((JSON.parse(readFileSync(path, 'utf8')) as { weight_map?: Record<string, string> }).weight_map ?? {}));
}

/** Whether a snapshot holds a model the engine can load: its configuration, tokenizer and every weights file (the index's shards). */
export function snapshotComplete(dir: string): boolean {
  if (!existsSync(join(dir, 'config.json')) || !existsSync(join(dir, 'tokenizer.json'))) return false;
  const indexPath = join(dir, 'model.safetensors.index.json');
  if (existsSync(indexPath)) {
    try {
      const shards = indexShards(indexPath);
      return shards.size > 0 && [...shards].every((s) => existsSync(join(dir, s)));
    } catch {
      return false;
    }
  }
  return existsSync(join(dir, 'model.safetensors'));
}

/** A snapshot's link to its blob (relative, as the Python library makes them); replaced if it points elsewhere. */
function link(path: string, blob: string): void {
  const target = relative(dirname(path), blob);
  mkdirSync(dirname(path), { recursive: true });
  try {
    if (readlinkSync(path) === target) return;
  } catch {
    // not a link, or none
  }
  rmSync(path, { force: true });
  try {
    symlinkSync(target, path);
  } catch (err) {
    // Another download made it meanwhile: fine if it points where this one would.
    if ((err as { code?: string }).code !== 'EEXIST' || readlinkSync(path) !== target) throw err;
  }
}

/**
 * One download of a blob at a time across processes (of this server: a lock
 * file under the cache's .locks/, where the Python library places its own;
 * Python's locks are flock()s on the same path, which this does not see).
 * The holder touches it every few seconds; a lock untouched for a minute is
 * stale (its process died, or was killed), and so is one naming this process
 * that this process does not hold (a restart that got the same pid).
 */
async function withBlobLock<T>(cacheDir: string, repo: string, f: RemoteFile, signal: AbortSignal, work: () => Promise<T>): Promise<T> {
  const lock = join(cacheDir, '.locks', `models--${repo.replaceAll('/', '--')}`, `${f.etag}.lock`);
  mkdirSync(dirname(lock), { recursive: true });
  for (;;) {
    try {
      writeFileSync(lock, `${hostname()} ${process.pid}`, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw err;
      if (staleLock(lock)) {
        // Moved aside first: of two waiters that both find it stale, only one takes it away.
        const aside = `${lock}.stale-${process.pid}-${Math.random().toString(36).slice(2)}`;
        try {
          renameSync(lock, aside);
          rmSync(aside, { force: true });
        } catch {
          // gone already
        }
        continue;
      }
      if (signal.aborted) throw new HubError('stopped');
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  held.add(lock);
  const touch = setInterval(() => {
    try {
      const now = new Date();
      utimesSync(lock, now, now);
    } catch {
      // taken away as stale: the download goes on; the blob's check guards its result
    }
  }, LOCK_TOUCH_MS);
  try {
    return await work();
  } finally {
    clearInterval(touch);
    held.delete(lock);
    rmSync(lock, { force: true });
  }
}

const LOCK_TOUCH_MS = 5_000;
const LOCK_STALE_MS = 60_000;
/** Locks this process holds. */
const held = new Set<string>();

function staleLock(lock: string): boolean {
  let text: string;
  let age: number;
  try {
    text = readFileSync(lock, 'utf8').trim();
    age = Date.now() - statSync(lock).mtimeMs;
  } catch {
    return false; // gone meanwhile: try again
  }
  if (age > LOCK_STALE_MS) return true;
  const [host, pidText] = text.split(' ');
  const pid = Number(pidText);
  if (host !== hostname() || !Number.isInteger(pid) || pid <= 0) return false; // another machine's, or being written: its touches tell
  if (pid === process.pid) return !held.has(lock);
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as { code?: string }).code !== 'EPERM';
  }
}

/** Tries a file's download again after a broken connection (resuming) or a corrupt result (from scratch). */
const ATTEMPTS = 3;

class CorruptError extends HubError {}
class RetryableError extends HubError {
  readonly retryAfterMs: number;
  constructor(message: string, retryAfterMs = 0) {
    super(message);
    this.retryAfterMs = retryAfterMs;
  }
}

interface FetchContext {
  ref: RepoRef;
  token: string | null;
  endpoint: string;
  doFetch: typeof fetch;
  onProgress: DownloadOptions['onProgress'];
  signal: AbortSignal;
}

/** Fetches one file into its blob; the bytes fetched. */
async function fetchBlob(f: RemoteFile, url: string, blob: string, c: FetchContext): Promise<number> {
  mkdirSync(dirname(blob), { recursive: true });
  const partial = `${blob}.incomplete`;
  let fetched = 0;
  let last: Error | null = null;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    if (c.signal.aborted) throw new HubError('stopped');
    try {
      fetched += await fetchInto(f, url, partial, c);
      renameSync(partial, blob); // complete and checked: only now does it look like a blob
      return fetched;
    } catch (err) {
      last = err as Error;
      if (c.signal.aborted) throw err;
      if (err instanceof CorruptError) rmSync(partial, { force: true }); // never resumed from, never used
      // A broken connection (fetch's TypeError, a reset) or a short or refused-for-now answer is tried again, resuming, after a pause.
      else if (!(err instanceof TypeError || (err as { code?: string }).code === 'ECONNRESET' || err instanceof RetryableError)) throw err;
      if (attempt === ATTEMPTS - 1) break;
      // A pause before the next attempt; the first failure of another file ends it.
      await sleep(err instanceof RetryableError && err.retryAfterMs > 0 ? Math.min(err.retryAfterMs, 30_000) : 500 * 2 ** attempt, undefined, { signal: c.signal }).catch(() => {});
      if (c.signal.aborted) throw err;
    }
  }
  const kept = existsSync(partial) ? '; what arrived is kept, and the next download resumes it' : '';
  throw new HubError(`${last?.message ?? `${f.path}: failed`} (after ${ATTEMPTS} attempts${kept})`);
}

/** Continues `partial` from its length; checks size and hash at the end. The bytes fetched. */
async function fetchInto(f: RemoteFile, url: string, partial: string, c: FetchContext): Promise<number> {
  let have = existsSync(partial) ? statSync(partial).size : 0;
  if (have > f.size) {
    rmSync(partial);
    have = 0;
  }
  const hash = newHash(f);
  if (have > 0) for await (const chunk of createReadStream(partial)) hash.update(chunk as Buffer);
  let fetched = 0;
  if (have < f.size) {
    const res = await c.doFetch(url, { headers: { ...authHeaders(c.token), 'accept-encoding': 'identity', ...(have > 0 ? { range: `bytes=${have}-` } : {}) }, signal: c.signal });
    if (res.status === 416 && have > 0) {
      // The hub will not continue what is there: start over.
      await res.body?.cancel();
      rmSync(partial, { force: true });
      throw new RetryableError(`${f.path}: the hub would not resume it (416)`);
    }
    if (res.status === 429 || res.status >= 500) {
      await res.body?.cancel();
      throw new RetryableError(`${f.path}: the hub answered ${res.status}`, Number(res.headers.get('retry-after') ?? 0) * 1000);
    }
    if (res.status !== 200 && res.status !== 206) throw await hubFailure(res, c.ref, c.token !== null, c.endpoint);
    const resumed = res.status === 206;
    if (resumed && !(res.headers.get('content-range') ?? `bytes ${have}-`).startsWith(`bytes ${have}-`)) {
      await res.body?.cancel();
      rmSync(partial, { force: true });
      throw new RetryableError(`${f.path}: the hub resumed it from another place (${res.headers.get('content-range')})`);
    }
    const from = resumed ? have : 0;
    const h = resumed ? hash : newHash(f); // a whole file instead of the rest: start over
    let done = from;
    fetched = await append(res, partial, resumed, h, (n) => c.onProgress?.(f.path, (done += n), f.size));
    check(f, partial, h);
  } else {
    if (!existsSync(partial)) writeFileSync(partial, ''); // an empty file: nothing to fetch
    check(f, partial, hash);
  }
  c.onProgress?.(f.path, f.size, f.size);
  return fetched;
}

function newHash(f: RemoteFile): Hash {
  if (f.lfs) return createHash('sha256');
  return createHash('sha1').update(`blob ${f.size}\0`); // a git blob id
}

/**
 * Writes a response's body to the file as it comes, hashing it; the bytes
 * written. What arrived before a broken connection is on disk when this
 * fails (the next attempt resumes from it); a failed write (a full disk)
 * fails it too, never hangs it.
 */
async function append(res: Response, path: string, resume: boolean, hash: Hash, onBytes: (n: number) => void): Promise<number> {
  const out = createWriteStream(path, { flags: resume ? 'a' : 'w' });
  let failed: Error | null = null;
  out.on('error', (err) => (failed ??= err));
  let n = 0;
  try {
    for await (const chunk of (res.body ?? []) as AsyncIterable<Uint8Array>) {
      if (failed) throw failed;
      hash.update(chunk);
      n += chunk.length;
      onBytes(chunk.length);
      if (!out.write(chunk)) await once(out, 'drain'); // rejects on the stream's error
    }
  } finally {
    // Flush what arrived (also when the connection broke), then close; a stream that failed is closed already.
    await new Promise<void>((resolve) => {
      if (out.closed) return resolve();
      out.once('close', () => resolve());
      out.end();
    });
  }
  if (failed) throw failed;
  return n;
}

/** The whole file is there: its size and hash must be the hub's, or it is corrupt. */
function check(f: RemoteFile, partial: string, hash: Hash): void {
  const size = existsSync(partial) ? statSync(partial).size : 0;
  if (size < f.size) throw new RetryableError(`${f.path}: the connection ended after ${size} of ${f.size} bytes`);
  if (size !== f.size) throw new CorruptError(`${f.path}: ${size} bytes arrived, the hub says ${f.size}`);
  const got = hash.digest('hex');
  if (got !== f.etag) throw new CorruptError(`${f.path}: its ${f.lfs ? 'sha256' : 'git blob id'} is ${got}, the hub says ${f.etag}: corrupted in transit`);
}
