/**
 * A generation's text split, as it grows, into the deltas a stream carries:
 * content, each call's start (id and name), its argument fragments. The host
 * fills stream templates with them; built-in inferlets that stream chunks
 * themselves (with logprobs; Responses) use it with the model's parse over the ABI.
 */
import type { ParsedCall, ParsedCalls } from './tool-calls.ts';

/** What one step of a streamed generation adds: text, new calls (name known), argument fragments. */
export interface ToolCallDelta {
  content?: string;
  calls: Array<{ index: number; id: string; name: string } | { index: number; arguments: string }>;
}

/**
 * Splits a generation's text, as it grows, into deltas (`parse` reads the
 * whole text so far; `newId` names each call): content only ever grows, each
 * call starts once with its id and name, then its arguments come in fragments.
 * Used by the host's stream templates and by inferlets that stream themselves.
 */
export class ToolCallStream {
  private text = '';
  private sentContent = 0;
  private readonly sentArgs: number[] = [];
  private last: ParsedCall[] = [];
  private readonly parse: (text: string, final: boolean) => ParsedCalls;
  private readonly newId: () => string;

  constructor(parse: (text: string, final: boolean) => ParsedCalls, newId: () => string) {
    this.parse = parse;
    this.newId = newId;
  }

  push(text: string): ToolCallDelta | null {
    this.text += text;
    return text === '' ? null : this.diff(false);
  }

  /** The rest, once the generation has ended (a tail held back as a possible call start is content after all). */
  end(): ToolCallDelta | null {
    return this.diff(true);
  }

  /** Whether the index-th call's arguments are complete (so far). */
  complete(index: number): boolean {
    return this.last[index]?.complete ?? false;
  }

  private diff(final: boolean): ToolCallDelta | null {
    const parsed = this.parse(this.text, final);
    this.last = parsed.calls;
    const delta: ToolCallDelta = { calls: [] };
    if (parsed.content.length > this.sentContent) {
      delta.content = parsed.content.slice(this.sentContent);
      this.sentContent = parsed.content.length;
    }
    parsed.calls.forEach((c, k) => {
      if (k >= this.sentArgs.length) {
        this.sentArgs.push(0);
        delta.calls.push({ index: k, id: this.newId(), name: c.name });
      }
      if (c.arguments.length > this.sentArgs[k]!) {
        delta.calls.push({ index: k, arguments: c.arguments.slice(this.sentArgs[k]) });
        this.sentArgs[k] = c.arguments.length;
      }
    });
    return delta.content !== undefined || delta.calls.length > 0 ? delta : null;
  }
}

/** A new call id, as OpenAI writes them. */
export function newCallId(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let id = 'call_';
  for (let i = 0; i < 24; i++) id += alphabet[Math.floor(Math.random() * alphabet.length)];
  return id;
}
