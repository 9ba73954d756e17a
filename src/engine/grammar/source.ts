/**
 * What a grammar is made from, and how xgrammar compiles each kind. JSON is
 * compact (one line, `", "` and `": "` separators, no free whitespace), so a
 * model can never fill its token budget with spaces between values; also the
 * JSON inside structural tags, whose schemas are compiled here to compact
 * grammars before the tag is (xgrammar's own allow any whitespace there).
 */
import type { CompiledGrammar, GrammarCompiler } from '@mlc-ai/web-xgrammar';
import { xgrammar } from './xgrammar.ts';

export type GrammarSource =
  /** JSON valid against a JSON Schema (a JSON text). */
  | { type: 'json_schema'; schema: string }
  /** Any JSON object (OpenAI's `json_object`). */
  | { type: 'json_object' }
  /** Text matching a regular expression (the whole output). */
  | { type: 'regex'; pattern: string }
  /** An EBNF grammar (xgrammar's dialect, W3C-style) and its root rule. */
  | { type: 'ebnf'; grammar: string; root?: string }
  /** Exactly one of these strings. */
  | { type: 'choice'; choices: string[] }
  /**
   * An xgrammar structural tag (its JSON text): text with tagged regions
   * (`triggered_tags` for tool calls that may start anywhere,
   * `tags_with_separator` for calls only, `sequence`, `or`, `tag`,
   * `const_string`, `any_text`, `json_schema`, `regex`, `grammar`).
   */
  | { type: 'structural_tag'; tag: string };

/** A grammar's cache key: equal sources compile to the same grammar. */
export function sourceKey(s: GrammarSource): string {
  switch (s.type) {
    case 'json_schema':
      return `json_schema\u0000${s.schema}`;
    case 'json_object':
      return 'json_object';
    case 'regex':
      return `regex\u0000${s.pattern}`;
    case 'ebnf':
      return `ebnf\u0000${s.root ?? 'root'}\u0000${s.grammar}`;
    case 'choice':
      return `choice\u0000${JSON.stringify(s.choices)}`;
    case 'structural_tag':
      return `structural_tag\u0000${s.tag}`;
  }
}

const SEPARATORS: [string, string] = [', ', ': '];
const ONE_LINE = -1;

/** A value as the JSON grammars write it: one line, SEPARATORS between items (tests and benchmarks force these texts through matchers). */
export function compactJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(compactJson).join(SEPARATORS[0])}]`;
  if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}${SEPARATORS[1]}${compactJson(x)}`).join(SEPARATORS[0])}}`;
  return JSON.stringify(v);
}

/** Compiles a source (throws what xgrammar throws; see xgrammar.ts for its messages). */
export function compileSource(compiler: GrammarCompiler, s: GrammarSource): Promise<CompiledGrammar> {
  switch (s.type) {
    case 'json_schema':
      return jsonGrammar(s.schema, true).then((g) => compiler.compileGrammar(g, 'root'));
    case 'json_object':
      // Not strict: any property names and values.
      return jsonGrammar('{"type": "object"}', false).then((g) => compiler.compileGrammar(g, 'root'));
    case 'regex':
      return compiler.compileStructuralTag({ type: 'structural_tag', format: { type: 'regex', pattern: s.pattern } });
    case 'ebnf':
      return compiler.compileGrammar(s.grammar, s.root ?? 'root');
    case 'choice':
      return compiler.compileGrammar(choiceGrammar(s.choices), 'root');
    case 'structural_tag':
      return compactTag(JSON.parse(s.tag)).then((tag) => compiler.compileStructuralTag(tag as Record<string, unknown>));
  }
}

/**
 * The compact grammar (EBNF text) of a JSON schema. xgrammar 0.1.27 writes
 * strings with length bounds as `[^"\\\r\n]`, which lets raw control
 * characters into them (not JSON: `JSON.parse` refuses them); every negated
 * class here leaves them out too (only string contents have such classes).
 */
export async function jsonGrammar(schema: string, strict: boolean): Promise<string> {
  const xg = await xgrammar();
  const grammar = await xg.Grammar.fromJSONSchema(schema, false, ONE_LINE, SEPARATORS, strict);
  try {
    return withoutControlCharacters(grammar.toString());
  } finally {
    grammar.dispose();
  }
}

/** Every negated character class of an EBNF text (not a string literal that looks like one) made to leave out U+0000..U+001F. */
export function withoutControlCharacters(ebnf: string): string {
  const NO_CONTROL = '\\0-\\x1f';
  let out = '';
  let state: 'rule' | 'string' | 'class' = 'rule';
  for (let i = 0; i < ebnf.length; i++) {
    const c = ebnf[i]!;
    out += c;
    if (state === 'rule') {
      if (c === '"') state = 'string';
      else if (c === '[') {
        state = 'class';
        if (ebnf[i + 1] === '^') {
          out += '^';
          i++;
          if (!ebnf.startsWith(NO_CONTROL, i + 1)) out += NO_CONTROL;
        }
      }
    } else if (c === '\\') out += ebnf[++i] ?? '';
    else if ((state === 'string' && c === '"') || (state === 'class' && c === ']')) state = 'rule';
  }
  return out;
}

/** A structural tag whose JSON schemas are replaced by the compact grammars of those schemas. */
async function compactTag(node: unknown): Promise<unknown> {
  if (Array.isArray(node)) return Promise.all(node.map(compactTag));
  if (node === null || typeof node !== 'object') return node;
  const o = node as Record<string, unknown>;
  if (o.type === 'json_schema' && 'json_schema' in o) return { type: 'grammar', grammar: await jsonGrammar(JSON.stringify(o.json_schema), true) };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) out[k] = k === 'json_schema' ? v : await compactTag(v);
  return out;
}

/** Checks what xgrammar does not (so the message names the field's problem). */
export function checkSource(s: GrammarSource): string | null {
  if (s.type === 'json_schema') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(s.schema);
    } catch (err) {
      return `the schema is not JSON: ${(err as Error).message}`;
    }
    if (typeof parsed !== 'boolean' && (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))) return 'a JSON schema is an object or a boolean';
  }
  if (s.type === 'choice') {
    if (s.choices.length === 0) return 'a choice needs at least one string';
    if (s.choices.some((c) => c === '')) return 'a choice cannot be the empty string';
  }
  if (s.type === 'regex' && s.pattern === '') return 'the regular expression is empty';
  if (s.type === 'structural_tag') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(s.tag);
    } catch (err) {
      return `the structural tag is not JSON: ${(err as Error).message}`;
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return 'a structural tag is a JSON object';
  }
  if (s.type === 'ebnf' && s.grammar.trim() === '') return 'the grammar is empty';
  return null;
}

/** `root ::= "a" | "b"`, each string escaped for xgrammar's EBNF. */
export function choiceGrammar(choices: string[]): string {
  return `root ::= ${choices.map(ebnfString).join(' | ')}`;
}

function ebnfString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"' || ch === '\\') out += '\\' + ch;
    else if (c < 0x20 || c === 0x7f) out += '\\x' + c.toString(16).padStart(2, '0');
    else out += ch;
  }
  return out + '"';
}
