/**
 * A real listening gateway for end-to-end tests: the given engines (or the
 * tiny random model), the built-in inferlets, the example route, a SQLite
 * store in a fresh temp folder, port 0.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, expect } from 'vitest';
import { parseConfig } from '../src/config.ts';
import { startEngine, type Engine, type StartOptions } from '../src/engine/index.ts';
import { serve, type Serving } from '../src/gateway/start.ts';
import { COMPONENT_CACHE } from './inferlet-helpers.ts';
import { REPO_ROOT } from './helpers.ts';

export interface TestServer {
  serving: Serving;
  url: string;
  client(apiKey?: string): OpenAI;
  close(): Promise<void>;
}

/** Starts a gateway on `engines`; `server` adds [server] keys, `extra` more tables ([[keys]], [[routes]]). */
export async function startGateway(engines: Engine[], options: { server?: string; extra?: string; env?: NodeJS.ProcessEnv } = {}): Promise<TestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'pie-gateway-data-'));
  const config = parseConfig(
    `[server]\nport = 0\ndata_dir = ${JSON.stringify(dataDir)}\napi_key_env = ""\n${options.server ?? ''}\n` +
      `[inferlets]\ncache_dir = ${JSON.stringify(COMPONENT_CACHE)}\nwarm_instances = 1\n${options.extra ?? ''}`,
    'test.toml',
    REPO_ROOT,
  );
  const env = options.env ?? {};
  const serving = await serve({ config, engines, log: () => {}, env });
  await serving.loaded;
  return {
    serving,
    url: serving.url,
    client: (apiKey = 'none') => new OpenAI({ baseURL: `${serving.url}/v1`, apiKey, maxRetries: 0, timeout: 60_000 }),
    close: () => serving.close(),
  };
}

/** The engine, gateway and client of a test file: started before its tests, closed after them with nothing left behind. */
export interface Served {
  engine: Engine;
  server: TestServer;
  client: OpenAI;
  model: string;
}

/** Serves the model in `dir()` for the tests of the enclosing describe (or file); the fields fill in before the tests run. */
export function servedEngine(dir: () => string, options: StartOptions = {}, gateway: Parameters<typeof startGateway>[1] = {}): Served {
  const s = {} as Served;
  beforeAll(async () => {
    s.engine = await startEngine(dir(), { threads: 1, numPages: 256, pageSize: 16, ...options });
    s.model = s.engine.model.name;
    s.server = await startGateway([s.engine], gateway);
    s.client = s.server.client();
  });
  afterAll(async () => {
    await s.server?.close();
    expect(s.engine?.numContexts, 'contexts left behind by the gateway').toBe(0);
    await s.engine?.close();
  });
  return s;
}

/**
 * After a test: once invocations that answered have released, nothing is
 * held but the KV state stored responses keep (a follow-up's snapshot shares
 * its prefix's pages), no context, no grammar matcher.
 */
export async function expectNothingHeld(engine: Engine): Promise<void> {
  await new Promise((r) => setTimeout(r, 50));
  const kept = new Set<number>();
  for (const name of engine.listSnapshots('default')) for (const p of engine.snapshots.get(name, 'default')!.pageTable) kept.add(p);
  expect(engine.stats().pages.inUse - kept.size, 'pages held outside snapshots').toBe(0);
  expect(engine.numContexts).toBe(0);
  expect(engine.grammars.stats().matchers, 'grammar matchers still alive').toBe(0);
}

/** The example route of pie.toml. */
export const EXAMPLE_ROUTE = `
[[routes]]
method = "POST"
path = "/v1/examples/best-of/:n"
inferlet = "inferlets/routes/best-of.ts"
scope = "examples"
headers = ["accept"]
`;

/** Reads an SSE response body to its end: the raw text. */
export async function readAll(res: Response): Promise<string> {
  return await res.text();
}

/** The `data:` payloads of an SSE text, in order. */
export function dataLines(sse: string): string[] {
  return sse
    .split('\n\n')
    .filter((block) => block.trim() !== '')
    .map((block) =>
      block
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6))
        .join('\n'),
    );
}
