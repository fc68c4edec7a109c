/**
 * The log stream of a deployment (Keys.logs): one Redis stream entry per
 * line a replica wrote, on any host, with when, where and on which stream.
 * Hosts append (log-shipper.ts), `flotilla logs` and the admin API read
 * (log-reader.ts). The stream is capped (XADD MAXLEN ~), so its memory is bounded.
 */

/** `out`/`err`: the replica's stdout/stderr; `host`: what its host says about it (started, replaced, ended). */
export type LogSource = "out" | "err" | "host";

export interface LogLine {
  /** The stream entry id: orders the lines and resumes a follow. */
  id: string;
  /** When the host read the line (ms). */
  at: number;
  host: string;
  replica: string;
  stream: LogSource;
  line: string;
}

/** Lines each deployment's stream keeps by default (hosts' --log-max-lines). */
export const DEFAULT_LOG_MAX_LINES = 10_000;

/** The entry's fields, as XADD takes them. */
export function logFields(l: Omit<LogLine, "id">): string[] {
  return ["t", String(l.at), "h", l.host, "r", l.replica, "s", l.stream, "l", l.line];
}

/** An entry as XRANGE / XREAD return it. */
export function parseLogEntry(id: string, fields: readonly string[]): LogLine {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
  const stream = f.s === "err" || f.s === "host" ? f.s : "out";
  return { id, at: Number(f.t) || Number(id.split("-")[0]) || 0, host: f.h ?? "", replica: f.r ?? "", stream, line: f.l ?? "" };
}

const LEVELS: Record<number, string> = { 10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL" };
/** Fields of a runtime log line that the prefix already shows, or that say nothing to a reader. */
const SHOWN = new Set(["level", "time", "msg", "pid", "hostname", "name", "deployment", "replica"]);

/** One line for a terminal: time, replica, host, stream, and the text (a runtime JSON log line as `LEVEL msg {fields}`). */
export function formatLogLine(l: LogLine): string {
  return `${new Date(l.at).toISOString()} ${l.replica} ${l.host} ${l.stream} ${readable(l.line)}`;
}

function readable(line: string): string {
  if (!line.startsWith("{")) return line;
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  if (typeof entry.msg !== "string" || typeof entry.level !== "number") return line;
  const rest = Object.fromEntries(Object.entries(entry).filter(([k]) => !SHOWN.has(k)));
  const extra = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : "";
  return `${LEVELS[entry.level] ?? entry.level} ${entry.msg}${extra}`;
}
