/**
 * Stop strings matched across token boundaries. Text that could still be the
 * start of a stop string is held back until the next delta decides; the stop
 * string itself is emitted only when asked (`includeStop`).
 */
export class StopMatcher {
  private readonly stops: string[];
  private readonly includeStop: boolean;
  private pending = '';
  /** How much of `pending` was pushed unsearched: a stop string that ends within it does not count. */
  private unsearched = 0;
  stopped = false;
  /** The stop string that ended the text, once `stopped`. */
  matched: string | null = null;

  constructor(stops: readonly string[], includeStop = false) {
    this.stops = stops.filter((s) => s.length > 0);
    this.includeStop = includeStop;
  }

  /**
   * Feeds a text delta; returns the part that is safe to emit. With `match`
   * false (min_tokens) no stop string is looked for in it, but a tail that
   * could start one is still held back: a stop string that ends after the
   * boundary is found, as vLLM finds it.
   */
  push(text: string, match = true): string {
    if (this.stopped) return '';
    const buf = this.pending + text;
    if (!match) {
      const hold = this.heldBack(buf);
      this.pending = buf.slice(buf.length - hold);
      this.unsearched = hold;
      return buf.slice(0, buf.length - hold);
    }
    let cut = -1;
    for (const s of this.stops) {
      const i = buf.indexOf(s, Math.max(0, this.unsearched - s.length + 1));
      if (i >= 0 && (cut < 0 || i < cut)) {
        cut = i;
        this.matched = s;
      }
    }
    if (cut >= 0) {
      this.stopped = true;
      this.pending = '';
      return buf.slice(0, this.includeStop ? cut + this.matched!.length : cut);
    }
    const hold = this.heldBack(buf);
    this.pending = buf.slice(buf.length - hold);
    this.unsearched = 0;
    return buf.slice(0, buf.length - hold);
  }

  /** At the end of generation: everything held back is real text. */
  flush(): string {
    const rest = this.pending;
    this.pending = '';
    return rest;
  }

  /** Length of the longest suffix of `buf` that is a proper prefix of a stop string. */
  private heldBack(buf: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, buf.length); n > best; n--) {
        if (buf.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
