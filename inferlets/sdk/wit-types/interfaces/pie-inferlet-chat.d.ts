/// <reference path="./pie-inferlet-model.d.ts" />
/// <reference path="./pie-inferlet-types.d.ts" />
declare module 'pie:inferlet/chat@0.1.0' {
  /**
   * Renders messages (and tools) through the model's chat template.
   */
  export function render(model: Model, messages: Array<Message>, tools: Array<Tool>, addGenerationPrompt: boolean): string;
  /**
   * Renders and tokenizes, with exactly one beginning-of-sequence token.
   */
  export function encode(model: Model, messages: Array<Message>, tools: Array<Tool>, addGenerationPrompt: boolean): Uint32Array;
  /**
   * Token ids that end an assistant turn.
   */
  export function stopTokenIds(model: Model): Uint32Array;
  export type Error = import('pie:inferlet/types@0.1.0').Error;
  export type Model = import('pie:inferlet/model@0.1.0').Model;
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
}
