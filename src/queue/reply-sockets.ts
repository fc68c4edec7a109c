/**
 * Reply sockets: a replica's answer to a requester (a router or a handle) over
 * a TCP connection from the replica to the requester, instead of through the
 * requester's reply list in Redis. The answer then reaches the requester one
 * hop sooner (Redis is not between them), and Redis neither stores it nor
 * wakes the requester for it.
 *
 * The request itself is unchanged: it is a job in the deployment's queue
 * before anyone runs it, and the job completes in Redis after its answer was
 * written to the socket, so a replica that dies in between leaves the job to
 * be run again (the requester ignores a second answer), as with the list.
 * The reply list stays the way for everything else: a requester without a
 * socket, one the replica cannot reach, a socket that cannot take the answer
 * at once, and the leader's answers to failed jobs.
 *
 * A requester listens on a free port and registers `<host>:<port> <secret>`
 * under its reply list's key + `:via`, with a TTL it keeps renewing. A
 * replica connects to the address registered there (never to one named by job
 * data, which any client of the queue writes), sends the secret, and uses the
 * connection once the requester has said `ok`. The requester drops a
 * connection that does not open with the secret. After that, each line from
 * the replica is one answer (JSON, which has no raw newlines) or an offer of
 * slots (`offer ...`), and each line from the requester is a job handed over
 * in one of those slots (see direct-jobs.ts).
 *
 * Answers take the socket at every load: the answers of a batch job go in
 * one write, so under load they still come back together, and the requests
 * that follow still arrive together and are added as batch jobs.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import net from "node:net";
import os from "node:os";
import type { Redis } from "ioredis";
import { replySocketKey } from "../shared/keys.js";
import type { Logger } from "../shared/logger.js";
import { parseClusterUrl, waitReady } from "../shared/redis.js";

/** A requester's registration lives this long without renewal (renewed every third of it). */
export const REPLY_SOCKET_TTL_MS = 30_000;
/** The secret line, and everything before it, is at most this long. */
const MAX_HELLO_BYTES = 256;
/** A connection must say its secret (requester side) or get its `ok` (replica side) within this. */
const HELLO_TIMEOUT_MS = 2_000;
/** An answer line longer than this closes the connection (the requester's memory is not a buffer for a runaway peer). */
const MAX_LINE_BYTES = 512 * 1024 * 1024;
/** After a requester could not be reached (or has no socket), its replies use the list for this long before the next try. */
const RETRY_AFTER_MS = 5_000;
/** A replica forgets requesters it has not answered for this long (their entries, not their connections in use). */
const FORGET_AFTER_MS = 10 * 60_000;
const KEEPALIVE_MS = 10_000;

/** False when `FLOTILLA_REPLY_SOCKETS` is `off` (or `0`, `false`): requesters then open no socket and replicas use none. */
export function replySocketsEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  const setting = env.FLOTILLA_REPLY_SOCKETS?.trim().toLowerCase();
  return !(setting === "off" || setting === "0" || setting === "false");
}

/**
 * Where a requester listens and what it tells replicas, for a Redis URL:
 * `FLOTILLA_REPLY_HOST` when set (listening on every interface); loopback
 * when Redis is on this machine's loopback (replicas reach Redis there, so
 * they run here); otherwise every interface, advertising this machine's first
 * external IPv4 address. None (sockets off) for TLS Redis, whose users want
 * answers encrypted on the wire, and when `FLOTILLA_REPLY_SOCKETS=off`.
 */
export function replySocketPlace(redisUrl: string, env: NodeJS.ProcessEnv = process.env): { bind: string; advertise: string } | undefined {
  if (!replySocketsEnabled(env)) return undefined;
  const configured = env.FLOTILLA_REPLY_HOST?.trim();
  if (configured) return { bind: "0.0.0.0", advertise: configured };
  const cluster = parseClusterUrl(redisUrl);
  let host: string;
  if (cluster) {
    if (cluster.tls) return undefined;
    host = cluster.nodes[0]?.host ?? "";
  } else {
    let url: URL;
    try {
      url = new URL(redisUrl);
    } catch {
      return undefined;
    }
    if (url.protocol !== "redis:") return undefined;
    host = url.hostname;
  }
  if (host === "" || host === "localhost" || host === "[::1]" || host === "::1" || host.startsWith("127.")) return { bind: "127.0.0.1", advertise: "127.0.0.1" };
  const external = Object.values(os.networkInterfaces())
    .flat()
    .find((i) => i !== undefined && i.family === "IPv4" && !i.internal);
  return external ? { bind: "0.0.0.0", advertise: external.address } : { bind: "127.0.0.1", advertise: "127.0.0.1" };
}

/**
 * Splits a byte stream into lines and hands each to `line`; false from
 * `line` stops it. Returns the data handler, which answers false once the
 * stream is to be dropped (a line over `maxBytes`, or `line` said so).
 */
