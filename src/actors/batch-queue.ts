/**
 * One queue of requests waiting to be batched: it keeps arrival times and a
 * timer, asks nextBatchStep what to do, calls the batch function and hands
 * each caller its own output. A caller whose signal aborts before its batch
 * starts leaves the queue.
 */
import type { BatchOptions } from "./batch-options.js";
import { nextBatchStep } from "./batch-plan.js";

interface Entry<I, O> {
  input: I;
  arrivedAt: number;
  resolve(output: O): void;
  reject(err: unknown): void;
  /** Stops listening to the caller's signal. */
  detach?: () => void;
}

export class BatchQueue<I, O> {
  private readonly waiting: Array<Entry<I, O>> = [];
  private running = 0;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  private soon = false;

  constructor(
    /** Calls the batch function; may throw or return a promise. */
    private readonly runBatch: (inputs: I[]) => unknown,
    /** Read at every decision, so option changes apply to what already waits. */
    private readonly options: () => Readonly<BatchOptions>,
    /** Called when nothing waits or runs any more. */
    private readonly onIdle: () => void = () => undefined,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get idle(): boolean {
    return this.waiting.length === 0 && this.running === 0;
  }

  /** Resolves with this input's output, or rejects with the batch's error or the signal's reason. */
  add(input: I, signal?: AbortSignal): Promise<O> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<O>((resolve, reject) => {
      const entry: Entry<I, O> = { input, arrivedAt: this.now(), resolve, reject };
      if (signal) {
        const onAbort = (): void => this.withdraw(entry, signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
        entry.detach = () => signal.removeEventListener("abort", onAbort);
      }
      this.waiting.push(entry);
      if (this.waiting.length >= this.options().maxBatchSize) this.pump();
      else this.pumpSoon();
    });
  }

  /**
   * Starts every batch that is due and sets the timer for the next one.
   * `notBefore`: a timer set for that time has fired, so the clock has reached it.
   */
  pump(notBefore = Number.NEGATIVE_INFINITY): void {
    for (;;) {
      const view = { waiting: this.waiting.length, oldestArrivedAt: this.waiting[0]?.arrivedAt, running: this.running };
      const step = nextBatchStep(view, this.options(), Math.max(this.now(), notBefore));
      if (step.kind === "start") {
        this.start(this.waiting.splice(0, step.size));
        continue;
      }
      if (step.kind === "wait") this.wakeAt(step.at);
      else this.clearTimer();
      if (this.idle) this.onIdle();
      return;
    }
  }

  /** After the current turn: requests that arrive together (a batch timeout of 0) share a batch. */
  private pumpSoon(): void {
    if (this.soon) return;
    this.soon = true;
    setImmediate(() => {
      this.soon = false;
      this.pump();
    });
  }

  private wakeAt(at: number): void {
    if (this.timer && this.timerAt === at) return;
    this.clearTimer();
    this.timerAt = at;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.pump(at);
      },
      Math.max(0, Math.ceil(at - this.now())),
    );
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private withdraw(entry: Entry<I, O>, reason: unknown): void {
    const index = this.waiting.indexOf(entry);
    if (index === -1) return; // its batch has started: it gets its output
    this.waiting.splice(index, 1);
    entry.reject(reason);
    this.pump();
  }

  private start(entries: Array<Entry<I, O>>): void {
    for (const e of entries) e.detach?.();
    this.running++;
    let result: unknown;
    try {
      result = this.runBatch(entries.map((e) => e.input));
    } catch (err) {
      result = Promise.reject(err);
    }
    Promise.resolve(result).then(
      (outputs: unknown) => {
        this.finished();
        const problem = outputsProblem(outputs, entries.length);
        if (problem) {
          const err = new Error(problem);
          for (const e of entries) e.reject(err);
        } else {
          const list = outputs as O[];
          entries.forEach((e, i) => e.resolve(list[i] as O));
        }
      },
      (err: unknown) => {
        this.finished();
        for (const e of entries) e.reject(err);
      },
    );
  }

  /** The next batch starts before the callers of this one resume: the model is not left idle meanwhile. */
  private finished(): void {
    this.running--;
    this.pump();
  }
}

function outputsProblem(outputs: unknown, expected: number): string | undefined {
  if (!Array.isArray(outputs)) {
    const got = outputs === null ? "null" : typeof outputs === "object" ? "an object" : outputs === undefined ? "undefined" : `a ${typeof outputs}`;
    return `batch(): the batch function must return an array with one output per input: expected ${expected} outputs, got ${got}`;
  }
  if (outputs.length !== expected) {
    return `batch(): the batch function returned the wrong number of outputs: expected ${expected} outputs (one per input), got ${outputs.length}`;
  }
  return undefined;
}
