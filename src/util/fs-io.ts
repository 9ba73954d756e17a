/**
 * Whole reads and writes on a file descriptor: `readSync` and `writeSync` may
 * move fewer bytes than asked (above 2 GiB they always do), so these loop.
 */
import { readSync, writeSync } from 'node:fs';

const CHUNK = 1 << 30;

/** Fills `into` from `position`; false where the file ends first. */
export function readFully(fd: number, into: Uint8Array, position: number): boolean {
  let done = 0;
  while (done < into.length) {
    const n = readSync(fd, into, done, Math.min(into.length - done, CHUNK), position + done);
    if (n === 0) return false;
    done += n;
  }
  return true;
}

export function writeFully(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, Math.min(bytes.length - done, CHUNK));
}
