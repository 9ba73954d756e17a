import { existsSync, readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import * as OpenApiValidator from 'express-openapi-validator';
import openapiTS, { astToString, COMMENT_HEADER } from 'openapi-typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const specPath = resolve(repoRoot, 'openapi/openapi.yaml');
const typesPath = resolve(repoRoot, 'src/gateway/openapi-types.ts');
/** An extract of OpenAI's own spec; lives beside the checkout, so CI clones do not have it. */
const referencePath = resolve(repoRoot, '../shared/reference/openai-api-subset.yaml');

// js-yaml comes with express-openapi-validator and openapi-typescript; it ships no types.
const { load: loadYaml } = createRequire(import.meta.url)('js-yaml') as { load(text: string): unknown };

type Node = Record<string, unknown>;
type Doc = { paths: Record<string, Record<string, unknown>>; components: Node };

const readDoc = (path: string) => loadYaml(readFileSync(path, 'utf8')) as Doc;
const isNode = (v: unknown): v is Node => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Our additions to OpenAI's request fields, as in vLLM. */
const EXTENSIONS = new Set([
  'top_k',
  'min_p',
  'repetition_penalty',
  'structured_outputs',
  'ignore_eos',
  'min_tokens',
  'stop_token_ids',
  'include_stop_str_in_output',
  'skip_special_tokens',
  'prompt_logprobs',
]);
/** vLLM's prompt_logprobs in answers: on a chat completion (and its first chunk), on each completion choice. */
const RESPONSE_EXTENSIONS = /^post \/(chat\/completions 200 [^.]+|completions 200 [^.]+\.choices\[\])\.prompt_logprobs$/;
/**
 * Properties OpenAI defines that the reference extract lost with its prose
 * (it dropped every key named `description`): a response format's description.
 */
const LOST_FROM_REFERENCE = /(response_format\.json_schema|text\.format|tools\[\]\.function|\/responses request\.tools\[\])\.description$/;
/** Operations whose 200 OpenAI's spec leaves without a body (the SDKs ignore it); ours is OpenAI's observed body. */
const NO_REFERENCE_BODY = new Set(['delete /responses/{response_id}']);

/** Follows local `$ref`s; keeps sibling keywords next to a `$ref` (OpenAPI 3.1 allows them). */
function deref(doc: Doc, node: Node): Node {
  let current = node;
  for (let hops = 0; typeof current.$ref === 'string'; hops++) {
    if (hops > 32) throw new Error(`$ref loop at ${String(current.$ref)}`);
    const ref = current.$ref as string;
    const target = ref
      .replace(/^#\//, '')
      .split('/')
      .reduce<unknown>((at, key) => (isNode(at) ? at[key.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined), doc);
    if (!isNode(target)) throw new Error(`unresolved $ref ${ref}`);
    const { $ref: _, ...siblings } = current;
    current = { ...siblings, ...target };
  }
  return current;
}

/** Every alternative a schema stands for: itself plus, recursively, its allOf/anyOf/oneOf branches. */
function alternatives(doc: Doc, node: Node, out: Node[] = []): Node[] {
  const schema = deref(doc, node);
  out.push(schema);
  for (const key of ['allOf', 'anyOf', 'oneOf'] as const) {
    const branches = schema[key];
    if (Array.isArray(branches)) for (const branch of branches) if (isNode(branch)) alternatives(doc, branch, out);
  }
  return out;
}

/** Property name → the schemas given for it, over all alternatives. */
function propertiesOf(doc: Doc, schemas: Node[]): Map<string, Node[]> {
  const props = new Map<string, Node[]>();
  for (const schema of schemas.flatMap((s) => alternatives(doc, s))) {
    if (!isNode(schema.properties)) continue;
    for (const [name, sub] of Object.entries(schema.properties)) {
      if (isNode(sub)) props.set(name, [...(props.get(name) ?? []), sub]);
    }
  }
  return props;
}

function itemsOf(doc: Doc, schemas: Node[]): Node[] {
  return schemas.flatMap((s) => alternatives(doc, s)).flatMap((s) => (isNode(s.items) ? [s.items] : []));
}

/**
 * Walks our schema beside the reference's: each property name we use must be
 * one the reference has at the same place, or one of `extensions` at the top.
 * Returns the offending paths.
 */
function unknownNames(
  ours: Doc,
  ourSchemas: Node[],
  ref: Doc,
  refSchemas: Node[],
  at: string,
  extensions: ReadonlySet<string> = new Set(),
  depth = 0,
): string[] {
  if (depth > 40) throw new Error(`schema nests too deep at ${at}`);
  const problems: string[] = [];
  const refProps = propertiesOf(ref, refSchemas);
  for (const [name, subs] of propertiesOf(ours, ourSchemas)) {
    const path = `${at}.${name}`;
    const refSubs = refProps.get(name);
    if (refSubs) problems.push(...unknownNames(ours, subs, ref, refSubs, path, undefined, depth + 1));
    else if (!(depth === 0 && extensions.has(name))) problems.push(path);
  }
  const items = itemsOf(ours, ourSchemas);
  if (items.length > 0) problems.push(...unknownNames(ours, items, ref, itemsOf(ref, refSchemas), `${at}[]`, undefined, depth + 1));
  return problems;
}

function mediaSchemas(doc: Doc, holder: unknown): Map<string, Node> {
  const content = isNode(holder) ? deref(doc, holder).content : undefined;
  const out = new Map<string, Node>();
  if (isNode(content)) for (const [type, media] of Object.entries(content)) if (isNode(media) && isNode(media.schema)) out.set(type, media.schema);
  return out;
}

const METHODS = ['get', 'post', 'delete', 'put', 'patch'];

describe('openapi/openapi.yaml', () => {
  it.skipIf(!existsSync(referencePath))(
    'names only fields OpenAI defines, plus our documented extensions (skipped without ../shared/reference)',
    () => {
      const ours = readDoc(specPath);
      const ref = readDoc(referencePath);
      const problems: string[] = [];
      let operations = 0;
      for (const [path, item] of Object.entries(ours.paths)) {
        // /health, /ready, /metrics are ours alone, and so are the operations marked as extensions (uploaded inferlets and their runs).
        if (!path.startsWith('/v1/') || item['x-pie-extension'] === true) continue;
        const refPath = path.slice('/v1'.length);
        for (const method of METHODS) {
          const op = item[method];
          if (!isNode(op)) continue;
          operations++;
          const where = `${method} ${refPath}`;
          const refOp = ref.paths[refPath]?.[method];
          if (!isNode(refOp)) {
            problems.push(`${where}: not an OpenAI operation`);
            continue;
          }
          const refParams = new Set(
            [...((ref.paths[refPath].parameters as Node[] | undefined) ?? []), ...((refOp.parameters as Node[] | undefined) ?? [])].map(
              (p) => deref(ref, p).name,
            ),
          );
          for (const p of [...((item.parameters as Node[] | undefined) ?? []), ...((op.parameters as Node[] | undefined) ?? [])]) {
            const name = deref(ours, p).name;
            if (!refParams.has(name)) problems.push(`${where}: parameter ${String(name)}`);
          }

          const body = mediaSchemas(ours, op.requestBody).get('application/json');
          if (body) {
            const refBody = mediaSchemas(ref, refOp.requestBody).get('application/json');
            if (!refBody) problems.push(`${where}: OpenAI takes no JSON body`);
            else problems.push(...unknownNames(ours, [body], ref, [refBody], `${where} request`, EXTENSIONS));
          }

          const refOk = mediaSchemas(ref, (refOp.responses as Node)['200']);
          for (const [type, schema] of mediaSchemas(ours, (op.responses as Node)['200'])) {
            const refSchema = refOk.get(type) ?? refOk.get('application/json');
            if (refSchema) problems.push(...unknownNames(ours, [schema], ref, [refSchema], `${where} 200 ${type}`).filter((p) => !RESPONSE_EXTENSIONS.test(p)));
            else if (!NO_REFERENCE_BODY.has(where)) problems.push(`${where}: OpenAI's 200 has no ${type} body`);
          }

          // Every error body is OpenAI's ErrorResponse.
          const refError = { $ref: '#/components/schemas/ErrorResponse' };
          for (const [status, response] of Object.entries(op.responses as Node)) {
            if (status === '200') continue;
            for (const [type, schema] of mediaSchemas(ours, response)) {
              problems.push(...unknownNames(ours, [schema], ref, [refError], `${where} ${status} ${type}`));
            }
          }
        }
      }
      expect(operations).toBeGreaterThanOrEqual(9);
      expect(problems.filter((p) => !LOST_FROM_REFERENCE.test(p))).toEqual([]);
    },
  );

  it('flags a field OpenAI does not define (self-check of the walk)', () => {
    const ref = { paths: {}, components: { schemas: { A: { properties: { a: { items: { properties: { b: {} } } } } } } } };
    const ours = { paths: {}, components: { schemas: { A: { properties: { a: { items: { properties: { b: {}, c: {} } } }, top_k: {} } } } } };
    const schema = { $ref: '#/components/schemas/A' };
    expect(unknownNames(ours, [schema], ref, [schema], 'A', new Set(['top_k']))).toEqual(['A.a[].c']);
    expect(unknownNames(ours, [schema], ref, [schema], 'A')).toEqual(['A.a[].c', 'A.top_k']);
  });

  it('keeps src/gateway/openapi-types.ts in step with openapi/openapi.yaml (regenerate: npm run openapi:types)', async () => {
    const generated = COMMENT_HEADER + astToString(await openapiTS(pathToFileURL(specPath), { silent: true }));
    expect(readFileSync(typesPath, 'utf8')).toBe(generated);
  });
});

describe('request validation with express-openapi-validator', () => {
  let server: Server;
  let base: string;

  beforeAll(async () => {
    const app = express();
    app.use(express.json());
    app.use(OpenApiValidator.middleware({ apiSpec: specPath, validateRequests: true, validateResponses: false, ignoreUndocumented: true }));
    app.use((req: Request, res: Response) => {
      res.json({ body: req.body as unknown });
    });
    app.use((err: { status?: number; errors?: unknown }, _req: Request, res: Response, _next: NextFunction) => {
      res.status(err.status ?? 500).json({ errors: err.errors });
    });
    server = app.listen(0, '127.0.0.1');
    await new Promise<void>((done) => server.once('listening', done));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(() => new Promise<void>((done) => server.close(() => done())));

  const post = async (path: string, body?: unknown) => {
    const res = await fetch(base + path, {
      method: 'POST',
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as { body?: Record<string, unknown>; errors?: { path: string; errorCode: string }[] } };
  };
  const chat = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };

  it('rejects an unknown field, naming it', async () => {
    const { status, json } = await post('/v1/chat/completions', { ...chat, foo: 1 });
    expect(status).toBe(400);
    expect(json.errors).toEqual([expect.objectContaining({ path: '/body/foo', errorCode: 'additionalProperties.openapi.validation' })]);
  });

  it('rejects an out-of-range value, naming the field', async () => {
    const { status, json } = await post('/v1/chat/completions', { ...chat, temperature: 5 });
    expect(status).toBe(400);
    expect(json.errors).toEqual([expect.objectContaining({ path: '/body/temperature', errorCode: 'maximum.openapi.validation' })]);
  });

  it('passes fields that are listed only to be rejected by the gateway as unsupported', async () => {
    expect((await post('/v1/chat/completions', { ...chat, functions: [{ name: 'f' }], response_format: { type: 'json_object' } })).status).toBe(200);
  });

  it.each([
    ['/v1/chat/completions', chat],
    ['/v1/chat/completions', { model: 'm', messages: [{ role: 'system', content: [{ type: 'text', text: 's' }] }, { role: 'assistant', content: null }], top_k: 5, stop: ['x'] }],
    ['/v1/completions', { model: 'm', prompt: 'hi' }],
    ['/v1/completions', { model: 'm', prompt: [1, 2, 3] }],
    ['/v1/completions', { model: 'm', prompt: [[1, 2], [3]] }],
    ['/v1/responses', { model: 'm', input: 'hi' }],
    ['/v1/responses', { model: 'm', input: [{ role: 'user', content: [{ type: 'input_text', text: 'hi' }] }, { type: 'function_call_output', call_id: 'c', output: 'r' }] }],
    ['/v1/responses/resp_1/cancel', undefined],
  ])('passes a valid minimal request to %s', async (path, body) => {
    const { status, json } = await post(path, body);
    expect(json.errors).toBeUndefined();
    expect(status).toBe(200);
  });

  it('fills documented defaults in (max_tokens 16 for completions, store true for responses)', async () => {
    expect((await post('/v1/completions', { model: 'm', prompt: 'hi' })).json.body?.max_tokens).toBe(16);
    expect((await post('/v1/responses', { model: 'm', input: 'hi' })).json.body?.store).toBe(true);
  });
});
