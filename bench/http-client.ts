/**
 * bench:inferlets' HTTP client on a thread of its own (a client is another
 * process in practice): on each message {url, id} it runs one of the
 * component's runs (POST runs, SSE read to `run.ended`) and answers with the
 * milliseconds it took, measured here.
 */
import { parentPort } from 'node:worker_threads';

parentPort!.on('message', async ({ url, id }: { url: string; id: string }) => {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/inferlets/${id}/runs`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream' }, body: '{}' });
  const text = await res.text();
  if (!text.includes('event: run.ended')) throw new Error(`the run did not end: ${text}`);
  parentPort!.postMessage(performance.now() - t0);
});
