/**
 * Every error the gateway returns, as one small hierarchy. Each renders as
 * OpenAI's error JSON: {"error": {"message", "type", "param", "code"}}.
 */

export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export class ApiError extends Error {
  override name = 'ApiError';
  readonly status: number;
  readonly type: string;
  readonly code: string | null;
  readonly param: string | null;

  constructor(status: number, type: string, message: string, options: { code?: string | null; param?: string | null } = {}) {
    super(message);
    this.status = status;
    this.type = type;
    this.code = options.code ?? null;
    this.param = options.param ?? null;
  }

  toJSON(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400: the request is malformed or asks for something this server does not do. */
export class InvalidRequestError extends ApiError {
  constructor(message: string, param: string | null = null, code: string | null = null) {
    super(400, 'invalid_request_error', message, { param, code });
  }
}

/** 400: a field OpenAI defines that this server does not implement (yet). */
export class UnsupportedFieldError extends InvalidRequestError {
  constructor(param: string, detail = '') {
    super(`${param} is not supported by this server${detail ? `: ${detail}` : ''}`, param, 'unsupported_parameter');
  }
}

/** 401: no key, or an unknown one. */
export class AuthenticationError extends ApiError {
  constructor(message: string) {
    super(401, 'invalid_request_error', message, { code: 'invalid_api_key' });
  }
}

/** 403: the key is valid but its scopes do not cover this route or model. */
export class PermissionDeniedError extends ApiError {
  constructor(message: string) {
    super(403, 'invalid_request_error', message, { code: 'insufficient_permissions' });
  }
}

export class NotFoundError extends ApiError {
  constructor(message: string, code: string | null = null, param: string | null = null) {
    super(404, 'invalid_request_error', message, { code, param });
  }
}

export class ModelNotFoundError extends NotFoundError {
  constructor(model: string) {
    super(`The model \`${model}\` does not exist or you do not have access to it.`, 'model_not_found', 'model');
  }
}

/** 429: a limit of the server (pages, tokens) was reached; retrying later may work. */
export class RateLimitError extends ApiError {
  constructor(message: string, code: string | null = null) {
    super(429, 'rate_limit_error', message, { code });
  }
}

/** 503: not ready yet, or shutting down. */
export class ServiceUnavailableError extends ApiError {
  constructor(message: string) {
    super(503, 'server_error', message, { code: 'service_unavailable' });
  }
}

/** 500: a bug or a failed inferlet; the message says which. */
export class InternalServerError extends ApiError {
  constructor(message: string) {
    super(500, 'server_error', message, { code: 'internal_error' });
  }
}
