/**
 * Sets of token ids or key positions as run lengths, the form masks take at
 * the boundary ([in, out, in, ...], starting with an "in" run that may be
 * empty), so no vocabulary-sized list crosses it.
 */

/** Run lengths of [start, end) ranges, sorted and not overlapping. */
export function rangesToRuns(ranges: ReadonlyArray<readonly [number, number]>): Uint32Array {
  const runs: number[] = [];
  let at = 0;
  for (const [start, end] of ranges) {
    if (end <= start) continue;
    if (start < at) throw new RangeError('ranges must be sorted and must not overlap');
    const gap = start - at;
    if (runs.length === 0) {
      if (gap > 0) runs.push(0, gap);
      runs.push(end - start);
    } else if (gap === 0) {
      runs[runs.length - 1]! += end - start;
    } else {
      runs.push(gap, end - start);
    }
    at = end;
  }
  return Uint32Array.from(runs);
}

/** Run lengths of a set of non-negative integers (any order, duplicates allowed). */
export function toRuns(values: Iterable<number>): Uint32Array {
  const sorted = [...new Set(values)].sort((a, b) => a - b);
  const ranges: [number, number][] = [];
  for (const v of sorted) {
    const last = ranges[ranges.length - 1];
    if (last && last[1] === v) last[1] = v + 1;
    else ranges.push([v, v + 1]);
  }
  return rangesToRuns(ranges);
}

/**
 * The keys a query at `position` sees with a sliding window of `window`
 * tokens that always keeps the first `sinks` tokens (StreamingLLM-style).
 */
export function windowWithSinks(position: number, window: number, sinks = 0): Uint32Array {
  const start = Math.max(0, position + 1 - window);
  if (start <= sinks) return rangesToRuns([[0, position + 1]]);
  return rangesToRuns([
    [0, sinks],
    [start, position + 1],
  ]);
}
