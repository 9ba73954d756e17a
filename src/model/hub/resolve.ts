/**
 * A model named where a path is taken (`--model`, `model.path`): a folder,
 * or a hub repository `ORG/NAME[:REVISION]` found in the hub's cache (the
 * Python library's too), downloaded when allowed, and otherwise a clear
 * error with the command that downloads it.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { ModelLoadError } from '../errors.ts';
import { cachedSnapshot, hubCacheDir, parseRepoRef } from './cache.ts';
import { downloadModel, snapshotComplete, type DownloadOptions } from './download.ts';

export interface ModelSource {
  dir: string;
  /** The name to serve it as when none is given: the repository's, for a hub model. */
  name?: string;
}

export async function resolveModelSource(text: string, options: { root?: string; download: boolean; hub?: DownloadOptions }): Promise<ModelSource> {
  const path = resolve(options.root ?? '.', text);
  if (existsSync(path)) return { dir: path };
  const ref = parseRepoRef(text);
  if (!ref) return { dir: path }; // not a repository's name: the folder's absence is the loader's to report
  const env = options.hub?.env ?? process.env;
  const cacheDir = options.hub?.cacheDir ?? hubCacheDir(env);
  const cached = cachedSnapshot(cacheDir, ref);
  // A snapshot counts only whole (another tool may have fetched its configuration alone, or been interrupted).
  if (cached && snapshotComplete(cached)) return { dir: cached, name: ref.repo };
  if (!options.download) {
    const what = cached ? `only partly in the Hugging Face cache (${cached})` : `neither a folder here nor in the Hugging Face cache (${cacheDir})`;
    throw new ModelLoadError(`${text} is ${what}: download it with \`npx pie model download ${text}\`, or set model.download = true`);
  }
  const got = await downloadModel(ref, options.hub ?? {});
  return { dir: got.dir, name: ref.repo };
}
