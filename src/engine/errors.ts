/** Errors the engine reports to its callers; each names what went wrong. */
export class EngineError extends Error {
  override name = 'EngineError';
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

export const contextBusy = (id: number) => new EngineError('context_busy', `context ${id} is already running a forward pass or generation`);
export const contextReleased = (id: number) => new EngineError('context_released', `context ${id} has been released`);
export const contextTooLong = (len: number, max: number) =>
  new EngineError('context_length_exceeded', `the context holds ${len} tokens; the model accepts at most ${max}`);
export const kvExhausted = (needed: number, total: number, inUse: number) =>
  new EngineError(
    'kv_cache_exhausted',
    `not enough KV cache: the request needs ${needed} pages, the pool has ${total} and ${inUse} are held by idle contexts and snapshots`,
  );
export const tenantKvCap = (needed: number, cap: number) =>
  new EngineError('kv_cache_exhausted', `not enough KV cache: the request needs ${needed} pages, and this tenant's running work may hold at most ${cap}`);
export const kvCacheFull = (needed: number, waitedMs: number) =>
  new EngineError('kv_cache_full', `no room in the KV cache for ${needed} pages: it stayed full with other work for ${Math.round(waitedMs)} ms; try again later`);
export const snapshotNotFound = (name: string, evicted?: string) =>
  new EngineError('snapshot_not_found', evicted ? `the snapshot "${name}" was evicted (${evicted}): save it again` : `no snapshot named "${name}"`);
export const engineClosed = () => new EngineError('engine_closed', 'the engine has been shut down');
export const invalidToken = (t: unknown, vocab: number) =>
  new EngineError('invalid_token', `token id ${String(t)} is outside the vocabulary [0, ${vocab})`);
