/**
 * An inferlet that uses what ordinary JavaScript reaches through WASI when
 * it is built with `--wasi` (the engine's imports not stubbed): clocks,
 * randomness, and console output where the engine has a console
 * (StarlingMonkey's goes to stdout and stderr; QuickJS has none).
 */
import { inferlet, setResult } from '@pie/inferlet';

export const run = inferlet<{ lines?: number; long?: number }>((args) => {
  const t0 = Date.now();
  const a = Math.random();
  const b = Math.random();
  const out = (globalThis as { console?: Console }).console;
  if (out) {
    for (let i = 0; i < (args.lines ?? 1); i++) out.log(`stdout line ${i}`);
    out.error('a line on stderr');
    if (args.long) out.log('x'.repeat(args.long));
  }
  setResult(JSON.stringify({ wallClock: t0 > 1.7e12, randomDiffers: a !== b, inRange: a >= 0 && a < 1, console: out !== undefined }));
});
