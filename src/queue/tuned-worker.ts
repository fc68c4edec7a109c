/**
 * A BullMQ worker tuned for a replica that is mostly idle: fewer Redis round
 * trips between a request's arrival and its start. See tuneIdleWorker.
 */
import type { Logger } from "../shared/logger.js";
import { raw2NextJobData, type Worker } from "./bullmq.js";
import { missingMembers, warnFallbackOnce } from "./internals-check.js";
import { LEAN_TAKE } from "./lean-scripts.js";

/** Keys of a queue the idle tuning reads (a DeploymentKeys has them). */
export interface MarkerKeys {
  marker: string;
  wait: string;
  prioritized: string;
  delayed: string;
}

/**
 * Lua: removes the base marker (member "0") when nothing waits. A stale base
 * marker also makes BullMQ look at the delayed set again; so when one is
 * removed and delayed jobs exist, the marker for the next one is set in its
 * place (as BullMQ's own scripts do), and the wait learns when that job is due.
 * KEYS[1] = marker, KEYS[2] = wait list, KEYS[3] = prioritized set,
 * KEYS[4] = delayed set; no ARGV. Returns 1 when it removed the base marker,
 * 0 otherwise.
 */
const CLEAR_STALE_MARKER = `
if redis.call("LLEN", KEYS[2]) > 0 or redis.call("ZCARD", KEYS[3]) > 0 then
  return 0
end
if redis.call("ZREM", KEYS[1], "0") == 0 then
  return 0
end
local next = redis.call("ZRANGE", KEYS[4], 0, 0, "WITHSCORES")
if next[2] then
  redis.call("ZADD", KEYS[1], tonumber(next[2]) / 0x1000, "1")
end
return 1
`;

type FetchNext = (token: string, opts?: { block?: boolean }) => Promise<unknown>;
/** BullMQ's raw moveToActive answer: job data (undefined when none), id, rate-limit delay, next delayed timestamp. */
type NextJobData = [unknown, ...unknown[]];
type BackendMoveToActive = (token: string, name?: string) => Promise<NextJobData>;
type WaitForJob = (blockTimeout: number) => Promise<unknown>;

export interface RedisClientish {
  eval(script: string, numKeys: number, ...args: string[]): Promise<unknown>;
  /** A single connection's socket (absent on a Cluster client). */
  stream?: { cork?(): void; uncork?(): void; writable?: boolean };
}

interface WorkerInternals {
  _getNextJob?: FetchNext;
  moveToActive?: (token: string, name?: string) => Promise<unknown>;
  drained?: boolean;
  closing?: unknown;
  opts: { name?: string; lockDuration?: number; limiter?: unknown };
  backend?: {
    waitForJob?: WaitForJob;
    moveToActive?: BackendMoveToActive;
    blockingClient?: Promise<RedisClientish>;
    /** The facade BullMQ's backend reads its connection and keys from (`client` is a getter). */
    queue?: { keys?: Record<string, string> };
  };
}

/** BullMQ's keys of a queue the lean take uses (`""` is the job key prefix). */
const TAKE_KEYS = ["wait", "active", "prioritized", "delayed", "meta", "marker", ""] as const;

/** Sends the lean take on a connection at once (in this turn); what it took, decoded. */
export type TakeSender = (client: RedisClientish, token: string, fallback?: RedisClientish) => Promise<NextJobData | undefined>;

/**
 * The lean take (lean-scripts.ts) for `worker`; undefined when the worker
 * has a rate limiter (which the lean take does not count) or BullMQ's keys
 * or decoder are not where expected. The take reads Redis's clock: it may
 * run long after it is sent, behind a blocking wait.
 */
