/**
 * The configured default model. A fresh machine has none: then a random-weight
 * model is created in its place, and the log says so plainly, with the
 * commands that bring a real one.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Config } from '../config.ts';
import { ModelLoadError } from './errors.ts';
import { createRandomModel, PRESETS } from './random.ts';

export function ensureDefaultModel(config: Config, log: (line: string) => void): string {
  const dir = resolve(config.root, config.model.path);
  if (existsSync(dir)) return dir;
  const preset = config.model.createIfMissing;
  if (!preset) throw new ModelLoadError(`the configured model directory ${dir} does not exist (model.create_if_missing is off)`);
  createRandomModel(dir, PRESETS[preset], 0);
  log(
    [
      `No model at ${dir}: created a "${preset}" random-weight model there. Its output is gibberish by design.`,
      'For a real model, convert the stories260K checkpoint (or point --model at any Hugging Face Llama, Mistral, Qwen2 or Qwen3 directory):',
      '  npx pie model import-llama2c ../shared/models/stories260K/stories260K.bin ../shared/models/stories260K/tok512.bin models/stories260K',
      '  npx pie generate --model models/stories260K',
    ].join('\n'),
  );
  return dir;
}
