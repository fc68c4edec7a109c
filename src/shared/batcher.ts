/**
 * Collects items added during one event-loop turn and hands them to `flush`
 * together (on setImmediate), so many concurrent requests cost one Redis
 * round trip instead of one each. Each `add` resolves with its item's result.
 *
 * With `oneInFlight`, a key's items also wait while a flush of that key is
 * under way, and go together the moment it ends (a group commit): under
 * load, turns are short and each would flush a handful, so the round trip
 * itself is the better window to gather in.
 */
export class Batcher<K, T, R> {
  private pending = new Map<K, Array<{ item: T; resolve(r: R): void; reject(err: unknown): void }>>();
  private scheduled = false;
  /** Flushes under way, by key (kept with `oneInFlight` only). */
  private readonly inFlight = new Map<K, number>();

  constructor(
    private readonly flush: (key: K, items: T[]) => Promise<R[]>,
    private readonly maxBatch = 512,
    private readonly oneInFlight = false,
  ) {}

  /**
   * Adds an item. `alone`: the caller knows nothing else is in flight, so
   * waiting for company would only add latency: it is flushed at once.
   */
  add(key: K, item: T, alone = false): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      let list = this.pending.get(key);
      if (!list) {
        list = [];
        this.pending.set(key, list);
      }
      list.push({ item, resolve, reject });
      if (list.length >= this.maxBatch || (alone && list.length === 1)) this.flushKey(key);
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flushAll());
      }
    });
  }

  private flushAll(): void {
    this.scheduled = false;
    for (const key of [...this.pending.keys()]) if (!this.oneInFlight || !this.inFlight.has(key)) this.flushKey(key);
  }

  private flushKey(key: K): void {
    const list = this.pending.get(key);
    if (!list || list.length === 0) return;
    this.pending.delete(key);
    if (this.oneInFlight) this.inFlight.set(key, (this.inFlight.get(key) ?? 0) + 1);
    const ended = (): void => {
      if (!this.oneInFlight) return;
      const left = (this.inFlight.get(key) ?? 1) - 1;
      if (left > 0) this.inFlight.set(key, left);
      else this.inFlight.delete(key);
      // What gathered meanwhile goes now, whether this flush worked or not.
      if (left === 0) this.flushKey(key);
    };
    this.flush(
      key,
      list.map((e) => e.item),
    ).then(
      (results) => {
        ended();
        list.forEach((e, i) => e.resolve(results[i] as R));
      },
      (err: unknown) => {
        ended();
        list.forEach((e) => e.reject(err));
      },
    );
  }
}
