import { describe, expect, it } from 'vitest';
import type { StoredComponent } from '../runtime/host/component-store.ts';
import type { ComponentLoader } from '../runtime/host/component-loader.ts';
import { InvocationError, type InvocationResult, type InvocationState } from '../runtime/host/invocation.ts';
import type { RunningInvocation } from '../runtime/host/port.ts';
import { OPEN } from './auth.ts';
import type { InferletRegistry, UploadedInferlet } from './inferlet-registry.ts';
import type { Runtime } from './invoke.ts';
import { Runs } from './runs.ts';

/** An invocation the test ends: `finish()` succeeds it, `cancel()` cancels it (remembering why). */
class FakeInvocation implements RunningInvocation {
  readonly id = 1;
  state: InvocationState = 'running';
  readonly result: Promise<InvocationResult>;
  status = 200;
  headers = {};
  numTokens = 0;
  numPromptTokens = 0;
  maxGenerationTokens = 0;
  instantiateMs = 0;
  observer = null;
  cancelledWith: string | null = null;
  private settle!: (r: InvocationResult) => void;
  private fail!: (e: Error) => void;
  constructor() {
    this.result = new Promise((res, rej) => ((this.settle = res), (this.fail = rej)));
    this.result.catch(() => {});
  }
  finish(): void {
    this.state = 'succeeded';
    this.settle({ data: '{}', status: 200, headers: {} });
  }
  cancel(reason = 'cancelled'): void {
    if (this.state !== 'running') return;
    this.cancelledWith = reason;
    this.state = 'cancelled';
    this.fail(new InvocationError('cancelled', reason));
  }
  /** Messages delivered to it. */
  readonly inbox: string[] = [];
  deliver(message: string): Promise<number> {
    this.inbox.push(message);
    return Promise.resolve(this.inbox.length);
  }
  kvPages(): Promise<number> {
    return Promise.resolve(this.state === 'running' ? 3 : 0);
  }
  onEvent(): void {}
  async *events(): AsyncIterable<never> {}
}

const entry: UploadedInferlet = { id: 'inf_x', tenant: 'default', name: null, version: null, sha256: 'ab', bytes: 1, imports: [], createdAt: 0 };
const component: StoredComponent = { hash: 'ab', dir: '/nowhere', imports: [], sizeBytes: 1 };

function setup(options: { keptPerTenant?: number; load?: () => Promise<StoredComponent>; invoke?: () => RunningInvocation } = {}) {
  const invocations: FakeInvocation[] = [];
  const host = {
    invoke: options.invoke ?? (() => {
      const inv = new FakeInvocation();
      invocations.push(inv);
      return inv;
    }),
  };
  const rt = () => ({ host, engines: new Map([['m', {}]]) }) as unknown as Runtime;
  const runs = new Runs({
    rt,
    registry: { bytes: () => new Uint8Array([1]) } as unknown as InferletRegistry,
    loader: { load: options.load ?? (() => Promise.resolve(component)) } as unknown as ComponentLoader,
    maxLimits: { memoryBytes: 1, kvPages: 1, tokens: 1, wallTimeMs: 1 },
    limits: { keptPerTenant: options.keptPerTenant ?? 100 },
  });
  return { runs, invocations };
}

const settled = () => new Promise((r) => setImmediate(r));

describe('Runs', () => {
  it('keeps the runs that ended most recently, whenever they started', async () => {
    const { runs, invocations } = setup({ keptPerTenant: 2 });
    const long = await runs.start(OPEN, entry, null, {});
    const short: Array<{ id: string }> = [];
    for (let i = 0; i < 3; i++) {
      short.push(await runs.start(OPEN, entry, null, {}));
      invocations.at(-1)!.finish();
      await settled();
    }
    invocations[0]!.finish(); // the long run ends last
    await settled();
    expect(runs.get(OPEN, long.id).status).toBe('succeeded');
    expect(runs.get(OPEN, short[2]!.id).status).toBe('succeeded');
    expect(() => runs.get(OPEN, short[1]!.id)).toThrow(/No run found/);
    expect(() => runs.get(OPEN, short[0]!.id)).toThrow(/No run found/);
  });

  it('cancels a run still getting its component ready as soon as it starts, with the reason of the cancel', async () => {
    let ready!: (c: StoredComponent) => void;
    const { runs, invocations } = setup({ load: () => new Promise((r) => (ready = r)) });
    const starting = runs.start(OPEN, entry, null, {});
    await settled();
    const [run] = runs.list(OPEN);
    const cancelling = runs.cancel(run!);
    await expect(runs.cancel(run!)).rejects.toThrow(/its status is cancelling/);
    ready(component);
    await starting;
    expect((await cancelling).status).toBe('cancelled');
    expect(invocations[0]!.cancelledWith).toBe('cancelled through POST /v1/runs/{id}/cancel');
    // Closing cancels one still getting ready with its own reason.
    const { runs: other, invocations: theirs } = setup({ load: () => new Promise((r) => (ready = r)) });
    const late = other.start(OPEN, entry, null, {});
    await settled();
    other.cancelAll('the server is shutting down');
    ready(component);
    await late;
    expect(theirs[0]!.cancelledWith).toBe('the server is shutting down');
  });

  it('does not keep or count a run the host refused to start, or whose component could not be made ready', async () => {
    const refused = setup({
      invoke: () => {
        throw new Error('the inferlet host is closed');
      },
    });
    await expect(refused.runs.start(OPEN, entry, null, {})).rejects.toThrow(/closed/);
    expect(refused.runs.list(OPEN)).toEqual([]);
    const broken = setup({ load: () => Promise.reject(new Error('not a component')) });
    await expect(broken.runs.start(OPEN, entry, null, {})).rejects.toThrow(/not a component/);
    expect(broken.runs.list(OPEN)).toEqual([]);
  });
});
