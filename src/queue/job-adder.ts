/**
 * A leaner `queue.add`/`addBulk` for the request path: jobs that all share
 * one name and one set of options.
 */
import type { Redis } from "ioredis";
import type { Logger } from "../shared/logger.js";
import { Job, type JobsOptions, type Queue } from "./bullmq.js";
import { missingMembers, warnFallbackOnce } from "./internals-check.js";
import { ADD_TAKE, LEAN_ADD, LEAN_ADD_STORED, OPTIONS_AS_STORED } from "./lean-scripts.js";

/** What BullMQ's queue backend stores for a new job (the fields of `Job.asJSON` its add scripts read). */
interface NewJobData {
  name: string;
  data: string;
  opts: JobsOptions;
  timestamp: number;
}
type NoParent = { parentKey?: undefined; parentDependenciesKey: string };
/** What BullMQ's backend sends a script through (`client.runCommand(name, args)`). */
interface CommandSink {
  runCommand(name: string, args: unknown[]): Promise<unknown>;
}
interface AddBackend {
  addJob(job: NewJobData, jobId: undefined, parentKeyOpts: NoParent): Promise<string>;
  addJobs(entries: Array<{ job: NewJobData; jobId: undefined; parentKeyOpts: NoParent }>): Promise<string[]>;
  addJobToTransaction?(client: CommandSink, job: NewJobData, jobId: undefined, parentKeyOpts: NoParent): Promise<unknown>;
  queue?: { client?: Promise<LuaClient>; keys?: Record<string, string> };
}
type LuaClient = Parameters<typeof LEAN_ADD.run>[0];

/** The queue internals the lean add calls. */
const ADD_INTERNALS = { "backend.addJob": "function", "backend.addJobs": "function" } as const;
/** BullMQ's keys of a queue the lean add script writes (`""` is the job key prefix). */
const ADD_KEYS = ["id", "wait", "meta", "active", "marker", ""] as const;

/**
 * Adds jobs of one name and fixed options to a queue; resolves with their
 * ids. With `via`, the lean add is sent on that connection, in this turn (a
 * caller may put a command of its own right behind it, in the same write);
 * without it, or when the lean add is not available, on the queue's own.
 */
export type JobAdder = ((data: unknown[], via?: Redis) => Promise<string[]>) & {
  /**
   * Adds one job and takes it for `token` in the same script when nothing
   * would be taken before it (ADD_TAKE); undefined until the queue is ready,
   * or when the lean add is not available.
   */
  addTake?: (data: unknown, token: string, lockMs: number, via?: Redis) => Promise<TakenAdd>;
};

/** What an add-and-take did: the job's id, whether it was taken (else it waits in the queue), and, for the holder, how it is stored. */
export interface TakenAdd {
  id: string;
  taken: boolean;
  /** Its creation and start time (ms). */
  timestamp: number;
  /** Its options, as stored. */
  options: string;
  /** Its data, as stored (JSON). */
  data: string;
}

/**
 * The options of a standard job as BullMQ's add sends them to Redis
 * (msgpack), taken from BullMQ's own argument building with a client that
 * only records the command; undefined when that is not what it sends.
 */
function packedOptions(backend: AddBackend, job: NewJobData): Buffer | undefined {
  if (typeof backend.addJobToTransaction !== "function") return undefined;
  let sent: { name: string; args: unknown[] } | undefined;
  const recorder: CommandSink = {
    runCommand: (name, args) => {
      sent = { name, args };
      return Promise.resolve("0");
    },
  };
  try {
    void backend.addJobToTransaction(recorder, job, undefined, { parentDependenciesKey: "" }).catch(() => undefined);
  } catch {
    return undefined;
  }
  // addStandardJob's 9 keys, then its packed arguments, the data, and the packed options.
  if (!sent?.name.startsWith("addStandardJob") || sent.args.length !== 12 || sent.args[10] !== job.data) return undefined;
  const opts = sent.args[11];
  return Buffer.isBuffer(opts) ? opts : opts instanceof Uint8Array ? Buffer.from(opts) : undefined;
}

