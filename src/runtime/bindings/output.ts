/** pie:inferlet/output: events and the result go straight to the invocation; nothing waits. */
import type { GuestEnv } from '../guest-env.ts';
import type { Handlers, OpsIn } from './host-side.ts';

/** Largest event or result a guest may hand over, in characters. */
const MAX_OUTPUT = 16 << 20;

function checkSize(what: string, data: string): void {
  if (data.length > MAX_OUTPUT) throw new Error(`${what} is at most ${MAX_OUTPUT} characters, got ${data.length}`);
}

/** Headers that frame the response or the connection: the server's alone (one from a guest could split a keep-alive stream). */
const FRAMING = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'proxy-connection', 'upgrade', 'te', 'trailer', 'host', 'http2-settings']);

/** Why a status or header may not be set, or null. Checked in the guest and again on the host. */
export function statusProblem(status: unknown): string | null {
  return Number.isInteger(status) && (status as number) >= 200 && (status as number) <= 599 ? null : `HTTP status ${String(status)} is not in 200..599`;
}

export function headerProblem(name: unknown, value: unknown): string | null {
  if (typeof name !== 'string' || typeof value !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || /[\r\n\0]/.test(value)) {
    return `invalid HTTP header ${JSON.stringify(String(name).slice(0, 130))}`;
  }
  return FRAMING.has(name.toLowerCase()) ? `the ${name.toLowerCase()} header is the server's to set (it frames the response)` : null;
}

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
