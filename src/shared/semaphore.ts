/** Counts permits; `acquire` waits (FIFO) while none is free. Its limit can change at run time. */
export class Semaphore {
  private used = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private limit: number) {}

  setLimit(limit: number): void {
    this.limit = limit;
    while (this.used < this.limit && this.waiting.length > 0) {
      this.used++;
      this.waiting.shift()?.();
    }
  }

  acquire(): Promise<void> {
    if (this.used < this.limit) {
      this.used++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.used--;
  }
}
