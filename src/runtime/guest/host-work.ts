/**
 * Host-side work a guest's call runs in its worker (tokenizing, rendering a
 * chat template): the worker marks it, so that the watchdog does not take
 * a long but finite piece of the server's own work for a stuck guest and kill
 * the worker with every invocation on it. The guest worker installs the mark.
 */
let mark: (busy: boolean) => void = () => {};

export function onHostWork(set: (busy: boolean) => void): void {
  mark = set;
}

export function hostWork<T>(fn: () => T): T {
  mark(true);
  try {
    return fn();
  } finally {
    mark(false);
  }
}
