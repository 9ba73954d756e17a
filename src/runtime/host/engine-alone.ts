/**
 * bench:serve's baseline: N greedy generations straight on an engine, with
 * no HTTP and no inferlet, timed on the engine's own thread (for the
 * gateway's engine on the engine thread, through EngineThread.engineAlone).
 */
import type { Engine } from '../../engine/index.ts';
import type { EngineAloneRequest, EngineAloneResult } from './link-protocol.ts';

export async function engineAlone(engine: Engine, { tokens, n, maxTokens }: Omit<EngineAloneRequest, 'model'>): Promise<EngineAloneResult> {
  const ttftMs: number[] = [];
  const itlMs: number[] = [];
  const t0 = performance.now();
  const completionTokens = await Promise.all(
    Array.from({ length: n }, async () => {
      const ctx = engine.createContext();
      try {
        engine.append(ctx, tokens);
        let last = 0;
        const onChunk = (c: { text: string }) => {
          if (c.text === '') return;
          const now = performance.now();
          if (last === 0) ttftMs.push(now - t0);
          else itlMs.push(now - last);
          last = now;
        };
        return (await engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens, ignoreEos: true, onChunk }).result).completionTokens;
      } finally {
        engine.release(ctx);
      }
    }),
  );
  return { wallMs: performance.now() - t0, ttftMs, itlMs, completionTokens };
}
