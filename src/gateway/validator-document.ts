/**
 * The OpenAPI document as the request validator gets it: unions whose
 * branches a tag chooses are validated as "the branch the tag names", so
 * that an error is that branch's (a user message with a wrong `content` is
 * told about its content, not that its role is not "system"). The document
 * itself keeps plain `oneOf`s, which clients and the type generator read.
 *
 * - A `discriminator` (chat messages by `role`) is kept, without its
 *   `mapping`: Ajv validates by discriminator but refuses mappings, which the
 *   document has for the generated types.
 * - `x-pie-branches` lists, in order, a condition (JSON Schema) and the branch
 *   it selects; the first that holds wins, the last has none. Ajv runs it as
 *   if/then/else. (Responses input items: a message has a role and may leave
 *   out its type; the others are chosen by type.)
 */
import { readFileSync } from 'node:fs';
import { load } from 'js-yaml';

type Node = Record<string, unknown>;
const isNode = (v: unknown): v is Node => typeof v === 'object' && v !== null && !Array.isArray(v);

interface Branch {
  when?: Node;
  $ref: string;
}

function chain(branches: Branch[]): Node {
  const [first, ...rest] = branches;
  if (!first) throw new Error('x-pie-branches: no branch');
  if (!first.when) return { $ref: first.$ref };
  return { if: first.when, then: { $ref: first.$ref }, ...(rest.length > 0 ? { else: chain(rest) } : {}) };
}

function rewrite(node: unknown): void {
  if (Array.isArray(node)) return node.forEach(rewrite);
  if (!isNode(node)) return;
  if (isNode(node.discriminator)) delete node.discriminator.mapping;
  const branches = node['x-pie-branches'];
  if (Array.isArray(branches)) {
    delete node['x-pie-branches'];
    delete node.oneOf;
    Object.assign(node, chain(branches as Branch[]));
  }
  for (const v of Object.values(node)) rewrite(v);
}

export function validatorDocument(path: string): Node {
  const doc = load(readFileSync(path, 'utf8')) as Node;
  rewrite(doc);
  return doc;
}
