/**
 * Components uploaded over HTTP (POST /v1/inferlets): their bytes in
 * `DIR/blobs/<sha256>.wasm`, shared by every upload of the same bytes, and a
 * row each in `DIR/inferlets.sqlite`, so they survive a restart. A row
 * belongs to one tenant: the same bytes uploaded by two tenants are two
 * rows over one blob. The blob goes with its last row.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';

export interface UploadedInferlet {
  /** "inf_..." */
  id: string;
  tenant: string;
  name: string | null;
  version: string | null;
  /** sha256 of its bytes (hex). */
  sha256: string;
  bytes: number;
  /** The interfaces it imports, with versions. */
  imports: string[];
  /** Unix seconds. */
  createdAt: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS inferlets (
  id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  name TEXT,
  version TEXT,
  sha256 TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  imports TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  UNIQUE (tenant, sha256)
);
CREATE INDEX IF NOT EXISTS inferlets_by_name ON inferlets (tenant, name, created_at);
`;

type Row = Record<string, string | number | null>;

function fromRow(r: Row): UploadedInferlet {
  return {
    id: r.id as string,
    tenant: r.tenant as string,
    name: r.name as string | null,
    version: r.version as string | null,
    sha256: r.sha256 as string,
    bytes: r.bytes as number,
    imports: JSON.parse(r.imports as string) as string[],
    createdAt: r.created_at as number,
  };
}

export class InferletRegistry {
  private readonly db: DatabaseSync;
  private readonly blobs: string;
  /** Uploads read by id (this process is the folder's one writer). */
  private readonly byIdCache = new Map<string, UploadedInferlet>();
  private readonly q: Record<'insert' | 'byId' | 'byHash' | 'byName' | 'list' | 'listAll' | 'count' | 'delete' | 'hashUsers', StatementSync>;

  private constructor(dir: string) {
    mkdirSync(dir, { recursive: true });
    this.blobs = join(dir, 'blobs');
    mkdirSync(this.blobs, { recursive: true });
    this.db = new DatabaseSync(join(dir, 'inferlets.sqlite'));
    this.db.exec('PRAGMA journal_mode = WAL');
    this.db.exec(SCHEMA);
    this.q = {
      insert: this.db.prepare('INSERT INTO inferlets (id, tenant, name, version, sha256, bytes, imports, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      byId: this.db.prepare('SELECT * FROM inferlets WHERE id = ?'),
      byHash: this.db.prepare('SELECT * FROM inferlets WHERE tenant = ? AND sha256 = ?'),
      byName: this.db.prepare('SELECT * FROM inferlets WHERE tenant = ? AND name = ? AND (? IS NULL OR version = ?) ORDER BY created_at DESC, rowid DESC LIMIT 1'),
      list: this.db.prepare('SELECT * FROM inferlets WHERE tenant = ? ORDER BY created_at, rowid'),
      listAll: this.db.prepare('SELECT * FROM inferlets ORDER BY created_at, rowid'),
      count: this.db.prepare('SELECT COUNT(*) AS n FROM inferlets WHERE tenant = ?'),
      delete: this.db.prepare('DELETE FROM inferlets WHERE id = ?'),
      hashUsers: this.db.prepare('SELECT COUNT(*) AS n FROM inferlets WHERE sha256 = ?'),
    };
  }

  /** Opens (creating) the registry in `dir`. */
  static open(dir: string): InferletRegistry {
    return new InferletRegistry(dir);
  }

  close(): void {
    this.db.close();
  }

  /** The tenant's upload of these bytes, if it has one. */
  byHash(tenant: string, sha256: string): UploadedInferlet | null {
    const r = this.q.byHash.get(tenant, sha256) as Row | undefined;
    return r ? fromRow(r) : null;
  }

  /** By id; kept in memory once read (a run's launch looks it up: ~0.15 ms from SQLite), until deleted. */
  get(id: string): UploadedInferlet | null {
    const known = this.byIdCache.get(id);
    if (known) return known;
    const r = this.q.byId.get(id) as Row | undefined;
    if (!r) return null;
    const e = fromRow(r);
    this.byIdCache.set(id, e);
    return e;
  }

  /** The tenant's newest upload named `name` (of `version`, when given). */
  byName(tenant: string, name: string, version: string | null = null): UploadedInferlet | null {
    const r = this.q.byName.get(tenant, name, version, version) as Row | undefined;
    return r ? fromRow(r) : null;
  }

  /** A tenant's uploads, oldest first; every tenant's with null. */
  list(tenant: string | null): UploadedInferlet[] {
    return ((tenant === null ? this.q.listAll.all() : this.q.list.all(tenant)) as Row[]).map(fromRow);
  }

  count(tenant: string): number {
    return Number((this.q.count.get(tenant) as { n: number }).n);
  }

  /** Records an upload, writing its blob first (atomically) unless one with its hash is there. */
  add(entry: UploadedInferlet, wasm: Uint8Array): void {
    const path = this.blobPath(entry.sha256);
    if (!existsSync(path)) {
      const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
      writeFileSync(tmp, wasm);
      renameSync(tmp, path);
    }
    this.q.insert.run(entry.id, entry.tenant, entry.name, entry.version, entry.sha256, entry.bytes, JSON.stringify(entry.imports), entry.createdAt);
  }

  /** The component's bytes. */
  bytes(entry: UploadedInferlet): Uint8Array {
    return readFileSync(this.blobPath(entry.sha256));
  }

  /** Deletes an upload; its blob goes when no upload of any tenant uses it (then true). */
  delete(entry: UploadedInferlet): boolean {
    this.q.delete.run(entry.id);
    this.byIdCache.delete(entry.id);
    if (Number((this.q.hashUsers.get(entry.sha256) as { n: number }).n) > 0) return false;
    rmSync(this.blobPath(entry.sha256), { force: true });
    return true;
  }

  private blobPath(sha256: string): string {
    return join(this.blobs, `${sha256}.wasm`);
  }
}
