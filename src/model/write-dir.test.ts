import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeModelDir } from './write-dir.ts';

const work = mkdtempSync(join(tmpdir(), 'pie-write-dir-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const host = hostname().replace(/[^A-Za-z0-9.-]/g, '_');

describe('writing a model folder', () => {
  it('appears whole or not at all, and never replaces a model another run finished there meanwhile', () => {
    const out = join(work, 'model');
    writeModelDir(out, (tmp) => writeFileSync(join(tmp, 'a'), '1'));
    expect(readdirSync(out)).toEqual(['a']);
    const second = join(work, 'second');
    expect(() =>
      writeModelDir(second, (tmp) => {
        writeFileSync(join(tmp, 'mine'), '1');
        mkdirSync(second); // another run finishes first
        writeFileSync(join(second, 'theirs'), '1');
      }),
    ).toThrow(/was filled while this wrote its model there: nothing was replaced/);
    expect(readdirSync(second)).toEqual(['theirs']);
    expect(readdirSync(work).filter((n) => n.includes('.partial-'))).toEqual([]);
    expect(() => writeModelDir(join(work, 'bad'), () => { throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }); })).toThrow(/cannot write .*bad: no space left on device/);
    expect(() => writeModelDir(join(work, 'bug'), () => { throw new TypeError('a bug'); })).toThrow(TypeError);
  });

  it("removes only this host's folders whose process is gone", () => {
    const out = join(work, 'cleaned');
    const dead = join(work, `cleaned.partial-${host}-999999999-0badc0de`);
    const live = join(work, `cleaned.partial-${host}-${process.ppid}-0badc0de`);
    const other = join(work, `cleaned.partial-another-host-999999999-0badc0de`);
    const odd = ['cleaned.partial-1e9', 'cleaned.partial--5', `cleaned.partial-${host}-1e9-0badc0de`, `cleaned.partial-${host}-backup`, 'cleaned.partial-backup'].map((n) => join(work, n));
    for (const d of [dead, live, other, ...odd]) mkdirSync(d);
    writeModelDir(out, (tmp) => writeFileSync(join(tmp, 'a'), '1'));
    expect(existsSync(dead)).toBe(false);
    for (const d of [live, other, ...odd]) expect(existsSync(d), d).toBe(true);
  });

  it('writes through a link to an empty folder, and refuses a file, a full folder, or a parent that is a file', () => {
    const target = join(work, 'target');
    mkdirSync(target);
    const link = join(work, 'link');
    symlinkSync(target, link);
    writeModelDir(link, (tmp) => writeFileSync(join(tmp, 'a'), '1'));
    expect(readdirSync(target)).toEqual(['a']);
    const file = join(work, 'file');
    writeFileSync(file, 'x');
    expect(() => writeModelDir(file, () => {})).toThrow(/is a file: choose a new folder/);
    expect(() => writeModelDir(target, () => {})).toThrow(/exists and is not empty/);
    expect(() => writeModelDir(join(file, 'out'), () => {})).toThrow(/is a file, not a folder to write out in/);
  });
});
