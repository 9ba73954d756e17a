import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { ResponseStore, type StoredResponse } from './response-store.ts';

const stores: ResponseStore[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function memory(limits: Parameters<typeof ResponseStore.open>[1] = { ttlSeconds: 1e12 }): ResponseStore {
  const s = ResponseStore.open(':memory:', limits);
  stores.push(s);
  return s;
}

function message(id: string, text: string, role = 'user'): Record<string, unknown> {
  return { id, type: 'message', role, content: [{ type: 'input_text', text }] };
}

function response(id: string, overrides: Partial<StoredResponse> = {}): StoredResponse {
  return {
    id,
    tenant: 'acme',
    model: 'tiny',
    createdAt: 1_700_000_000,
    status: 'completed',
    previousResponseId: null,
    response: { id, object: 'response', status: 'completed', output: [] },
    inputItems: [message(`msg_in_${id}`, `hello from ${id}`)],
    outputItems: [message(`msg_out_${id}`, `reply to ${id}`, 'assistant')],
    contextTokens: null,
    ...overrides,
  };
}

describe('ResponseStore', () => {
  it('round-trips a response, its items and its context tokens', () => {
    const store = memory();
    const r = response('resp_1', { contextTokens: [0, 1, 2, 31999, 2 ** 32 - 1] });
    store.put(r);
    expect(store.get('resp_1', 'acme')).toEqual(r);
  });

  it('replaces a response put twice, items included', () => {
    const store = memory();
    store.put(response('resp_1'));
    const again = response('resp_1', { inputItems: [message('a', 'x'), message('b', 'y')], outputItems: [] });
    store.put(again);
    expect(store.get('resp_1', 'acme')).toEqual(again);
  });

  it('hides a response from other tenants', () => {
    const store = memory();
    store.put(response('resp_1'));
    expect(store.get('resp_1', 'other')).toBeUndefined();
    expect(store.update('resp_1', 'other', { status: 'failed' })).toBe(false);
    expect(store.delete('resp_1', 'other')).toBe(false);
    expect(store.inputItems('resp_1', 'other')).toBeUndefined();
    expect(store.chain('resp_1', 'other')).toEqual([]);
    expect(store.get('resp_1', 'acme')?.status).toBe('completed');
  });

  it('lets two tenants use the same id without touching each other', () => {
    const store = memory();
    store.put(response('resp_1'));
    store.put(response('resp_1', { tenant: 'other', model: 'big' }));
    expect(store.get('resp_1', 'acme')?.model).toBe('tiny');
    expect(store.get('resp_1', 'other')?.model).toBe('big');
  });

  it('updates status, response, output items and tokens', () => {
    const store = memory();
    store.put(response('resp_1', { status: 'in_progress', outputItems: [], contextTokens: [5] }));
    expect(store.update('resp_1', 'acme', { status: 'completed' })).toBe(true);
    let got = store.get('resp_1', 'acme')!;
    expect(got.status).toBe('completed');
    expect(got.contextTokens).toEqual([5]);
    expect(store.update('resp_1', 'acme', { response: { id: 'resp_1', done: true }, outputItems: [message('o', 'hi', 'assistant')], contextTokens: [1, 2, 3] })).toBe(true);
    got = store.get('resp_1', 'acme')!;
    expect(got.response).toEqual({ id: 'resp_1', done: true });
    expect(got.outputItems.map((i) => i.id)).toEqual(['o']);
    expect(got.contextTokens).toEqual([1, 2, 3]);
    store.update('resp_1', 'acme', { contextTokens: null });
    expect(store.get('resp_1', 'acme')!.contextTokens).toBeNull();
    expect(store.update('resp_missing', 'acme', { status: 'failed' })).toBe(false);
  });

  it('follows previous_response_id oldest first and stops at a deleted link', () => {
    const store = memory();
    store.put(response('resp_a'));
    store.put(response('resp_b', { previousResponseId: 'resp_a' }));
    store.put(response('resp_c', { previousResponseId: 'resp_b' }));
    expect(store.chain('resp_c', 'acme').map((r) => r.id)).toEqual(['resp_a', 'resp_b', 'resp_c']);
    expect(store.chain('resp_b', 'acme').map((r) => r.id)).toEqual(['resp_a', 'resp_b']);

    expect(store.delete('resp_b', 'acme')).toBe(true);
    expect(store.get('resp_b', 'acme')).toBeUndefined();
    expect(store.chain('resp_c', 'acme').map((r) => r.id)).toEqual(['resp_c']);
    expect(store.get('resp_c', 'acme')?.previousResponseId).toBe('resp_b');
    expect(store.chain('resp_missing', 'acme')).toEqual([]);
  });

  it('stops a chain at a cycle', () => {
    const store = memory();
    store.put(response('resp_a', { previousResponseId: 'resp_b' }));
    store.put(response('resp_b', { previousResponseId: 'resp_a' }));
    expect(store.chain('resp_b', 'acme').map((r) => r.id)).toEqual(['resp_a', 'resp_b']);
  });

  it('pages input items in either order with after, limit and has_more', () => {
    const store = memory();
    const items = Array.from({ length: 5 }, (_, i) => message(`msg_${i}`, `m${i}`));
    store.put(response('resp_1', { inputItems: items }));
    const ids = (l: { data: Array<Record<string, unknown>> } | undefined) => l?.data.map((d) => d.id);

    const all = store.inputItems('resp_1', 'acme')!;
    expect(all).toEqual({ object: 'list', data: [...items].reverse(), first_id: 'msg_4', last_id: 'msg_0', has_more: false });

    const asc = store.inputItems('resp_1', 'acme', { order: 'asc', limit: 2 })!;
    expect(ids(asc)).toEqual(['msg_0', 'msg_1']);
    expect(asc).toMatchObject({ first_id: 'msg_0', last_id: 'msg_1', has_more: true });
    const asc2 = store.inputItems('resp_1', 'acme', { order: 'asc', limit: 2, after: asc.last_id! })!;
    expect(ids(asc2)).toEqual(['msg_2', 'msg_3']);
    expect(asc2.has_more).toBe(true);
    const asc3 = store.inputItems('resp_1', 'acme', { order: 'asc', limit: 2, after: asc2.last_id! })!;
    expect(asc3).toMatchObject({ first_id: 'msg_4', last_id: 'msg_4', has_more: false });

    const desc = store.inputItems('resp_1', 'acme', { limit: 3, after: 'msg_4' })!;
    expect(ids(desc)).toEqual(['msg_3', 'msg_2', 'msg_1']);
    expect(desc.has_more).toBe(true);
    expect(store.inputItems('resp_1', 'acme', { limit: 3, after: 'msg_1' })).toMatchObject({ first_id: 'msg_0', has_more: false });

    expect(ids(store.inputItems('resp_1', 'acme', { limit: 0 }))).toHaveLength(1);
    expect(ids(store.inputItems('resp_1', 'acme', { limit: 1000 }))).toHaveLength(5);
    expect(store.inputItems('resp_1', 'acme', { after: 'msg_nope' })).toEqual({ object: 'list', data: [], first_id: null, last_id: null, has_more: false });
  });

  it('finds a stored item by id for its tenant only: output items first, then input items', () => {
    const store = memory();
    store.put(response('resp_a'));
    // resp_b passed resp_a's answer back as input, under the same id; the original is found.
    store.put(response('resp_b', { inputItems: [{ ...message('msg_out_resp_a', 'changed', 'assistant') }, message('msg_in_b', 'next')] }));
    expect(store.item('msg_out_resp_a', 'acme')).toEqual(message('msg_out_resp_a', 'reply to resp_a', 'assistant'));
    expect(store.item('msg_in_resp_a', 'acme')).toEqual(message('msg_in_resp_a', 'hello from resp_a'));
    expect(store.item('msg_in_b', 'acme')).toEqual(message('msg_in_b', 'next'));
    expect(store.item('msg_out_resp_a', 'other')).toBeUndefined();
    expect(store.item('msg_nope', 'acme')).toBeUndefined();
    store.delete('resp_a', 'acme');
    expect(store.item('msg_out_resp_a', 'acme')).toEqual(message('msg_out_resp_a', 'changed', 'assistant'));
  });

  it('upgrades a file of schema version 1 in place', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pie-store-'));
    dirs.push(dir);
    const path = join(dir, 'r.sqlite');
    const first = ResponseStore.open(path, { ttlSeconds: 1e12 });
    first.put(response('resp_old'));
    first.close();
    const raw = new DatabaseSync(path);
    raw.exec('DROP INDEX items_by_item_id; DROP INDEX responses_by_tenant; ALTER TABLE responses DROP COLUMN bytes; PRAGMA user_version = 1;');
    raw.close();
    const again = ResponseStore.open(path, { ttlSeconds: 1e12 });
    stores.push(again);
    expect(again.item('msg_out_resp_old', 'acme')).toMatchObject({ role: 'assistant' });
    const check = new DatabaseSync(path);
    try {
      expect(check.prepare('PRAGMA user_version').get()?.user_version).toBe(3);
      expect(check.prepare("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'index' AND name = 'items_by_item_id'").get()?.n).toBe(1);
      // The quota counts what was stored before the upgrade too.
      expect(again.tenantBytes('acme')).toBeGreaterThan(100);
    } finally {
      check.close();
    }
  });

  it('gives an empty list for a response without input items', () => {
    const store = memory();
    store.put(response('resp_1', { inputItems: [] }));
    expect(store.inputItems('resp_1', 'acme')).toEqual({ object: 'list', data: [], first_id: null, last_id: null, has_more: false });
  });

  it('marks what was in progress when the server stopped as failed, on reopening', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pie-store-'));
    dirs.push(dir);
    const path = join(dir, 'r.sqlite');
    const first = ResponseStore.open(path, { ttlSeconds: 1e12 });
    first.put(response('resp_running', { status: 'in_progress', response: { id: 'resp_running', object: 'response', status: 'in_progress', output: [] } }));
    first.put(response('resp_done'));
    first.close();
    const again = ResponseStore.open(path, { ttlSeconds: 1e12 });
    stores.push(again);
    const r = again.get('resp_running', 'acme')!;
    expect(r.status).toBe('failed');
    expect(r.response).toMatchObject({ status: 'failed', error: { code: 'server_error' } });
    expect(again.get('resp_done', 'acme')!.status).toBe('completed');
  });

  it('survives closing and reopening its file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pie-response-store-'));
    dirs.push(dir);
    const path = join(dir, 'nested', 'data', 'responses.db');
    const tokens = Array.from({ length: 1000 }, (_, i) => (i * 7919) % 32000);
    const first = ResponseStore.open(path, { ttlSeconds: 1e12 });
    first.put(response('resp_a'));
    first.put(response('resp_b', { previousResponseId: 'resp_a', contextTokens: tokens }));
    first.close();

    const again = ResponseStore.open(path, { ttlSeconds: 1e12 });
    stores.push(again);
    expect(again.get('resp_b', 'acme')?.contextTokens).toEqual(tokens);
    expect(again.chain('resp_b', 'acme').map((r) => r.id)).toEqual(['resp_a', 'resp_b']);
    expect(again.delete('resp_a', 'acme')).toBe(true);
    expect(again.inputItems('resp_a', 'acme')).toBeUndefined();
    again.close();

    // The items of the deleted response went with it (ON DELETE CASCADE); the file is in WAL mode.
    const raw = new DatabaseSync(path);
    try {
      expect(raw.prepare('SELECT COUNT(*) AS n FROM items').get()?.n).toBe(2);
      expect(raw.prepare('PRAGMA journal_mode').get()?.journal_mode).toBe('wal');
      expect(raw.prepare('PRAGMA user_version').get()?.user_version).toBe(3);
    } finally {
      raw.close();
    }
  });

  it("keeps each tenant within its quota, deleting the tenant's oldest responses first and never another tenant's", () => {
    const s = memory({ maxBytesPerTenant: 20_000, ttlSeconds: 1e12 });
    const big = (id: string, tenant = 'acme') => response(id, { tenant, inputItems: [message(`in_${id}`, 'x'.repeat(4000))] });
    s.put(big('other-1', 'other'));
    const evicted: string[] = [];
    for (let i = 0; i < 8; i++) evicted.push(...s.put(big(`r${i}`)));
    expect(s.tenantBytes('acme')).toBeLessThanOrEqual(20_000);
    expect(evicted).toEqual(['r0', 'r1', 'r2', 'r3']);
    expect(s.get('r0', 'acme')).toBeUndefined();
    expect(s.get('r7', 'acme')?.id).toBe('r7');
    expect(s.get('other-1', 'other')?.id).toBe('other-1');
    // One response larger than the whole quota is still stored (it was asked for), alone.
    s.put(big('huge', 'solo'));
    expect(s.put(response('huger', { tenant: 'solo', inputItems: [message('in_huger', 'y'.repeat(30_000))] }))).toEqual(['huge']);
    expect(s.get('huger', 'solo')?.id).toBe('huger');
  });

  it('deletes responses past their time to live: on a write (at most once a minute) or when asked', () => {
    const s = memory({ ttlSeconds: 3600 });
    const now = Math.floor(Date.now() / 1000);
    s.put(response('new', { createdAt: now }));
    s.put(response('old', { createdAt: now - 7200 })); // the first write already ran the expiry this minute
    expect(s.get('old', 'acme')?.id).toBe('old');
    expect(s.purgeExpired()).toBe(1);
    expect(s.get('old', 'acme')).toBeUndefined();
    expect(s.get('new', 'acme')?.id).toBe('new');
    // A store opened on a file with old responses expires them on its first write.
    const dir = mkdtempSync(join(tmpdir(), 'pie-store-ttl-'));
    dirs.push(dir);
    const first = ResponseStore.open(join(dir, 'r.sqlite'), { ttlSeconds: 1e12 });
    first.put(response('old', { createdAt: now - 7200 }));
    first.close();
    const again = ResponseStore.open(join(dir, 'r.sqlite'), { ttlSeconds: 3600 });
    stores.push(again);
    again.put(response('new', { createdAt: now }));
    expect(again.get('old', 'acme')).toBeUndefined();
    expect(again.get('new', 'acme')?.id).toBe('new');
  });
});