function lineReader(maxBytes: () => number, line: (text: string) => boolean): (chunk: Buffer) => boolean {
  let held: Buffer[] = [];
  let heldBytes = 0;
  return (chunk) => {
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      let text: string;
      if (heldBytes > 0) {
        held.push(chunk.subarray(start, nl));
        text = Buffer.concat(held, heldBytes + nl - start).toString("utf8");
        held = [];
        heldBytes = 0;
      } else text = chunk.toString("utf8", start, nl);
      start = nl + 1;
      if (text.length > 0 && !line(text)) return false;
    }
    if (start < chunk.length) {
      held.push(chunk.subarray(start));
      heldBytes += chunk.length - start;
      if (heldBytes > maxBytes()) return false;
    }
    return true;
  };
}

/** The most slots one replica offers one requester (see DirectOffer). */
const MAX_OFFER = 64;

/**
 * Slots a replica offered this requester for one deployment, over its
 * socket: requests it may hand that replica directly (see direct-jobs.ts),
 * each taken for a token of the replica's worker.
 */
interface DirectOffer {
  socket: net.Socket;
  deployment: string;
  worker: string;
  lockMs: number;
  slots: number;
  /** Requests handed over and not yet answered. */
  out: number;
}

/** One slot claimed from an offer: the token to take the job with, the line to hand it over, and the slot's release. */
export interface DirectSlot {
  readonly token: string;
  readonly lockMs: number;
  /** Writes one line to the replica; false when its connection is gone (nothing was sent). */
  send(line: string): boolean;
  /** The slot is free again (the answer came, or the job was not handed over); once. */
  release(): void;
}

/** Parses an offer line (`offer <deployment> <worker id> <slots> <lock ms>`); undefined when it is not one. */
export function parseOffer(text: string): { deployment: string; worker: string; slots: number; lockMs: number } | undefined {
  const match = /^offer ([A-Za-z0-9][A-Za-z0-9_-]{0,62}) ([A-Za-z0-9_.-]{1,128}) (\d{1,3}) (\d{1,9})$/.exec(text);
  if (!match) return undefined;
  const slots = Number(match[3]);
  const lockMs = Number(match[4]);
  if (slots > MAX_OFFER || lockMs < 1_000) return undefined;
  return { deployment: match[1] as string, worker: match[2] as string, slots, lockMs };
}

/** A requester's end: listens, registers itself, and hands each answer that comes in to `deliver`. */
export class ReplySocketServer {
  /** Replicas' offers, by deployment (see DirectOffer). */
  private readonly offers = new Map<string, DirectOffer[]>();
  private nextOffer = 0;
  private nextToken = 0;
  private readonly secret = Buffer.from(randomBytes(24).toString("base64url"));
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly key: string;
  private renewTimer: NodeJS.Timeout | undefined;
  private registration: string | undefined;
  private closed = false;

  constructor(
    private readonly redis: Redis,
    replyList: string,
    private readonly place: { bind: string; advertise: string },
    private readonly deliver: (raw: string) => void,
    private readonly log?: Logger,
  ) {
    this.key = replySocketKey(replyList);
    this.server = net.createServer((socket) => this.accept(socket));
    this.server.on("error", (err) => this.log?.warn({ err: err.message }, "reply socket server error"));
  }

  /** Listens on a free port and registers; resolves once listening and the first registration was answered (or failed: it is retried). */
  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(0, this.place.bind, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    const { port } = this.server.address() as net.AddressInfo;
    const host = this.place.advertise.includes(":") ? `[${this.place.advertise}]` : this.place.advertise;
    this.registration = `${host}:${port} ${this.secret.toString()}`;
    // A requester's connection fails fast while it is not ready: its first connect is waited for briefly.
    if (this.redis.status !== "ready") await waitReady(this.redis, 2_000).catch(() => undefined);
    await this.renew();
  }

  get port(): number | undefined {
    const address = this.server.address();
    return typeof address === "object" && address ? address.port : undefined;
  }

  /** Registers (again); on failure (Redis away) the next renewal, soon, tries again. */
  renew(): Promise<void> {
    if (this.closed || this.registration === undefined) return Promise.resolve();
    clearTimeout(this.renewTimer);
    return this.redis.set(this.key, this.registration, "PX", REPLY_SOCKET_TTL_MS).then(
      () => this.schedule(REPLY_SOCKET_TTL_MS / 3),
      () => this.schedule(1_000),
    );
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    this.renewTimer = setTimeout(() => this.renew(), ms);
    this.renewTimer.unref();
  }

