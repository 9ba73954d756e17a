import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { describe, expect, it } from 'vitest';
import { InvocationError, type Invocation, type InvocationResult, type OutputEvent } from '../runtime/host/invocation.ts';
import { relay, sseEvent, toApiError } from './relay.ts';

describe('relay', () => {
  it('frames events as SSE: bare data lines for "message", every kind of line break split so text cannot forge events', () => {
    expect(sseEvent('message', '{"a":1}')).toBe('data: {"a":1}\n\n');
    expect(sseEvent('response.created', '{}')).toBe('event: response.created\ndata: {}\n\n');
    expect(sseEvent('text', 'a\r\nb\rdata: {"forged":true}\nc')).toBe('event: text\ndata: a\ndata: b\ndata: data: {"forged":true}\ndata: c\n\n');
  });

  it('answers a per-request limit with 400 and a cancelled invocation with 503', () => {
    expect(toApiError(new InvocationError('limit', 'too long')).status).toBe(400);
    expect(toApiError(new InvocationError('cancelled', 'shutting down')).status).toBe(503);
    expect(toApiError(new InvocationError('guest', 'boom')).toJSON().error).toMatchObject({ type: 'server_error', message: 'the inferlet failed: boom' });
  });

  it('ends a stream with an error event when the inferlet answers an error status after its stream began', async () => {
    let emit!: (e: OutputEvent) => void;
    let settle!: (r: InvocationResult) => void;
    const result = new Promise<InvocationResult>((r) => (settle = r));
    const inv = { status: 200, headers: {}, onEvent: (f: (e: OutputEvent) => void) => (emit = f), result, cancel: () => {} } as unknown as Invocation;
    let attached!: () => void;
    const relaying = new Promise<void>((r) => (attached = r));
    const app = express();
    app.get('/', (_req, res) => {
      void relay(res, inv);
      attached();
    });
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const response = fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
      await relaying;
      emit({ event: 'message', data: '{"n":1}' }); // the stream begins
      const res = await response;
      // Then the inferlet answers 400 with OpenAI's error JSON: too late for a status, so it ends the stream.
      settle({ status: 400, headers: {}, data: JSON.stringify({ error: { message: 'no room', type: 'invalid_request_error', param: 'prompt', code: 'context_length_exceeded' } }) });
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('data: {"n":1}\n\ndata: {"error":{"message":"no room","type":"invalid_request_error","param":"prompt","code":"context_length_exceeded"}}\n\n');
    } finally {
      server.close();
    }
  });
});
