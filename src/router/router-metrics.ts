/**
 * A router's Prometheus metrics, served at GET /metrics on a port of their own
 * (on the serving port any path may be a user's route). Loaded only when the
 * router is given a metrics port.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { FlotillaError } from "../errors.js";

/** 0.5 ms (a cached or refused request) .. 60 s (the default request timeout). */
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** The label children of one deployment, bound once: a request only looks them up. */
interface Series {
  duration: Histogram.Internal<"deployment">;
  byCode: Map<number, Counter.Internal>;
}

export class RouterMetrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({
    name: "flotilla_router_requests_total",
    help: "Requests answered, by deployment ('none': no route matched) and HTTP status",
    labelNames: ["deployment", "code"],
    registers: [this.registry],
  });
  private readonly duration = new Histogram({
    name: "flotilla_router_request_duration_seconds",
    help: "Time from a request's arrival to its answer",
    labelNames: ["deployment"],
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  private readonly firstChunkSeconds = new Histogram({
    name: "flotilla_router_stream_first_chunk_seconds",
    help: "Time from a streamed request's arrival to its first chunk written",
    labelNames: ["deployment"],
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  private readonly chunks = new Counter({
    name: "flotilla_router_stream_chunks_total",
    help: "Chunks of streamed answers written to clients, by deployment",
    labelNames: ["deployment"],
    registers: [this.registry],
  });
  private readonly inFlight = new Gauge({ name: "flotilla_router_requests_in_flight", help: "Requests being handled now", registers: [this.registry] });
  private readonly series = new Map<string, Series>();
  private readonly server = http.createServer({ headersTimeout: 20_000, requestTimeout: 30_000 }, (req, res) => {
    if (req.url?.split("?")[0] !== "/metrics" || req.method !== "GET") {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found: metrics are at GET /metrics\n");
      return;
    }
    void this.registry.metrics().then((text) => {
      res.writeHead(200, { "content-type": this.registry.contentType, "content-length": String(Buffer.byteLength(text)) }).end(text);
    });
  });

  /**
   * @param answersBy the router's answers so far, by the way they came (read at each scrape)
   * @param handedOver the requests it handed to replicas directly so far (read at each scrape)
   */
  constructor(answersBy: () => { socket: number; list: number } = () => ({ socket: 0, list: 0 }), handedOver: () => number = () => 0) {
    collectDefaultMetrics({ register: this.registry });
    new Counter({
      name: "flotilla_router_answers_total",
      help: "Answers from replicas, by the way they came: over the router's reply socket, or from its reply list in Redis",
      labelNames: ["via"],
      registers: [this.registry],
      // Counted where they arrive (the request client), read at each scrape.
      collect() {
        const { socket, list } = answersBy();
        this.reset();
        this.inc({ via: "socket" }, socket);
        this.inc({ via: "list" }, list);
      },
    });
    new Counter({
      name: "flotilla_router_requests_handed_over_total",
      help: "Requests whose job was taken in the same script as its add, for a replica that offered a slot, and handed to it over its socket",
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(handedOver());
      },
    });
  }

  /** A request arrived. */
  begin(): void {
    this.inFlight.inc();
  }

  /** A request is done: counted once with its answer's status, unless it was one of the router's own endpoints (`status` undefined). */
  end(deployment: string, status: number | undefined, seconds: number): void {
    this.inFlight.dec();
    if (status === undefined) return;
    let series = this.series.get(deployment);
    if (!series) {
      series = { duration: this.duration.labels(deployment), byCode: new Map() };
      this.series.set(deployment, series);
    }
    let counter = series.byCode.get(status);
    if (!counter) {
      counter = this.requests.labels(deployment, String(status));
      series.byCode.set(status, counter);
    }
    counter.inc();
    series.duration.observe(seconds);
  }

  /** A streamed answer's first chunk was written. */
  firstChunk(deployment: string, seconds: number): void {
    this.firstChunkSeconds.labels(deployment).observe(seconds);
  }

  /** A streamed answer ended after this many chunks. */
  chunksSent(deployment: string, chunks: number): void {
    this.chunks.labels(deployment).inc(chunks);
  }

  /** Resolves with the bound port. */
  async listen(port: number, bind: string): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", (err: NodeJS.ErrnoException) =>
        reject(new FlotillaError("INVALID_REQUEST", `router metrics cannot listen on ${bind}:${port}: ${err.code === "EADDRINUSE" ? "the port is in use (choose another with --metrics-port)" : err.message}`)),
      );
      this.server.listen(port, bind, () => resolve());
    });
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }
}
