/**
 * Structured outputs for the built-in endpoints: OpenAI's `response_format`
 * (Chat Completions) and `text.format` (Responses), and vLLM's
 * `structured_outputs` extension (`json`, `regex`, `choice`, `grammar`,
 * `json_object`), turned into a grammar and opened once per request, before
 * anything is streamed, so a grammar the server cannot honour is a 400
 * naming the field.
 */
import { Grammar, Matcher, Model, PieError } from '@pie/inferlet';
import { HttpError } from './common.ts';

/** OpenAI's response format (Chat Completions nests the schema; Responses does not). */
export interface ResponseFormat {
  type: 'text' | 'json_object' | 'json_schema';
  json_schema?: { name?: string; schema?: unknown; strict?: boolean | null; description?: string };
  name?: string;
  schema?: unknown;
  strict?: boolean | null;
  description?: string;
}

/** vLLM's extension: exactly one of these. */
export interface StructuredOutputs {
  json?: unknown;
  regex?: string;
  choice?: string[];
  grammar?: string;
  json_object?: boolean;
}

/** What `format` and `extension` ask for, or undefined for free text. */
export function grammarOf(format: ResponseFormat | null | undefined, formatParam: string, extension?: StructuredOutputs | null): { grammar: Grammar; param: string } | undefined {
  const fromFormat = format && format.type !== 'text' ? formatGrammar(format, formatParam) : undefined;
  const fromExtension = extension ? extensionGrammar(extension) : undefined;
  if (fromFormat && fromExtension) throw new HttpError(400, `${formatParam} and structured_outputs cannot both constrain the output`, 'structured_outputs');
  return fromFormat ? { grammar: fromFormat, param: formatParam } : fromExtension ? { grammar: fromExtension, param: 'structured_outputs' } : undefined;
}

function formatGrammar(f: ResponseFormat, param: string): Grammar {
  if (f.type === 'json_object') return Grammar.jsonObject();
  const schema = f.json_schema ? f.json_schema.schema : f.schema;
  // OpenAI: a json_schema format without a schema accepts any JSON object.
  if (schema === undefined || schema === null) return Grammar.jsonObject();
  if (typeof schema !== 'object' && typeof schema !== 'boolean') throw new HttpError(400, `${param}: the schema must be a JSON Schema object`, param);
  return Grammar.json(schema);
}

function extensionGrammar(s: StructuredOutputs): Grammar {
  const set = (['json', 'regex', 'choice', 'grammar', 'json_object'] as const).filter((k) => s[k] !== undefined && s[k] !== null && s[k] !== false);
  if (set.length !== 1) throw new HttpError(400, `structured_outputs takes exactly one of json, regex, choice, grammar and json_object${set.length ? ` (got ${set.join(', ')})` : ''}`, 'structured_outputs');
  switch (set[0]!) {
    case 'json':
      return Grammar.json(s.json as object | string);
    case 'regex':
      return Grammar.regex(s.regex!);
    case 'choice':
      return Grammar.choice(s.choice!);
    case 'grammar':
      return Grammar.ebnf(s.grammar!);
    case 'json_object':
      return Grammar.jsonObject();
  }
}

/**
 * One matcher per choice, all at the grammar's start: the first compiles it
 * (or refuses it with a 400 naming `param`), the others are forks.
 */
export function openMatchers(model: Model, g: { grammar: Grammar; param: string } | undefined, n: number): Array<Matcher | undefined> {
  if (!g) return Array.from({ length: n }, () => undefined);
  let first: Matcher;
  try {
    first = g.grammar.matcher(model);
  } catch (err) {
    if (err instanceof PieError && err.code === 'invalid-argument') throw new HttpError(400, `Invalid ${g.param}: ${err.message}`, g.param);
    throw err;
  }
  return Array.from({ length: n }, (_, i) => (i === 0 ? first : first.fork()));
}
