/**
 * pino loggers: JSON lines by default, pretty-printed when stderr is a TTY
 * (or FLOTILLA_LOG_PRETTY=1). Credentials in Redis URLs and Authorization
 * headers never reach a log line.
 */
import { createRequire } from "node:module";
import { pino, type Logger } from "pino";

export type { Logger };

const REDACT = {
  paths: ["authorization", "*.authorization", "headers.authorization", "*.headers.authorization", "token", "*.token", "password", "*.password"],
  censor: "[redacted]",
};

/** `redis://user:secret@host` → `redis://user:***@host`. */
export function redactUrl(url: string): string {
  return url.replace(/(\/\/[^:@/]*:)[^@/]*@/, "$1***@").replace(/(\/\/)([^:@/]+)@/, "$1***@");
}

/**
 * A line of collected output with its credentials blanked: passwords in URLs
 * (`redis://user:***@host`), and Authorization header values, as JSON or as
 * text (`authorization: [redacted]`).
 */
export function redactLine(line: string): string {
  return line
    .replace(/(\b[A-Za-z][A-Za-z0-9+.-]*:\/\/[^:@/\s"']*:)[^@/\s"']*@/g, "$1***@")
    .replace(/(\b[A-Za-z][A-Za-z0-9+.-]*:\/\/)[^:@/\s"']+@/g, "$1***@")
    .replace(/("authorization"\s*:\s*")(?:[^"\\]|\\.)*"/gi, '$1[redacted]"')
    .replace(/(\bauthorization\s*[:=]\s*)(?:(?:Bearer|Basic|Token)\s+)?[^\s,;"'}]+/gi, "$1[redacted]");
}

const PRETTY_OPTIONS = { colorize: true, ignore: "hostname" };

/** Whether this process's logs are pretty-printed. */
function prettyLogs(): boolean {
  return process.env.FLOTILLA_LOG_PRETTY === "1" || (process.env.FLOTILLA_LOG_PRETTY !== "0" && process.stderr.isTTY === true);
}

export function createLogger(name: string, bindings: Record<string, unknown> = {}): Logger {
  const level = process.env.FLOTILLA_LOG_LEVEL ?? process.env.LOG_LEVEL ?? "info";
  const options = { name, level, redact: REDACT, base: { pid: process.pid, ...bindings } };
  if (prettyLogs()) {
    return pino({ ...options, transport: { target: "pino-pretty", options: { destination: 2, ...PRETTY_OPTIONS } } });
  }
  return pino(options, pino.destination({ dest: 2, sync: false }));
}

/**
 * A writer for one replica's stderr, which its host copies to its own.
 * Replicas always log JSON lines (a pretty-printer would be a thread in every
 * replica); when the host's own logs are pretty-printed, it prints the
 * replicas' lines the same way. Other output passes through as it is.
 */
export function replicaOutput(write: (text: string | Buffer) => void = (t) => void process.stderr.write(t)): (chunk: Buffer) => void {
  if (!prettyLogs()) return write;
  const { prettyFactory } = createRequire(import.meta.url)("pino-pretty") as { prettyFactory(o: object): (line: string) => string };
  const pretty = prettyFactory(PRETTY_OPTIONS);
  let partial = "";
  return (chunk) => {
    const lines = (partial + chunk.toString("utf8")).split("\n");
    partial = lines.pop() ?? "";
    let out = "";
    for (const line of lines) {
      let printed: string | undefined;
      if (line.startsWith("{")) {
        try {
          printed = pretty(line);
        } catch {
          printed = undefined;
        }
      }
      out += printed ?? `${line}\n`;
    }
    if (out) write(out);
  };
}
