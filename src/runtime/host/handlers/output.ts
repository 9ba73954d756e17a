/** pie:inferlet/output on the host: events and the result go straight to the invocation. */
import type { Handlers, OpsIn } from './host-side.ts';

// The invocation owns its output and checks what it is given (the guest side checked it first).
export const outputHandlers: Handlers<OpsIn<'output'>> = {
  'output.emit': (inv, [event, data]) => inv.emitChecked(event, data),
  'output.set-result': (inv, [data]) => inv.setResult(data),
  'output.set-status': (inv, [status]) => inv.setStatus(status),
  'output.set-header': (inv, [name, value]) => inv.setHeader(name, value),
};
