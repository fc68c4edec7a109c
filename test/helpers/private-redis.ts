/** A redis-server a test owns, on a port of its own: started, stopped and restarted on the same dir, to take Redis away. */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import { promisify } from "node:util";
import { waitFor } from "./wait.js";

const execFileAsync = promisify(execFile);

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A redis-server this test owns: started, stopped (SIGTERM: it fsyncs the AOF and exits) and restarted on the same dir. */
export class PrivateRedis {
  private child: ChildProcess | undefined;
  private exited: Promise<unknown> | undefined;
  readonly log: string[] = [];

  constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<number> {
    const child = spawn(
      "redis-server",
      ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", this.dir],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    child.stdout?.on("data", (c: Buffer) => this.log.push(c.toString()));
    child.stderr?.on("data", (c: Buffer) => this.log.push(c.toString()));
    this.child = child;
    this.exited = new Promise((resolve) => child.once("exit", resolve));
    await waitFor(
      `redis-server on port ${this.port} to answer PING`,
      async () => {
        if (child.exitCode !== null) throw new Error(`redis-server exited ${child.exitCode}: ${this.log.join("")}`);
        const { stdout } = await execFileAsync("redis-cli", ["-p", String(this.port), "ping"]);
        return stdout.trim() === "PONG";
      },
      { timeoutMs: 10_000, intervalMs: 25, describe: () => this.log.join("").slice(-2000) },
    );
    return Date.now();
  }

  /** SIGTERM: Redis shuts down cleanly (AOF flushed); resolves once the process is gone. */
  async stop(): Promise<number> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return Date.now();
    child.kill("SIGTERM");
    await Promise.race([this.exited, new Promise((_, reject) => setTimeout(() => reject(new Error("redis-server did not stop within 10 s")), 10_000).unref())]);
    return Date.now();
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await this.exited;
    }
  }
}

