/**
 * A misbehaving route inferlet for the isolation tests: each `action` is
 * something a careless or hostile program might do to the server or to its
 * neighbours. The tests check that the server holds.
 */
import { inferlet, setHeader, setStatus } from '@pie/inferlet';

interface Input {
  body: { action: string; name?: string; value?: string; status?: number } | null;
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
    case 'header':
      return { header: attempt(() => setHeader(body.name!, body.value!)) };
    case 'status':
      return { status: attempt(() => setStatus(body.status!)) };
    default:
      throw new Error(`unknown action ${body.action}`);
  }
});
