/**
 * One error type for the whole runtime. Every error carries a stable `code`
 * (never re-purposed once released), the HTTP status a router or the admin API
 * answers with, and whether retrying the same call may succeed.
 */
export const ERROR_CODES = {
  INVALID_SPEC: { status: 400, retryable: false, summary: "A deployment spec or deploy file failed validation." },
  INVALID_REQUEST: { status: 400, retryable: false, summary: "A request could not be parsed: bad URL encoding, a body that is not JSON, or job data not in the job format (the message names the field)." },
  UNAUTHORIZED: { status: 401, retryable: false, summary: "The admin API needs `Authorization: Bearer <FLOTILLA_ADMIN_TOKEN>`." },
  NOT_FOUND: { status: 404, retryable: false, summary: "No deployment's routePrefix matches the path, the named deployment does not exist, or no async request has the id (unknown, malformed, or its result expired)." },
  PAYLOAD_TOO_LARGE: { status: 413, retryable: false, summary: "The request body is larger than the router's body limit." },
  HANDLER_ERROR: { status: 500, retryable: false, summary: "The deployment's handler threw; the message is the handler's." },
  REPLICA_CRASHED: { status: 502, retryable: true, summary: "Every attempt at the request ended with its replica process dying (maxRetries exhausted)." },
  BACKPRESSURE: { status: 503, retryable: true, summary: "The deployment's queue holds maxQueuedRequests already; retry after the Retry-After seconds." },
  REDIS_UNAVAILABLE: { status: 503, retryable: true, summary: "Redis does not answer; the request was not accepted." },
  TIMEOUT: { status: 504, retryable: true, summary: "No answer within the request timeout (router-side, or the handler's requestTimeoutS)." },
  NO_ROLLBACK_TARGET: { status: 409, retryable: false, summary: "A rollback found no earlier revision to return to (none rolled out before the current one, or the one named is deployed now)." },
  HEALTH_CHECK_FAILED: { status: 503, retryable: true, summary: "A replica's checkHealth() threw, rejected or timed out; a new version's first failed check fails its start." },
  ROLLOUT_FAILED: { status: 500, retryable: false, summary: "A new version did not become healthy (the message has its error); the old version keeps serving." },
  PACKAGE_TOO_LARGE: { status: 413, retryable: false, summary: "A runtimeEnv package is over the package size limit (`--max-package-mib`); nothing was uploaded." },
  PACKAGE_INVALID: { status: 400, retryable: false, summary: "A runtimeEnv package was refused: a symlink leaves workingDir, or an archive entry is unsafe (absolute path, `..`, a link out, a device file)." },
  PACKAGE_FETCH_FAILED: { status: 502, retryable: true, summary: "A host could not fetch a runtimeEnv package: it is not stored, or its bytes do not match its sha256." },
  INSTALL_FAILED: { status: 500, retryable: false, summary: "Installing a runtimeEnv package's dependencies (`npm ci`) failed; the message ends with npm's output." },
  CANCELLED: { status: 409, retryable: false, summary: "The async request was cancelled (`DELETE /-/requests/<id>`) before it finished." },
  INTERNAL: { status: 500, retryable: false, summary: "A bug in Flotilla itself; the message says where." },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface FlotillaErrorOptions {
  cause?: unknown;
  /** Extra fields shown to the caller, e.g. the field that failed validation. */
  details?: Record<string, unknown>;
}

export class FlotillaError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: FlotillaErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "FlotillaError";
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.retryable = ERROR_CODES[code].retryable;
    this.details = options.details;
  }

  /** The JSON body routers and the admin API answer with. */
  toJSON(): { error: { code: ErrorCode; message: string; details?: Record<string, unknown> } } {
    return { error: { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) } };
  }
}

/** A readable one-line message for any thrown value. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === "string") return err;
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}
