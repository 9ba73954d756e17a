/// <reference path="./pie-inferlet-grammar.d.ts" />
/// <reference path="./pie-inferlet-model.d.ts" />
/// <reference path="./pie-inferlet-types.d.ts" />
declare module 'pie:inferlet/chat@0.2.0' {
  /**
   * Renders messages (and tools) through the model's chat template.
   */
  export function render(model: Model, messages: Array<Message>, tools: Array<Tool>, addGenerationPrompt: boolean): string;
  /**
   * Renders and tokenizes, with exactly one beginning-of-sequence token.
   * A conversation too long for any context of the model is `context-length-exceeded` before it is tokenized.
   */
  export function encode(model: Model, messages: Array<Message>, tools: Array<Tool>, addGenerationPrompt: boolean): Uint32Array;
  /**
   * Token ids that end an assistant turn.
   */
  export function stopTokenIds(model: Model): Uint32Array;
  /**
   * How the model writes tool calls, known from its chat template: hermes, llama3_json, mistral, or
   * generic (this server's format for models whose template has no tools: they are described in a
   * system message, calls are <tool_call>{"name": …, "arguments": …}</tool_call>).
   */
  export function toolCallFormat(model: Model): string;
  /**
   * A matcher that constrains output to the model's call format: calls name declared tools and carry
   * compact JSON arguments valid against their schemas; `parallel` false allows one call.
   */
  export function toolCallMatcher(model: Model, tools: Array<Tool>, choice: ToolChoice, parallel: boolean): Matcher;
  /**
   * Splits generated text into content and calls. `final` false (while streaming): the last call may
   * be incomplete, and a tail of the content that may yet start a call is held back.
   */
  export function parseToolCalls(model: Model, text: string, final: boolean): ParsedToolCalls;
  export type Error = import('pie:inferlet/types@0.2.0').Error;
  export type Model = import('pie:inferlet/model@0.2.0').Model;
  export type Matcher = import('pie:inferlet/grammar@0.2.0').Matcher;
  export interface Message {
    /**
     * system, developer, user, assistant or tool.
     */
    role: string,
    content: string,
    name?: string,
    /**
     * Tool calls of an assistant message, as OpenAI's JSON array.
     */
    toolCalls?: string,
    /**
     * The call a tool message answers.
     */
    toolCallId?: string,
  }
  export interface Tool {
    name: string,
    description: string,
    /**
     * JSON schema of the arguments.
     */
    parameters: string,
  }
  /**
   * Which calls the output may hold.
   */
  export type ToolChoice = ToolChoiceAuto | ToolChoiceRequired | ToolChoiceFunction;
  /**
   * Free text; any call, once started, is valid.
   */
  export interface ToolChoiceAuto {
    tag: 'auto',
  }
  /**
   * One or more calls and nothing else.
   */
  export interface ToolChoiceRequired {
    tag: 'required',
  }
  /**
   * Calls of this function only.
   */
  export interface ToolChoiceFunction {
    tag: 'function',
    val: string,
  }
  /**
   * A call read out of generated text.
   */
  export interface ToolCall {
    name: string,
    /**
     * The arguments as JSON text (incomplete while `complete` is false).
     */
    arguments: string,
    complete: boolean,
  }
  export interface ParsedToolCalls {
    /**
     * Text outside the calls.
     */
    content: string,
    calls: Array<ToolCall>,
  }
}
