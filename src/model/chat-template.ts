/**
 * Chat templates: the model's own Jinja template from tokenizer_config.json,
 * rendered with @huggingface/jinja, or a plain fallback for models without one.
 */
import { Template } from '@huggingface/jinja';
import { ModelLoadError } from './errors.ts';

export interface ChatMessage {
  role: string;
  content: string | null;
  [key: string]: unknown;
}

export interface RenderOptions {
  addGenerationPrompt?: boolean;
  tools?: unknown[];
  extra?: Record<string, unknown>;
}

/** A plain template for models trained without one (e.g. stories260K). */
export const FALLBACK_CHAT_TEMPLATE =
  "{% for message in messages %}{{ message['role'] | capitalize }}: {{ message['content'] }}\n{% endfor %}" +
  "{% if add_generation_prompt %}Assistant:{% endif %}";

export class ChatTemplate {
  readonly source: string;
  readonly isFallback: boolean;
  private readonly specials: { bos_token: string; eos_token: string };
  private readonly template: Template;

  constructor(source: string, specials: { bos_token: string; eos_token: string }, isFallback = false) {
    this.source = source;
    this.specials = specials;
    this.isFallback = isFallback;
    try {
      this.template = new Template(source);
    } catch (err) {
      throw new ModelLoadError(`chat template does not parse: ${(err as Error).message}`);
    }
  }

  render(messages: ChatMessage[], options: RenderOptions = {}): string {
    return this.template.render({
      messages,
      add_generation_prompt: options.addGenerationPrompt ?? true,
      ...(options.tools ? { tools: options.tools } : {}),
      ...this.specials,
      ...options.extra,
    });
  }
}

/** The template source from tokenizer_config.json's chat_template (a string or a list of named templates). */
export function pickChatTemplate(raw: unknown): string | null {
  if (typeof raw === 'string') return raw;
  if (Array.isArray(raw)) {
    const named = raw.find((t) => t?.name === 'default') ?? raw[0];
    return typeof named?.template === 'string' ? named.template : null;
  }
  return null;
}
