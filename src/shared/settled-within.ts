/**
 * Waits for `promise` to settle, but at most `ms`: true if it settled in time.
 * Its rejection is not rethrown (callers that wait "at most" act the same
 * either way); the timer is cleared so it never holds the process open.
 */
export async function settledWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