  private accept(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_MS);
    socket.on("error", () => undefined);
    socket.on("close", () => {
      this.sockets.delete(socket);
      for (const [deployment, list] of this.offers) {
        const kept = list.filter((o) => o.socket !== socket);
        if (kept.length === 0) this.offers.delete(deployment);
        else if (kept.length !== list.length) this.offers.set(deployment, kept);
      }
    });
    let authed = false;
    const refuse = (why: string): false => {
      this.log?.warn({ peer: `${socket.remoteAddress}:${socket.remotePort}`, why }, "reply socket connection refused");
      socket.destroy();
      return false;
    };
    const hello = setTimeout(() => refuse("no secret within 2 s"), HELLO_TIMEOUT_MS);
    hello.unref();
    const read = lineReader(
      () => (authed ? MAX_LINE_BYTES : MAX_HELLO_BYTES),
      (text) => {
        if (authed) {
          if (text.charCodeAt(0) === 123 /* { */) this.deliver(text);
          else if (!this.offered(socket, text)) return refuse(`not an answer or an offer: ${text.slice(0, 60)}`);
          return true;
        }
        clearTimeout(hello);
        const given = Buffer.from(text);
        if (given.length !== this.secret.length || !timingSafeEqual(given, this.secret)) return refuse("wrong secret");
        authed = true;
        socket.write("ok\n");
        return true;
      },
    );
    socket.on("data", (chunk: Buffer) => {
      if (read(chunk) || socket.destroyed) return;
      if (!authed) refuse("too much before the secret");
      else {
        this.log?.warn({ peer: `${socket.remoteAddress}:${socket.remotePort}` }, "reply socket line over the limit: connection closed");
        socket.destroy();
      }
    });
  }

  /** Notes an offer line from `socket`; false when the line is not one. */
  private offered(socket: net.Socket, text: string): boolean {
    const offer = parseOffer(text);
    if (!offer) return false;
    const list = this.offers.get(offer.deployment) ?? [];
    const known = list.find((o) => o.socket === socket && o.worker === offer.worker);
    if (known) {
      known.slots = offer.slots;
      known.lockMs = offer.lockMs;
    } else if (offer.slots > 0) {
      list.push({ socket, ...offer, out: 0 });
      this.offers.set(offer.deployment, list);
    }
    return true;
  }

  /**
   * A free slot a replica of `deployment` offered, taken in turns among the
   * replicas; undefined when none is free.
   */
  claim(deployment: string): DirectSlot | undefined {
    if (this.closed) return undefined;
    const list = this.offers.get(deployment);
    if (!list) return undefined;
    for (let i = 0; i < list.length; i++) {
      const offer = list[(this.nextOffer + i) % list.length] as DirectOffer;
      if (offer.out >= offer.slots || !offer.socket.writable || offer.socket.writableLength > 0) continue;
      this.nextOffer = (this.nextOffer + i + 1) % list.length;
      offer.out++;
      let released = false;
      return {
        token: `${offer.worker}:d${this.nextToken++}`,
        lockMs: offer.lockMs,
        send: (line) => {
          // Ended by the replica (it closes), or gone: the caller gives the job back.
          if (!offer.socket.writable) return false;
          offer.socket.write(line);
          return true;
        },
        release: () => {
          if (released) return;
          released = true;
          offer.out--;
        },
      };
    }
    return undefined;
  }

  /** Unregisters (when the registration is still this one's) and closes every connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.renewTimer);
    if (this.registration !== undefined && this.redis.status === "ready") {
      await this.redis.eval('if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0', 1, this.key, this.registration).catch(() => undefined);
    }
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

interface Peer {
  socket?: net.Socket;
  ready: boolean;
  /** When the last try to reach it failed (or found no registration). */
  failedAt?: number;
  lastUsed: number;
}

/** Parses a registration (`<host>:<port> <secret>`); undefined when it is not one. */
export function parseRegistration(text: string): { host: string; port: number; secret: string } | undefined {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):(\d{1,5}) ([A-Za-z0-9_-]{16,128})$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[2]);
  if (port < 1 || port > 65_535) return undefined;
  return { host: (match[1] as string).replace(/^\[|\]$/g, ""), port, secret: match[3] as string };
}

/** What a replica does with the requests requesters hand it directly (see direct-jobs.ts). */
export interface DirectReceiver {
  /** A connection to requester `peer` is ready: the offer line to send it, if any. */
  ready(peer: string): string | undefined;
  /** A line from `peer` after its `ok`; false when it is not a job (the connection is then dropped). */
  line(peer: string, text: string): boolean;
  /** The connection to `peer` is gone. */
  gone(peer: string): void;
}

/** A replica's end: connections to the requesters it answers, opened on first use. */
export class ReplySockets {
  private readonly peers = new Map<string, Peer>();
  private closed = false;
  private draining = false;
  private direct: DirectReceiver | undefined;

