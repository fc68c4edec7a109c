/**
 * The programmatic API, as in Ray Serve:
 *
 *   const d = deployment({ name: "echo", import: "echo.ts#Echo" });
 *   await d.deploy();
 *   await d.options({ numReplicas: 10 }).deploy();
 *   const answer = await d.handle().call({ text: "hi" });
 *   await d.delete();
 */
import { ERROR_CODES, FlotillaError, type ErrorCode } from "../errors.js";
import { applyDeployments, deleteDeployment, waitForRollout, type ApplyResult } from "../client/deployment-store.js";
import { packAndUpload } from "../client/package-upload.js";
import type { Reply } from "../shared/protocol.js";
import type { DeploymentRecord, DeploymentStatusRecord } from "../shared/records.js";
import { DEFAULT_ASYNC_RESULT_TTL_S, parseDeploymentSpec, type DeploymentSpec, type DeploymentSpecInput } from "../spec/deployment-spec.js";
import { currentConnection, type Connection } from "./connection.js";

export interface DeployOptions {
  /** Wait until the deployment is HEALTHY at this version. @default true */
  wait?: boolean;
  /** How long to wait. @default 120 */
  timeoutS?: number;
  /** A runtimeEnv package larger than this is refused before anything is uploaded. @default 100 */
  maxPackageMiB?: number;
}

export interface CallOptions {
  /** Reject with TIMEOUT after this long. @default 60000 */
  timeoutMs?: number;
}

export interface ResultOptions {
  /** Seconds to wait for the request to finish. @default 0 (read it as it stands) */
  wait?: number;
}

/** Calls one deployment through its queue; usable from anywhere, including inside another deployment's handler. */
export class DeploymentHandle {
  constructor(
    readonly name: string,
    private readonly connection: () => Connection,
  ) {}

  /** Sends `payload` to the deployment's `call()`; resolves with its return value, rejects with its error. */
  async call<T = unknown>(payload?: unknown, options: CallOptions = {}): Promise<T> {
    const reply = await this.callRaw(payload, options);
    if (reply.error) throw this.replyError(reply);
    if (reply.stream) {
      // A streaming handler called with call(): its values, gathered.
      const values: unknown[] = [];
      for await (const chunk of this.connection().requestClient.openStream(this.name, reply, options.timeoutMs !== undefined ? { idleTimeoutMs: options.timeoutMs } : {})) {
        values.push(chunk.kind === "text" ? chunk.text : chunk.kind === "bytes" ? new Uint8Array(chunk.bytes) : chunk.value);
      }
      return values as T;
    }
    return reply.value as T;
  }

  /**
   * Sends `payload` to a deployment whose `call()` streams (returns an async iterable): the values it
   * yields, in order, each as soon as it is yielded. Breaking out of the loop cancels the stream (the
   * handler's signal fires); a stream that fails rejects with a FlotillaError (REPLICA_CRASHED,
   * HANDLER_ERROR, TIMEOUT). A handler that returns a plain value yields it once.
   * `timeoutMs` limits the wait for the first value and then between values.
   */
  async *stream<T = unknown>(payload?: unknown, options: CallOptions = {}): AsyncGenerator<T, void, undefined> {
    const client = this.connection().requestClient;
    const reply = await client.submit(this.name, { kind: "call", payload: payload ?? null }, options);
    if (reply.error) throw this.replyError(reply);
    if (!reply.stream) {
      yield reply.value as T;
      return;
    }
    const reader = client.openStream(this.name, reply, options.timeoutMs !== undefined ? { idleTimeoutMs: options.timeoutMs } : {});
    for await (const chunk of reader) {
      yield (chunk.kind === "text" ? chunk.text : chunk.kind === "bytes" ? new Uint8Array(chunk.bytes) : chunk.value) as T;
    }
  }

  private replyError(reply: Reply): FlotillaError {
    const error = reply.error;
    const code = error?.code === "TIMEOUT" || error?.code === "REPLICA_CRASHED" || error?.code === "NOT_FOUND" ? error.code : "HANDLER_ERROR";
    return new FlotillaError(code, error?.message ?? "the request failed", { details: { deployment: this.name, replica: reply.replica } });
  }

  /**
   * Queues `payload` as an async request and resolves with its id at once (see README, "Async requests"):
   * read it with `result(id)` or `GET /-/requests/<id>` on any router. Rejects with NOT_FOUND when the
   * deployment does not exist, BACKPRESSURE when its queue holds maxQueuedRequests already.
   */
  async submit(payload?: unknown): Promise<string> {
    const conn = this.connection();
    const raw = await conn.redis.hget(conn.keys.deployments, this.name);
    if (raw === null) throw new FlotillaError("NOT_FOUND", `deployment '${this.name}' does not exist`);
    const { spec } = JSON.parse(raw) as DeploymentRecord;
    return conn.asyncClient.submit(this.name, { kind: "call", payload: payload ?? null }, {
      resultTtlS: spec.asyncResultTtlS ?? DEFAULT_ASYNC_RESULT_TTL_S,
      ...(spec.maxQueuedRequests !== undefined ? { maxQueued: spec.maxQueuedRequests } : {}),
    });
  }

