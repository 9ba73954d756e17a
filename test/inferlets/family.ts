/**
 * A test inferlet for children (runtime.launch): one behaviour per `action`,
 * launching itself (`self`) or a named component.
 */
import { emit, inferlet, launch, Model, PieError, queue, type Child } from '@pie/inferlet';

interface Input {
  action: string;
  n?: number;
  i?: number;
  component?: string;
  child_input?: unknown;
  tokens?: number;
  limits?: { tokens?: number };
  queue?: string;
  size?: number;
}

function attempt(fn: () => unknown): unknown {
  try {
    return { ok: fn() };
  } catch (err) {
    return err instanceof PieError ? { code: err.code, message: err.message } : { error: String(err) };
  }
}

/** Generates `n` tokens (ignoring end tokens); how many it got. */
function generate(n: number): number {
  const ctx = Model.load().newContext().fill([1, 2, 3]);
  return ctx.generate({ max_tokens: n, ignore_eos: true }).result().usage.completion_tokens;
}

export const run = inferlet<Input>((args) => {
  switch (args.action) {
    case 'leaf':
      emit('leaf', String(args.i));
      emit('leaf-done', String(args.i));
      return { i: args.i };
    case 'fanout': {
      // n children at once, their events read, then their results.
      const kids = Array.from({ length: args.n ?? 3 }, (_, i) => launch('self', { action: 'leaf', i }));
      const events = kids.map((k) => [...k.events()].map((e) => `${e.event}:${e.data}`));
      return { ids: kids.map((k) => k.id), events, results: kids.map((k) => k.result()) };
    }
    case 'hold':
      // Waits for a message on its queue (or to be cancelled).
      emit('holding', args.queue ?? 'hold');
      queue(args.queue ?? 'hold').pull();
      return { released: true };
    case 'launch-and-leave': {
      // Launches a holding child and ends (or waits, with `queue`): the child ends with it.
      const kid = launch('self', { action: 'hold', queue: args.queue ?? 'never' });
      kid.nextEvent(); // it is running
      if (args.n === 1) kid.detach();
      if (args.queue === undefined) return { child: kid.id };
      queue(`${args.queue}-parent`).pull();
      return { child: kid.id };
    }
    case 'cancel-child': {
      const kid = launch('self', { action: 'hold', queue: 'never' });
      kid.nextEvent();
      kid.cancel();
      return { end: kid.wait() };
    }
    case 'generate':
      return { tokens: generate(args.tokens ?? 4) };
    case 'budget': {
      // A child spends tokens of the family's budget; what is left for the parent shrinks.
      const kid = launch('self', { action: 'generate', tokens: args.tokens ?? 8 });
      const child = kid.result<{ tokens: number }>();
      return { child: child.tokens, parent: attempt(() => generate(args.tokens ?? 8)) };
    }
    case 'detach-budget': {
      // A child spends tokens, then is detached: what it spent stays the family's.
      const kid = launch('self', { action: 'generate-then-hold', tokens: args.tokens ?? 8 });
      kid.nextEvent(); // it has generated
      kid.detach();
      const parent = attempt(() => generate(args.tokens ?? 8));
      kid.cancel();
      return { parent };
    }
    case 'detach-then-release': {
      // A child that generates once released; detached first, then released, then the parent ends.
      const kid = launch('self', { action: 'gated-generate', queue: 'gate', tokens: args.tokens ?? 3 });
      kid.nextEvent(); // it is waiting
      kid.detach();
      queue('gate').push('go');
      return { child: kid.id };
    }
    case 'gated-generate':
      emit('waiting', args.queue ?? 'gate');
      queue(args.queue ?? 'gate').pull();
      return { tokens: generate(args.tokens ?? 3) };
    case 'generate-then-hold':
      emit('generated', String(generate(args.tokens ?? 4)));
      queue('never').pull();
      return null;
    case 'flood':
      for (let i = 0; i < (args.n ?? 1); i++) emit(`big${i}`, 'x'.repeat(args.size ?? 1));
      return null;
    case 'read-flood': {
      // Reads a flooding child's events only after it has ended.
      const kid = launch('self', { action: 'flood', n: args.n, size: args.size });
      kid.wait();
      return { events: [...kid.events()].map((e) => (e.event === 'child.gap' ? `${e.event} ${e.data}` : `${e.event} ${e.data.length}`)) };
    }
    case 'launch': {
      let kid: Child;
      try {
        kid = launch(args.component ?? 'self', args.child_input ?? { action: 'leaf', i: 0 }, args.limits ?? {});
      } catch (err) {
        return err instanceof PieError ? { code: err.code, message: err.message } : { error: String(err) };
      }
      return { end: kid.wait() };
    }
    default:
      throw new Error(`unknown action ${args.action}`);
  }
});