export function leanTake(worker: object): TakeSender | undefined {
  const target = worker as WorkerInternals;
  const keys = target.backend?.queue?.keys;
  const lockDuration = target.opts.lockDuration;
  if (!keys || !TAKE_KEYS.every((k) => typeof keys[k] === "string") || typeof raw2NextJobData !== "function") return undefined;
  if (target.opts.limiter || typeof lockDuration !== "number") return undefined;
  const scriptKeys = TAKE_KEYS.slice(0, 6).map((k) => keys[k] as string);
  const decode = raw2NextJobData;
  return async (client, token, fallback) => {
    const raw = await LEAN_TAKE.run(client as never, scriptKeys, [keys[""] as string, 0, token, lockDuration, target.opts.name ?? ""], fallback as never);
    return decode(raw) as NextJobData;
  };
}

/**
 * Calls `fn` once the microtasks queued so far, and those they queue, have
 * run: commands issued along a chain of awaits started now are all issued
 * by then, and nothing waits for the event loop's next phase.
 */
function afterMicrotasks(fn: () => void): void {
  queueMicrotask(() => process.nextTick(fn));
}

/**
 * Runs `send`, which issues commands on `client` in this turn, with the
 * client's socket corked, so they leave in one write (one system call, one
 * wake-up of Redis) instead of one each. Uncorked once this turn's microtasks
 * have run.
 */
export function inOneWrite(client: RedisClientish, send: () => void): void {
  const stream = client.stream;
  if (!stream?.writable || typeof stream.cork !== "function" || typeof stream.uncork !== "function") {
    send();
    return;
  }
  stream.cork();
  try {
    send();
  } finally {
    afterMicrotasks(() => stream.uncork?.());
  }
}

/** A connection a finish can be sent on (an ioredis client). */
export type LaneClient = RedisClientish & { evalsha(...args: unknown[]): Promise<unknown> };

/**
 * Lets a job's finish go ahead of the worker's next blocking wait, on the
 * blocking connection, in the same write. A fast handler's finish (the usual
 * case of a replica taking one request at a time) and the wait for the next
 * job then reach Redis in one write where they took two. Either may come
 * first within a turn:
 *
 * - A wait asked for is held until a finish goes ahead of it, or the turn
 *   ends.
 * - A finish while no wait is out on the connection goes on it, corked until
 *   this turn's microtasks have run; a wait asked for meanwhile is sent at
 *   once, into the same write.
 *
 * While a wait is out (sent, not answered), a finish goes on the worker's own
 * connection, since the wait blocks the blocking connection's every later
 * command.
 */
export class WaitLane {
  private client: LaneClient | undefined;
  private due: (() => void) | undefined;
  private usable: () => boolean = () => false;
  /** A wait was sent on the blocking connection and has not been answered. */
  private out = false;
  /** A finish went on the blocking connection and its write is still corked. */
  private corked = false;

  /**
   * Holds a wait on `client` until a finish goes ahead of it or the turn
   * ends; at once when a finish's write is still open. `usable`: whether a
   * finish may still go on that connection (not once the worker closes,
   * which disconnects it). Call `waiting` with the wait once it is sent.
   */
  hold(client: LaneClient, usable: () => boolean): Promise<void> {
    this.client = client;
    this.usable = usable;
    if (this.corked) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const send = (): void => {
        if (this.due !== send) return;
        this.due = undefined;
        clearImmediate(atTurnEnd);
        resolve();
      };
      const atTurnEnd = setImmediate(send);
      this.due = send;
    });
  }

  /** Marks the blocking connection busy with `wait` until it is answered. */
  waiting(wait: Promise<unknown> | undefined): void {
    if (!wait) return;
    this.out = true;
    const answered = (): void => {
      this.out = false;
    };
    wait.then(answered, answered);
  }

  /**
   * For a finish about to be sent: the blocking connection, corked until
   * this turn's microtasks have run, when no wait is out on it; undefined
   * otherwise. The finish must be sent on it at once, then `release` called:
   * a held wait follows it.
   */
  ahead(): { client: LaneClient; release(): void } | undefined {
    const client = this.client;
    const stream = client?.stream;
    if (this.out || !client || !this.usable() || !stream?.writable || typeof stream.cork !== "function" || typeof stream.uncork !== "function") return undefined;
    stream.cork();
    this.corked = true;
    afterMicrotasks(() => {
      this.corked = false;
      stream.uncork?.();
    });
    const send = this.due;
    return { client, release: () => send?.() };
  }
}

