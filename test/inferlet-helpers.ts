/**
 * Fixtures for tests that run inferlets: components built once per machine
 * (by a hash of the bundled source), hosts that are closed after each test.
 */
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import type { Engine } from '../src/engine/index.ts';
import { buildCached } from '../src/runtime/host/build.ts';
import { InferletHost, type HostOptions } from '../src/runtime/host/host.ts';
import { REPO_ROOT } from './helpers.ts';

const BUILDS = join(tmpdir(), 'pie-gateway-test-inferlets');
export const COMPONENT_CACHE = join(tmpdir(), 'pie-gateway-test-components');

/** Builds an inferlet source file (cached by its bundled source and the WIT); returns the .wasm path. */
export function buildInferlet(entry: string): Promise<string> {
  return buildCached(entry, BUILDS);
}

const hosts: InferletHost[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close();
});

/** A host over the given engines, closed after the test (before the engines' page check). */
export async function testHost(engines: Engine[], options: Omit<HostOptions, 'engines'> = {}): Promise<InferletHost> {
  const host = await InferletHost.start({ engines, cacheDir: COMPONENT_CACHE, log: () => {}, ...options });
  hosts.push(host);
  return host;
}

/** A component (WebAssembly text, through jco's wasm-tools) whose `run` (the ABI's export) calls function `f` of the imported interface `name`. */
export async function componentImporting(name: string): Promise<Uint8Array> {
  const { parse } = await import('@bytecodealliance/jco');
  return parse(`(component
    (import "${name}" (instance $imp (export "f" (func))))
    (core func $f (canon lower (func $imp "f")))
    (core module $m (import "imp" "f" (func $f)) (memory (export "memory") 1) (func (export "run") (result i32) (call $f) (i32.const 8)))
    (core instance $i (instantiate $m (with "imp" (instance (export "f" (func $f))))))
    (func (export "run") (result (result (error string))) (canon lift (core func $i "run") (memory (core memory $i "memory")))))`);
}

/**
 * The hand-written inferlet of test/inferlets/echo.wat as a component (embed
 * the WIT, then `component new`, as other languages' toolchains do); `tag`
 * (four characters) names its event, so each tag is a component of its own.
 */
export async function echoComponent(tag = 'echo'): Promise<Uint8Array> {
  if (tag.length !== 4) throw new Error('the tag is four characters');
  const { componentEmbed, componentNew, parse } = await import('@bytecodealliance/jco');
  const { WIT_DIR } = await import('../src/runtime/abi.ts');
  const wat = readFileSync(join(REPO_ROOT, 'test/inferlets/echo.wat'), 'utf8').replace('(data (i32.const 16) "echo")', `(data (i32.const 16) "${tag}")`);
  const witSource = readFileSync(join(WIT_DIR, 'inferlet.wit'), 'utf8');
  return componentNew(await componentEmbed({ binary: await parse(wat), witSource, world: 'inferlet' }));
}
