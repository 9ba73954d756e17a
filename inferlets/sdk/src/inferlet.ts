/** The entry point wrapper every inferlet exports as `run`. */
import * as output from 'pie:inferlet/output@0.2.0';
import { input } from './runtime.ts';

/**
 * Wraps an inferlet's main function: it receives the parsed input, and what
 * it returns becomes the result (strings as they are, anything else as
 * JSON). A thrown error fails the invocation with its message.
 *
 * @example
 * import { inferlet, Model } from '@pie/inferlet';
 *
 * export const run = inferlet<{ prompt: string }>(({ prompt }) => {
 *   const ctx = Model.load().newContext().fill(prompt);
 *   return { text: ctx.generate({ max_tokens: 32 }).text() };
 * });
 */
export function inferlet<I = unknown>(main: (input: I) => unknown): () => void {
  return () => {
    try {
      const result = main(input<I>());
      if (result !== undefined) output.setResult(typeof result === 'string' ? result : JSON.stringify(result));
    } catch (err) {
      const e = err as { name?: string; code?: string; message?: string };
      // The message is all that crosses the boundary: keep the code in it.
      throw e?.name === 'PieError' ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(err);
    }
  };
}
