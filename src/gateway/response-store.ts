/**
 * Stored Responses (OpenAI Responses API, `store: true`) in one SQLite file.
 *
 * responses   one row per (tenant, id); an integer key `pk` joins the items
 * items       (response_pk, kind input|output, position) → item JSON, so
 *             input_items pages with a query instead of loading everything;
 *             indexed by item id too, for `item_reference` inputs
 *
 * `previous_response_id` is deliberately not a foreign key: deleting a
 * response must not delete or break its continuations, chain() just stops
 * at the missing link. Items do cascade with their response.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type SQLOutputValue, type StatementSync } from 'node:sqlite';

export type ResponseStatus = 'queued' | 'in_progress' | 'completed' | 'failed' | 'cancelled' | 'incomplete';

export interface StoredResponse {
  /** "resp_..." */
  id: string;
  /** Responses are visible only to their tenant. */
  tenant: string;
  model: string;
  /** Unix seconds. */
  createdAt: number;
  status: ResponseStatus;
  previousResponseId: string | null;
  /** The full Response object as JSON-serialisable data (what GET /v1/responses/{id} returns). */
  response: Record<string, unknown>;
  /** The input items of this request (each with an "id"), in order. */
  inputItems: Array<Record<string, unknown>>;
  /** Output items (the assistant's message etc.), in order. */
  outputItems: Array<Record<string, unknown>>;
  /** Token ids of the whole conversation context after this response (to rebuild KV state exactly), or null. */
  contextTokens: number[] | null;
}

export type ResponsePatch = Partial<Pick<StoredResponse, 'status' | 'response' | 'outputItems' | 'contextTokens'>>;

export interface ItemList {
  object: 'list';
  data: Array<Record<string, unknown>>;
  first_id: string | null;
  last_id: string | null;
  has_more: boolean;
}

export interface ItemListOptions {
  /** An item id: the page starts after it (in the chosen order). */
  after?: string;
  /** 1..100, default 20. */
  limit?: number;
  /** Default 'desc' (newest first), as OpenAI. */
  order?: 'asc' | 'desc';
}

const MAX_CHAIN = 10_000;

const SCHEMA_V1 = `
CREATE TABLE responses (
  pk INTEGER PRIMARY KEY,
  tenant TEXT NOT NULL,
  id TEXT NOT NULL,
  model TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  status TEXT NOT NULL,
  previous_response_id TEXT,
  response TEXT NOT NULL,
  context_tokens BLOB,
  UNIQUE (tenant, id)
);
CREATE TABLE items (
  response_pk INTEGER NOT NULL REFERENCES responses(pk) ON DELETE CASCADE,
  kind TEXT NOT NULL CHECK (kind IN ('input', 'output')),
  position INTEGER NOT NULL,
  item_id TEXT,
  json TEXT NOT NULL,
  PRIMARY KEY (response_pk, kind, position)
) WITHOUT ROWID;
CREATE INDEX items_by_id ON items (response_pk, kind, item_id);
`;

/** What each schema version adds to the one before it: MIGRATIONS[v] takes a file from version v to v + 1. */
const MIGRATIONS = [
  SCHEMA_V1,
  'CREATE INDEX items_by_item_id ON items (item_id);',
  // What each response takes on disk (its JSON, items and tokens), for the per-tenant quota; the oldest go first.
  `ALTER TABLE responses ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0; CREATE INDEX responses_by_tenant ON responses (tenant, pk);
   UPDATE responses SET bytes = length(CAST(response AS BLOB)) + COALESCE(length(context_tokens), 0)
     + (SELECT COALESCE(SUM(length(CAST(json AS BLOB))), 0) FROM items WHERE response_pk = responses.pk);`,
];
const SCHEMA_VERSION = MIGRATIONS.length;

// Little-endian whatever the host, so a file moves between machines intact.
function encodeTokens(tokens: number[] | null): Uint8Array | null {
  if (!tokens) return null;
  const bytes = new Uint8Array(tokens.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < tokens.length; i++) view.setUint32(i * 4, tokens[i], true);
  return bytes;
}

