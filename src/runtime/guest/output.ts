/** pie:inferlet/output: events and the result go straight to the invocation; nothing waits. */
import { eventNameProblem, headerProblem, sizeProblem, statusProblem } from '../output-rules.ts';
import type { GuestEnv } from './env.ts';

export function guestOutput(env: GuestEnv) {
  return {
    emit: (event: string, data: string) => {
      const problem = eventNameProblem(event) ?? sizeProblem('an event', data);
      if (problem) throw new Error(problem);
      env.send('output.emit', [event, data]);
    },
    setResult: (data: string) => {
      const problem = sizeProblem('the result', data);
      if (problem) throw new Error(problem);
      env.send('output.set-result', [data]);
    },
    setStatus: (status: number) => {
      const problem = statusProblem(status);
      if (problem) throw new Error(problem);
      env.send('output.set-status', [status]);
    },
    setHeader: (name: string, value: string) => {
      const problem = headerProblem(name, value);
      if (problem) throw new Error(problem);
      env.send('output.set-header', [name, value]);
    },
    isCancelled: () => env.cancelled,
  };
}
