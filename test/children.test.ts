/**
 * Child inferlets (runtime.launch): a parent launches children that run
 * beside it for the same tenant, reads their events and results, cancels
 * them; they end when it ends unless detached; the family's tokens stay
 * within the parent's limits; and nothing is held afterwards.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { mockEngine, REPO_ROOT } from './helpers.ts';
import { buildInferlet, testHost } from './inferlet-helpers.ts';
import { expectNothingHeld } from './gateway-helpers.ts';

let familyPath: string;
beforeAll(async () => {
  familyPath = await buildInferlet(join(REPO_ROOT, 'test/inferlets/family.ts'));
}, 120_000);

async function setup() {
  const { engine } = await mockEngine();
  const host = await testHost([engine]);
  const component = await host.load(familyPath);
  const run = async (input: object, limits = {}) => JSON.parse((await host.invoke(component, { input, limits }).result).data!);
  /** Waits until the host runs `n` invocations. */
  const running = async (n: number) => {
    for (let i = 0; i < 500 && host.stats().running !== n; i++) await new Promise((r) => setTimeout(r, 10));
    return host.stats().running;
  };
  return { engine, host, component, run, running };
}

describe('child inferlets', () => {
  it('launches children of its own component: their events in order, then their results', async () => {
    const { engine, host, run } = await setup();
    const r = await run({ action: 'fanout', n: 3 });
    expect(r.events).toEqual([0, 1, 2].map((i) => [`leaf:${i}`, `leaf-done:${i}`]));
    expect(r.results).toEqual([{ i: 0 }, { i: 1 }, { i: 2 }]);
    expect(new Set(r.ids).size).toBe(3);
    expect(host.stats()).toMatchObject({ started: 4, succeeded: 4, running: 0 });
    await expectNothingHeld(engine);
  });

  it('cancels a child: its wait says so', async () => {
    const { host, run } = await setup();
    const r = await run({ action: 'cancel-child' });
    expect(r.end).toEqual({ status: 'cancelled', error: 'cancelled by its parent' });
    expect(host.stats()).toMatchObject({ cancelled: 1, succeeded: 1, running: 0 });
  });

  it('ends a child with its parent: when the parent returns, and when the parent is cancelled', async () => {
    const { engine, host, component, run, running } = await setup();
    await run({ action: 'launch-and-leave' });
    expect(await running(0)).toBe(0);
    expect(host.stats()).toMatchObject({ cancelled: 1, succeeded: 1 });
    const parent = host.invoke(component, { input: { action: 'launch-and-leave', queue: 'stay' } });
    expect(await running(2)).toBe(2);
    parent.cancel('stop the family');
    await expect(parent.result).rejects.toThrow('stop the family');
    expect(await running(0)).toBe(0);
    expect(host.stats()).toMatchObject({ cancelled: 3 });
    await expectNothingHeld(engine);
  });

  it('lets a detached child run on after its parent, until its own end', async () => {
    const { engine, host, component, running } = await setup();
    const parent = host.invoke(component, { input: { action: 'launch-and-leave', n: 1, queue: 'detached' } });
    expect(await running(2)).toBe(2);
    host.hub.push('default', 'detached-parent', 'go'); // the parent ends...
    expect(JSON.parse((await parent.result).data!).child).toMatch(/^inv-/);
    await new Promise((r) => setTimeout(r, 100));
    expect(host.stats().running).toBe(1); // ...its detached child does not
    host.hub.push('default', 'detached', 'go');
    expect(await running(0)).toBe(0);
    expect(host.stats()).toMatchObject({ succeeded: 2, cancelled: 0 });
    await expectNothingHeld(engine);
  });

  it("holds a family's tokens to the parent's limit: what a child generated is not the parent's to generate again", async () => {
    const { run } = await setup();
    const r = await run({ action: 'budget', tokens: 8 }, { tokens: 10 });
    expect(r.child).toBe(8);
    expect(r.parent).toEqual({ ok: 2 }); // 10 - 8 left for the parent
    const again = await run({ action: 'budget', tokens: 8 }, { tokens: 8 });
    expect(again.child).toBe(8);
    expect(again.parent.code).toBe('limit-exceeded');
    expect(again.parent.message).toMatch(/family/);
  });

  it("sets aside what a detached child may still generate out of its family's tokens: the family never passes its limit", async () => {
    const { run } = await setup();
    // The child generated 8 of 10 and may generate the 2 left: the parent has none.
    const r = await run({ action: 'detach-budget', tokens: 8 }, { tokens: 10 });
    expect(r.parent.code).toBe('limit-exceeded');
    expect(r.parent.message).toMatch(/family/);
  });

  it("stops counting a detached child's tokens as its parent's", async () => {
    const { host, component, running } = await setup();
    const inv = host.invoke(component, { input: { action: 'detach-then-release', tokens: 3 } });
    let seen = 0;
    inv.observer = { tokens: (n) => void (seen += n), prompt: () => {}, generation: () => {} };
    await inv.result;
    expect(await running(0)).toBe(0); // the detached child generated its 3 tokens and ended
    expect(host.stats().succeeded).toBe(2);
    expect(seen).toBe(0);
  });

  it("bounds a child's unread events by size too: the oldest go, and the parent learns how many", async () => {
    const { run } = await setup();
    const size = 9 << 20; // two of them pass the 16 Mi characters kept unread
    const r = await run({ action: 'read-flood', n: 3, size });
    expect(r.events).toEqual(['child.gap {"missed":2}', `big2 ${size}`]);
  });

  it("counts a child's tokens as its parent's: the observer of the parent (a run's, a request's metrics) sees them", async () => {
    const { host, component } = await setup();
    const inv = host.invoke(component, { input: { action: 'launch', child_input: { action: 'generate', tokens: 5 } } });
    let seen = 0;
    inv.observer = { tokens: (n) => void (seen += n), prompt: () => {}, generation: () => {} };
    await inv.result;
    expect(seen).toBe(5);
  });

  it('refuses what it cannot launch: another component where no resolver is set, a limit of 0', async () => {
    const { run } = await setup();
    expect(await run({ action: 'launch', component: 'someone-else' })).toMatchObject({ code: 'not-found', message: expect.stringMatching(/only "self"/) });
    expect(await run({ action: 'launch', limits: { tokens: 0 } })).toMatchObject({ code: 'invalid-argument' });
  });
});
