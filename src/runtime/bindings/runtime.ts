/** pie:inferlet/runtime: answered inside the worker, except the log line. */
import type { GuestEnv } from '../guest-env.ts';
import type { Handlers } from './host-side.ts';

export function guestRuntime(env: GuestEnv) {
  return {
    input: () => env.input,
    instanceId: () => env.instanceId,
    tenant: () => env.tenant,
    models: () => [...env.models.keys()],
    now: () => process.hrtime.bigint(),
    log: (level: string, message: string) => env.send('runtime.log', [level, String(message)]),
  };
}

export const runtimeHandlers: Handlers = {
  'runtime.log': (inv, [level, message], host) => host.log(inv, level, message),
};
