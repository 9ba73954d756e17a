/** A model and its tokenizer. */
import * as chat from 'pie:inferlet/chat@0.2.0';
import * as abi from 'pie:inferlet/model@0.2.0';
import { models } from 'pie:inferlet/runtime@0.2.0';
import { Context, type ToolCallOptions } from './context.ts';
import { Matcher } from './grammar.ts';
import { toAbiMessages, toAbiTools, type ChatMessage, type ChatOptions, type ParsedToolCalls, type ToolDefinition } from './chat.ts';
import { call, PieError } from './errors.ts';

export type { ChatMessage, ChatOptions, ParsedToolCalls, ToolCall, ToolDefinition } from './chat.ts';

export type ModelInfo = abi.ModelInfo;

/**
 * A model the inferlet may use.
 *
 * @example
 * const model = Model.load();            // the first model offered to the invocation
 * const ids = model.encode('Once upon a time');
 * const ctx = model.newContext();
 */
export class Model {
  /** @internal */
  readonly raw: abi.Model;
  readonly info: ModelInfo;

  private constructor(raw: abi.Model) {
    this.raw = raw;
    this.info = raw.info();
  }

  /** Loads a model by name; without one, the first model offered to this invocation. */
  static load(name?: string): Model {
    const wanted = name ?? models()[0];
    if (wanted === undefined) throw new PieError('not-found', 'no model is available to this invocation');
    return new Model(call(() => abi.Model.load(wanted)));
  }

  get name(): string {
    return this.info.name;
  }

  /** Text to token ids (`bos`: prepend the beginning-of-sequence token, default false). */
  encode(text: string, options: { bos?: boolean } = {}): number[] {
    return Array.from(call(() => this.raw.encode(text, options.bos ?? false)));
  }

  decode(tokens: ArrayLike<number>, options: { skipSpecialTokens?: boolean } = {}): string {
    return this.raw.decode(Uint32Array.from(tokens as ArrayLike<number>), options.skipSpecialTokens ?? true);
  }

  /** The id of a token given its text, if the vocabulary has it. */
  tokenId(token: string): number | undefined {
    return this.raw.tokenId(token) ?? undefined;
  }

  /** The UTF-8 bytes each token stands for on its own (a byte-fallback token is one byte of a character). */
  tokenBytes(tokens: ArrayLike<number>): Uint8Array[] {
    return this.raw.tokenBytes(Uint32Array.from(tokens as ArrayLike<number>));
  }

  /** The special tokens (beginning and end of sequence, chat markers...) by their text. */
  specialTokens(): Map<string, number> {
    return new Map(this.raw.specialTokens());
  }

  /** An empty context on this model. */
  newContext(): Context {
    return Context.create(this);
  }

  /** Renders messages through the model's chat template. */
  renderChat(messages: ChatMessage[], options: ChatOptions = {}): string {
    return call(() => chat.render(this.raw, toAbiMessages(messages), toAbiTools(options.tools), options.add_generation_prompt ?? true));
  }

  /** Token ids that end an assistant turn. */
  get stopTokenIds(): number[] {
    return Array.from(chat.stopTokenIds(this.raw));
  }

  /**
   * How the model writes tool calls, known from its chat template: `hermes`,
   * `llama3_json`, `mistral`, or `generic` (the server's format for models
   * whose template has no tools).
   */
  get toolCallFormat(): string {
    return chat.toolCallFormat(this.raw);
  }

  /**
   * Splits generated text into content and tool calls in the model's format.
   * With `final` false (while streaming) the last call may be incomplete and a
   * tail of the content that may yet start a call is held back.
   *
   * @example
   * const { content, calls } = model.parseToolCalls(gen.text());
   */
  parseToolCalls(text: string, options: { final?: boolean } = {}): ParsedToolCalls {
    return chat.parseToolCalls(this.raw, text, options.final ?? true);
  }

  /**
   * A matcher that holds output to tool calls in this model's format (what
   * `generate({ tools })` uses); pass it as `grammar` and read the calls with
   * `parseToolCalls`. Throws a `PieError` (`invalid-argument`) for a tool
   * schema the grammar engine cannot honour.
   */
  toolCallMatcher(options: ToolCallOptions): Matcher {
    const c = options.choice ?? 'auto';
    const choice: chat.ToolChoice = c === 'auto' ? { tag: 'auto' } : c === 'required' ? { tag: 'required' } : { tag: 'function', val: c.name };
    return Matcher.wrap(call(() => chat.toolCallMatcher(this.raw, toAbiTools(options.tools), choice, options.parallel ?? true)));
  }
}
