/** Lines typed on stdin as session messages to a running inferlet (pie submit, attach, run). */
import { createInterface } from 'node:readline';

/**
 * Sends each line typed on stdin to a run as a message, in order, until
 * stopped (the run ended). A message the server refuses is reported and the
 * next line goes on.
 */
export function forwardStdin(send: (line: string) => Promise<unknown>): { stop(): void } {
  const lines = createInterface({ input: process.stdin, terminal: false });
  let chain = Promise.resolve();
  lines.on('line', (line) => {
    chain = chain.then(() => send(line).then(() => {}, (err: Error) => void process.stderr.write(`pie: ${err.message}\n`)));
  });
  return {
    stop() {
      lines.close();
      process.stdin.destroy(); // or the open stdin keeps the command from exiting
    },
  };
}

