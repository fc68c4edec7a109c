/**
 * Child processes the benchmark starts: their output kept as lines, a stop that
 * escalates from SIGTERM to SIGKILL after a deadline, and a registry so that
 * everything started is stopped on exit, on error and on SIGINT. Only pids the
 * benchmark itself started are ever signalled.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { WaitAborted, waitFor } from "./wait.js";

const MAX_LINES = 5000;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class Proc {
  readonly lines: string[] = [];
  readonly exited: Promise<Exit>;
  exit: Exit | undefined;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.exit = { code, signal };
        live.delete(this);
        resolve(this.exit);
      });
    });
    child.once("error", (err) => this.lines.push(`[spawn error] ${err.message}`));
    for (const stream of [child.stdout, child.stderr]) {
      let partial = "";
      stream?.on("data", (chunk: Buffer) => {
        const parts = (partial + chunk.toString("utf8")).split("\n");
        partial = parts.pop() ?? "";
        for (const line of parts) {
          this.lines.push(line);
          if (process.env.BENCH_VERBOSE) process.stderr.write(`[${name}] ${line}\n`);
        }
        if (this.lines.length > MAX_LINES) this.lines.splice(0, this.lines.length - MAX_LINES);
      });
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exit === undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  tail(n = 8): string {
    return this.lines.slice(-n).join("\n");
  }

  /** The first JSON line for which `pick` returns a value; fails early if the process exits. */
  async waitForJson<T>(what: string, pick: (entry: Record<string, unknown>) => T | undefined, timeoutMs: number): Promise<T> {
    return waitFor(
      `${this.name}: ${what}`,
      () => {
        const found = this.findJson(pick);
        if (found !== undefined) return found;
        if (!this.running) throw new WaitAborted(`${this.name} exited (${JSON.stringify(this.exit)}); last output:\n${this.tail()}`);
        return undefined;
      },
      { timeoutMs, intervalMs: 50, describe: () => this.tail() },
    );
  }

  findJson<T>(pick: (entry: Record<string, unknown>) => T | undefined): T | undefined {
    for (const entry of this.entries()) {
      const value = pick(entry);
      if (value !== undefined) return value;
    }
    return undefined;
  }

  /** Every output line that is a JSON object, parsed. */
  entries(): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = [];
    for (const line of this.lines) {
      if (!line.startsWith("{")) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not JSON after all
      }
    }
    return out;
  }

  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
  async stop(graceMs = 10_000): Promise<Exit> {
    if (!this.running) return this.exited;
    this.child.kill("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), graceMs);
    });
    const first = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (first !== "late") return first;
    process.stderr.write(`bench: ${this.name} (pid ${this.pid}) ignored SIGTERM for ${graceMs} ms; sending SIGKILL\n`);
    this.child.kill("SIGKILL");
    return this.exited;
  }
}

const live = new Set<Proc>();
/** Processes our children started in their own process group (Flotilla replicas), by pid and a command-line mark. */
const orphanPids = new Map<number, string>();

export function startProc(name: string, command: string, args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const proc = new Proc(name, child);
  if (child.pid !== undefined) live.add(proc);
  return proc;
}

/** Runs a TypeScript file of the benchmark as its own Node process; BENCH_BASELINE_EXEC_ARGV adds Node flags (e.g. --cpu-prof). */
export function startTsProc(name: string, file: string, env: NodeJS.ProcessEnv = {}): Proc {
  const execArgv = (process.env.BENCH_BASELINE_EXEC_ARGV ?? "").split(" ").filter(Boolean);
  return startProc(name, process.execPath, [...execArgv, "--import", "tsx", file], env);
}

/** Remembers a grandchild to kill at the end; `mark` must appear in its command line then (pids get reused). */
export function trackOrphan(pid: number, mark: string): void {
  orphanPids.set(pid, mark);
}

/** SIGKILLs `pid` if it still runs a command line containing `mark`; true when a signal was sent. */
export function killIfStill(pid: number, mark: string): boolean {
  try {
    if (!readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(mark)) return false;
    process.kill(pid, "SIGKILL");
    return true;
  } catch {
    return false; // already gone
  }
}

function killOrphans(): void {
  for (const [pid, mark] of orphanPids) killIfStill(pid, mark);
  orphanPids.clear();
}

/** Stops every process still running (in reverse start order), then the orphans. */
export async function stopAll(graceMs = 10_000): Promise<void> {
  for (const proc of [...live].reverse()) await proc.stop(graceMs).catch(() => undefined);
  killOrphans();
}

/** Last resort from process.on("exit"): no time left for a grace period. */
export function killAllNow(): void {
  for (const proc of live) proc.child.kill("SIGKILL");
  killOrphans();
}
