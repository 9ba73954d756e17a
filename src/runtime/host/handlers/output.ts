/** pie:inferlet/output on the host: events and the result go straight to the invocation. */
import { headerProblem, statusProblem } from '../../output-rules.ts';
import type { Handlers, OpsIn } from './host-side.ts';

export const outputHandlers: Handlers<OpsIn<'output'>> = {
  'output.emit': (inv, [event, data]) => inv.emit(event, data),
  'output.set-result': (inv, [data]) => {
    inv.data = data;
  },
  // The guest side checked these; a message that did not pass is dropped, never applied.
  'output.set-status': (inv, [status]) => {
    if (statusProblem(status) === null) inv.status = status;
  },
  'output.set-header': (inv, [name, value]) => {
    if (headerProblem(name, value) === null) inv.headers[name.toLowerCase()] = value;
  },
};
