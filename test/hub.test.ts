/**
 * Models from the Hugging Face hub, against a fake hub on loopback
 * (fake-hub.ts): downloaded into the hub's cache layout and served from it; a
 * second download fetches nothing; a cut download resumes; a corrupted one is
 * fetched again, never used; a gated repository, and one whose architecture
 * the engine cannot serve, are refused clearly (the latter before any weight
 * is fetched); a cache written in the Python library's layout is read as is.
 */
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cachedSnapshot, listCached, parseRepoRef, repoFolder } from '../src/model/hub/cache.ts';
import { downloadModel, globMatcher, HubError } from '../src/model/hub/download.ts';
import { resolveModelSource } from '../src/model/hub/resolve.ts';
import { defaultModel } from '../src/model/default-model.ts';
import { ModelLoadError } from '../src/model/errors.ts';
import { parseConfig } from '../src/config.ts';
import { serve } from '../src/gateway/start.ts';
import { greedy, randomModelDir, REPO_ROOT, runPie, testEngine } from './helpers.ts';
import { etagOf, startFakeHub, type FakeHub } from './fake-hub.ts';

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
  // Sharded weights with an index, beside the same weights once more in another file (as some repositories hold them).
  const sharded = mkdtempSync(join(tmpdir(), 'pie-hub-sharded-'));
  cpSync(model, sharded, { recursive: true });
  const weights = readFileSync(join(model, 'model.safetensors'));
  const header = JSON.parse(weights.subarray(8, 8 + Number(weights.readBigUInt64LE(0))).toString('utf8')) as Record<string, unknown>;
  renameSync(join(sharded, 'model.safetensors'), join(sharded, 'model-00001-of-00001.safetensors'));
  writeFileSync(join(sharded, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: Object.fromEntries(Object.keys(header).filter((k) => k !== '__metadata__').map((k) => [k, 'model-00001-of-00001.safetensors'])) }));
  writeFileSync(join(sharded, 'consolidated.safetensors'), weights);
  writeFileSync(join(sharded, 'empty.txt'), '');
  hub.repos.set('test-org/sharded', { dir: sharded, commit: 'd'.repeat(40) });
  // PyTorch weights only.
  const bin = mkdtempSync(join(tmpdir(), 'pie-hub-bin-'));
  for (const f of ['config.json', 'tokenizer.json']) cpSync(join(model, f), join(bin, f));
  writeFileSync(join(bin, 'pytorch_model.bin'), 'not read');
  hub.repos.set('test-org/bin', { dir: bin, commit: 'e'.repeat(40) });
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
    expect((err as Error).message).toBe(`test-org/gated is a gated repository: accept its terms on ${hub.url}/test-org/gated, then set HF_TOKEN to a token of that account (or log in with the Hugging Face CLI) (401)`);
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

  it("fetches only the shards the weights' index names (not the same weights again in another file), and serves them", async () => {
    const cacheDir = freshCache();
    const got = await downloadModel(ref('test-org/sharded'), { endpoint: hub.url, cacheDir, token: null });
    expect(got.files).toContain('model-00001-of-00001.safetensors');
    expect(got.files).not.toContain('consolidated.safetensors');
    const engine = await testEngine(got.dir);
    expect((await greedy(engine, [1, 2, 3], 4)).tokens).toHaveLength(4);
    // Any file, with --include: an empty one too.
    const all = await downloadModel(ref('test-org/sharded'), { endpoint: hub.url, cacheDir, token: null, include: ['*.txt'], checkArchitecture: false });
    expect(readFileSync(join(all.dir, 'empty.txt'), 'utf8')).toBe('');
  });

  it.skipIf(!existsSync('/dev/full'))('fails, never hangs, when the disk is full', async () => {
    const cacheDir = freshCache();
    const blobs = join(repoFolder(cacheDir, 'test-org/tiny'), 'blobs');
    mkdirSync(blobs, { recursive: true });
    symlinkSync('/dev/full', join(blobs, `${sha256(join(model, 'model.safetensors'))}.incomplete`)); // every write: ENOSPC
    await expect(downloadModel(ref('test-org/tiny'), { endpoint: hub.url, cacheDir, token: null })).rejects.toThrow(/ENOSPC/);
  });

  it('takes over a lock its holder left behind (a download killed midway; the same pid after a restart)', async () => {
    const cacheDir = freshCache();
    const lock = join(cacheDir, '.locks', 'models--test-org--tiny', `${sha256(join(model, 'model.safetensors'))}.lock`);
    mkdirSync(dirname(lock), { recursive: true });
    writeFileSync(lock, `${hostname()} ${process.pid}`); // this process's pid, a lock it does not hold
    const got = await downloadModel(ref('test-org/tiny'), { endpoint: hub.url, cacheDir, token: null });
    expect(sha256(join(got.dir, 'model.safetensors'))).toBe(sha256(join(model, 'model.safetensors')));
    expect(existsSync(lock)).toBe(false);
  });

  it("stops the other files' downloads at the first failure: no retry goes on after it has failed", async () => {
    hub.fail.set('tokenizer.json', { status: 503, headers: { 'retry-after': '20' } });
    hub.fail.set('generation_config.json', { status: 404, headers: { 'x-error-code': 'EntryNotFound' } });
    try {
      const err = await downloadModel(ref('test-org/tiny'), { endpoint: hub.url, cacheDir: freshCache(), token: null, concurrency: 4 }).catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/a file of test-org\/tiny listed by the hub is missing there \(404\)/);
      const asked = () => hub.requests.filter((r) => r.path.endsWith('/tokenizer.json')).length;
      const before = asked();
      await new Promise((r) => setTimeout(r, 300));
      expect(asked()).toBe(before); // the 503's retry (after 20 s) was called off
    } finally {
      hub.fail.clear();
    }
  });

  it('refuses a repository with no safetensors weights', async () => {
    await expect(downloadModel(ref('test-org/bin'), { endpoint: hub.url, cacheDir: freshCache(), token: null })).rejects.toThrow(/test-org\/bin has no safetensors weights \(only PyTorch .bin files/);
  });

  it('downloads the same model twice at once into one cache: one fetch per file, both complete', async () => {
    const cacheDir = freshCache();
    const since = hub.requests.length;
    const [a, b] = await Promise.all([1, 2].map(() => downloadModel(ref('test-org/tiny'), { endpoint: hub.url, cacheDir, token: null })));
    expect(a!.dir).toBe(b!.dir);
    expect(sha256(join(a!.dir, 'model.safetensors'))).toBe(sha256(join(model, 'model.safetensors')));
    expect(resolves(since).filter((r) => r.path.startsWith('/cdn/')).length).toBe(1);
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
    await expect(downloadModel(ref('test-org/other'), { cacheDir, env: { HF_HUB_OFFLINE: '1' } })).rejects.toThrow(/HF_HUB_OFFLINE is set and test-org\/other@main is not \(wholly\) in the cache/);
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
      const etag = etagOf(bytes, f.endsWith('.safetensors'));
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

/** The pie command with the fake hub and a cache of its own as its environment (and no token of the machine's). */
const pie = (env: NodeJS.ProcessEnv, ...args: string[]) => runPie(args, { env: { HF_TOKEN: '', ...env } });

describe('hub models by name: the pie command and the server', () => {
  it('takes a snapshot only partly in the cache (its configuration alone) for what it is: not served, downloaded when allowed', async () => {
    const cacheDir = freshCache();
    await downloadModel(ref('test-org/tiny'), { endpoint: hub.url, cacheDir, token: null, include: ['config.json'], checkArchitecture: false });
    const hubOptions = { endpoint: hub.url, cacheDir, token: null };
    await expect(resolveModelSource('test-org/tiny', { download: false, hub: hubOptions })).rejects.toThrow(/test-org\/tiny is only partly in the Hugging Face cache/);
    const got = await resolveModelSource('test-org/tiny', { download: true, hub: hubOptions });
    expect(got).toEqual({ dir: join(repoFolder(cacheDir, 'test-org/tiny'), 'snapshots', COMMIT), name: 'test-org/tiny' });
    expect(existsSync(join(got.dir, 'model.safetensors'))).toBe(true);
  });

  it('creates the random default model at the default path even when downloads are allowed (models/default is a folder, not a repository)', async () => {
    const root = mkdtempSync(join(tmpdir(), 'pie-hub-root-'));
    const config = parseConfig('[model]\ndownload = true\n', join(root, 'pie.toml'), root);
    const lines: string[] = [];
    const got = await defaultModel(config, (l) => lines.push(l), { download: true, hub: { endpoint: hub.url, cacheDir: freshCache(), token: null } });
    expect(got.dir).toBe(join(root, 'models/default'));
    expect(existsSync(join(got.dir, 'model.safetensors'))).toBe(true);
    expect(lines.join('\n')).toMatch(/created a "tiny" random-weight model/);
  });

  it('pie model download fetches into the cache (plain progress lines off a terminal), list shows it, info describes it, rm removes it', async () => {
    const env = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: freshCache() };
    const first = await pie(env, 'model', 'download', 'test-org/tiny');
    expect(first.code).toBe(0);
    expect(first.stderr).toMatch(/^test-org\/tiny: 5 files, [\d.]+ MB; 4 to fetch/m); // config.json came first, to check the architecture
    expect(first.stderr).toMatch(/test-org\/tiny: 100% /);
    expect(first.stdout).toMatch(/test-org\/tiny@aaaaaaaaaaaa: 5 files in .*snapshots/);
    expect((await pie(env, 'model', 'download', 'test-org/tiny')).stdout).toMatch(/all were in the cache/);
    const list = await pie(env, 'model', 'list');
    expect(list.stdout).toMatch(/^test-org\/tiny\s+aaaaaaaaaaaa \(main\)\s+[\d.]+ MB\s+can serve: LlamaForCausalLM/m);
    expect((await pie(env, 'model', 'info', 'test-org/tiny')).stdout).toMatch(/can serve: LlamaForCausalLM, \d+ layers/);
    const refused = await pie(env, 'model', 'download', 'test-org/gpt2');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^pie: test-org\/gpt2 is a GPT2LMHeadModel, which this server cannot serve/m);
    expect((await pie(env, 'model', 'rm', 'test-org/tiny')).stdout).toMatch(/removed test-org\/tiny/);
    // The refused repository's configuration stayed (as the Python library keeps what it fetched): listed as one it cannot serve.
    expect((await pie(env, 'model', 'list')).stdout).toMatch(/^test-org\/gpt2 .* cannot serve: .*unsupported architecture GPT2LMHeadModel/m);
    await pie(env, 'model', 'rm', 'test-org/gpt2');
    expect((await pie(env, 'model', 'list')).stdout).toMatch(/no models in/);
  }, 60_000);

  it('serves a cached model by its repository name, under that name; says the exact command for one not cached; downloads it when model.download allows', async () => {
    const cacheDir = freshCache();
    await downloadModel(ref('test-org/tiny'), { endpoint: hub.url, cacheDir, token: null });
    const saved = { cache: process.env.HF_HUB_CACHE, endpoint: process.env.HF_ENDPOINT };
    process.env.HF_HUB_CACHE = cacheDir;
    process.env.HF_ENDPOINT = hub.url;
    const dataDir = mkdtempSync(join(tmpdir(), 'pie-hub-serve-'));
    const config = (download: boolean) => parseConfig(`[server]\nport = 0\ndata_dir = ${JSON.stringify(dataDir)}\napi_key_env = ""\n[model]\ndownload = ${download}\n[engine]\nown_thread = false\n`, 'hub.toml', REPO_ROOT);
    try {
      const serving = await serve({ config: config(false), models: ['test-org/tiny'], log: () => {}, env: {} });
      await serving.loaded;
      const models = (await (await fetch(`${serving.url}/v1/models`)).json()) as { data: Array<{ id: string }> };
      expect(models.data.map((m) => m.id)).toEqual(['test-org/tiny']);
      const chat = await fetch(`${serving.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'test-org/tiny', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 }) });
      expect(chat.status).toBe(200);
      await serving.close();
      // Not cached, downloads off: the error says how to get it.
      process.env.HF_HUB_CACHE = freshCache();
      const refused = await serve({ config: config(false), models: ['test-org/gated'], log: () => {}, env: {} });
      await expect(refused.loaded).rejects.toThrow('test-org/gated is neither a folder here nor in the Hugging Face cache');
      await expect(refused.loaded).rejects.toThrow('npx pie model download test-org/gated');
      await refused.close();
      // Allowed: downloaded as the server starts, its progress in the log.
      const lines: string[] = [];
      const fetched = await serve({ config: config(true), models: ['test-org/tiny'], log: (l) => lines.push(l), env: {} });
      await fetched.loaded;
      expect(lines.some((l) => /^pie: downloading: 5 files/.test(l))).toBe(true);
      expect(existsSync(join(repoFolder(process.env.HF_HUB_CACHE, 'test-org/tiny'), 'snapshots', COMMIT, 'model.safetensors'))).toBe(true);
      await fetched.close();
    } finally {
      process.env.HF_HUB_CACHE = saved.cache;
      process.env.HF_ENDPOINT = saved.endpoint;
      if (saved.cache === undefined) delete process.env.HF_HUB_CACHE;
      if (saved.endpoint === undefined) delete process.env.HF_ENDPOINT;
    }
  }, 60_000);
});
