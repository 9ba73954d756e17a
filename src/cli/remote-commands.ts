/**
 * Commands against a running server's uploaded components and runs
 * (src/gateway/inferlet-routes.ts, runs.ts):
 *
 *   pie submit FILE.wasm|FILE.ts [--server URL] [--key KEY] [--name NAME] [-- INPUT_JSON]
 *   pie runs [--server URL] [--key KEY]
 *   pie attach RUN [--server URL] [--key KEY] [--after N]
 *   pie cancel RUN [--server URL] [--key KEY]
 *
 * The server defaults to $PIE_SERVER, else http://127.0.0.1:8080; the key to
 * $PIE_API_KEY. `submit` builds a .ts first, uploads only if the server does
 * not have those bytes, starts a run and streams its events; Ctrl-C stops
 * the command, not the run (attach to it again, or cancel it). For an
 * inferlet that imports the session interface, `submit` and `attach` send
 * each line typed on stdin to the run as a message.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, extname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { buildCached } from '../runtime/host/build.ts';
import { eventPrinter, UsageError, withInput } from './inferlet-commands.ts';
import { forwardStdin } from './stdin-messages.ts';

/** The server answered with an error: its message, printed on one line. */
export class RemoteError extends Error {
  override name = 'RemoteError';
}

interface Remote {
  server: string;
  headers: Record<string, string>;
}

const COMMON = { server: { type: 'string' }, key: { type: 'string' } } as const;

function remote(values: { server?: string | undefined; key?: string | undefined }): Remote {
  const server = (values.server ?? process.env.PIE_SERVER ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
  const key = values.key ?? process.env.PIE_API_KEY;
  return { server, headers: key ? { authorization: `Bearer ${key}` } : {} };
}

async function request(r: Remote, method: string, path: string, init: { body?: Uint8Array | string; headers?: Record<string, string> } = {}): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(r.server + path, { method, headers: { ...r.headers, ...init.headers }, ...(init.body !== undefined ? { body: init.body } : {}) });
  } catch (err) {
    throw new RemoteError(`cannot reach ${r.server}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}`);
  }
  if (res.ok) return res;
  const text = await res.text();
  let message = text;
  try {
    message = (JSON.parse(text) as { error: { message: string } }).error.message;
  } catch {
    // not the error JSON: its text
  }
  throw new RemoteError(`${method} ${path}: ${res.status} ${message}`);
}

const json = async <T>(res: Promise<Response>): Promise<T> => (await (await res).json()) as T;

interface RunObject {
  id: string;
  status: string;
  inferlet_id: string;
  created_at: number;
  tokens: number;
  pages: number;
  events: number;
  result: { status: number; data: string | null } | null;
  error: { kind: string; message: string } | null;
}

/**
 * Prints a run's SSE stream (`run.started`, numbered events, `run.ended`)
 * until it ends; the run, ended, or null when the stream broke off first.
 */
async function follow(res: Response, onStarted: (run: RunObject) => void = () => {}): Promise<RunObject | null> {
  const print = eventPrinter();
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const chunk = await reader.read().catch(() => ({ done: true as const, value: undefined }));
    if (chunk.done) return null;
    buffer += decoder.decode(chunk.value, { stream: true });
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const lines = block.split('\n');
      const event = lines.find((l) => l.startsWith('event: '))?.slice(7) ?? 'message';
      const data = lines
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6))
        .join('\n');
      if (event === 'run.started') onStarted(JSON.parse(data) as RunObject);
      else if (event === 'run.gap') process.stderr.write(`pie: ${(JSON.parse(data) as { missed: number }).missed} events were no longer kept\n`);
      else if (event === 'run.ended') {
        print.end();
        return JSON.parse(data) as RunObject;
      } else print.event({ event, data });
    }
  }
}

/** Whether an inferlet imports the session interface (so lines typed on stdin are worth sending it). */
const usesSession = (imports: string[]) => imports.some((i) => i.startsWith('pie:inferlet/session'));

const messenger = (r: Remote, runId: string) => (line: string) =>
  request(r, 'POST', `/v1/runs/${encodeURIComponent(runId)}/messages`, { body: JSON.stringify({ message: line }), headers: { 'content-type': 'application/json' } });

