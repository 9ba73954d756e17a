/** The benchmarks' model: `--model DIR`, else the `bench` preset in models/bench, created on first use. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createRandomModel, PRESETS } from '../src/model/random.ts';

export function benchModelDir(override?: string): string {
  if (override) return override;
  const dir = join(import.meta.dirname, '..', 'models', 'bench');
  if (!existsSync(dir)) {
    console.error(`creating the bench model in ${dir} ...`);
    createRandomModel(dir, PRESETS.bench, 0);
  }
  return dir;
}
