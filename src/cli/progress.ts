/**
 * Progress of long work in bytes (downloads): on a terminal, a bar per item
 * and one in total with bytes, speed and time left (cli-progress); elsewhere
 * (a log, a pipe) a plain line every few seconds and one at the end.
 */
import cliProgress from 'cli-progress';

export interface Progress {
  /** What will be done: each item's size, and whether it is done already. */
  plan(items: Array<{ name: string; size: number; done: boolean }>): void;
  /** An item's bytes so far. */
  update(name: string, done: number): void;
  stop(): void;
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
const eta = (s: number) => (!Number.isFinite(s) ? '?' : s < 90 ? `${Math.round(s)} s` : `${Math.round(s / 60)} min`);

export function byteProgress(label: string, options: { tty?: boolean; write?: (line: string) => void; everyMs?: number } = {}): Progress {
  const tty = options.tty ?? process.stderr.isTTY === true;
  const write = options.write ?? ((line: string) => void process.stderr.write(line + '\n'));
  const sizes = new Map<string, number>();
  const doneBy = new Map<string, number>();
  let total = 0;
  let startDone = 0;
  const t0 = performance.now();
  const sum = () => [...doneBy.values()].reduce((a, b) => a + b, 0);
  const rate = () => (sum() - startDone) / Math.max(0.001, (performance.now() - t0) / 1000);
  /** Takes in the plan: each item's size and what is done already. */
  const take = (items: Array<{ name: string; size: number; done: boolean }>) => {
    for (const i of items) {
      sizes.set(i.name, i.size);
      doneBy.set(i.name, i.done ? i.size : 0);
      total += i.size;
    }
    startDone = sum();
  };

  if (tty) {
    const bars = new cliProgress.MultiBar(
      { format: '{name} |{bar}| {percentage}% {doneMb}/{sizeMb} {speed} ETA {eta_formatted}', hideCursor: true, clearOnComplete: false, stopOnComplete: false, etaBuffer: 50, stream: process.stderr },
      cliProgress.Presets.shades_classic,
    );
    const byName = new Map<string, cliProgress.SingleBar>();
    let all: cliProgress.SingleBar | null = null;
    const payload = (done: number, size: number) => ({ doneMb: mb(done), sizeMb: mb(size), speed: `${mb(rate())}/s` });
    return {
      plan(items) {
        take(items);
        all = bars.create(total, startDone, { name: label.padEnd(24).slice(0, 24), ...payload(startDone, total) });
      },
      update(name, done) {
        doneBy.set(name, done);
        const size = sizes.get(name) ?? done;
        // A bar for each item under way only (a model of many shards would not fit the terminal): made at its first bytes, gone at its end.
        let bar = byName.get(name);
        if (!bar && done < size) byName.set(name, (bar = bars.create(size, 0, { name: name.padEnd(24).slice(0, 24), ...payload(0, size) })));
        bar?.update(done, payload(done, size));
        if (bar && done >= size) {
          bars.remove(bar);
          byName.delete(name);
        }
        all?.update(sum(), payload(sum(), total));
      },
      stop() {
        bars.stop();
      },
    };
  }

  let last = performance.now(); // no line before the plan's
  const everyMs = options.everyMs ?? 5000;
  const line = () => {
    const d = sum();
    const r = rate();
    return `${label}: ${total ? Math.floor((100 * d) / total) : 100}% (${mb(d)} of ${mb(total)}, ${mb(r)}/s, ETA ${eta((total - d) / r)})`;
  };
  return {
    plan(items) {
      take(items);
      const left = items.filter((i) => !i.done);
      write(`${label}: ${items.length} files, ${mb(total)}; ${left.length} to fetch (${mb(total - startDone)})`);
      last = performance.now();
    },
    update(name, done) {
      doneBy.set(name, done);
      if (performance.now() - last >= everyMs) {
        last = performance.now();
        write(line());
      }
    },
    stop() {
      write(line());
    },
  };
}

/**
 * Progress of work in steps (a conversion's layers): a bar on a terminal
 * (redrawn from the updates themselves, so a synchronous loop shows it too),
 * a line every few seconds elsewhere. `update(done, total)`; `stop()` ends it.
 */
export function stepProgress(label: string, options: { tty?: boolean; write?: (line: string) => void; everyMs?: number } = {}): { update(done: number, total: number): void; stop(): void } {
  const tty = options.tty ?? process.stderr.isTTY === true;
  const write = options.write ?? ((line: string) => void process.stderr.write(line + '\n'));
  const t0 = performance.now();
  if (tty) {
    const bar = new cliProgress.SingleBar({ format: `${label} |{bar}| {percentage}% {value}/{total} ETA {eta_formatted}`, hideCursor: true, stream: process.stderr, synchronousUpdate: true }, cliProgress.Presets.shades_classic);
    let started = false;
    return {
      update(done, total) {
        if (!started) bar.start(total, 0);
        started = true;
        bar.setTotal(total);
        bar.update(done);
      },
      stop: () => bar.stop(),
    };
  }
  let last = performance.now();
  let state = { done: 0, total: 0 };
  const line = () => `${label}: ${state.done}/${state.total} (${((performance.now() - t0) / 1000).toFixed(1)} s)`;
  return {
    update(done, total) {
      state = { done, total };
      if (performance.now() - last >= (options.everyMs ?? 5000)) {
        last = performance.now();
        write(line());
      }
    },
    stop: () => write(line()),
  };
}