function decodeTokens(blob: SQLOutputValue): number[] | null {
  if (!(blob instanceof Uint8Array)) return null;
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const out = new Array<number>(blob.byteLength >>> 2);
  for (let i = 0; i < out.length; i++) out[i] = view.getUint32(i * 4, true);
  return out;
}

type Row = Record<string, SQLOutputValue>;

/** Bounds on what the store keeps. */
export interface StoreLimits {
  /** Bytes of stored responses per tenant; storing past it deletes the tenant's oldest responses first. */
  maxBytesPerTenant: number;
  /** Responses older than this (seconds) are deleted. */
  ttlSeconds: number;
}

export const DEFAULT_STORE_LIMITS: StoreLimits = { maxBytesPerTenant: 1 << 30, ttlSeconds: 30 * 24 * 3600 };

export class ResponseStore {
  private readonly db: DatabaseSync;
  readonly limits: StoreLimits;
  private lastExpiry = 0;
  private readonly q: Record<
    'upsert' | 'update' | 'row' | 'items' | 'insertItem' | 'deleteItems' | 'delete' | 'itemPosition' | 'pageAsc' | 'pageDesc' | 'item' | 'setBytes' | 'tenantBytes' | 'oldest' | 'expire',
    StatementSync
  >;

  /** Opens (creating if needed) a store at a file path, parent directories included, or ':memory:'. */
  static open(pathOrMemory: string, limits: Partial<StoreLimits> = {}): ResponseStore {
    if (pathOrMemory !== ':memory:') mkdirSync(dirname(pathOrMemory), { recursive: true });
    return new ResponseStore(new DatabaseSync(pathOrMemory), { ...DEFAULT_STORE_LIMITS, ...limits });
  }

  private constructor(db: DatabaseSync, limits: StoreLimits) {
    this.db = db;
    this.limits = limits;
    db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;');
    const version = Number((db.prepare('PRAGMA user_version').get() as Row).user_version);
    if (version > SCHEMA_VERSION) throw new Error(`response store schema version ${version} is newer than this server understands (${SCHEMA_VERSION})`);
    if (version < SCHEMA_VERSION) this.transaction(() => db.exec(`${MIGRATIONS.slice(version).join('\n')} PRAGMA user_version = ${SCHEMA_VERSION};`));
    // No run survives a restart: what was in progress when the server stopped has failed.
    db.exec(`UPDATE responses SET status = 'failed',
      response = json_set(response, '$.status', 'failed', '$.error', json('{"code":"server_error","message":"the server stopped while the response was in progress"}'))
      WHERE status IN ('in_progress', 'queued')`);
    this.q = {
      upsert: db.prepare(`INSERT INTO responses (tenant, id, model, created_at, status, previous_response_id, response, context_tokens)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (tenant, id) DO UPDATE SET model = excluded.model, created_at = excluded.created_at, status = excluded.status,
          previous_response_id = excluded.previous_response_id, response = excluded.response, context_tokens = excluded.context_tokens
        RETURNING pk`),
      // NULL leaves a field as it is; contextTokens may be set to NULL on purpose, hence its flag.
      update: db.prepare(`UPDATE responses SET status = COALESCE(?, status), response = COALESCE(?, response),
        context_tokens = CASE WHEN ? THEN ? ELSE context_tokens END WHERE pk = ?`),
      row: db.prepare('SELECT * FROM responses WHERE tenant = ? AND id = ?'),
      items: db.prepare('SELECT kind, json FROM items WHERE response_pk = ? ORDER BY kind, position'),
      insertItem: db.prepare('INSERT INTO items (response_pk, kind, position, item_id, json) VALUES (?, ?, ?, ?, ?)'),
      deleteItems: db.prepare('DELETE FROM items WHERE response_pk = ? AND kind = ?'),
      delete: db.prepare('DELETE FROM responses WHERE tenant = ? AND id = ?'),
      itemPosition: db.prepare("SELECT position FROM items WHERE response_pk = ? AND kind = 'input' AND item_id = ?"),
      pageAsc: db.prepare("SELECT item_id, json FROM items WHERE response_pk = ? AND kind = 'input' AND position > ? ORDER BY position ASC LIMIT ?"),
      pageDesc: db.prepare("SELECT item_id, json FROM items WHERE response_pk = ? AND kind = 'input' AND position < ? ORDER BY position DESC LIMIT ?"),
      // An item passed back as input is stored again under its id: the response that made it comes first.
      item: db.prepare(`SELECT items.json FROM items JOIN responses ON responses.pk = items.response_pk
        WHERE items.item_id = ? AND responses.tenant = ? ORDER BY items.kind = 'output' DESC, responses.pk LIMIT 1`),
      // Bytes, not characters: length() of a BLOB.
      setBytes: db.prepare(`UPDATE responses SET bytes = length(CAST(response AS BLOB)) + COALESCE(length(context_tokens), 0)
        + (SELECT COALESCE(SUM(length(CAST(json AS BLOB))), 0) FROM items WHERE response_pk = responses.pk) WHERE pk = ?`),
      tenantBytes: db.prepare('SELECT COALESCE(SUM(bytes), 0) AS total FROM responses WHERE tenant = ?'),
      // A response still running is never evicted (its run is about to store it again).
      oldest: db.prepare("SELECT pk, bytes FROM responses WHERE tenant = ? AND pk <> ? AND status NOT IN ('in_progress', 'queued') ORDER BY pk LIMIT 64"),
      expire: db.prepare('DELETE FROM responses WHERE created_at < ?'),
    };
  }

