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

export class Monitor {
  private constructor(
    private readonly socket: net.Socket,
    readonly commands: MonitoredCommand[],
  ) {}

  /** Starts monitoring; resolves once the server said OK. `keep` picks the commands to keep. */
  static async start(url: string, keep: (c: MonitoredCommand) => boolean): Promise<Monitor> {
    const { hostname, port } = new URL(url);
    const socket = net.connect(Number(port || 6379), hostname);
    const commands: MonitoredCommand[] = [];
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
          if (keep(c)) commands.push(c);
        }
      });
      socket.write("MONITOR\r\n");
    });
    socket.on("error", () => undefined);
    return new Monitor(socket, commands);
  }

  /**
   * The commands `keep` picks that the server ran while `run` ran. Ends once
   * MONITOR shows an ECHO sent on `via` after `run` (so nothing `run` sent is
   * missed), which is not among them.
   */
  static async during(url: string, keep: (c: MonitoredCommand) => boolean, via: { echo(text: string): Promise<unknown> }, run: () => Promise<unknown>): Promise<MonitoredCommand[]> {
    const marker = `monitor-done-${process.pid}-${Date.now()}`;
    const isMarker = (c: MonitoredCommand): boolean => c.args[0]?.toLowerCase() === "echo" && c.args[1] === marker;
    const monitor = await Monitor.start(url, (c) => isMarker(c) || keep(c));
    try {
      await run();
      await via.echo(marker);
      await waitFor("MONITOR to show the ECHO sent after the monitored commands", () => monitor.commands.some(isMarker));
    } finally {
      monitor.stop();
    }
    return monitor.commands.filter((c) => !isMarker(c));
  }

  stop(): void {
    this.socket.destroy();
  }
}
