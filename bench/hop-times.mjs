/**
 * Preloaded into a process (`--import ./bench/hop-times.mjs`), times what
 * the process does on a request's path: from an HTTP request's arrival, or
 * from data arriving on a socket (a Redis reply, a pub/sub message), to the
 * process's next socket write, by kind (`httpreq->redis`, `redis->http`,
 * `redis->redis`). At exit it writes the medians and 90th percentiles of
 * each kind seen at least 500 times to `$HOP_TIMES_DIR/<pid>.json`. Pass it
 * with BENCH_CLI_EXEC_ARGV (router), FLOTILLA_REPLICA_EXEC_ARGV (replicas)
 * and BENCH_BASELINE_EXEC_ARGV (the baselines' processes), at 1 connection,
 * where one request is in flight at a time. It wraps net.Socket's emit and
 * writes, so it slows what it times a little; compare the processes within
 * one run.
 */
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { performance } from "node:perf_hooks";

const dir = process.env.HOP_TIMES_DIR ?? "/tmp";
const samples = new Map();
/** The latest arrival not yet followed by a write. */
let arrival;

const socketEmit = net.Socket.prototype.emit;
net.Socket.prototype.emit = function (event, ...args) {
  if (event === "data") arrival = { at: performance.now(), from: this.server ? "http" : "redis" };
  return socketEmit.call(this, event, ...args);
};
const serverEmit = http.Server.prototype.emit;
http.Server.prototype.emit = function (event, ...args) {
  if (event === "request") arrival = { at: performance.now(), from: "httpreq" };
  return serverEmit.call(this, event, ...args);
};
// Every socket write, single or gathered, goes through _writeGeneric.
const writeGeneric = net.Socket.prototype._writeGeneric;
net.Socket.prototype._writeGeneric = function (...args) {
  if (arrival) {
    const kind = `${arrival.from}->${this.server ? "http" : "redis"}`;
    let list = samples.get(kind);
    if (!list) samples.set(kind, (list = []));
    list.push(performance.now() - arrival.at);
    arrival = undefined;
  }
  return writeGeneric.apply(this, args);
};

function dump() {
  const out = {};
  for (const [kind, list] of samples) {
    if (list.length < 500) continue;
    list.sort((a, b) => a - b);
    out[kind] = { n: list.length, p50us: Math.round(list[list.length >> 1] * 1000), p90us: Math.round(list[Math.floor(list.length * 0.9)] * 1000) };
  }
  if (Object.keys(out).length > 0) fs.writeFileSync(path.join(dir, `${process.pid}.json`), `${JSON.stringify({ process: process.argv.slice(1, 2).join(" "), hops: out })}\n`);
}
process.on("exit", dump);
process.prependListener("SIGTERM", dump);
process.prependListener("SIGINT", dump);
