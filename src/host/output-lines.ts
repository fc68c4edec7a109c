/** Splits a process's output stream into lines, each bounded in length. */

/** Longer lines are cut here (and marked), so one runaway write cannot hold the host's memory. */
export const MAX_LINE_CHARS = 16_384;

export function lineSplitter(onLine: (line: string) => void): (chunk: Buffer) => void {
  let partial = "";
  return (chunk) => {
    const lines = (partial + chunk.toString("utf8")).split("\n");
    partial = lines.pop() ?? "";
    if (partial.length > MAX_LINE_CHARS) {
      lines.push(partial);
      partial = "";
    }
    for (const line of lines) {
      const text = line.endsWith("\r") ? line.slice(0, -1) : line;
      if (text.length > 0) onLine(text.length > MAX_LINE_CHARS ? `${text.slice(0, MAX_LINE_CHARS)}… [cut]` : text);
    }
  };
}