  /**
   * The return value of an async request once it has finished, waiting up to `wait` seconds for it. Throws
   * its FlotillaError if it failed (HANDLER_ERROR, REPLICA_CRASHED, ...), CANCELLED if it was cancelled,
   * NOT_FOUND for an unknown or expired id, and TIMEOUT (details: `status`, `progress`) if it has not
   * finished within `wait`.
   */
  async result<T = unknown>(id: string, options: ResultOptions = {}): Promise<T> {
    const view = await this.connection().asyncClient.settled(id, options.wait ?? 0);
    const details = { deployment: view.deployment, id, status: view.status };
    if (view.status === "succeeded") return (view.result?.value ?? null) as T;
    if (view.status === "cancelled") throw new FlotillaError("CANCELLED", `async request ${id} was cancelled`, { details });
    if (view.status === "failed") {
      const code = view.result?.error?.code;
      const known: ErrorCode = code !== undefined && code in ERROR_CODES ? (code as ErrorCode) : "HANDLER_ERROR";
      throw new FlotillaError(known, view.result?.error?.message ?? `async request ${id} failed`, { details });
    }
    throw new FlotillaError("TIMEOUT", `async request ${id} is still ${view.status} after ${options.wait ?? 0} s`, { details: { ...details, progress: view.progress } });
  }

  /** Cancels an async request (see README, "Async requests"); resolves with its status after the cancel. */
  async cancel(id: string): Promise<string> {
    return (await this.connection().asyncClient.cancel(id)).status;
  }

  /** The whole reply: value or error, plus which replica and version answered. */
  callRaw(payload?: unknown, options: CallOptions = {}): Promise<Reply> {
    return this.connection().requestClient.submit(this.name, { kind: "call", payload: payload ?? null }, options);
  }
}

export class Deployment {
  /** The validated spec with defaults. */
  readonly spec: DeploymentSpec;

  constructor(
    private readonly input: DeploymentSpecInput,
    private readonly conn?: Connection,
  ) {
    this.spec = parseDeploymentSpec(input);
  }

  get name(): string {
    return this.spec.name;
  }

  private connection(): Connection {
    return this.conn ?? currentConnection();
  }

  /** A copy with some options changed, e.g. `d.options({ numReplicas: 10 })`. */
  options(changes: Partial<DeploymentSpecInput>): Deployment {
    return new Deployment({ ...this.input, ...changes } as DeploymentSpecInput, this.conn);
  }

  /**
   * Creates or updates the deployment; by default waits until it is HEALTHY.
   * With runtimeEnv, packs and uploads workingDir first; the result's `warning`
   * says when the code changed but an explicit version did not.
   */
  async deploy(options: DeployOptions = {}): Promise<ApplyResult> {
    const conn = this.connection();
    // A relative runtimeEnv.workingDir is relative to the current directory.
    const packages = await packAndUpload(conn.redis, conn.keys, [this.spec], { baseDir: process.cwd(), maxBytes: (options.maxPackageMiB ?? 100) * 1024 * 1024 });
    const [result] = await applyDeployments(conn.redis, conn.keys, [this.spec], Date.now(), { packages });
    if (!result) throw new FlotillaError("INTERNAL", "apply returned no result");
    if (options.wait !== false) {
      await waitForRollout(conn.redis, conn.keys, [{ name: result.name, generation: result.generation }], { timeoutMs: (options.timeoutS ?? 120) * 1000 });
    }
    return result;
  }

  handle(): DeploymentHandle {
    return new DeploymentHandle(this.name, () => this.connection());
  }

  /** Removes the deployment: replicas drain, queued requests are answered 404. */
  async delete(): Promise<boolean> {
    const conn = this.connection();
    return deleteDeployment(conn.redis, conn.keys, this.name);
  }

  /** The controller's view of this deployment, or undefined before it has seen it. */
  async status(): Promise<DeploymentStatusRecord | undefined> {
    const conn = this.connection();
    const raw = await conn.redis.hget(conn.keys.deploymentStatus, this.name);
    return raw ? (JSON.parse(raw) as DeploymentStatusRecord) : undefined;
  }
}

/** Declares a deployment (validated now; nothing runs until `deploy()`). */
export function deployment(spec: DeploymentSpecInput, connection?: Connection): Deployment {
  return new Deployment(spec, connection);
}

/** A handle to a deployment by name, e.g. from inside another deployment's handler. */
export function getHandle(name: string, connection?: Connection): DeploymentHandle {
  return new DeploymentHandle(name, () => connection ?? currentConnection());
}
