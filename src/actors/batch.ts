/**
 * Dynamic batching inside a replica (Ray Serve's `@serve.batch`): `batch(fn)`
 * turns a function of many inputs into a function of one input. Requests that
 * arrive within `batchWaitTimeoutS` of the first, up to `maxBatchSize` of
 * them, reach `fn` together, and each caller gets its own output.
 *
 * @example
 * export class Embedder {
 *   private model = loadModel();
 *   // A class field runs in the constructor, so the arrow's `this` is the instance.
 *   embed = batch((texts: string[]) => this.model.embed(texts), { maxBatchSize: 16 });
 *   reconfigure(config: { maxBatchSize: number }) { this.embed.setBatchOptions({ maxBatchSize: config.maxBatchSize }); }
 *   call(request: HttpRequest, context: RequestContext) { return this.embed(request.json<{ text: string }>().text, context); }
 * }
 */
import { parseBatchOptions, type BatchOptions, type BatchOptionsInput } from "./batch-options.js";
import { BatchQueue } from "./batch-queue.js";

export type { BatchOptions, BatchOptionsInput } from "./batch-options.js";

/** The optional second argument of a batched function: the handler's context fits as it is. */
export interface BatchCallContext {
  /** When it aborts before the request's batch starts, the request leaves the batch and rejects with the abort reason. */
  signal?: AbortSignal;
}

/** A function of one input whose calls are gathered into batches. */
export interface BatchedFunction<I, O, T = unknown> {
  (this: T, input: I, context?: BatchCallContext): Promise<O>;
  /** Changes options in place, for requests already waiting too (e.g. from `reconfigure`). Options left out keep their value. */
  setBatchOptions(options: BatchOptionsInput): void;
  /** The options in force. */
  readonly batchOptions: Readonly<BatchOptions>;
}

function isAbortSignal(value: unknown): value is AbortSignal {
  return typeof value === "object" && value !== null && typeof (value as AbortSignal).aborted === "boolean" && typeof (value as AbortSignal).addEventListener === "function";
}

/**
 * Wraps `fn`, which takes an array of inputs and returns (or resolves to) an
 * array of outputs, one per input and in the same order. Batches never mix
 * calls made on different `this` values: each object calling it has a queue
 * of its own, and `fn` runs with that `this`.
 *
 * If `fn` throws, every request of its batch rejects with that error (over
 * HTTP: 500 HANDLER_ERROR). If it returns something other than an array of
 * the right length, they reject with an error that says what it returned.
 */
export function batch<I, O, T = unknown>(fn: (this: T, inputs: I[]) => O[] | PromiseLike<O[]>, options?: BatchOptionsInput): BatchedFunction<I, O, T> {
  if (typeof fn !== "function") throw new TypeError(`batch(): fn must be a function that takes an array of inputs (got ${fn === null ? "null" : typeof fn})`);
  let current = parseBatchOptions(options);
  const queues = new Map<unknown, BatchQueue<I, O>>();

  const batched = function (this: T, input: I, context?: BatchCallContext): Promise<O> {
    const signal = context?.signal;
    if (signal !== undefined && !isAbortSignal(signal)) {
      return Promise.reject(new TypeError("batch(): the second argument's signal must be an AbortSignal (pass the handler's context, or { signal })"));
    }
    const self = this;
    let queue = queues.get(self);
    if (!queue) {
      const created: BatchQueue<I, O> = new BatchQueue<I, O>(
        (inputs) => fn.call(self, inputs),
        () => current,
        () => {
          if (queues.get(self) === created && created.idle) queues.delete(self);
        },
      );
      queues.set(self, created);
      queue = created;
    }
    return queue.add(input, signal);
  } as BatchedFunction<I, O, T>;

  Object.defineProperty(batched, "batchOptions", { get: () => current, enumerable: true });
  batched.setBatchOptions = (change: BatchOptionsInput): void => {
    current = parseBatchOptions(change, current);
    for (const queue of [...queues.values()]) queue.pump();
  };
  return batched;
}
