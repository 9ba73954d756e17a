/** pie:inferlet/runtime: answered inside the worker, except the log line and children (which run on the host). */
import type { WitChildLimits } from '../ops.ts';
import { MAX_CHILD_INPUT } from '../output-rules.ts';
import { GuestResultError, type GuestEnv } from './env.ts';


export function guestRuntime(env: GuestEnv) {
  /** A child invocation, by the handle its host side is kept under. */
  class Child {
    readonly handle: number;
    private readonly instanceId: string;
    constructor(handle: number, instanceId: string) {
      this.handle = handle;
      this.instanceId = instanceId;
    }
    id() {
      return this.instanceId;
    }
    async nextEvent(timeoutMs?: number) {
      const e = await env.call('child.next-event', [this.handle, timeoutMs]);
      return e === null ? undefined : { event: e[0], data: e[1] };
    }
    wait() {
      return env.call('child.wait', [this.handle]);
    }
    cancel() {
      env.send('child.cancel', [this.handle]);
    }
    async detach() {
      await env.call('child.detach', [this.handle]);
    }
    [Symbol.dispose]() {
      env.send('child.drop', [this.handle]);
    }
  }
  return {
    Child,
    input: () => env.input,
    instanceId: () => env.instanceId,
    tenant: () => env.tenant,
    models: () => [...env.models.keys()],
    now: () => process.hrtime.bigint(),
    log: (level: string, message: string) => env.output(level, String(message)),
    launch: async (component: string, input: string, limits?: WitChildLimits) => {
      // Checked here, on the guest's own thread (the host checks the size again, never parses it).
      if (input.length > MAX_CHILD_INPUT) throw new GuestResultError('invalid-argument', `a child's input is at most ${MAX_CHILD_INPUT} characters, got ${input.length}`);
      try {
        JSON.parse(input);
      } catch {
        throw new GuestResultError('invalid-argument', "a child's input must be JSON text");
      }
      const handle = env.handle();
      return new Child(handle, await env.call('runtime.launch', [handle, component, input, limits ?? null]));
    },
  };
}
