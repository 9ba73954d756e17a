/** pie:inferlet/runtime's one host operation: the log line. */
import type { Handlers, OpsIn } from './host-side.ts';

export const runtimeHandlers: Handlers<OpsIn<'runtime'>> = {
  'runtime.log': (inv, [level, message], host) => host.log(inv, level, message),
};
