/** pie:inferlet/output on the host: events and the result go straight to the invocation. */
import { eventNameProblem, headerProblem, sizeProblem, statusProblem } from '../../output-rules.ts';
import type { Handlers, OpsIn } from './host-side.ts';

// The guest side checked all of these; a message that did not pass is dropped here, never applied.
export const outputHandlers: Handlers<OpsIn<'output'>> = {
  'output.emit': (inv, [event, data]) => {
    if (eventNameProblem(event) === null && sizeProblem('an event', data) === null) inv.emit(event, data);
  },
  'output.set-result': (inv, [data]) => {
    if (sizeProblem('the result', data) === null) inv.data = data;
  },
  'output.set-status': (inv, [status]) => {
    if (statusProblem(status) === null) inv.status = status;
  },
  'output.set-header': (inv, [name, value]) => {
    if (headerProblem(name, value) === null) inv.headers[name.toLowerCase()] = value;
  },
};
