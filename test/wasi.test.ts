/**
 * Components from other toolchains: the WASI subset the server grants (clocks,
 * random, cli environment/exit/stdio, io, filesystem without folders) lets
 * components that import it run; stdout and stderr land in the invocation's
 * log, bounded; `exit` ends the invocation; anything else (sockets, HTTP, a
 * WASI function this server does not provide) is refused at load, naming it.
 */
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ComponentLoadError } from '../src/runtime/host/component-store.ts';
import { buildCached } from '../src/runtime/host/build.ts';
import { mockEngine, REPO_ROOT } from './helpers.ts';
import { componentImporting, testHost } from './inferlet-helpers.ts';

const BUILDS = join(tmpdir(), 'pie-gateway-test-inferlets');
const WASI_USER = join(REPO_ROOT, 'test/inferlets/wasi-user.ts');

/** test/inferlets/wasi-clock.wat: sleeps `sleepMs` on a WASI pollable, draws random numbers, then exits with `status`. */
async function clockComponent(sleepMs: number, status: 0 | 1): Promise<Uint8Array> {
  const { parse } = await import('@bytecodealliance/jco');
  const wat = readFileSync(join(REPO_ROOT, 'test/inferlets/wasi-clock.wat'), 'utf8')
    .replaceAll('(i64.const SLEEP_NS)', `(i64.const ${sleepMs * 1_000_000})`)
    .replace('(i32.const STATUS)', `(i32.const ${status})`);
  return parse(wat);
}

/** A component that gets stdout (so its instance holds a WASI stream) and then grows its memory by `grow` pages. */
async function stdoutComponent(grow: number): Promise<Uint8Array> {
  const { parse } = await import('@bytecodealliance/jco');
  return parse(`(component
    (import "wasi:io/streams@0.2.0" (instance $streams (export "output-stream" (type (sub resource)))))
    (alias export $streams "output-stream" (type $os))
    (import "wasi:cli/stdout@0.2.0" (instance $stdout
      (alias outer 1 $os (type $o))
      (export "output-stream" (type (eq $o)))
      (export "get-stdout" (func (result (own 0))))))
    (core func $get (canon lower (func $stdout "get-stdout")))
    (core module $m
      (import "imp" "get" (func $get (result i32)))
      (memory (export "memory") 1)
      (func (export "run") (result i32) (drop (call $get)) (drop (memory.grow (i32.const ${grow}))) (i32.const 8)))
    (core instance $i (instantiate $m (with "imp" (instance (export "get" (func $get))))))
    (func (export "run") (result (result (error string))) (canon lift (core func $i "run") (memory (core memory $i "memory")))))`);
}

/** A component whose core module's start function draws a random number (as language runtimes seed themselves), while it is being instantiated. */
async function seedingComponent(): Promise<Uint8Array> {
  const { parse } = await import('@bytecodealliance/jco');
  return parse(`(component
    (import "wasi:random/random@0.2.0" (instance $random (export "get-random-u64" (func (result u64)))))
    (core func $rand (canon lower (func $random "get-random-u64")))
    (core module $m
      (import "imp" "rand" (func $rand (result i64)))
      (memory (export "memory") 1)
      (global $seed (mut i64) (i64.const 0))
      (func $init (global.set $seed (call $rand)))
      (start $init)
      (func (export "run") (result i32) (i32.const 8)))
    (core instance $i (instantiate $m (with "imp" (instance (export "rand" (func $rand))))))
    (func (export "run") (result (result (error string))) (canon lift (core func $i "run") (memory (core memory $i "memory")))))`);
}

/** A host over a mock engine whose log lines the test reads. */
async function loggingHost() {
  const { engine } = await mockEngine();
  const lines: string[] = [];
  const host = await testHost([engine], { log: (l) => lines.push(l) });
  return { host, lines };
}

