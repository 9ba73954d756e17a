/** pie:inferlet/output: events and the result go straight to the invocation; nothing waits. */
import { checkSize, headerProblem, statusProblem } from '../output-rules.ts';
import type { GuestEnv } from './env.ts';

export function guestOutput(env: GuestEnv) {
  return {
    emit: (event: string, data: string) => {
      if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(event)) throw new Error(`invalid event name ${JSON.stringify(event.slice(0, 130))} (letters, digits and _ . : - only)`);
      checkSize('an event', data);
      env.send('output.emit', [event, data]);
    },
    setResult: (data: string) => {
      checkSize('the result', data);
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
