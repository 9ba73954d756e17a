/**
 * A stand-in for the Hugging Face hub on loopback, for the download tests:
 * the revision API (`/api/models/ORG/NAME/revision/REV?blobs=true`) and
 * `resolve/COMMIT/PATH`, which redirects LFS files (weights) to a CDN path as
 * the hub does and serves small files itself, with etags and HTTP Range.
 * Repositories are folders of files. Switches make it fail the ways the real
 * one does: a gated repository, a connection cut mid-file, a corrupted byte.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import express from 'express';

export interface FakeRepo {
  /** The folder whose files the repository holds. */
  dir: string;
  /** Its commit (40 hex digits). */
  commit: string;
  /** A token it wants (gated). */
  gatedFor?: string;
}

export interface FakeHub {
  url: string;
  repos: Map<string, FakeRepo>;
  /** Each request: method, path and its Range header. */
  requests: Array<{ path: string; range: string | null; auth: string | null }>;
  /** Files whose next download is cut after this many bytes. */
  cut: Map<string, number>;
  /** Files whose next download has one byte flipped. */
  corrupt: Set<string>;
  /** Files whose downloads answer this status (and headers) instead. */
  fail: Map<string, { status: number; headers: Record<string, string> }>;
  close(): Promise<void>;
}

const isLfs = (path: string) => path.endsWith('.safetensors');

function files(dir: string, prefix = ''): string[] {
  return readdirSync(dir).flatMap((name) => (statSync(join(dir, name)).isDirectory() ? files(join(dir, name), `${prefix}${name}/`) : [`${prefix}${name}`]));
}

/** A file's etag as the hub gives it: the sha256 of an LFS file, the git blob id of another. */
export function etagOf(bytes: Buffer, lfs: boolean): string {
  if (lfs) return createHash('sha256').update(bytes).digest('hex');
  return createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

export async function startFakeHub(): Promise<FakeHub> {
  const app = express();
  const hub = { repos: new Map<string, FakeRepo>(), requests: [], cut: new Map<string, number>(), corrupt: new Set<string>(), fail: new Map() } as unknown as FakeHub;
  app.use((req, _res, next) => {
    hub.requests.push({ path: req.path, range: req.get('range') ?? null, auth: req.get('authorization') ?? null });
    next();
  });
  /** The repository asked for; with `files`, a gated one wants its token (the hub lists a gated repository's files to anyone, and guards the files). */
  const repoOf = (req: express.Request, res: express.Response, files = false): FakeRepo | null => {
    const name = `${req.params.org}/${req.params.name}`;
    const repo = hub.repos.get(name);
    if (!repo) {
      res.status(401).set('x-error-code', 'RepoNotFound').json({ error: 'Repository not found' });
      return null;
    }
    if (files && repo.gatedFor && req.get('authorization') !== `Bearer ${repo.gatedFor}`) {
      res.status(401).set('x-error-code', 'GatedRepo').json({ error: `Access to model ${name} is restricted. You must have access to it and be authenticated to access it.` });
      return null;
    }
    return repo;
  };

  app.get('/api/models/:org/:name/revision/:rev', (req, res) => {
    const repo = repoOf(req, res);
    if (!repo) return;
    if (req.params.rev !== 'main' && req.params.rev !== repo.commit) return void res.status(404).set('x-error-code', 'RevisionNotFound').json({ error: 'Invalid rev id' });
    const siblings = files(repo.dir).map((path) => {
      const bytes = readFileSync(join(repo.dir, path));
      const lfs = isLfs(path);
      return { rfilename: path, size: bytes.length, blobId: etagOf(bytes, false), ...(lfs ? { lfs: { sha256: etagOf(bytes, true), size: bytes.length, pointerSize: 134 } } : {}) };
    });
    res.json({ id: `${req.params.org}/${req.params.name}`, sha: repo.commit, siblings, gated: repo.gatedFor ? 'auto' : false, private: false });
  });

  /** Sends a file's bytes, from a Range if asked, cut or corrupted if a switch says so. */
  const send = (req: express.Request, res: express.Response, path: string, bytes: Buffer, etag: string) => {
    let start = 0;
    const range = /^bytes=(\d+)-$/.exec(req.get('range') ?? '');
    if (range) start = Number(range[1]);
    let body = bytes.subarray(start);
    if (hub.corrupt.delete(path)) {
      body = Buffer.from(body);
      body[Math.floor(body.length / 2)]! ^= 0xff;
    }
    res.status(range ? 206 : 200).set({ etag: `"${etag}"`, 'content-length': String(body.length), 'accept-ranges': 'bytes', ...(range ? { 'content-range': `bytes ${start}-${bytes.length - 1}/${bytes.length}` } : {}) });
    const cutAt = hub.cut.get(path);
    if (cutAt !== undefined) {
      hub.cut.delete(path);
      res.write(body.subarray(0, cutAt), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.end(body);
  };

  app.get('/:org/:name/resolve/:commit/*path', (req, res) => {
    const repo = repoOf(req, res, true);
    if (!repo) return;
    const path = ([] as string[]).concat(req.params.path as unknown as string[]).join('/');
    const failure = hub.fail.get(path);
    if (failure) return void res.status(failure.status).set(failure.headers).end();
    const file = join(repo.dir, path);
    let bytes: Buffer;
    try {
      bytes = readFileSync(file);
    } catch {
      return void res.status(404).set('x-error-code', 'EntryNotFound').end();
    }
    res.set('x-repo-commit', repo.commit);
    if (isLfs(path)) {
      // Weights go through the CDN, as the hub's LFS files do.
      return void res.redirect(302, `/cdn/${req.params.org}/${req.params.name}/${encodeURIComponent(path)}`);
    }
    send(req, res, path, bytes, etagOf(bytes, false));
  });

  app.get('/cdn/:org/:name/:file', (req, res) => {
    const repo = hub.repos.get(`${req.params.org}/${req.params.name}`)!;
    const path = req.params.file;
    const bytes = readFileSync(join(repo.dir, path));
    send(req, res, path, bytes, etagOf(bytes, true));
  });

  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  hub.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  hub.close = () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve())));
  return hub;
}
