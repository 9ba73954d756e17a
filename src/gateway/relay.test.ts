import { describe, expect, it } from 'vitest';
import { InvocationError } from '../runtime/host/invocation.ts';
import { sseEvent, toApiError } from './relay.ts';

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
});
