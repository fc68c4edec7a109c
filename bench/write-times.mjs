/**
 * Preloaded into a process (`--import ./bench/write-times.mjs`), times each
 * socket write the process makes (the system call included), by where it
 * goes: `http` (an answer to an HTTP client), `from:<port>` (a connection
 * accepted on another server of the process: a router's reply socket) or
 * `to:<port>` (a connection the process opened: Redis, a reply socket). At exit it writes each kind's
 * count, median, 90th and 99th percentile and total to
 * `$WRITE_TIMES_DIR/<pid>.json`. A write that wakes a sleeping process can
 * cost the writer its core until the woken one has run: that shows here as
 * a slow write. Pass it with BENCH_CLI_EXEC_ARGV (router),
 * FLOTILLA_REPLICA_EXEC_ARGV (replicas) and BENCH_BASELINE_EXEC_ARGV (the
 * baselines' processes).
 */
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { performance } from "node:perf_hooks";

const dir = process.env.WRITE_TIMES_DIR ?? "/tmp";
const samples = new Map();

// Every socket write, single or gathered, goes through _writeGeneric.
const writeGeneric = net.Socket.prototype._writeGeneric;
net.Socket.prototype._writeGeneric = function (...args) {
  const began = performance.now();
  try {
    return writeGeneric.apply(this, args);
  } finally {
    const kind = this.server instanceof http.Server ? "http" : this.server ? `from:${this.localPort}` : `to:${this.remotePort}`;
    let list = samples.get(kind);
    if (!list) samples.set(kind, (list = []));
    list.push(performance.now() - began);
  }
};

function dump() {
  const out = {};
  for (const [kind, list] of samples) {
    if (list.length < 100) continue;
    list.sort((a, b) => a - b);
    const at = (q) => Math.round(list[Math.floor(list.length * q)] * 10_000) / 10;
    out[kind] = { n: list.length, p50us: at(0.5), p90us: at(0.9), p99us: at(0.99), totalMs: Math.round(list.reduce((a, b) => a + b, 0)) };
  }
  if (Object.keys(out).length > 0) fs.writeFileSync(path.join(dir, `${process.pid}.json`), `${JSON.stringify({ process: process.argv.slice(1, 2).join(" "), writes: out })}\n`);
}
process.on("exit", dump);
process.prependListener("SIGTERM", dump);
process.prependListener("SIGINT", dump);
