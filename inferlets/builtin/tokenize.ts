/**
 * POST /tokenize and POST /detokenize (vLLM's shapes): the tokens a prompt
 * or a conversation is filled with, exactly as the completion and chat
 * endpoints fill them, and the text of token ids. Nothing is computed.
 */
import { Model } from '@pie/inferlet';
import type { components } from '../../src/gateway/openapi-types.ts';
import { chatMessages, HttpError, route, tokenTable } from './common.ts';
import type { OpenAIInput } from './protocol.ts';
import { toolsOf } from './tools.ts';

type Tokenize = components['schemas']['TokenizeRequest'];
type Detokenize = components['schemas']['DetokenizeRequest'];

export const run = route<OpenAIInput<Tokenize | Detokenize>>('prompt', (input) => {
  const model = Model.load(input.model);
  const V = model.info.vocabSize;
  if (input.path === '/detokenize') {
    const { tokens } = input.body as Detokenize;
    const bad = tokens.find((t) => t >= V);
    if (bad !== undefined) throw new HttpError(400, `tokens: ${bad} is not a token id of this model (0..${V - 1})`, 'tokens');
    return { prompt: model.decode(tokens) };
  }
  const body = input.body as Tokenize;
  if ((body.prompt === undefined) === (body.messages === undefined)) throw new HttpError(400, 'give either prompt or messages', body.prompt === undefined ? 'prompt' : 'messages');
  if (body.continue_final_message === true) throw new HttpError(400, 'continue_final_message is not supported', 'continue_final_message', 'unsupported_value');
  if (body.chat_template != null) throw new HttpError(400, "chat_template is not supported: the model's own template is used", 'chat_template', 'unsupported_value');
  let tokens: number[];
  if (body.prompt !== undefined) {
    tokens = model.encode(body.prompt, { bos: body.add_special_tokens ?? true });
  } else {
    const tools = toolsOf({ tools: body.tools }, (i) => `tools[${i}].function.name`);
    const ctx = model.newContext().fillChat(chatMessages(body.messages!), { tools: tools?.tools ?? [], add_generation_prompt: body.add_generation_prompt ?? true });
    tokens = ctx.tokens();
    ctx.release();
    // The template writes the beginning-of-sequence token itself; add_special_tokens adds another, as vLLM does.
    const bos = model.info.bosTokenId;
    if (body.add_special_tokens === true && bos !== undefined) tokens.unshift(bos);
  }
  const table = body.return_token_strs ? tokenTable(model, tokens.map((token) => ({ token, top: [] }))) : null;
  return { count: tokens.length, max_model_len: model.info.contextLength, tokens, token_strs: table ? tokens.map((t) => table.get(t)!.text) : null };
});
