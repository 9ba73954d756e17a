/**
 * Runs one inferlet for one HTTP request: starts the invocation as the
 * caller's tenant, relays it, and records its token timing in the metrics.
 */
import { randomBytes } from 'node:crypto';
import type { Response } from 'express';
import type { Engine } from '../engine/index.ts';
import type { InferletHost } from '../runtime/host.ts';
import type { StoredComponent } from '../runtime/component-store.ts';
import type { Invocation } from '../runtime/invocation.ts';
import type { InstanceLimits } from '../runtime/protocol.ts';
import type { GatewayMetrics } from './metrics.ts';
import { relay, type RelayOptions, type RelayOutcome } from './relay.ts';

export interface Runtime {
  host: InferletHost;
  /** Engines by served model name, in the order they were given. */
  engines: Map<string, Engine>;
  metrics: GatewayMetrics;
  log: (line: string) => void;
}

export interface InvokeRequest {
  component: StoredComponent;
  input: unknown;
  tenant: string;
  model: string;
  limits?: Partial<InstanceLimits>;
  /** Reuse instances across invocations: the built-ins, and routes that say they keep no module state. */
  builtin?: boolean;
  /** Called as soon as the invocation exists (e.g. to make it cancellable by id). */
  started?: (inv: Invocation) => void;
}

/** An id like OpenAI's: a prefix and 24 random base-62 characters. */
export function newId(prefix: string): string {
  const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  let s = prefix;
  for (const b of randomBytes(24)) s += alphabet[b % 62];
  return s;
}

export const unixNow = (): number => Math.floor(Date.now() / 1000);

export async function invokeAndRelay(rt: Runtime, res: Response, req: InvokeRequest, options: RelayOptions = {}): Promise<RelayOutcome> {
  const inv = rt.host.invoke(req.component, {
    input: req.input,
    tenant: req.tenant,
    models: [req.model],
    reuseInstance: req.builtin ?? false,
    ...(req.limits ? { limits: req.limits } : {}),
  });
  req.started?.(inv);
  let outcome: RelayOutcome | null = null;
  try {
    outcome = await relay(res, inv, options);
    return outcome;
  } finally {
    record(rt.metrics, req.model, inv, outcome);
  }
}

function record(m: GatewayMetrics, model: string, inv: Invocation, outcome: RelayOutcome | null): void {
  const t = inv.timing;
  if (t.firstTokenAt > 0) m.timeToFirstToken(model, (t.firstTokenAt - inv.startedAt) / 1000);
  for (const gap of t.gapsMs) m.interTokenLatency(model, gap / 1000);
  m.e2eLatency(model, (performance.now() - inv.startedAt) / 1000);
  m.tokens(model, inv.numPromptTokens, inv.numTokens);
  const answered = inv.state === 'succeeded' && outcome !== null && outcome.status < 400;
  m.requestFinished(model, answered ? 'completed' : inv.state === 'cancelled' ? 'abort' : 'error');
}
