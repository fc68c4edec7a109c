/**
 * Requests handed to a replica directly, over the reply socket a requester
 * already has with it (see reply-sockets.ts), instead of through a wait.
 *
 * A replica whose waits are queued ahead (fast jobs, see ArmedWaits) offers
 * each requester it is connected to a slot or two. A requester with a
 * request for the deployment and a free slot adds the request's job and
 * takes it for the replica's worker in one script (ADD_TAKE), then writes
 * the job to the replica, which runs it as if a wait had taken it. The job is
 * still BullMQ's: in the active list, locked with a token of the replica's
 * worker (so the host releases it if the replica dies, and the stalled check
 * requeues it), completed by the lean finish. Only the take is moved: Redis
 * runs one script per request instead of an add, a wake-up and a take.
 *
 * Nothing is taken ahead of the queue: the script takes the job only when
 * nothing waits before it, and otherwise leaves it waiting for the replicas'
 * waits. Slots offered are held back from the waits, so a replica never takes
 * more than its concurrency. A replica that stops taking jobs withdraws its
 * offers, and gives back (GIVE_BACK) a job that reaches it after that.
 */
import type { Logger } from "../shared/logger.js";
import type { DirectReceiver, ReplySockets } from "./reply-sockets.js";

/** False when `FLOTILLA_DIRECT_JOBS` is `off` (or `0`, `false`): replicas then offer no slots, and requesters hand nothing over. */
export function directJobsEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  const setting = env.FLOTILLA_DIRECT_JOBS?.trim().toLowerCase();
  return !(setting === "off" || setting === "0" || setting === "false");
}

/** A job handed over: who sent it, its id, the token it was taken with, and its fields as BullMQ stores them. */
export interface DirectJob {
  peer: string;
  id: string;
  token: string;
  fields: string[];
}

/** The job line: `j <id> <token> <timestamp> <options> <data>` (options and data JSON; options without spaces). */
const JOB_LINE = /^j (\d{1,20}) ([A-Za-z0-9_.:-]{1,200}) (\d{1,16}) (\{\S*\}) /;

/** Parses a job line for `worker` from `peer`; undefined when it is not one, or its token is not the worker's. */
export function parseJobLine(peer: string, text: string, worker: string): DirectJob | undefined {
  const match = JOB_LINE.exec(text);
  if (!match) return undefined;
  const [head, id, token, timestamp, options] = match as unknown as [string, string, string, string, string];
  if (!token.startsWith(`${worker}:`)) return undefined;
  const data = text.slice(head.length);
  // As ADD_TAKE stored it (and LEAN_TAKE would have returned it).
  const fields = ["name", "request", "data", data, "opts", options, "timestamp", timestamp, "delay", "0", "priority", "0", "processedOn", timestamp, "ats", "1"];
  return { peer, id, token, fields };
}

/** The line that hands job `id` over. */
export function jobLine(id: string, token: string, timestamp: number, options: string, data: string): string {
  return `j ${id} ${token} ${timestamp} ${options} ${data}\n`;
}

export interface DirectJobsOptions {
  sockets: ReplySockets;
  deployment: string;
  /** The worker's id (tokens start with it) and its lock duration. */
  worker: string;
  lockMs: number;
  /** Runs a job handed over; false when the worker no longer takes jobs (the job is then given back). */
  run(job: DirectJob): boolean;
  /** Gives back a job this replica will not run. */
  giveBack(job: DirectJob): Promise<unknown>;
  log?: Logger;
}

export class DirectJobs implements DirectReceiver {
  /** Slots offered to each requester (0 or absent: none). */
  private readonly offered = new Map<string, number>();
  /** Jobs handed over and not yet done, per requester. */
  private readonly running = new Map<string, number>();
  /** Requesters whose connection is ready. */
  private readonly connected = new Set<string>();
  private perPeer = 0;
  private maxPeers = 0;

  constructor(private readonly options: DirectJobsOptions) {
    options.sockets.receive(this);
  }

  /**
   * Offers `perPeer` slots to each of at most `maxPeers` requesters (0: none,
   * and those offered are withdrawn). Said to requesters only when it changes.
   */
  offer(perPeer: number, maxPeers: number): void {
    if (perPeer === this.perPeer && maxPeers === this.maxPeers) return;
    this.perPeer = perPeer;
    this.maxPeers = maxPeers;
    for (const peer of this.connected) this.tell(peer);
  }

  /** Slots offered and not in use: the worker's waits leave them free. */
  held(): number {
    let held = 0;
    for (const [peer, slots] of this.offered) held += Math.max(0, slots - (this.running.get(peer) ?? 0));
    return held;
  }

  /** A job handed over by `peer` is done. */
  done(peer: string): void {
    const n = this.running.get(peer);
    if (n !== undefined) this.running.set(peer, Math.max(0, n - 1));
  }

  /** Tells `peer` what it is offered now, when that changed; false when nothing was said. */
  private tell(peer: string): boolean {
    const slots = this.slotsFor(peer);
    if ((this.offered.get(peer) ?? 0) === slots) return false;
    if (slots === 0) this.offered.delete(peer);
    else this.offered.set(peer, slots);
    return this.options.sockets.write(peer, this.offerLine(slots));
  }

  private slotsFor(peer: string): number {
    if (this.perPeer === 0) return 0;
    if (this.offered.has(peer)) return this.perPeer;
    return this.offered.size < this.maxPeers ? this.perPeer : 0;
  }

  private offerLine(slots: number): string {
    return `offer ${this.options.deployment} ${this.options.worker} ${slots} ${this.options.lockMs}\n`;
  }

  ready(peer: string): string | undefined {
    this.connected.add(peer);
    const slots = this.slotsFor(peer);
    if (slots === 0) return undefined;
    this.offered.set(peer, slots);
    return this.offerLine(slots);
  }

  line(peer: string, text: string): boolean {
    const job = parseJobLine(peer, text, this.options.worker);
    if (!job) {
      this.options.log?.warn({ peer, line: text.slice(0, 80) }, "direct job: not a job line for this worker; connection closed");
      return false;
    }
    this.running.set(peer, (this.running.get(peer) ?? 0) + 1);
    if (!this.options.run(job)) {
      this.done(peer);
      this.options.giveBack(job).catch((err: unknown) => this.options.log?.warn({ err: String(err), job: job.id }, "direct job: could not give it back; it is requeued once its lock lapses"));
    }
    return true;
  }

  gone(peer: string): void {
    this.connected.delete(peer);
    const had = this.offered.delete(peer);
    this.running.delete(peer);
    // Its slots go to a requester that had none, if any.
    if (had) for (const other of this.connected) if (!this.offered.has(other) && this.tell(other)) break;
  }
}
