/**
 * pino loggers: JSON lines by default, pretty-printed when stderr is a TTY
 * (or FLOTILLA_LOG_PRETTY=1). Credentials in Redis URLs and Authorization
 * headers never reach a log line.
 */
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

export function createLogger(name: string, bindings: Record<string, unknown> = {}): Logger {
  const level = process.env.FLOTILLA_LOG_LEVEL ?? process.env.LOG_LEVEL ?? "info";
  const pretty = process.env.FLOTILLA_LOG_PRETTY === "1" || (process.env.FLOTILLA_LOG_PRETTY !== "0" && process.stderr.isTTY === true);
  const options = { name, level, redact: REDACT, base: { pid: process.pid, ...bindings } };
  if (pretty) {
    return pino({ ...options, transport: { target: "pino-pretty", options: { destination: 2, colorize: true, ignore: "hostname" } } });
  }
  return pino(options, pino.destination({ dest: 2, sync: false }));
}
