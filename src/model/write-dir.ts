/**
 * Writing a model folder as a whole: into `OUT.partial-HOST-PID-RANDOM` beside
 * it, then renamed onto OUT, so that a failure (a full disk, a bad input found
 * half way) leaves no half-written model that would load. The rename never
 * replaces anything but an empty folder: a model another run finished there
 * meanwhile stays. Folders left by a killed run of this host are removed the
 * next time.
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ModelLoadError } from './errors.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH'; // only "no such process" is dead
  }
}

/** The output folder (a link followed), if it may be written: absent or an empty folder, in a folder that is one. */
export function checkModelOut(outArg: string): string {
  let out = resolve(outArg);
  if (existsSync(out) && lstatSync(out).isSymbolicLink()) out = realpathSync(out);
  if (existsSync(out)) {
    if (!statSync(out).isDirectory()) throw new ModelLoadError(`${out} is a file: choose a new folder`);
    if (readdirSync(out).length > 0) throw new ModelLoadError(`${out} exists and is not empty: choose a new folder`);
  }
  const parent = dirname(out);
  if (existsSync(parent) && !statSync(parent).isDirectory()) throw new ModelLoadError(`${parent} is a file, not a folder to write ${basename(out)} in`);
  return out;
}

/** Runs `write(tmp)` and makes the result the folder `outArg`; returns what `write` returns. */
export function writeModelDir<T>(outArg: string, write: (tmp: string) => T): T {
  const out = checkModelOut(outArg);
  const parent = dirname(out);
  const host = hostname().replace(/[^A-Za-z0-9.-]/g, '_');
  const prefix = `${basename(out)}.partial-${host}-`;
  const tmp = join(parent, `${prefix}${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    mkdirSync(parent, { recursive: true });
    // Left by a run of this host that was killed: its pid is gone.
    for (const name of readdirSync(parent)) {
      const m = name.startsWith(prefix) ? /^(\d+)-[0-9a-f]{8}$/.exec(name.slice(prefix.length)) : null;
      if (m && Number(m[1]) !== process.pid && !alive(Number(m[1]))) rmSync(join(parent, name), { recursive: true, force: true });
    }
    mkdirSync(tmp);
    const result = write(tmp);
    // Onto OUT only while it is absent or empty (rename replaces an empty folder, and fails on a full one).
    renameSync(tmp, out);
    return result;
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') throw new ModelLoadError(`${out} was filled while this wrote its model there: nothing was replaced; choose a new folder`);
    // System errors (a full disk, no permission) get a message; anything else is a bug and keeps its stack.
    if (typeof code === 'string') throw new ModelLoadError(`cannot write ${out}: ${(err as Error).message}`);
    throw err;
  }
}
