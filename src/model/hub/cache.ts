/**
 * The Hugging Face hub's cache on disk, in the layout its Python library
 * (`huggingface_hub`, and so `transformers`) writes and reads, so a model
 * either side downloaded is the other's as is:
 *
 *   $HF_HUB_CACHE (else $HF_HOME/hub, else ~/.cache/huggingface/hub)
 *     models--ORG--NAME/
 *       blobs/<etag>                 a file's bytes, named by its etag (sha256 for LFS files, the git blob id otherwise)
 *       blobs/<etag>.incomplete      a download under way (resumed with an HTTP Range)
 *       snapshots/<commit>/<path>    relative links to ../../blobs/<etag>
 *       refs/<revision>              the commit a branch or tag pointed to when last downloaded
 */
import { existsSync, lstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The cache folder the environment names. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  return join(hfHome(env), 'hub');
}

/** $HF_HOME, else ~/.cache/huggingface (where the CLI's token file is too). */
export function hfHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.HF_HOME || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'huggingface');
}

export interface RepoRef {
  /** ORG/NAME. */
  repo: string;
  /** A branch, tag or commit (default "main"). */
  revision: string;
}

const REPO = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;
const COMMIT = /^[0-9a-f]{40}$/;

/** `ORG/NAME[:REVISION]` as a hub reference; null when it does not look like one. */
export function parseRepoRef(text: string): RepoRef | null {
  const at = text.indexOf(':');
  const repo = at < 0 ? text : text.slice(0, at);
  const revision = at < 0 ? 'main' : text.slice(at + 1);
  if (!REPO.test(repo) || repo.includes('..') || revision === '' || /[\s\\]|\.\./.test(revision)) return null;
  return { repo, revision };
}

/** The repository's folder in the cache (models only). */
export function repoFolder(cacheDir: string, repo: string): string {
  return join(cacheDir, `models--${repo.replaceAll('/', '--')}`);
}

/** The commit a revision names in the cache: itself if it is one, else what refs/ recorded; null if unknown. */
export function cachedCommit(cacheDir: string, ref: RepoRef): string | null {
  if (COMMIT.test(ref.revision)) return ref.revision;
  const path = join(repoFolder(cacheDir, ref.repo), 'refs', ref.revision);
  if (!existsSync(path)) return null;
  const commit = readFileSync(path, 'utf8').trim();
  return COMMIT.test(commit) ? commit : null;
}

/** The snapshot folder of a cached revision, or null when the cache does not have it. */
export function cachedSnapshot(cacheDir: string, ref: RepoRef): string | null {
  const commit = cachedCommit(cacheDir, ref);
  if (!commit) return null;
  const dir = join(repoFolder(cacheDir, ref.repo), 'snapshots', commit);
  return existsSync(dir) ? dir : null;
}

export interface CachedModel {
  repo: string;
  /** Each snapshot: its commit, the refs pointing to it, its files. */
  snapshots: Array<{ commit: string; refs: string[]; dir: string; files: string[] }>;
  /** What its blobs take on disk (a blob shared by snapshots counts once). */
  bytes: number;
}

/** Every model repository in the cache. */
export function listCached(cacheDir: string): CachedModel[] {
  if (!existsSync(cacheDir)) return [];
  const out: CachedModel[] = [];
  for (const entry of readdirSync(cacheDir).sort()) {
    const m = /^models--(.+?)--(.+)$/.exec(entry);
    if (!m) continue;
    const folder = join(cacheDir, entry);
    const refs = new Map<string, string[]>();
    const refsDir = join(folder, 'refs');
    for (const r of existsSync(refsDir) ? walk(refsDir) : []) {
      const commit = readFileSync(join(refsDir, r), 'utf8').trim();
      refs.set(commit, [...(refs.get(commit) ?? []), r]);
    }
    const snapshotsDir = join(folder, 'snapshots');
    const snapshots = (existsSync(snapshotsDir) ? readdirSync(snapshotsDir) : []).sort().map((commit) => {
      const dir = join(snapshotsDir, commit);
      return { commit, refs: refs.get(commit) ?? [], dir, files: walk(dir) };
    });
    const blobsDir = join(folder, 'blobs');
    let bytes = 0;
    for (const b of existsSync(blobsDir) ? readdirSync(blobsDir) : []) bytes += statSync(join(blobsDir, b)).size;
    out.push({ repo: `${m[1]}/${m[2]}`, snapshots, bytes });
  }
  return out;
}

/** Files under `dir` (a snapshot), relative, sorted; its links to blobs count as files. */
export function snapshotFiles(dir: string): string[] {
  return walk(dir);
}

function walk(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    const rel = prefix ? `${prefix}/${name}` : name;
    const st = lstatSync(path);
    if (st.isDirectory()) out.push(...walk(path, rel));
    else out.push(rel);
  }
  return out;
}
