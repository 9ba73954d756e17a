/** pie:inferlet/runtime: answered inside the worker, except the log line. */
import type { GuestEnv } from './env.ts';

export function guestRuntime(env: GuestEnv) {
  return {
    input: () => env.input,
    instanceId: () => env.instanceId,
    tenant: () => env.tenant,
    models: () => [...env.models.keys()],
    now: () => process.hrtime.bigint(),
    log: (level: string, message: string) => env.output(level, String(message)),
  };
}
