/**
 * The page pool: a fixed number of KV pages with reference counts.
 *
 *   state    refCount  key   where
 *   free     0         no    free list
 *   cached   0         yes   free list (its content may still be reused)
 *   in use   > 0       any   page tables of contexts and snapshots
 *
 * The free list is FIFO: a released page goes to the tail and allocation takes
 * from the head, so the pages reused last are the ones released longest ago —
 * LRU eviction of cached prefixes for free. A cached page revived by a prefix
 * hit leaves the list from the middle (intrusive doubly linked list).
 */
export class PagePool {
  readonly numPages: number;
  readonly pageSize: number;
  private readonly refCounts: Int32Array;
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private readonly hasKey: Uint8Array;
  private head = -1;
  private tail = -1;
  private numOnList = 0;
  private numCachedPages = 0;
  /** Called when a cached page is recycled, so the prefix cache forgets it. */
  onEvict: (page: number) => void = () => {};

  constructor(numPages: number, pageSize: number) {
    if (!Number.isInteger(numPages) || numPages < 1) throw new Error(`page pool: numPages must be a positive integer, got ${numPages}`);
    if (!Number.isInteger(pageSize) || pageSize < 1) throw new Error(`page pool: pageSize must be a positive integer, got ${pageSize}`);
    this.numPages = numPages;
    this.pageSize = pageSize;
    this.refCounts = new Int32Array(numPages);
    this.prev = new Int32Array(numPages).fill(-1);
    this.next = new Int32Array(numPages).fill(-1);
    this.hasKey = new Uint8Array(numPages);
    for (let p = 0; p < numPages; p++) this.pushTail(p);
  }

  /** Pages that can be allocated now (free or cached). */
  get numAvailable(): number {
    return this.numOnList;
  }

  get numFree(): number {
    return this.numOnList - this.numCachedPages;
  }

  get numCached(): number {
    return this.numCachedPages;
  }

  get numInUse(): number {
    return this.numPages - this.numOnList;
  }

  refCount(page: number): number {
    return this.refCounts[page]!;
  }

  canAllocate(n: number): boolean {
    return n <= this.numOnList;
  }

  /** Takes `n` pages from the head of the free list, each with refCount 1. Check `canAllocate` first. */
  allocate(n: number): number[] {
    if (!this.canAllocate(n)) throw new Error(`page pool: ${n} pages requested, ${this.numOnList} available`);
    const pages: number[] = [];
    for (let i = 0; i < n; i++) {
      const page = this.head;
      this.unlink(page);
      this.refCounts[page] = 1;
      if (this.hasKey[page]) {
        this.hasKey[page] = 0;
        this.onEvict(page);
      }
      pages.push(page);
    }
    return pages;
  }

  retain(page: number): void {
    if (this.refCounts[page]++ === 0) this.unlink(page);
  }

  release(page: number): void {
    const rc = --this.refCounts[page]!;
    if (rc < 0) throw new Error(`page pool: page ${page} released more often than retained`);
    if (rc === 0) this.pushTail(page);
  }

  releaseAll(pages: Iterable<number>): void {
    for (const p of pages) this.release(p);
  }

  /** Marks a page as holding content the prefix cache can find. */
  setKeyed(page: number, keyed: boolean): void {
    if (this.hasKey[page] === (keyed ? 1 : 0)) return;
    this.hasKey[page] = keyed ? 1 : 0;
    if (this.refCounts[page] === 0) this.numCachedPages += keyed ? 1 : -1;
  }

  private pushTail(page: number): void {
    this.prev[page] = this.tail;
    this.next[page] = -1;
    if (this.tail >= 0) this.next[this.tail] = page;
    else this.head = page;
    this.tail = page;
    this.numOnList++;
    if (this.hasKey[page]) this.numCachedPages++;
  }

  private unlink(page: number): void {
    const p = this.prev[page]!;
    const n = this.next[page]!;
    if (p >= 0) this.next[p] = n;
    else this.head = n;
    if (n >= 0) this.prev[n] = p;
    else this.tail = p;
    this.prev[page] = this.next[page] = -1;
    this.numOnList--;
    if (this.hasKey[page]) this.numCachedPages--;
  }
}
