/** pie:inferlet/runtime: answered inside the worker, except the log line. */
import type { GuestEnv } from '../guest-env.ts';
import type { Handlers, OpsIn } from './host-side.ts';

export function guestRuntime(env: GuestEnv) {
  return {
    input: () => env.input,
    instanceId: () => env.instanceId,
    tenant: () => env.tenant,
    models: () => [...env.models.keys()],
    now: () => process.hrtime.bigint(),
    // Long lines are cut: the log is for people.
    log: (level: string, message: string) => env.send('runtime.log', [level, String(message).slice(0, 8192)]),
  };
}

export const runtimeHandlers: Handlers<OpsIn<'runtime'>> = {
  'runtime.log': (inv, [level, message], host) => host.log(inv, level, message),
};