/**
 * Jobs of one name and one set of options (no parent, delay, priority or
 * custom id) are added by one script (LEAN_ADD) per call, which stores each
 * job as BullMQ's add does, without the event stream entries nobody reads
 * for them. The options are normalised and validated once, by a Job built
 * the usual way, and sent in BullMQ's own encoding, so the stored job is the
 * one `queue.add` stores. If BullMQ's internals are not where expected, it is
 * BullMQ's backend with the stored form of each job, or `queue.add` (said
 * once, loudly).
 */
export function jobAdder(queue: Queue, name: string, options: JobsOptions, log?: Logger): JobAdder {
  const merged: JobsOptions = { ...queue.defaultJobOptions, ...options };
  const template = new Job(queue, name, {}, merged) as unknown as { opts: JobsOptions; asJSON(): unknown; validateOptions?(json: unknown): void };
  template.validateOptions?.(template.asJSON());
  const special = Boolean(merged.parent || merged.delay || merged.priority || merged.jobId || merged.deduplication);
  const missing = missingMembers(queue, ADD_INTERNALS);
  if (missing.length > 0) warnFallbackOnce("the lean job add", missing, log);
  if (missing.length > 0 || special) {
    return async (data) => {
      if (data.length === 1) return [(await queue.add(name, data[0], merged)).id as string];
      return (await queue.addBulk(data.map((d) => ({ name, data: d, opts: merged })))).map((j) => j.id as string);
    };
  }
  const backend = (queue as unknown as { backend: AddBackend }).backend;
  const opts = template.opts;
  const json = (d: unknown): string => JSON.stringify(d === undefined ? {} : d);
  const keys = backend.queue?.keys;
  const packed = packedOptions(backend, { name, data: "{}", opts, timestamp: 0 });
  if (keys && ADD_KEYS.every((k) => typeof keys[k] === "string") && packed !== undefined && backend.queue?.client) {
    const client = backend.queue.client;
    // Known once the queue is ready: the full script, when Redis lacks it, then goes on the queue's connection.
    let ownClient: LuaClient | undefined;
    // The options as Redis stores them, asked once: from then on adds send them as stored.
    let stored: string | undefined;
    void client
      .then(async (c) => {
        ownClient = c;
        stored = String(await OPTIONS_AS_STORED.run(c, [], [packed]));
      })
      .catch(() => undefined);
    const scriptKeys = ADD_KEYS.slice(0, 5).map((k) => keys[k] as string);
    const add: JobAdder = async (data, via) => {
      const script = stored === undefined ? LEAN_ADD : LEAN_ADD_STORED;
      const args = [keys[""] as string, name, stored ?? (packed as Buffer), Date.now(), ...data.map(json)];
      const ids = via ? await script.run(via, scriptKeys, args, ownClient) : await script.run(await client, scriptKeys, args);
      return (ids as unknown[]).map(String);
    };
    const takeKeys = [...scriptKeys, keys.prioritized, keys.delayed];
    if (takeKeys.every((k) => typeof k === "string")) {
      const addTake = async (data: unknown, token: string, lockMs: number, via?: Redis): Promise<TakenAdd> => {
        const options = stored as string;
        const timestamp = Date.now();
        const text = json(data);
        const args = [keys[""] as string, name, options, timestamp, text, token, lockMs];
        const raw = (via ? await ADD_TAKE.run(via, takeKeys as string[], args, ownClient) : await ADD_TAKE.run(await client, takeKeys as string[], args)) as [unknown, unknown];
        return { id: String(raw[0]), taken: Number(raw[1]) === 1, timestamp, options, data: text };
      };
      Object.defineProperty(add, "addTake", { get: () => (stored === undefined ? undefined : addTake) });
    }
    return add;
  }
  warnFallbackOnce("the lean job add script", ["backend.addJobToTransaction (addStandardJob's arguments)", "backend.queue.keys"], log);
  const { addJob, addJobs } = backend;
  const stored = (d: unknown): NewJobData => ({ name, data: json(d), opts, timestamp: Date.now() });
  const noParent: NoParent = { parentDependenciesKey: "" };
  return async (data) => {
    if (data.length === 1) return [String(await addJob.call(backend, stored(data[0]), undefined, noParent))];
    const ids = await addJobs.call(backend, data.map((d) => ({ job: stored(d), jobId: undefined, parentKeyOpts: noParent })));
    return ids.map(String);
  };
}
