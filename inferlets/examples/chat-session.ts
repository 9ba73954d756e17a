/**
 * An interactive chat that lives as long as its conversation. Each message
 * the client sends (`POST /v1/runs/{id}/messages`, or a line typed into
 * `pie submit`) is a user turn written into the same context, and the reply
 * comes back as a session message (a `session.message` event). The
 * conversation's KV state stays in the context between turns, so a turn
 * prefills its own tokens only, never the conversation again (a stateless
 * chat API re-sends and, past the prefix cache, recomputes all of it).
 * `/bye`, an idle client, or a full context ends it.
 *
 *   pie submit inferlets/examples/chat-session.ts -- '{"system": "You are terse."}'
 *   Hi!
 *   ...
 *   /bye
 */
import { inferlet, Model, session, type ChatMessage } from '@pie/inferlet';

interface Input {
  system?: string;
  /** Tokens per reply (default 128). */
  max_tokens?: number;
  /** How long to wait for the client's next message (default 300 s). */
  idle_timeout_s?: number;
}

export const run = inferlet<Input | null>((input) => {
  const model = Model.load();
  const ctx = model.newContext();
  const room = model.info.contextLength;
  const pending: ChatMessage[] = input?.system ? [{ role: 'system', content: input.system }] : [];
  let turns = 0;
  let reason = 'bye';
  session.send('Say something (/bye to end).');
  for (;;) {
    const text = session.receive({ timeout_ms: (input?.idle_timeout_s ?? 300) * 1000 });
    if (text === undefined) {
      reason = 'idle';
      break;
    }
    if (text.trim() === '/bye') break;
    ctx.fillChat([...pending.splice(0), { role: 'user', content: text }]);
    const left = room - ctx.length;
    if (left <= 1) {
      reason = 'context_full';
      break;
    }
    const reply = ctx.generate({ max_tokens: Math.min(input?.max_tokens ?? 128, left - 1) }).result();
    turns++;
    session.send(reply.text);
  }
  session.send('Bye.');
  return { turns, reason, context_tokens: ctx.length };
});
