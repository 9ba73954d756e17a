/**
 * Models from the Hugging Face hub, against a fake hub on loopback
 * (fake-hub.ts): downloaded into the hub's cache layout and served from it; a
 * second download fetches nothing; a cut download resumes; a corrupted one is
 * fetched again, never used; a gated repository, and one whose architecture
 * the engine cannot serve, are refused clearly (the latter before any weight
 * is fetched); a cache written in the Python library's layout is read as is.
 */
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cachedSnapshot, listCached, parseRepoRef, repoFolder } from '../src/model/hub/cache.ts';
import { downloadModel, globMatcher, HubError } from '../src/model/hub/download.ts';
import { ModelLoadError } from '../src/model/errors.ts';
import { greedy, randomModelDir, testEngine } from './helpers.ts';
import { startFakeHub, type FakeHub } from './fake-hub.ts';

const COMMIT = 'a'.repeat(39) + '1';
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const freshCache = () => mkdtempSync(join(tmpdir(), 'pie-hub-cache-'));

let hub: FakeHub;
let model: string;
beforeAll(async () => {
  hub = await startFakeHub();
  model = randomModelDir();
  hub.repos.set('test-org/tiny', { dir: model, commit: COMMIT });
  hub.repos.set('test-org/gated', { dir: model, commit: COMMIT, gatedFor: 'hf_secret' });
  const gpt2 = mkdtempSync(join(tmpdir(), 'pie-hub-gpt2-'));
  cpSync(model, gpt2, { recursive: true });
  writeFileSync(join(gpt2, 'config.json'), JSON.stringify({ architectures: ['GPT2LMHeadModel'], model_type: 'gpt2' }));
  hub.repos.set('test-org/gpt2', { dir: gpt2, commit: 'b'.repeat(40) });
});
afterAll(() => hub.close());

const ref = (text: string) => parseRepoRef(text)!;
const resolves = (since: number) => hub.requests.slice(since).filter((r) => r.path.includes('/resolve/') || r.path.startsWith('/cdn/'));

