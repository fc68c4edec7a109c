/**
 * A periodic task that never runs twice at once: the loop of the controller,
 * the host agent and the router. A nudge while a run is under way makes one
 * more run right after it (so no change announced meanwhile is missed), not a
 * second run beside it; many nudges during one run make one more run, not many.
 */
export class Ticker {
  private timer: NodeJS.Timeout | undefined;
  private current: Promise<void> | undefined;
  private again = false;
  private stopped = true;
  /** Waiters of runNow(): resolved when a run that began after their call has ended. */
  private waiters: Array<() => void> = [];

  /**
   * @param task one run; a rejection is the task's own business (it is swallowed here, so log it inside)
   * @param intervalMs time from the end of one run to the start of the next, read after each run
   */
  constructor(
    private readonly task: () => Promise<void>,
    private readonly intervalMs: () => number,
  ) {}

  /** Starts the loop; the first run is after `delayMs`. */
  start(delayMs = 0): void {
    this.stopped = false;
    this.schedule(delayMs);
  }

  /** True while a run is under way. */
  get busy(): boolean {
    return this.current !== undefined;
  }

  /** Asks for a run as soon as possible: now when idle, right after the current run otherwise. */
  nudge(): void {
    if (this.stopped) return;
    if (this.current) this.again = true;
    else this.schedule(0);
  }

  /** Nudges, and resolves once a run that began after this call has ended (at once when stopped). */
  runNow(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.waiters.push(resolve));
    if (this.current) this.again = true;
    else this.schedule(0);
    return done;
  }

  /** No further runs; resolves when the current one, if any, has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.current;
    this.release(this.waiters.splice(0));
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.run(), ms);
  }

  private run(): void {
    this.timer = undefined;
    const waiting = this.waiters.splice(0);
    this.current = this.task()
      .catch(() => undefined)
      .finally(() => {
        this.current = undefined;
        this.release(waiting);
        const again = this.again;
        this.again = false;
        this.schedule(again ? 0 : this.intervalMs());
      });
  }

  private release(waiters: Array<() => void>): void {
    for (const resolve of waiters) resolve();
  }
}
