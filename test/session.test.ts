/**
 * The session interface: messages from the client reach a running inferlet
 * in order through `session.receive` (with a timeout, or until one comes),
 * and what it sends comes back as `session.message` events. The queue is
 * bounded per invocation and refuses, never drops; a message to an ended
 * invocation is refused; a cancel ends a waiting receive.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SESSION_EVENT, SESSION_LIMITS, SessionError, type OutputEvent } from '../src/runtime/host/invocation.ts';
import { mockEngine, REPO_ROOT } from './helpers.ts';
import { buildInferlet, testHost } from './inferlet-helpers.ts';
import { expectNothingHeld } from './gateway-helpers.ts';

let echoPath: string;
beforeAll(async () => {
  echoPath = await buildInferlet(join(REPO_ROOT, 'test/inferlets/session-echo.ts'));
}, 120_000);

async function setup() {
  const { engine } = await mockEngine();
  const host = await testHost([engine]);
  const component = await host.load(echoPath);
  return { engine, host, component };
}

/** Resolves once `events` holds `n` events. */
async function until(events: OutputEvent[], n: number): Promise<void> {
  for (let i = 0; i < 500 && events.length < n; i++) await new Promise((r) => setTimeout(r, 10));
}

describe('the session interface', () => {
  it('delivers messages in order and sends replies back as session.message events', async () => {
    const { engine, host, component } = await setup();
    const inv = host.invoke(component);
    const events: OutputEvent[] = [];
    inv.onEvent((e) => events.push(e));
    expect(await inv.deliver('one')).toBeGreaterThanOrEqual(0);
    await inv.deliver('two');
    await until(events, 2);
    await inv.deliver('end');
    expect(JSON.parse((await inv.result).data!)).toEqual({ received: 3, timed_out: false });
    expect(events).toEqual([
      { event: SESSION_EVENT, data: 'echo:one' },
      { event: SESSION_EVENT, data: 'echo:two' },
    ]);
    await expectNothingHeld(engine);
  });

  it('returns none from a receive whose timeout passes', async () => {
    const { host, component } = await setup();
    const r = await host.invoke(component, { input: { timeout_ms: 50 } }).result;
    expect(JSON.parse(r.data!)).toEqual({ received: 0, timed_out: true });
  });

  it('bounds the queue of unread messages: past it a message is refused (queue_full), one too long too (too_large), and nothing is dropped', async () => {
    const { host, component } = await setup();
    const inv = host.invoke(component, { input: { gate: 'gate' } });
    for (let i = 0; i < SESSION_LIMITS.maxQueued; i++) expect(await inv.deliver(`m${i}`)).toBe(i + 1);
    const full = await inv.deliver('one more').catch((e: unknown) => e);
    expect(full).toBeInstanceOf(SessionError);
    expect((full as SessionError).code).toBe('queue_full');
    const long = await inv.deliver('x'.repeat(SESSION_LIMITS.maxMessageChars + 1)).catch((e: unknown) => e);
    expect((long as SessionError).code).toBe('too_large');
    // Opened, it reads all of them, in order.
    const events: OutputEvent[] = [];
    inv.onEvent((e) => events.push(e));
    host.hub.push('default', 'gate', 'go');
    await until(events, SESSION_LIMITS.maxQueued);
    expect(events.map((e) => e.data)).toEqual(Array.from({ length: SESSION_LIMITS.maxQueued }, (_, i) => `echo:m${i}`));
    await inv.deliver('end');
    expect(JSON.parse((await inv.result).data!).received).toBe(SESSION_LIMITS.maxQueued + 1);
  });

  it('ends a receive waiting without a timeout when the invocation is cancelled, and refuses messages after the end', async () => {
    const { engine, host, component } = await setup();
    const inv = host.invoke(component);
    await new Promise((r) => setTimeout(r, 100));
    inv.cancel('enough');
    await expect(inv.result).rejects.toThrow('enough');
    expect(host.stats().workerRestarts).toBe(0);
    const late = await inv.deliver('hello?').catch((e: unknown) => e);
    expect((late as SessionError).code).toBe('ended');
    await expectNothingHeld(engine);
  });
});
