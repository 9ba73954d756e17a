/** pie:inferlet/session: messages from the client wait on the host; messages to it are events. */
import { sizeProblem } from '../output-rules.ts';
import { GuestResultError, type GuestEnv } from './env.ts';

export function guestSession(env: GuestEnv) {
  return {
    receive: async (timeoutMs?: number) => (await env.call('session.receive', [timeoutMs])) ?? undefined,
    send: (message: string) => {
      const problem = sizeProblem('a message', message);
      if (problem) throw new GuestResultError('invalid-argument', problem);
      env.send('session.send', [message]);
    },
  };
}
