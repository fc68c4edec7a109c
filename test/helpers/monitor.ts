/**
 * Redis's MONITOR on a plain socket: every command the server runs, with its
 * time and the client's address. (ioredis's monitor mode can mistake the first
 * lines for replies on a busy server.) Used to check which commands a process
 * sends; only commands of the given client addresses are kept.
 */
import net from "node:net";
import { waitFor } from "./wait.js";

export interface MonitoredCommand {
  /** Server time, ms. */
  at: number;
  /** The client's address, `ip:port`. */
  source: string;
  /** The command and its arguments. */
  args: string[];
}

const ESCAPES: Record<string, string> = { n: "\n", r: "\r", t: "\t", a: "\x07", b: "\b", '"': '"', "\\": "\\" };

/** Parses `"cmd" "arg" ...` as Redis prints it (sdscatrepr: C escapes and \xHH). */
export function parseMonitorArgs(text: string): string[] {
  const args: string[] = [];
  let i = 0;
  while (i < text.length) {
    if (text[i] !== '"') {
      i++;
      continue;
    }
    let arg = "";
    i++;
    while (i < text.length && text[i] !== '"') {
      if (text[i] === "\\") {
        const next = text[i + 1] ?? "";
        if (next === "x") {
          arg += String.fromCharCode(parseInt(text.slice(i + 2, i + 4), 16));
          i += 4;
        } else {
          arg += ESCAPES[next] ?? next;
          i += 2;
        }
      } else {
        arg += text[i];
        i++;
      }
    }
    args.push(arg);
    i++;
  }
  return args;
}

const MARKER = "monitor-caught-up-";

export class Monitor {
  private constructor(
    private readonly socket: net.Socket,
    readonly commands: MonitoredCommand[],
    private readonly markers: Set<string>,
  ) {}

  /** Starts monitoring; resolves once the server said OK. `keep` picks the commands to keep. */
  static async start(url: string, keep: (c: MonitoredCommand) => boolean): Promise<Monitor> {
    const { hostname, port } = new URL(url);
    const socket = net.connect(Number(port || 6379), hostname);
    const commands: MonitoredCommand[] = [];
    const markers = new Set<string>();
    let buffer = "";
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.on("data", (chunk: Buffer) => {
        buffer += chunk.toString("latin1");
        let end: number;
        while ((end = buffer.indexOf("\r\n")) >= 0) {
          const line = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (line === "+OK") {
            resolve();
            continue;
          }
          const m = /^\+(\d+\.\d+) \[\d+ ([^\]]+)\] (.*)$/.exec(line);
          if (!m) continue;
          const c = { at: Number(m[1]) * 1000, source: m[2] as string, args: parseMonitorArgs(m[3] as string) };
          if (c.args[0]?.toLowerCase() === "echo" && c.args[1]?.startsWith(MARKER)) markers.add(c.args[1]);
          else if (keep(c)) commands.push(c);
        }
      });
      socket.write("MONITOR\r\n");
    });
    socket.on("error", () => undefined);
    return new Monitor(socket, commands, markers);
  }

  /**
   * Resolves once MONITOR has shown an ECHO sent on `via` now, so every
   * command the server ran before it is in `commands`: on a busy server the
   * MONITOR stream runs behind the commands it reports.
   */
  async caughtUp(via: { echo(text: string): Promise<unknown> }): Promise<void> {
    const marker = `${MARKER}${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`;
    await via.echo(marker);
    await waitFor("MONITOR to show the ECHO sent after the monitored commands", () => this.markers.has(marker));
  }

  /**
   * The commands `keep` picks that the server ran while `run` ran. Ends once
   * MONITOR shows an ECHO sent on `via` after `run` (so nothing `run` sent is
   * missed), which is not among them.
   */
  static async during(url: string, keep: (c: MonitoredCommand) => boolean, via: { echo(text: string): Promise<unknown> }, run: () => Promise<unknown>): Promise<MonitoredCommand[]> {
    const monitor = await Monitor.start(url, keep);
    try {
      await run();
      await monitor.caughtUp(via);
    } finally {
      monitor.stop();
    }
    return monitor.commands;
  }

  stop(): void {
    this.socket.destroy();
  }
}