describe('the WASI subset', () => {
  it('runs a StarlingMonkey component from jco componentize without WASI stubs (HTTP left out): clocks and random work, console output lands in the log', async () => {
    const path = await buildCached(WASI_USER, BUILDS, { engine: 'sm', wasi: true });
    const { host, lines } = await loggingHost();
    const component = await host.load(path);
    expect(component.imports).toEqual(expect.arrayContaining([expect.stringMatching(/^wasi:cli\/stdout@0\.2\./), expect.stringMatching(/^wasi:random\/random@/), expect.stringMatching(/^wasi:filesystem\/preopens@/)]));
    const inv = host.invoke(component, { input: { lines: 2 } });
    expect(JSON.parse((await inv.result).data!)).toEqual({ wallClock: true, randomDiffers: true, inRange: true, console: true });
    const mine = lines.filter((l) => l.startsWith(`[${inv.instanceId}]`));
    expect(mine).toEqual([`[${inv.instanceId}] stdout: stdout line 0`, `[${inv.instanceId}] stdout: stdout line 1`, `[${inv.instanceId}] stderr: a line on stderr`]);
  }, 120_000);

  it("bounds what an invocation writes to the log: long lines are cut, and past the budget one line says the rest is dropped", async () => {
    const path = await buildCached(WASI_USER, BUILDS, { engine: 'sm', wasi: true });
    const { host, lines } = await loggingHost();
    const inv = host.invoke(await host.load(path), { input: { lines: 0, long: 3_000_000 } });
    await inv.result;
    const mine = lines.filter((l) => l.startsWith(`[${inv.instanceId}]`));
    const stdout = mine.filter((l) => l.includes('] stdout: '));
    expect(stdout.length).toBeGreaterThan(100);
    expect(stdout.length).toBeLessThan(140); // 1 MiB of 8192-character lines, not 3 MB
    expect(stdout.every((l) => l.length <= `[${inv.instanceId}] stdout: `.length + 8192)).toBe(true);
    expect(mine.at(-1)).toMatch(/passed 1048576 characters; what it writes from here on is dropped/);
  }, 60_000);

  it('runs a QuickJS component built without WASI stubs: its clocks and randomness work', async () => {
    const path = await buildCached(WASI_USER, BUILDS, { wasi: true });
    const { host } = await loggingHost();
    const component = await host.load(path);
    expect(component.imports).toEqual(expect.arrayContaining([expect.stringMatching(/^wasi:random\/insecure-seed@0\.2\./), expect.stringMatching(/^wasi:clocks\/wall-clock@/)]));
    const inv = host.invoke(component, { input: { lines: 1 } });
    expect(JSON.parse((await inv.result).data!)).toEqual({ wallClock: true, randomDiffers: true, inRange: true, console: false });
  }, 60_000);

  it('runs a hand-written WAT component: a sleep on a pollable waits without holding its worker, and exit(ok) ends it as a success', async () => {
    const { host } = await loggingHost();
    const sleeper = await host.load(await clockComponent(1000, 0));
    const quick = await host.load(await clockComponent(0, 0));
    expect(sleeper.imports).toEqual(['wasi:io/poll@0.2.0', 'wasi:clocks/monotonic-clock@0.2.0', 'wasi:random/random@0.2.0', 'wasi:cli/exit@0.2.0']);
    const t0 = performance.now();
    const sleeping = host.invoke(sleeper);
    // Meanwhile others run on the same workers: the sleep suspended its guest.
    for (let i = 0; i < 4; i++) await host.invoke(quick).result;
    expect(sleeping.state).toBe('running');
    const r = await sleeping.result;
    expect(performance.now() - t0).toBeGreaterThanOrEqual(999);
    expect(r.data).toBeNull();
    expect(sleeping.state).toBe('succeeded');
  });

  it('fails an invocation whose component calls exit(err), saying so', async () => {
    const { host } = await loggingHost();
    const inv = host.invoke(await host.load(await clockComponent(0, 1)));
    await expect(inv.result).rejects.toThrow('the inferlet exited with status 1');
    expect(inv.state).toBe('failed');
  });

  it('cancels an invocation in the middle of a sleep at once', async () => {
    const { host } = await loggingHost();
    const inv = host.invoke(await host.load(await clockComponent(60_000, 0)));
    await new Promise((r) => setTimeout(r, 100));
    inv.cancel('stop');
    await expect(inv.result).rejects.toThrow('stop');
    expect(inv.state).toBe('cancelled');
    expect(host.stats().workerRestarts).toBe(0); // it stopped on its own, not by its worker being terminated
  });

  it('fails an invocation over its memory limit alone: ending its WASI streams does not take its worker (and a neighbour) down', async () => {
    const { engine } = await mockEngine();
    const host = await testHost([engine], { workers: 1 });
    const neighbour = host.invoke(await host.load(await clockComponent(1500, 0)));
    const greedy = await host.load(await stdoutComponent(10));
    for (const memoryBytes of [1000, 200_000]) {
      // Below its first page, or grown past the limit after its last host call.
      await expect(host.invoke(greedy, { limits: { memoryBytes } }).result).rejects.toThrow(/exceeds its limit/);
    }
    expect((await neighbour.result).data).toBeNull();
    expect(host.stats().workerRestarts).toBe(0);
  });

  it('runs a component whose start function calls WASI while it is being instantiated', async () => {
    const { host } = await loggingHost();
    const seeding = await host.load(await seedingComponent());
    for (let i = 0; i < 3; i++) expect((await host.invoke(seeding).result).data).toBeNull();
  });

  it.each([
    ['wasi:sockets/tcp@0.2.3', /wasi:sockets\/tcp@0\.2\.3 is not granted to inferlets/],
    ['wasi:http/outgoing-handler@0.2.0', /wasi:http\/outgoing-handler@0\.2\.0 is not granted/],
    ['wasi:clocks/monotonic-clock@0.3.0', /wasi:clocks\/monotonic-clock@0\.3\.0: this server grants WASI 0\.2\.x/],
    ['wasi:cli/environment@0.2.0', /needs WASI functions this server does not provide \(wasi:cli\/environment: f\)/],
  ])('refuses a component importing %s, naming it', async (name, message) => {
    const { host } = await loggingHost();
    const err = await host.load(await componentImporting(name)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ComponentLoadError);
    expect((err as Error).message).toMatch(message);
  });
});
