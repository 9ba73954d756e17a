/**
 * A context: a token sequence and the pages that hold its keys and values.
 *
 *   tokens      [0 ........................................ length)
 *   computed    [0 ............ numComputed)                         KV in the pool
 *   pending                     [numComputed .............. length)  appended, not yet run
 *   pageTable   one page per pageSize positions, covering at least the computed part
 *   pageKeys    prefix-cache key of each full computed page (the chain's links)
 *
 * The engine owns every context and is the only writer; the fields are
 * readable for tests and metrics.
 */
export class Context {
  readonly id: number;
  readonly tenant: string;
  readonly tokens: number[] = [];
  readonly pageTable: number[] = [];
  readonly pageKeys: number[] = [];
  numComputed = 0;
  /**
   * Tokens computed as far as its holder knows: where the pending tokens of
   * the ABI (forward rows, prompt scores) start. It moves when work on the
   * context completes, and stays when the KV is dropped behind the holder's
   * back (an idle context giving its pages back under pressure): those tokens
   * are then computed again, silently, by the next work.
   */
  settled = 0;
  released = false;
  /** The request currently running on this context, if any. */
  busy = false;
  /** When it last ran or was made (ms): idle contexts give their pages back under pressure, least recently used first. */
  lastUsedAt = performance.now();
  /**
   * Some of its KV was computed under a custom attention mask: its pages are
   * not what the tokens alone would give, so they never enter the prefix
   * cache and it takes none from it. Sticky; forks and snapshots inherit it.
   */
  customKv = false;
  /**
   * RoPE position of each token when the caller chose them (tree-shaped
   * decoding: siblings share a position); null while every token sits at its
   * own index.
   */
  ropePositions: number[] | null = null;

  constructor(id: number, tenant: string) {
    this.id = id;
    this.tenant = tenant;
  }

  get length(): number {
    return this.tokens.length;
  }

  get numPending(): number {
    return this.tokens.length - this.numComputed;
  }

  /** Pending as its holder sees it (see `settled`). */
  get numUnsettled(): number {
    return this.tokens.length - this.settled;
  }

  /** Appends a token at the position after the last one. */
  push(token: number): void {
    if (this.ropePositions) this.ropePositions.push((this.ropePositions[this.ropePositions.length - 1] ?? -1) + 1);
    this.tokens.push(token);
  }
}
