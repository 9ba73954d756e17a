import { describe, expect, it } from 'vitest';
import { rangesToRuns, toRuns, windowWithSinks } from './runs.ts';
import { runsToFlags } from '../../../src/runtime/host/handlers/sampling.ts';

const members = (runs: Uint32Array, size: number) => [...runsToFlags(runs, size)].flatMap((f, i) => (f ? [i] : []));

describe('runs', () => {
  it('encodes sets as [in, out, in, ...] starting with an in-run', () => {
    expect([...toRuns([5, 6, 7])]).toEqual([0, 5, 3]);
    expect([...toRuns([0, 1, 4])]).toEqual([2, 2, 1]);
    expect([...toRuns([])]).toEqual([]);
    expect([...rangesToRuns([[0, 2], [2, 4], [6, 7]])]).toEqual([4, 2, 1]);
  });

  it('round-trips through the host decoder for random sets', () => {
    for (let seed = 1; seed < 50; seed++) {
      const set = new Set<number>();
      for (let i = 0; i < 20; i++) set.add((seed * 7919 * (i + 1)) % 97);
      expect(members(toRuns(set), 100)).toEqual([...set].sort((a, b) => a - b));
    }
  });

  it('describes a sliding window with attention sinks', () => {
    expect(members(windowWithSinks(9, 4, 2), 10)).toEqual([0, 1, 6, 7, 8, 9]);
    expect(members(windowWithSinks(3, 4, 2), 10)).toEqual([0, 1, 2, 3]);
    expect(members(windowWithSinks(9, 3), 10)).toEqual([7, 8, 9]);
  });
});
