/**
 * The WASI 0.2 subset granted to components of other toolchains (abi.ts,
 * WASI_GRANTED), answered inside the worker, per instance:
 *
 *   clocks      real monotonic and wall time; a sleep (pollable.block, poll) suspends the guest
 *   random      crypto-strength bytes for all three interfaces
 *   cli         environment and arguments empty, no cwd; exit ends the invocation;
 *               stdin closed; stdout and stderr are lines in the invocation's log (bounded); no terminal
 *   io          the streams and pollables above; the error resource
 *   filesystem  no preopened folders, so no descriptor ever exists
 *
 * Written from the WASI 0.2 WIT. Resource classes are made per instance: jco's
 * glue checks what a host function returns with `instanceof` against the
 * classes it was given.
 */
import { randomFillSync } from 'node:crypto';
import type { GuestEnv } from './env.ts';

/** `exit` was called: ends the invocation (status 0 succeeds, any other fails). */
export class GuestExit extends Error {
  readonly status: number;
  constructor(status: number) {
    super(status === 0 ? 'the inferlet exited' : `the inferlet exited with status ${status}`);
    this.status = status;
  }
}

/** The most random bytes one call may ask for (WASI's length is a u64: a guest must not make the worker allocate gigabytes). */
const MAX_RANDOM_BYTES = 1 << 20;
/** What one write to stdout or stderr may carry (the permit check-write gives). */
const WRITE_PERMIT = 65536n;
/** A line of stdout or stderr longer than this is cut into several. */
const MAX_LINE = 8192;

const closed = () => {
  // stream-error's `closed` case: jco's glue returns a thrown plain object as the result's error.
  throw { tag: 'closed' };
};

function bytes(len: bigint | number): Uint8Array {
  const n = Number(len);
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX_RANDOM_BYTES) throw new RangeError(`at most ${MAX_RANDOM_BYTES} random bytes per call, asked for ${len}`);
  return randomFillSync(new Uint8Array(n));
}

const u64 = () => new DataView(bytes(8).buffer).getBigUint64(0);

