/** Waits for conditions with a deadline; a failure says what was awaited and what was last seen. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  options: { timeoutMs?: number; intervalMs?: number; describe?: () => unknown } = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== null && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      let seen = "";
      try {
        seen = options.describe ? `; last seen: ${JSON.stringify(await options.describe())}` : "";
      } catch {
        seen = "";
      }
      const cause = lastError instanceof Error ? `; last error: ${lastError.message}` : "";
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${cause}${seen}`);
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 100));
  }
}
