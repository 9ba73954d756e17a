/**
 * Writing a model folder as a whole: into `OUT.partial-PID` beside it, then
 * renamed, so that a failure (a full disk, a bad input found half way) leaves
 * no half-written model that would load. Folders left by a process that was
 * killed are removed the next time.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { ModelLoadError } from './errors.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The output folder, resolved, if it may be written: absent or empty. */
export function checkModelOut(outArg: string): string {
  const out = resolve(outArg);
  if (existsSync(out)) {
    if (!statSync(out).isDirectory()) throw new ModelLoadError(`${out} is a file: choose a new folder`);
    if (readdirSync(out).length > 0) throw new ModelLoadError(`${out} exists and is not empty: choose a new folder`);
  }
  return out;
}

/** Runs `write(tmp)` and makes the result the folder `outArg`; returns what `write` returns. */
export function writeModelDir<T>(outArg: string, write: (tmp: string) => T): T {
  const out = checkModelOut(outArg);
  const parent = dirname(out);
  mkdirSync(parent, { recursive: true });
  const prefix = `${basename(out)}.partial-`;
  for (const name of readdirSync(parent)) {
    const pid = Number(name.slice(prefix.length));
    if (name.startsWith(prefix) && Number.isInteger(pid) && pid !== process.pid && !alive(pid)) rmSync(join(parent, name), { recursive: true, force: true });
  }
  const tmp = join(parent, `${prefix}${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  try {
    const result = write(tmp);
    if (existsSync(out)) rmSync(out, { recursive: true });
    renameSync(tmp, out);
    return result;
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    if (err instanceof ModelLoadError) throw err;
    throw new ModelLoadError(`cannot write ${out}: ${(err as Error).message}`);
  }
}
