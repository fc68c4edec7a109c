/** The same handler in plain JavaScript: the benchmark reports a replica's memory without the TypeScript loader. */
export default function hello() {
  return { ok: true };
}
