import { describe, expect, it } from 'vitest';
import { byteProgress, stepProgress } from './progress.ts';

describe('progress off a terminal', () => {
  it('prints a plan line, a line per period, and a last line with the total', () => {
    const lines: string[] = [];
    const p = byteProgress('org/model', { tty: false, write: (l) => lines.push(l), everyMs: 0 });
    p.plan([
      { name: 'config.json', size: 1_000_000, done: true },
      { name: 'model.safetensors', size: 3_000_000, done: false },
    ]);
    p.update('model.safetensors', 1_500_000);
    p.update('model.safetensors', 3_000_000);
    p.stop();
    expect(lines[0]).toBe('org/model: 2 files, 4.0 MB; 1 to fetch (3.0 MB)');
    expect(lines[1]).toMatch(/^org\/model: 62% \(2\.5 MB of 4\.0 MB, [\d.]+ MB\/s, ETA/);
    expect(lines.at(-1)).toMatch(/^org\/model: 100% \(4\.0 MB of 4\.0 MB/);
  });

  it('counts steps of a conversion', () => {
    const lines: string[] = [];
    const p = stepProgress('create-random', { tty: false, write: (l) => lines.push(l), everyMs: 60_000 });
    for (let i = 1; i <= 5; i++) p.update(i, 5);
    p.stop();
    expect(lines).toEqual([expect.stringMatching(/^create-random: 5\/5 \([\d.]+ s\)$/)]);
  });
});
