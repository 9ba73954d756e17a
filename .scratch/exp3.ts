import { startEngine } from '../src/engine/index.ts';
import { referenceForward } from '../drivers/reference/forward.ts';
import { importLlama2c } from '../src/model/llama2c.ts';
const dir = '/tmp/stories-scratch'; importLlama2c('/work/shared/models/stories260K/stories260K.bin', '/work/shared/models/stories260K/tok512.bin', dir);
const prompt = [1];
async function run(q: any) {
  const e = await startEngine(dir, { threads: 1, numPages: 64, quantize: q });
  const ctx = e.createContext(); e.append(ctx, prompt);
  const r = await e.generate(ctx, { sampling: { temperature: 0 }, maxTokens: 60, ignoreEos: true }).result;
  e.release(ctx);
  await e.close();
  return { tokens: r.tokens, model: e.model };
}
const f = await run(null);
for (const bits of [8, 4] as const) for (const zp of [false, true]) {
  const q = await run({ bits, headBits: 8, block: 32, zeroPoints: zp });
  const same = q.tokens.findIndex((t, i) => t !== f.tokens[i]);
  console.log(bits, zp, 'first diff at', same);
}
import { loadModel } from '../src/model/load.ts';
for (const zp of [false, true]) {
  const m = loadModel(dir, { quantize: { bits: 8, headBits: 8, block: 32, zeroPoints: zp } });
  const ref = referenceForward(m.config, m.weights, [...prompt, ...f.tokens.slice(0, 3)]);
  const fm = loadModel(dir);
  const rf = referenceForward(fm.config, fm.weights, [...prompt, ...f.tokens.slice(0, 3)]);
  for (let t = prompt.length - 1; t < ref.length; t++) {
    let err = 0, am = 0, af = 0;
    ref[t]!.forEach((v, i) => { err = Math.max(err, Math.abs(v - rf[t]![i]!)); if (v > ref[t]![am]!) am = i; if (rf[t]![i]! > rf[t]![af]!) af = i; });
    const sorted = [...rf[t]!].sort((a, b) => b - a);
    console.log('zp', zp, 't', t, 'max logit err', err.toFixed(4), 'argmax q/f', am, af, 'fp32 margin', (sorted[0]! - sorted[1]!).toFixed(4));
  }
}
console.log(f.tokens.slice(0, 8));