  /** Hands requests sent directly to `receiver`, and lets it offer slots on every connection (those open now, too). */
  receive(receiver: DirectReceiver): void {
    this.direct = receiver;
    for (const [key, peer] of this.peers) {
      if (!peer.ready) continue;
      const offer = receiver.ready(key);
      if (offer !== undefined) peer.socket?.write(offer);
    }
  }

  /** Writes `line` to requester `peer` when its connection is ready; false otherwise. */
  write(peer: string, line: string): boolean {
    const target = this.peers.get(peer);
    if (!target?.ready || !target.socket || target.socket.destroyed) return false;
    target.socket.write(line);
    return true;
  }

  constructor(
    private readonly redis: Redis,
    private readonly log?: Logger,
  ) {}

  /**
   * Writes `replies` to `replyList`'s requester over its socket; true when
   * they went to the kernel at once (so they reach the requester even if
   * this process dies now). False sends nothing, or not for sure: the caller
   * pushes them to the list (a requester ignores an answer it already has).
   * The first call for a requester starts connecting to it and answers false.
   */
  send(replyList: string, replies: readonly string[]): boolean {
    if (this.closed || this.draining || replies.length === 0) return false;
    const now = Date.now();
    let peer = this.peers.get(replyList);
    if (!peer) {
      if (this.peers.size >= 1024) this.forget(now);
      peer = { ready: false, lastUsed: now };
      this.peers.set(replyList, peer);
      this.connect(replyList, peer);
      return false;
    }
    peer.lastUsed = now;
    const socket = peer.socket;
    if (!peer.ready || !socket) {
      if (!socket && peer.failedAt !== undefined && now - peer.failedAt > RETRY_AFTER_MS) this.connect(replyList, peer);
      return false;
    }
    if (socket.writableLength > 0) return false;
    socket.write(replies.length === 1 ? `${replies[0]}\n` : `${replies.join("\n")}\n`);
    return socket.writableLength === 0;
  }

  private forget(now: number): void {
    for (const [key, peer] of this.peers) {
      if (now - peer.lastUsed > FORGET_AFTER_MS) {
        peer.socket?.destroy();
        this.peers.delete(key);
      }
    }
  }

  private failed(peer: Peer, socket?: net.Socket, key?: string): void {
    if (socket && peer.socket !== socket) return;
    if (peer.ready && key !== undefined) this.direct?.gone(key);
    peer.socket = undefined;
    peer.ready = false;
    peer.failedAt = Date.now();
    socket?.destroy();
  }

  private connect(replyList: string, peer: Peer): void {
    // Marked as trying: a send meanwhile does not start another.
    peer.failedAt = Number.POSITIVE_INFINITY;
    void this.redis.get(replySocketKey(replyList)).then(
      (text) => {
        const target = text === null ? undefined : parseRegistration(text);
        if (this.closed || !target) return this.failed(peer);
        const socket = net.connect({ host: target.host, port: target.port });
        peer.socket = socket;
        socket.unref();
        socket.setNoDelay(true);
        socket.setKeepAlive(true, KEEPALIVE_MS);
        const timer = setTimeout(() => this.failed(peer, socket, replyList), HELLO_TIMEOUT_MS);
        timer.unref();
        socket.on("error", () => this.failed(peer, socket, replyList));
        socket.on("close", () => this.failed(peer, socket, replyList));
        socket.once("connect", () => socket.write(`${target.secret}\n`));
        // The requester says "ok" once, then hands over requests when given slots; anything else ends the connection, but for the
        // "busy" and "idle" of requesters of earlier versions (which asked for answers on the list under load), ignored.
        const read = lineReader(
          () => (peer.ready && this.direct ? MAX_LINE_BYTES : MAX_HELLO_BYTES),
          (said) => {
            if (!peer.ready) {
              if (said !== "ok") {
                this.log?.warn({ replyList }, "reply socket: the requester did not accept the connection");
                return false;
              }
              clearTimeout(timer);
              peer.ready = true;
              peer.failedAt = undefined;
              const offer = this.direct?.ready(replyList);
              if (offer !== undefined) socket.write(offer);
              return true;
            }
            if (said === "busy" || said === "idle") return true;
            return this.direct?.line(replyList, said) ?? false;
          },
        );
        socket.on("data", (chunk: Buffer) => {
          if (!read(chunk)) this.failed(peer, socket, replyList);
        });
      },
      () => this.failed(peer),
    );
  }

  /**
   * From now on answers go on the reply lists, with their jobs' completions:
   * a replica that stops answers the requests it still runs the way that
   * carries the answer in Redis, as it did under load before answers took
   * the socket at every load. Offers and handed-over jobs are unchanged (the
   * worker withdraws its offers as it stops).
   */
  drain(): void {
    this.draining = true;
  }

  /** Closes every connection (their answers already written go out first). */
  close(): void {
    this.closed = true;
    for (const peer of this.peers.values()) peer.socket?.end();
    this.peers.clear();
  }
}
