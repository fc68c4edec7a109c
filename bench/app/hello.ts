/** The smallest deployment: what the benchmark measures is the serving path around it. */
export default function hello() {
  return { ok: true };
}
