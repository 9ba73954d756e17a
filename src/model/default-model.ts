/**
 * The configured default model (`model.path`): a folder, or a hub repository
 * (`ORG/NAME[:REVISION]`) in the hub's cache or downloaded when
 * `model.download` allows. A fresh machine has none: then a random-weight
 * model is created in its place, and the log says so plainly, with the
 * commands that bring a real one.
 */
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Config } from '../config.ts';
import { ModelLoadError } from './errors.ts';
import { cachedSnapshot, hubCacheDir, parseRepoRef } from './hub/cache.ts';
import type { DownloadOptions } from './hub/download.ts';
import { resolveModelSource, type ModelSource } from './hub/resolve.ts';
import { createRandomModel, PRESETS } from './random.ts';

/** `model.path`'s default: a folder to create, never a repository's name. */
const DEFAULT_MODEL_PATH = 'models/default';

export async function defaultModel(config: Config, log: (line: string) => void, hub: { download: boolean; hub?: DownloadOptions } = { download: false }): Promise<ModelSource> {
  const dir = resolve(config.root, config.model.path);
  if (existsSync(dir)) return { dir };
  // A repository's name: from the cache, or downloaded when allowed (the default path, models/default, looks like one too:
  // it is a folder to create unless the cache has it or a download was asked for).
  const ref = parseRepoRef(config.model.path);
  const cached = ref ? cachedSnapshot(hub.hub?.cacheDir ?? hubCacheDir(hub.hub?.env), ref) : null;
  // Downloaded only when it cannot be a folder to create: not the default path, and not under a folder that exists.
  const mayDownload = config.model.download && config.model.path !== DEFAULT_MODEL_PATH && !existsSync(dirname(dir));
  if (ref && (cached || mayDownload)) return resolveModelSource(config.model.path, { ...hub, root: config.root });
  return { dir: ensureDefaultModel(config, log) };
}

export function ensureDefaultModel(config: Config, log: (line: string) => void): string {
  const dir = resolve(config.root, config.model.path);
  if (existsSync(dir)) return dir;
  const preset = config.model.createIfMissing;
  if (!preset) throw new ModelLoadError(`the configured model directory ${dir} does not exist (model.create_if_missing is off)`);
  if (/\.gguf$/i.test(dir)) throw new ModelLoadError(`the configured model file ${dir} does not exist (a random model is made only in place of a missing directory)`);
  createRandomModel(dir, PRESETS[preset], 0);
  log(
    [
      `No model at ${dir}: created a "${preset}" random-weight model there. Its output is gibberish by design.`,
      'For a real model, download one from the Hugging Face hub (a Llama, Mistral, Qwen2 or Qwen3), or convert the stories260K checkpoint:',
      '  npx pie model download Qwen/Qwen2.5-0.5B-Instruct && npx pie serve --model Qwen/Qwen2.5-0.5B-Instruct',
      '  npx pie model import-llama2c ../shared/models/stories260K/stories260K.bin ../shared/models/stories260K/tok512.bin models/stories260K',
      '  npx pie generate --model models/stories260K',
    ].join('\n'),
  );
  return dir;
}