/** Prints how a run ended; its exit code. */
function ended(run: RunObject): number {
  if (run.status === 'succeeded') {
    if (run.result?.data !== null && run.result?.data !== undefined) process.stdout.write(run.result.data + '\n');
    return 0;
  }
  process.stderr.write(`pie: run ${run.id} ${run.status}${run.error ? `: ${run.error.message}` : ''}\n`);
  return 1;
}

export async function submitCommand(argv: string[]): Promise<number> {
  const { own, input } = withInput(argv);
  const { values, positionals } = parseArgs({ args: own, allowPositionals: true, options: { ...COMMON, name: { type: 'string' } } });
  if (positionals.length !== 1) throw new UsageError('submit takes one FILE.wasm or FILE.ts');
  const file = resolve(positionals[0]!);
  const wasmPath = extname(file) === '.wasm' ? file : await buildCached(file, join(tmpdir(), 'pie-cli-builds'));
  const bytes = readFileSync(wasmPath);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const r = remote(values);
  // Upload only what the server does not have.
  type Listed = { id: string; sha256: string; imports: string[] };
  const have = await json<{ data: Listed[] }>(request(r, 'GET', `/v1/inferlets?sha256=${sha256}`));
  let entry = have.data[0];
  if (!entry) {
    const name = values.name ?? basename(file, extname(file)).replace(/[^A-Za-z0-9._-]/g, '-');
    entry = await json<Listed>(request(r, 'POST', `/v1/inferlets?name=${encodeURIComponent(name)}`, { body: bytes, headers: { 'content-type': 'application/wasm' } }));
    process.stderr.write(`pie: uploaded ${basename(wasmPath)} as ${entry.id}\n`);
  }
  const res = await request(r, 'POST', `/v1/inferlets/${entry.id}/runs`, { body: JSON.stringify({ input }), headers: { 'content-type': 'application/json', accept: 'text/event-stream' } });
  let runId = '';
  let stdin: { stop(): void } | null = null;
  try {
    const run = await follow(res, (started) => {
      runId = started.id;
      process.stderr.write(`pie: run ${runId} started (Ctrl-C leaves it running: pie attach ${runId})\n`);
      if (usesSession(entry.imports)) stdin = forwardStdin(messenger(r, runId));
    });
    if (!run) throw new RemoteError(`the stream of run ${runId} broke off; it may still be running: pie attach ${runId}`);
    return ended(run);
  } finally {
    (stdin as { stop(): void } | null)?.stop();
  }
}

export async function runsCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: COMMON });
  const list = await json<{ data: RunObject[] }>(request(remote(values), 'GET', '/v1/runs'));
  if (list.data.length === 0) process.stdout.write('no runs\n');
  for (const run of list.data) {
    const when = new Date(run.created_at * 1000).toISOString().replace('T', ' ').slice(0, 19);
    process.stdout.write(`${run.id}  ${run.status.padEnd(9)}  ${when}  ${String(run.tokens).padStart(7)} tokens  ${String(run.pages).padStart(5)} pages  ${String(run.events).padStart(6)} events  ${run.inferlet_id}\n`);
  }
  return 0;
}

export async function attachCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { ...COMMON, after: { type: 'string' } } });
  if (positionals.length !== 1) throw new UsageError('attach takes one RUN id');
  const after = values.after ?? '0';
  const r = remote(values);
  const runId = positionals[0]!;
  const res = await request(r, 'GET', `/v1/runs/${encodeURIComponent(runId)}/events?after=${encodeURIComponent(after)}`, { headers: { accept: 'text/event-stream' } });
  const { inferlet_id } = await json<RunObject>(request(r, 'GET', `/v1/runs/${encodeURIComponent(runId)}`));
  const entry = await json<{ imports: string[] }>(request(r, 'GET', `/v1/inferlets/${encodeURIComponent(inferlet_id)}`)).catch(() => ({ imports: [] }));
  const stdin = usesSession(entry.imports) ? forwardStdin(messenger(r, runId)) : null;
  try {
    const run = await follow(res);
    if (!run) throw new RemoteError(`the stream of run ${runId} broke off; it may still be running`);
    return ended(run);
  } finally {
    stdin?.stop();
  }
}

export async function cancelCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: COMMON });
  if (positionals.length !== 1) throw new UsageError('cancel takes one RUN id');
  const run = await json<RunObject>(request(remote(values), 'POST', `/v1/runs/${encodeURIComponent(positionals[0]!)}/cancel`));
  process.stdout.write(`${run.id} ${run.status}\n`);
  return 0;
}
