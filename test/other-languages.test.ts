/**
 * Inferlets from any language: a component built from WebAssembly text with
 * the wasm-tools that jco bundles (embed the WIT, then `component new`, the
 * same steps Rust's or C's toolchains take) runs like a JavaScript one.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { componentEmbed, componentNew, parse } from '@bytecodealliance/jco';
import { describe, expect, it } from 'vitest';
import { WIT_DIR } from '../src/runtime/abi.ts';
import { mockEngine, REPO_ROOT } from './helpers.ts';
import { testHost } from './inferlet-helpers.ts';

async function watComponent(): Promise<Uint8Array> {
  const core = await parse(readFileSync(join(REPO_ROOT, 'test/inferlets/echo.wat'), 'utf8'));
  const witSource = readFileSync(join(WIT_DIR, 'inferlet.wit'), 'utf8');
  const embedded = await componentEmbed({ binary: core, witSource, world: 'inferlet' });
  return componentNew(embedded);
}

describe('a component written in WebAssembly text', () => {
  it('runs: reads its input, emits an event, sets its result', async () => {
    const { engine } = await mockEngine();
    const host = await testHost([engine]);
    const component = await host.load(await watComponent());
    expect(component.imports.every((i) => i.startsWith('pie:inferlet/'))).toBe(true);
    const inv = host.invoke(component, { input: { hello: 'from wat' } });
    const events: { event: string; data: string }[] = [];
    inv.onEvent((e) => events.push(e));
    const r = await inv.result;
    expect(JSON.parse(r.data!)).toEqual({ hello: 'from wat' });
    expect(events).toEqual([{ event: 'echo', data: '{"hello":"from wat"}' }]);
  });

  it('fails the invocation on a trap, and the host goes on', async () => {
    const { engine } = await mockEngine();
    const host = await testHost([engine]);
    const component = await host.load(await watComponent());
    await expect(host.invoke(component, { input: 'trap' }).result).rejects.toThrow(/unreachable/);
    expect(JSON.parse((await host.invoke(component, { input: 1 }).result).data!)).toBe(1);
  });
});
