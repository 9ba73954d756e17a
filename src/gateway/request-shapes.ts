/**
 * Checks, before the OpenAPI validator, the parts of a request whose shape is
 * chosen by a tag (a message's `role`, a content part's or an item's `type`,
 * a format's `type`). The validator tries every branch of such a union and
 * reports the first that failed, which names the wrong thing ("must be
 * string" for an image part); here an unknown tag is named with the values
 * allowed, and a tag OpenAI defines that this server does not implement
 * (images, audio, files: the models here take text only) is said to be
 * unsupported. Everything else is left to the validator.
 */
import type { NextFunction, Request, Response } from 'express';
import { InvalidRequestError } from './errors.ts';

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A union's tags: those served, and those OpenAI defines that are not (with why). */
interface Tags {
  name: string;
  served: readonly string[];
  unsupported: Readonly<Record<string, string>>;
}

const TEXT_ONLY = 'this model takes text only';
const REFUSAL = 'send an earlier refusal as text';

const CHAT_ROLES: Tags = { name: 'role', served: ['system', 'developer', 'user', 'assistant', 'tool'], unsupported: { function: 'legacy function messages are not supported: use tool messages' } };
const CHAT_PARTS: Tags = {
  name: 'type',
  served: ['text'],
  unsupported: { image_url: TEXT_ONLY, input_audio: TEXT_ONLY, file: TEXT_ONLY, refusal: REFUSAL },
};
const RESPONSE_PARTS: Tags = {
  name: 'type',
  served: ['input_text', 'output_text'],
  unsupported: { input_image: TEXT_ONLY, input_file: TEXT_ONLY, input_audio: TEXT_ONLY, refusal: REFUSAL },
};
const RESPONSE_ITEMS: Tags = {
  name: 'type',
  served: ['message', 'function_call', 'function_call_output', 'item_reference'],
  unsupported: Object.fromEntries(
    [
      'reasoning',
      'file_search_call',
      'computer_call',
      'computer_call_output',
      'web_search_call',
      'image_generation_call',
      'code_interpreter_call',
      'local_shell_call',
      'local_shell_call_output',
      'mcp_list_tools',
      'mcp_approval_request',
      'mcp_approval_response',
      'mcp_call',
      'custom_tool_call',
      'custom_tool_call_output',
    ].map((t) => [t, 'only messages, function calls and their outputs, and item references are supported']),
  ),
};
const FORMATS: Tags = { name: 'type', served: ['text', 'json_schema', 'json_object'], unsupported: {} };

/** Throws the 400 for a tag outside `tags` (an absent tag is the validator's to report). */
function checkTag(value: unknown, tags: Tags, at: string): void {
  if (!isObject(value) || value[tags.name] == null) return; // absent or null: the validator's to judge
  const tag = value[tags.name];
  const param = `${at}.${tags.name}`;
  if (typeof tag === 'string' && tags.served.includes(tag)) return;
  const why = typeof tag === 'string' ? tags.unsupported[tag] : undefined;
  if (why !== undefined) throw new InvalidRequestError(`'${param}' ${JSON.stringify(tag)} is not supported: ${why}.`, param, 'unsupported_value');
  throw new InvalidRequestError(`Invalid value for '${param}': ${JSON.stringify(tag)} is not one of ${tags.served.map((t) => `'${t}'`).join(', ')}.`, param, 'invalid_value');
}

function checkParts(content: unknown, tags: Tags, at: string): void {
  if (Array.isArray(content)) content.forEach((part, j) => checkTag(part, tags, `${at}.content.${j}`));
}

function checkVerbosity(value: unknown, param: string): void {
  if (value === 'low' || value === 'high') {
    throw new InvalidRequestError(`'${param}' ${JSON.stringify(value)} is not supported: this model has one verbosity ('medium', the default).`, param, 'unsupported_value');
  }
}

function checkChat(body: Json): void {
  if (Array.isArray(body.messages)) {
    body.messages.forEach((m, i) => {
      checkTag(m, CHAT_ROLES, `messages.${i}`);
      if (isObject(m)) checkParts(m.content, CHAT_PARTS, `messages.${i}`);
    });
  }
  checkTag(body.response_format, FORMATS, 'response_format');
  checkVerbosity(body.verbosity, 'verbosity');
}

function checkResponses(body: Json): void {
  if (Array.isArray(body.input)) {
    body.input.forEach((item, i) => {
      if (!isObject(item)) return;
      // A message may leave its type out (it has a role); any other item says what it is.
      if (item.type != null || !('role' in item)) checkTag(item, RESPONSE_ITEMS, `input.${i}`);
      if ('role' in item) checkParts(item.content, RESPONSE_PARTS, `input.${i}`);
    });
  }
  if (isObject(body.text)) {
    checkTag(body.text.format, FORMATS, 'text.format');
    checkVerbosity(body.text.verbosity, 'text.verbosity');
  }
}

const CHECKS: Record<string, (body: Json) => void> = { '/v1/chat/completions': checkChat, '/v1/responses': checkResponses };

/** The middleware: runs the check for the request's route, if it has one. */
export function checkRequestShapes(req: Request, _res: Response, next: NextFunction): void {
  const check = req.method === 'POST' ? CHECKS[req.path] : undefined;
  if (check && isObject(req.body)) check(req.body);
  next();
}