describe('downloading from the hub', () => {
  it('downloads what the engine needs into the cache layout, and the snapshot serves the same text as the original folder', async () => {
    const cacheDir = freshCache();
    const got = await downloadModel(ref('test-org/tiny'), { endpoint: hub.url, cacheDir, token: null });
    const folder = repoFolder(cacheDir, 'test-org/tiny');
    expect(got.dir).toBe(join(folder, 'snapshots', COMMIT));
    expect(got.files.sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    expect(readFileSync(join(folder, 'refs', 'main'), 'utf8')).toBe(COMMIT);
    // Blobs named by etag (sha256 for the LFS weights), reached through relative links.
    const weights = sha256(join(model, 'model.safetensors'));
    expect(readlinkSync(join(got.dir, 'model.safetensors'))).toBe(`../../blobs/${weights}`);
    expect(sha256(join(got.dir, 'model.safetensors'))).toBe(weights);
    expect(existsSync(join(folder, 'blobs', `${weights}.incomplete`))).toBe(false);
    const [a, b] = [await testEngine(got.dir), await testEngine(model)];
    expect((await greedy(a, [1, 2, 3], 12)).tokens).toEqual((await greedy(b, [1, 2, 3], 12)).tokens);
  });

  it('fetches nothing the second time', async () => {
    const cacheDir = freshCache();
    await downloadModel(ref('test-org/tiny'), { endpoint: hub.url, cacheDir, token: null });
    const since = hub.requests.length;
    const again = await downloadModel(ref('test-org/tiny'), { endpoint: hub.url, cacheDir, token: null });
    expect(again.fetchedBytes).toBe(0);
    expect(resolves(since)).toEqual([]);
  });

  it('resumes a download cut mid-file with a Range, and ends with the right sha256', async () => {
    const cacheDir = freshCache();
    hub.cut.set('model.safetensors', 50_000);
    const since = hub.requests.length;
    const got = await downloadModel(ref('test-org/tiny'), { endpoint: hub.url, cacheDir, token: null });
    expect(sha256(join(got.dir, 'model.safetensors'))).toBe(sha256(join(model, 'model.safetensors')));
    // Through the redirect to the CDN: the first request whole, the second from where the first was cut.
    const weights = resolves(since).filter((r) => r.path.startsWith('/cdn/'));
    expect(weights.map((r) => r.range)).toEqual([null, 'bytes=50000-']);
  });

  it('detects a corrupted byte, fetches the file again, and never uses the bad one', async () => {
    const cacheDir = freshCache();
    hub.corrupt.add('model.safetensors');
    hub.corrupt.add('tokenizer.json'); // a small file, checked by its git blob id
    const got = await downloadModel(ref('test-org/tiny'), { endpoint: hub.url, cacheDir, token: null });
    expect(sha256(join(got.dir, 'model.safetensors'))).toBe(sha256(join(model, 'model.safetensors')));
    expect(readFileSync(join(got.dir, 'tokenizer.json'), 'utf8')).toBe(readFileSync(join(model, 'tokenizer.json'), 'utf8'));
  });

  it('refuses a gated repository without a token, saying what to do; with the token it downloads', async () => {
    const cacheDir = freshCache();
    const err = await downloadModel(ref('test-org/gated'), { endpoint: hub.url, cacheDir, token: null }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HubError);
    expect((err as Error).message).toMatch(/test-org\/gated is a gated repository: accept its terms on https:\/\/huggingface.co\/test-org\/gated, then set HF_TOKEN/);
    const wrong = await downloadModel(ref('test-org/gated'), { endpoint: hub.url, cacheDir, token: 'hf_other' }).catch((e: unknown) => e);
    expect((wrong as Error).message).toMatch(/this token has no access/);
    // The token from the environment, as the Hugging Face CLI and libraries read it.
    const got = await downloadModel(ref('test-org/gated'), { endpoint: hub.url, cacheDir, env: { HF_TOKEN: 'hf_secret' } });
    expect(got.files).toContain('model.safetensors');
    expect(((await downloadModel(ref('test-org/nope'), { endpoint: hub.url, cacheDir, token: null }).catch((e: unknown) => e)) as Error).message).toMatch(/no repository test-org\/nope \(401\); if it is private or gated, set HF_TOKEN/);
  });

  it('refuses a repository whose architecture the engine cannot serve before fetching any weight', async () => {
    const cacheDir = freshCache();
    const since = hub.requests.length;
    const err = await downloadModel(ref('test-org/gpt2'), { endpoint: hub.url, cacheDir, token: null }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as Error).message).toMatch(/test-org\/gpt2 is a GPT2LMHeadModel, which this server cannot serve .*its weights were not downloaded/);
    expect(resolves(since).some((r) => r.path.includes('.safetensors'))).toBe(false);
  });

  it('takes include and exclude globs as the hub tools do', () => {
    expect(globMatcher('*.safetensors').test('sub/dir/model-00001.safetensors')).toBe(true);
    expect(globMatcher('model-0000[12].safetensors').test('model-00002.safetensors')).toBe(true);
    expect(globMatcher('config.json').test('xconfig.json')).toBe(false);
  });

  it('uses the cache alone when offline, and says so when the model is not there', async () => {
    const cacheDir = freshCache();
    await downloadModel(ref('test-org/tiny'), { endpoint: hub.url, cacheDir, token: null });
    const since = hub.requests.length;
    const offline = await downloadModel(ref('test-org/tiny'), { cacheDir, env: { HF_HUB_OFFLINE: '1' } });
    expect(offline.dir).toBe(join(repoFolder(cacheDir, 'test-org/tiny'), 'snapshots', COMMIT));
    expect(hub.requests.length).toBe(since);
    await expect(downloadModel(ref('test-org/other'), { cacheDir, env: { HF_HUB_OFFLINE: '1' } })).rejects.toThrow(/HF_HUB_OFFLINE is set and test-org\/other@main is not in the cache/);
  });

  it("reads a cache written in the Python library's layout as is, and lists it beside ours", async () => {
    const cacheDir = freshCache();
    await downloadModel(ref('test-org/tiny'), { endpoint: hub.url, cacheDir, token: null });
    // What huggingface_hub writes: blobs by etag, snapshots/<commit>/<file> -> ../../blobs/<etag>, refs/main.
    const commit = 'c'.repeat(40);
    const folder = join(cacheDir, 'models--py-org--py-model');
    mkdirSync(join(folder, 'blobs'), { recursive: true });
    mkdirSync(join(folder, 'snapshots', commit), { recursive: true });
    mkdirSync(join(folder, 'refs'), { recursive: true });
    for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) {
      const bytes = readFileSync(join(model, f));
      const etag = f.endsWith('.safetensors') ? createHash('sha256').update(bytes).digest('hex') : createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
      writeFileSync(join(folder, 'blobs', etag), bytes);
      symlinkSync(`../../blobs/${etag}`, join(folder, 'snapshots', commit, f));
    }
    writeFileSync(join(folder, 'refs', 'main'), commit);
    const dir = cachedSnapshot(cacheDir, ref('py-org/py-model'))!;
    expect(dir).toBe(join(folder, 'snapshots', commit));
    const engine = await testEngine(dir);
    expect((await greedy(engine, [1, 2, 3], 6)).tokens).toHaveLength(6);
    const listed = listCached(cacheDir);
    expect(listed.map((m) => m.repo)).toEqual(['py-org/py-model', 'test-org/tiny']);
    expect(listed[0]!.snapshots).toEqual([expect.objectContaining({ commit, refs: ['main'] })]);
    expect(listed[0]!.bytes).toBe(listed[1]!.bytes); // the same files
  });
});
