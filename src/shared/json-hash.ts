/** Parses a Redis hash of JSON values (HGETALL's reply); entries that are not valid JSON are skipped. */
export function parseJsonHash<T>(raw: unknown): Map<string, T> {
  const out = new Map<string, T>();
  if (!raw || typeof raw !== "object") return out;
  for (const [key, value] of Object.entries(raw as Record<string, string>)) {
    try {
      out.set(key, JSON.parse(value) as T);
    } catch {
      // A value written by a newer or broken writer is ignored rather than crashing the reader.
    }
  }
  return out;
}
