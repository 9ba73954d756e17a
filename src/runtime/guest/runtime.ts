/** pie:inferlet/runtime: answered inside the worker, except the log line. */
import type { GuestEnv } from './env.ts';

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
