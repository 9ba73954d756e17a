/**
 * The prefix cache: full pages addressed by their content.
 *
 * A page's key is a hash of (the previous page's key, the page's tokens), so
 * one key names the whole prefix up to the end of that page. A lookup walks a
 * prompt page by page from the root and stops at the first miss. Every hit is
 * verified against the stored tokens and parent key, so a hash collision can
 * never serve wrong KV. A keyed page is immutable: writing into it again
 * (after a truncate) first drops its key or copies it.
 *
 * Pages stay findable after their last user releases them, until the pool
 * recycles them (see page-pool.ts), which evicts them from here.
 */
import type { PagePool } from './page-pool.ts';

/** The parent key of a sequence's first page. */
export const ROOT_KEY = 0;

export class PrefixCache {
  enabled: boolean;
  numHits = 0;
  numMisses = 0;
  private readonly pool: PagePool;
  private readonly byKey = new Map<number, number>();
  private readonly keyOf: Float64Array;
  private readonly parentOf: Float64Array;
  private readonly tokensOf: Int32Array;

  constructor(pool: PagePool, enabled = true) {
    this.pool = pool;
    this.enabled = enabled;
    this.keyOf = new Float64Array(pool.numPages).fill(NaN);
    this.parentOf = new Float64Array(pool.numPages).fill(NaN);
    this.tokensOf = new Int32Array(pool.numPages * pool.pageSize);
    pool.onEvict = (page) => this.forget(page);
  }

  get numEntries(): number {
    return this.byKey.size;
  }

  /** The key of a page holding `tokens[start .. start+pageSize)` after a page keyed `parent`. */
  key(parent: number, tokens: ArrayLike<number>, start: number): number {
    // Two 32-bit multiplicative hashes combined into one 53-bit integer.
    let h1 = (Math.floor(parent / 4294967296) ^ 0x9e3779b9) >>> 0;
    let h2 = (parent >>> 0) ^ 0x85ebca6b;
    for (let i = start; i < start + this.pool.pageSize; i++) {
      const t = tokens[i]! | 0;
      h1 = Math.imul(h1 ^ t, 0x01000193) >>> 0;
      h1 = (h1 ^ (h1 >>> 15)) >>> 0;
      h2 = Math.imul(h2 ^ t, 0x5bd1e995);
      h2 ^= h2 >>> 13;
    }
    h1 = Math.imul(h1 ^ (h1 >>> 16), 0x85ebca6b) >>> 0;
    h2 = Math.imul(h2 ^ (h2 >>> 16), 0xc2b2ae35) >>> 0;
    const key = (h1 & 0x1fffff) * 4294967296 + h2;
    return key === ROOT_KEY ? 1 : key;
  }

  /** The page holding exactly this content after `parent`, or -1. Counts a hit or a miss. */
  lookup(parent: number, key: number, tokens: ArrayLike<number>, start: number): number {
    if (!this.enabled) return -1;
    const page = this.byKey.get(key);
    if (page !== undefined && this.parentOf[page] === parent && this.sameTokens(page, tokens, start)) {
      this.numHits++;
      return page;
    }
    this.numMisses++;
    return -1;
  }

  /** Makes a full, computed page findable. Does nothing if the content is already cached elsewhere. */
  insert(page: number, parent: number, key: number, tokens: ArrayLike<number>, start: number): void {
    if (!this.enabled || this.byKey.has(key) || !Number.isNaN(this.keyOf[page]!)) return;
    this.byKey.set(key, page);
    this.keyOf[page] = key;
    this.parentOf[page] = parent;
    const ps = this.pool.pageSize;
    for (let i = 0; i < ps; i++) this.tokensOf[page * ps + i] = tokens[start + i]!;
    this.pool.setKeyed(page, true);
  }

  isKeyed(page: number): boolean {
    return !Number.isNaN(this.keyOf[page]!);
  }

  /** Drops a page's key (it is about to be rewritten, or recycled). */
  forget(page: number): void {
    const key = this.keyOf[page]!;
    if (Number.isNaN(key)) return;
    this.byKey.delete(key);
    this.keyOf[page] = NaN;
    this.parentOf[page] = NaN;
    this.pool.setKeyed(page, false);
  }

  /** Forgets every unused page (e.g. when the cache is switched off). */
  clear(): void {
    for (const page of [...this.byKey.values()]) if (this.pool.refCount(page) === 0) this.forget(page);
  }

  private sameTokens(page: number, tokens: ArrayLike<number>, start: number): boolean {
    const ps = this.pool.pageSize;
    for (let i = 0; i < ps; i++) if (this.tokensOf[page * ps + i] !== tokens[start + i]) return false;
    return true;
  }
}