export function guestWasi(env: GuestEnv): Record<string, object> {
  /** Ready at `deadline` (performance.now() ms); always ready without one. */
  class Pollable {
    readonly deadline: number;
    constructor(deadline = 0) {
      this.deadline = deadline;
    }
    ready(): boolean {
      return performance.now() >= this.deadline;
    }
    /** Waits until ready (a timer may fire a little early: it waits again for the rest). */
    async block(): Promise<void> {
      for (let wait = this.deadline - performance.now(); wait > 0; wait = this.deadline - performance.now()) await env.sleep(wait);
    }
  }
  const afterNs = (ns: bigint) => new Pollable(performance.now() + Number(ns) / 1e6);

  class IoError {
    readonly message: string;
    constructor(message: string) {
      this.message = message;
    }
    toDebugString(): string {
      return this.message;
    }
  }

  /** stdin: closed from the start (an inferlet's input is `runtime.input`). */
  class InputStream {
    read(): never {
      return closed();
    }
    blockingRead(): never {
      return closed();
    }
    skip(): never {
      return closed();
    }
    blockingSkip(): never {
      return closed();
    }
    subscribe(): Pollable {
      return new Pollable();
    }
  }

  let endStream: (stream: OutputStream) => void = () => {};
  /**
   * stdout or stderr: whole lines to the invocation's log, through `env.output`
   * (which bounds them). A flush keeps a partial line (toolchains flush after
   * every write, often before its newline); it goes at exit or at the end.
   */
  class OutputStream {
    private readonly stream: 'stdout' | 'stderr';
    private readonly decoder = new TextDecoder();
    private pending = '';
    constructor(stream: 'stdout' | 'stderr') {
      this.stream = stream;
    }
    checkWrite(): bigint {
      return WRITE_PERMIT;
    }
    write(contents: Uint8Array): void {
      if (BigInt(contents.byteLength) > WRITE_PERMIT) throw new RangeError(`a write carries at most ${WRITE_PERMIT} bytes (check-write's permit)`);
      this.pending += this.decoder.decode(contents, { stream: true });
      let nl: number;
      while ((nl = this.pending.indexOf('\n')) >= 0 || this.pending.length > MAX_LINE) {
        const end = nl >= 0 && nl <= MAX_LINE ? nl : MAX_LINE;
        env.output(this.stream, this.pending.slice(0, end).replace(/\r$/, ''));
        this.pending = this.pending.slice(nl === end ? end + 1 : end);
      }
    }
    blockingWriteAndFlush(contents: Uint8Array): void {
      this.write(contents);
      this.flush();
    }
    flush(): void {}
    /** The invocation ends: a partial line goes too. (Private: not an import the guard wraps, so it runs whatever the guest's state.) */
    #end(): void {
      this.pending += this.decoder.decode();
      if (this.pending) env.output(this.stream, this.pending);
      this.pending = '';
    }
    static {
      endStream = (stream) => stream.#end();
    }
    blockingFlush(): void {
      this.flush();
    }
    subscribe(): Pollable {
      return new Pollable();
    }
    writeZeroes(len: bigint): void {
      this.write(new Uint8Array(Number(len > WRITE_PERMIT ? WRITE_PERMIT + 1n : len)));
    }
    blockingWriteZeroesAndFlush(len: bigint): void {
      this.writeZeroes(len);
      this.flush();
    }
    splice(): never {
      return closed(); // the only input stream is stdin, which is closed
    }
    blockingSplice(): never {
      return closed();
    }
  }
  const stdin = new InputStream();
  const stdout = new OutputStream('stdout');
  const stderr = new OutputStream('stderr');
  env.atEnd(() => (endStream(stdout), endStream(stderr)));

  class TerminalInput {}
  class TerminalOutput {}
  /** No preopened folders: no descriptor or directory stream is ever made. */
  class Descriptor {}
  class DirectoryEntryStream {}

  const exit = (status: { tag: 'ok' | 'err' }): never => {
    throw new GuestExit(status.tag === 'ok' ? 0 : 1);
  };

  return {
    'wasi:clocks/monotonic-clock': {
      now: () => process.hrtime.bigint(),
      resolution: () => 1000n,
      subscribeInstant: (when: bigint) => afterNs(when - process.hrtime.bigint()),
      subscribeDuration: (ns: bigint) => afterNs(ns),
    },
    'wasi:clocks/wall-clock': {
      now: () => {
        const ms = Date.now();
        return { seconds: BigInt(Math.floor(ms / 1000)), nanoseconds: (ms % 1000) * 1e6 };
      },
      resolution: () => ({ seconds: 0n, nanoseconds: 1e6 }),
    },
    'wasi:random/random': { getRandomBytes: bytes, getRandomU64: u64 },
    'wasi:random/insecure': { getInsecureRandomBytes: bytes, getInsecureRandomU64: u64 },
    'wasi:random/insecure-seed': { insecureSeed: () => [u64(), u64()] },
    'wasi:cli/environment': { getEnvironment: () => [], getArguments: () => [], initialCwd: () => undefined },
    'wasi:cli/exit': {
      exit,
      exitWithCode: (code: number): never => {
        throw new GuestExit(code);
      },
    },
    'wasi:cli/stdin': { getStdin: () => stdin },
    'wasi:cli/stdout': { getStdout: () => stdout },
    'wasi:cli/stderr': { getStderr: () => stderr },
    'wasi:cli/terminal-input': { TerminalInput },
    'wasi:cli/terminal-output': { TerminalOutput },
    'wasi:cli/terminal-stdin': { getTerminalStdin: () => undefined },
    'wasi:cli/terminal-stdout': { getTerminalStdout: () => undefined },
    'wasi:cli/terminal-stderr': { getTerminalStderr: () => undefined },
    'wasi:io/error': { Error: IoError },
    'wasi:io/poll': {
      Pollable,
      /** The indices of the ready ones, waiting for the first to be ready. */
      poll: (list: Pollable[]): Uint32Array | Promise<Uint32Array> => {
        if (list.length === 0) throw new RangeError('poll needs at least one pollable');
        const ready = () => Uint32Array.from(list.flatMap((p, i) => (p.ready() ? [i] : [])));
        const now = ready();
        if (now.length > 0) return now;
        // Never an empty answer: until one is ready (a timer may fire a little early).
        return (async () => {
          for (let r = ready(); ; r = ready()) {
            if (r.length > 0) return r;
            await env.sleep(Math.min(...list.map((p) => p.deadline)) - performance.now());
          }
        })();
      },
    },
    'wasi:io/streams': { InputStream, OutputStream },
    'wasi:filesystem/types': { Descriptor, DirectoryEntryStream, filesystemErrorCode: () => undefined },
    'wasi:filesystem/preopens': { getDirectories: () => [] },
  };
}
