/**
 * Fixtures for tests that run inferlets: components built once per machine
 * (by a hash of the bundled source), hosts that are closed after each test.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import type { Engine } from '../src/engine/index.ts';
import { buildCached } from '../src/runtime/host/build.ts';
import { InferletHost, type HostOptions } from '../src/runtime/host/host.ts';

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