  /**
   * Inserts, or replaces the response with this id for this tenant (its items
   * too). Past the tenant's quota, its oldest other responses are deleted
   * first; responses past their time to live go (checked at most once a
   * minute). Returns the ids deleted to make room (their KV snapshots can go).
   */
  put(r: StoredResponse): string[] {
    this.expire();
    let evicted: string[] = [];
    this.transaction(() => {
      const { pk } = this.q.upsert.get(r.tenant, r.id, r.model, r.createdAt, r.status, r.previousResponseId, JSON.stringify(r.response), encodeTokens(r.contextTokens)) as Row;
      this.writeItems(pk as number, 'input', r.inputItems);
      this.writeItems(pk as number, 'output', r.outputItems);
      this.q.setBytes.run(pk);
      evicted = this.makeRoom(r.tenant, pk as number);
    });
    return evicted;
  }

  /** Bytes the tenant's stored responses take. */
  tenantBytes(tenant: string): number {
    return Number((this.q.tenantBytes.get(tenant) as Row).total);
  }

  /** Deletes the tenant's oldest responses (never `keep`) until it is within its quota; their ids. */
  private makeRoom(tenant: string, keep: number): string[] {
    const out: string[] = [];
    let total = this.tenantBytes(tenant);
    while (total > this.limits.maxBytesPerTenant) {
      const rows = this.q.oldest.all(tenant, keep) as Row[];
      if (rows.length === 0) break; // the one being stored is over the quota alone: it stays (it was asked for)
      for (const row of rows) {
        if (total <= this.limits.maxBytesPerTenant) break;
        const { id } = this.db.prepare('DELETE FROM responses WHERE pk = ? RETURNING id').get(row.pk) as Row;
        out.push(id as string);
        total -= row.bytes as number;
      }
    }
    return out;
  }

  /** Deletes responses past their time to live; how many. Writes run it at most once a minute. */
  purgeExpired(): number {
    this.lastExpiry = Date.now();
    return Number(this.q.expire.run(Math.floor(this.lastExpiry / 1000) - this.limits.ttlSeconds).changes);
  }

  private expire(): void {
    if (Date.now() - this.lastExpiry >= 60_000) this.purgeExpired();
  }

  get(id: string, tenant: string): StoredResponse | undefined {
    const row = this.q.row.get(tenant, id) as Row | undefined;
    return row && this.toResponse(row);
  }

