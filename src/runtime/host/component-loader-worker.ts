/** The component loader's thread (component-loader.ts): one ComponentStore over the shared cache folder. */
import { parentPort, workerData } from 'node:worker_threads';
import { ComponentStore } from './component-store.ts';
import type { LoadReply, LoadRequest } from './component-loader.ts';

const store = new ComponentStore((workerData as { cacheDir: string }).cacheDir);
const port = parentPort!;

port.on('message', ({ id, bytes }: LoadRequest) => {
  store.load(bytes).then(
    (component) => port.postMessage({ id, ok: true, component } satisfies LoadReply),
    (err: Error) => port.postMessage({ id, ok: false, name: err.name, message: err.message } satisfies LoadReply),
  );
});