/** Calls `call` with the backend's `queue.client` answering its blocking connection instead. */
function onBlockingConnection<T>(facade: object, blockingClient: Promise<RedisClientish>, call: () => T): T | undefined {
  const own = Object.getOwnPropertyDescriptor(facade, "client");
  if (!own?.configurable || !own.get) return undefined;
  Object.defineProperty(facade, "client", { configurable: true, enumerable: own.enumerable ?? true, get: () => blockingClient });
  try {
    return call();
  } finally {
    Object.defineProperty(facade, "client", own);
  }
}


/**
 * What the tuning calls or replaces on a BullMQ Worker. The first five are
 * needed for any tuning; the last two for the fetch that rides with the wait
 * (without them the wait is BullMQ's own).
 */
const TUNING_INTERNALS = {
  _getNextJob: "function",
  moveToActive: "function",
  drained: "boolean",
  "backend.waitForJob": "function",
  "backend.moveToActive": "function",
  "backend.blockingClient": "object",
  "backend.queue": "object",
} as const;

/** The internals of `worker` the tuning relies on that it lacks (empty: all there). */
export function missingTuningInternals(worker: object): string[] {
  const missing = missingMembers(worker, TUNING_INTERNALS);
  const facade = (worker as { backend?: { queue?: object } }).backend?.queue;
  const client = facade ? Object.getOwnPropertyDescriptor(facade, "client") : undefined;
  if (facade && !(client?.configurable && client.get)) missing.push("backend.queue.client (a configurable getter)");
  return missing;
}

const hasJob = (data: NextJobData | undefined): data is NextJobData => Array.isArray(data) && data[0] !== undefined && data[0] !== null;

/**
 * Trims the Redis round trips of a worker that is mostly idle, which is where
 * a request's latency is decided. BullMQ alone, per request arriving at an
 * idle worker: a blocking wait ends, then a fetch (moveToActive), and another
 * fetch before the job starts; after the job, a wait that ends at once on the
 * marker BullMQ left when it handed out the job, another fetch that finds
 * nothing, and only then a real wait. Here:
 *
 * - **Start at once.** After a fetch returns a job, BullMQ's main loop fetches
 *   again and waits for that answer before it starts the job it already has.
 *   When the replica runs nothing (`isIdle`), that fetch returns nothing
 *   without asking Redis, and the job starts.
 * - **No stale marker.** Each blocking wait is preceded, in the same write, by
 *   a small script that removes the base marker when the wait list and the
 *   prioritized set are empty (leaving the marker of the next delayed job, if
 *   any). It is atomic, so a job added at any moment still leaves its own
 *   marker and ends the wait.
 * - **The fetch rides with the wait.** The fetch (moveToActive) is sent with
 *   the blocking pop, on the same connection. Redis runs it the moment the pop
 *   returns, so the job arrives with the wake-up: one round trip instead of
 *   two. It takes the job with the token the worker then uses. If it found
 *   nothing (another replica was first), the worker fetches as BullMQ would;
 *   if the worker does not ask for it (a delayed job's marker), a job it took
 *   is handed to the worker all the same.
 *
 * The methods are internal to BullMQ (see TUNING_INTERNALS): if a release
 * lacks one, the worker is left as plain BullMQ, which is logged once, loudly.
 * Returns whether the worker was tuned.
 */
