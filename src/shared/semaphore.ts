/**
 * Counts permits; `acquire` waits (FIFO) while none is free. Its limit can
 * change at run time: a raised limit lets waiters in at once, a lowered one
 * lets none in until enough holders have released to be under it.
 */
export class Semaphore {
  private used = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private limit: number) {}

  setLimit(limit: number): void {
    this.limit = limit;
    this.admit();
  }

  /** Takes a permit if one is free, without waiting; false if none is. */
  tryAcquire(): boolean {
    if (this.used >= this.limit) return false;
    this.used++;
    return true;
  }

  acquire(): Promise<void> {
    // Nobody waits while a permit is free (admit() hands them out), so this keeps arrival order.
    if (this.used < this.limit) {
      this.used++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    this.used--;
    this.admit();
  }

  /** Hands free permits to waiters, oldest first, never above the current limit. */
  private admit(): void {
    while (this.used < this.limit && this.waiting.length > 0) {
      this.used++;
      this.waiting.shift()?.();
    }
  }
}
