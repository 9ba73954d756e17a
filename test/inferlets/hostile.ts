/**
 * A misbehaving route inferlet for the isolation tests: each `action` is
 * something a careless or hostile program might do to the server or to its
 * neighbours. The tests check that the server holds.
 */
import { inferlet, isCancelled, Model, PieError, queue, setHeader, setStatus } from '@pie/inferlet';

interface Input {
  body: { action: string; name?: string; value?: string; status?: number; count?: number; tokens?: number } | null;
}

function attempt(fn: () => void): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    return String((err as Error).message ?? err);
  }
}

export const run = inferlet<Input>((req) => {
  const body = req.body ?? { action: '' };
  switch (body.action) {
    case 'spin':
      // Calls the host in a loop and never stops, even when cancelled.
      for (;;) isCancelled();
    case 'header':
      return { header: attempt(() => setHeader(body.name!, body.value!)) };
    case 'status':
      return { status: attempt(() => setStatus(body.status!)) };
    case 'flood-messages': {
      // Pushes 1 MB messages to queues nobody reads until refused.
      const message = 'm'.repeat(1 << 20);
      for (let i = 0; i < (body.count ?? 1000); i++) {
        try {
          queue(`flood-${i % 8}`).push(message);
        } catch (err) {
          return { pushed: i, refused: err instanceof PieError ? err.code : String(err) };
        }
      }
      return { pushed: body.count ?? 1000 };
    }
    case 'hoard': {
      // Saves `count` snapshots of `tokens` tokens each, to keep their pages for ever.
      const model = Model.load();
      const errors: string[] = [];
      let saved = 0;
      for (let i = 0; i < (body.count ?? 10); i++) {
        const ctx = model.newContext();
        try {
          ctx.fill(Array.from({ length: body.tokens ?? 200 }, (_, j) => 3 + ((i * 31 + j * 7) % 400)));
          ctx.prefill();
          ctx.save(`hoard-${i}`);
          saved++;
        } catch (err) {
          errors.push(err instanceof PieError ? err.code : String(err));
        } finally {
          ctx.release();
        }
      }
      return { saved, errors };
    }
    default:
      throw new Error(`unknown action ${body.action}`);
  }
});
