/** pie:inferlet/output: events and the result go straight to the invocation; nothing waits. */
import type { GuestEnv } from '../guest-env.ts';
import type { Handlers } from './host-side.ts';

/** Largest event or result a guest may hand over, in characters. */
const MAX_OUTPUT = 16 << 20;

function checkSize(what: string, data: string): void {
  if (data.length > MAX_OUTPUT) throw new Error(`${what} is at most ${MAX_OUTPUT} characters, got ${data.length}`);
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
      if (status < 100 || status > 599) throw new Error(`HTTP status ${status} is not in 100..599`);
      env.send('output.set-status', [status]);
    },
    setHeader: (name: string, value: string) => {
      if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || /[\r\n]/.test(value)) throw new Error(`invalid HTTP header ${JSON.stringify(name)}`);
      env.send('output.set-header', [name, value]);
    },
    isCancelled: () => env.cancelled,
  };
}

export const outputHandlers: Handlers = {
  'output.emit': (inv, [event, data]) => inv.emit(event, data),
  'output.set-result': (inv, [data]) => {
    inv.data = data;
  },
  'output.set-status': (inv, [status]) => {
    inv.status = status;
  },
  'output.set-header': (inv, [name, value]) => {
    inv.headers[name.toLowerCase()] = value;
  },
};