  /** Changes some fields; false when the response does not exist for the tenant. */
  update(id: string, tenant: string, patch: ResponsePatch): boolean {
    const row = this.q.row.get(tenant, id) as Row | undefined;
    if (!row) return false;
    this.transaction(() => {
      const tokens = patch.contextTokens !== undefined;
      this.q.update.run(patch.status ?? null, patch.response ? JSON.stringify(patch.response) : null, tokens ? 1 : 0, tokens ? encodeTokens(patch.contextTokens ?? null) : null, row.pk);
      if (patch.outputItems !== undefined) this.writeItems(row.pk as number, 'output', patch.outputItems);
      this.q.setBytes.run(row.pk);
      this.makeRoom(row.tenant as string, row.pk as number);
    });
    return true;
  }

  /** Deletes a response and its items; responses continuing from it keep a dangling previousResponseId. */
  delete(id: string, tenant: string): boolean {
    return Number(this.q.delete.run(tenant, id).changes) > 0;
  }

  /** The conversation ending at id: oldest first, following previousResponseId (stops at a missing link or at a cycle; at most 10 000 hops). */
  chain(id: string, tenant: string): StoredResponse[] {
    const out: StoredResponse[] = [];
    const seen = new Set<string>();
    for (let next: string | null = id; next !== null && !seen.has(next) && out.length < MAX_CHAIN; ) {
      seen.add(next);
      const row = this.q.row.get(tenant, next) as Row | undefined;
      if (!row) break;
      out.push(this.toResponse(row));
      next = row.previous_response_id as string | null;
    }
    return out.reverse();
  }

  /** The item with this id among the tenant's stored responses (their output items, then their input items), or undefined. */
  item(id: string, tenant: string): Record<string, unknown> | undefined {
    const row = this.q.item.get(id, tenant) as Row | undefined;
    return row && JSON.parse(row.json as string);
  }

  /** OpenAI's list shape for GET /v1/responses/{id}/input_items; undefined when the response does not exist for the tenant. An unknown `after` gives an empty page. */
  inputItems(id: string, tenant: string, options: ItemListOptions = {}): ItemList | undefined {
    const row = this.q.row.get(tenant, id) as Row | undefined;
    if (!row) return undefined;
    const order = options.order ?? 'desc';
    const limit = Math.min(100, Math.max(1, Math.floor(options.limit ?? 20)));
    let from = order === 'asc' ? -1 : Number.MAX_SAFE_INTEGER;
    if (options.after !== undefined) {
      const at = this.q.itemPosition.get(row.pk, options.after) as Row | undefined;
      if (!at) return { object: 'list', data: [], first_id: null, last_id: null, has_more: false };
      from = at.position as number;
    }
    // One extra row tells whether another page follows.
    const rows = (order === 'asc' ? this.q.pageAsc : this.q.pageDesc).all(row.pk, from, limit + 1);
    const page = rows.slice(0, limit);
    return {
      object: 'list',
      data: page.map((r) => JSON.parse(r.json as string)),
      first_id: (page[0]?.item_id as string | undefined) ?? null,
      last_id: (page.at(-1)?.item_id as string | undefined) ?? null,
      has_more: rows.length > limit,
    };
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }

  private toResponse(row: Row): StoredResponse {
    const inputItems: Array<Record<string, unknown>> = [];
    const outputItems: Array<Record<string, unknown>> = [];
    for (const item of this.q.items.all(row.pk)) (item.kind === 'input' ? inputItems : outputItems).push(JSON.parse(item.json as string));
    return {
      id: row.id as string,
      tenant: row.tenant as string,
      model: row.model as string,
      createdAt: row.created_at as number,
      status: row.status as ResponseStatus,
      previousResponseId: row.previous_response_id as string | null,
      response: JSON.parse(row.response as string),
      inputItems,
      outputItems,
      contextTokens: decodeTokens(row.context_tokens),
    };
  }

  private writeItems(pk: number, kind: 'input' | 'output', items: Array<Record<string, unknown>>): void {
    this.q.deleteItems.run(pk, kind);
    items.forEach((item, i) => this.q.insertItem.run(pk, kind, i, typeof item.id === 'string' ? item.id : null, JSON.stringify(item)));
  }

  private transaction(fn: () => void): void {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      fn();
      this.db.exec('COMMIT');
    } catch (err) {
      this.db.exec('ROLLBACK');
      throw err;
    }
  }
}