export function tuneIdleWorker(worker: Worker, isIdle: () => boolean, keys: MarkerKeys, log?: Logger, lane?: WaitLane): boolean {
  const missing = missingTuningInternals(worker);
  warnFallbackOnce("the idle worker tuning", missing, log);
  const target = worker as unknown as WorkerInternals;
  const { backend } = target;
  const fetchNext = target._getNextJob;
  const workerMoveToActive = target.moveToActive;
  const waitForJob = backend?.waitForJob;
  const backendMoveToActive = backend?.moveToActive;
  if (
    !backend ||
    typeof fetchNext !== "function" ||
    typeof workerMoveToActive !== "function" ||
    typeof waitForJob !== "function" ||
    typeof backendMoveToActive !== "function" ||
    typeof target.drained !== "boolean"
  ) {
    return false;
  }
  const take = leanTake(target);
  let skipNextFetch = false;
  /**
   * Whether a marker may be left with nothing waiting: BullMQ's own fetch and
   * finish scripts leave one whenever they take a job; the lean take only
   * when more jobs wait.
   */
  let markerMayBeStale = true;
  /** The token of the fetch in progress: the one a fetch sent with its wait must lock the job with. */
  let fetchToken: string | undefined;
  /** A fetch sent with a blocking wait, not yet handed to the worker. */
  let prefetched: { token: string; data: Promise<NextJobData | undefined> } | undefined;

  target._getNextJob = async (token, opts) => {
    if (skipNextFetch) {
      skipNextFetch = false;
      target.drained = true;
      return undefined;
    }
    fetchToken = token;
    let job: unknown;
    try {
      job = await fetchNext.call(worker, token, opts);
    } finally {
      fetchToken = undefined;
    }
    if (!job && prefetched?.token === token && hasJob(await prefetched.data)) {
      // The wait ended without the worker asking for a job, but the fetch sent with it took one.
      job = await workerMoveToActive.call(worker, token, target.opts.name);
    }
    if (prefetched?.token === token) prefetched = undefined;
    if (job && isIdle()) skipNextFetch = true;
    return job;
  };

  backend.moveToActive = async (token, name) => {
    const ahead = prefetched?.token === token ? prefetched : undefined;
    if (ahead) {
      prefetched = undefined;
      const data = await ahead.data;
      if (hasJob(data)) return data;
    }
    markerMayBeStale = true;
    return backendMoveToActive.call(backend, token, name);
  };

  const moveToFinished = (backend as { moveToFinished?: (...args: unknown[]) => Promise<unknown> }).moveToFinished;
  if (typeof moveToFinished === "function") {
    (backend as { moveToFinished?: (...args: unknown[]) => Promise<unknown> }).moveToFinished = (...args) => {
      markerMayBeStale = true;
      return moveToFinished.apply(backend, args);
    };
  }

  backend.waitForJob = async (blockTimeout) => {
    const token = fetchToken;
    const blockingClient = backend.blockingClient;
    const client = await blockingClient;
    if (!client || !blockingClient) return waitForJob.call(backend, blockTimeout);
    if (lane && typeof (client as Partial<LaneClient>).evalsha === "function") {
      const laneClient = client as LaneClient & { status?: string };
      await lane.hold(laneClient, () => !target.closing && laneClient.status === "ready");
    }
    let waiting: Promise<unknown> | undefined;
    inOneWrite(client, () => {
      if (markerMayBeStale) {
        markerMayBeStale = false;
        client.eval(CLEAR_STALE_MARKER, 4, keys.marker, keys.wait, keys.prioritized, keys.delayed).catch(() => undefined);
      }
      // BullMQ sends its blocking pop after one await on the blocking client; the fetch below also awaits it once, so it follows the pop.
      waiting = waitForJob.call(backend, blockTimeout);
      lane?.waiting(waiting);
      if (token !== undefined && backend.queue) {
        let data: Promise<NextJobData | undefined> | undefined;
        if (take) {
          data = blockingClient.then((c) => take(c, token));
        } else {
          markerMayBeStale = true;
          data = onBlockingConnection(backend.queue, blockingClient, () => backendMoveToActive.call(backend, token, target.opts.name));
        }
        if (data) prefetched = { token, data: data.catch(() => undefined) };
      }
    });
    return waiting;
  };
  return true;
}
