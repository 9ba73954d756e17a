/** pie:inferlet/session on the host: the invocation's inbox, and its events. */
import { SESSION_EVENT } from '../invocation.ts';
import type { Handlers, OpsIn } from './host-side.ts';

export const sessionHandlers: Handlers<OpsIn<'session'>> = {
  'session.receive': (inv, [timeoutMs]) => inv.inbox.take(timeoutMs, inv.signal),
  'session.send': (inv, [message]) => inv.emitChecked(SESSION_EVENT, message),
};
