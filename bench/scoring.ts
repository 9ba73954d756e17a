/**
 * Scoring text (prompt log-probabilities, what `echo` + `logprobs` and vLLM's
 * `prompt_logprobs` return) against computing the same prompt without
 * scores, side by side in one run on the bench model (vocabulary 32000).
 *
 *   npm run bench:scoring [-- --prompts 128,512,2048 --rounds 5 --model DIR --threads N]
 *
 * Per prompt length L, alternating for several rounds on one engine (prefix
 * caching off, so every run computes the whole prompt): a plain prefill
 * (`forward` with no logits), `promptLogprobs(0)` and `promptLogprobs(5)`.
 * Scoring returns a logits row per token to the host (L × 32000 floats) and
 * takes a log-softmax, the token's rank and a top-k of each. Medians in ms
 * and tokens/s; writes bench/results/scoring.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startEngine } from '../src/engine/index.ts';
import { benchModelDir } from './bench-model.ts';
import { median } from './stats.ts';

const { values: args } = parseArgs({
  options: {
    prompts: { type: 'string', default: '128,512,2048' },
    rounds: { type: 'string', default: '5' },
    model: { type: 'string' },
    threads: { type: 'string', default: '0' },
  },
});
const LENGTHS = args.prompts.split(',').map(Number);
const ROUNDS = Number(args.rounds);

const engine = await startEngine(benchModelDir(args.model), { prefixCaching: false, numPages: 512, ...(Number(args.threads) > 0 ? { threads: Number(args.threads) } : {}) });
const V = engine.model.config.vocabSize;
const modes = {
  prefill: async (tokens: number[]) => {
    const ctx = engine.createContext();
    engine.append(ctx, tokens);
    await engine.forward(ctx, { numLogits: 0 });
    engine.release(ctx);
  },
  'score, top 0': async (tokens: number[]) => {
    const ctx = engine.createContext();
    engine.append(ctx, tokens);
    await engine.promptLogprobs(ctx, 0);
    engine.release(ctx);
  },
  'score, top 5': async (tokens: number[]) => {
    const ctx = engine.createContext();
    engine.append(ctx, tokens);
    await engine.promptLogprobs(ctx, 5);
    engine.release(ctx);
  },
};
const rows: Array<{ tokens: number; mode: string; ms: number; tokensPerSecond: number; vsPrefill: number }> = [];
for (const L of LENGTHS) {
  const tokens = Array.from({ length: L }, (_, i) => 1 + ((i * 7919) % (V - 1)));
  await modes.prefill(tokens); // warm-up
  const times = new Map<string, number[]>(Object.keys(modes).map((m) => [m, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, run] of Object.entries(modes)) {
      const t = performance.now();
      await run(tokens);
      times.get(name)!.push(performance.now() - t);
    }
  }
  const base = median(times.get('prefill')!);
  for (const [mode, ts] of times) rows.push({ tokens: L, mode, ms: median(ts), tokensPerSecond: (L / median(ts)) * 1000, vsPrefill: median(ts) / base });
}
await engine.close();

console.log(`\nScoring a prompt (bench model, vocabulary ${V}, ${cpus().length} cores, median of ${ROUNDS})\n`);
console.log('| prompt tokens | mode | ms | tokens/s | × prefill time |');
console.log('|---:|---|---:|---:|---:|');
for (const r of rows) console.log(`| ${r.tokens} | ${r.mode} | ${r.ms.toFixed(1)} | ${r.tokensPerSecond.toFixed(0)} | ${r.vsPrefill.toFixed(2)} |`);
const out = join(import.meta.dirname, 'results');
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'scoring.json'), JSON.stringify({ date: new Date().toISOString(), cores: cpus().length, vocabSize: V, rounds: ROUNDS, rows }, null, 2) + '\n');
