/**
 * The replies of one batch job's requests, when they share a reply list.
 * Those answered within the turn the batch started are held, and go to
 * Redis with the job's completion, in the same script (one command for the
 * batch instead of one more push). After that turn a slow request must not
 * hold back the others: what is held is pushed, and later replies are sent
 * on their own as they come.
 */
export class ReplyGroup {
  private held: string[] = [];
  private open = true;
  /** Settles once what was held when the turn ended is in Redis (at once if nothing was pushed). */
  sent: Promise<void> = Promise.resolve();

  constructor(
    readonly replyTo: string,
    private readonly push: (replyTo: string, replies: string[]) => Promise<void>,
  ) {
    setImmediate(() => this.release());
  }

  /** Holds a reply for the completion; false when it must be sent on its own (another list, or too late). */
  add(replyTo: string, reply: string): boolean {
    if (!this.open || replyTo !== this.replyTo) return false;
    this.held.push(reply);
    return true;
  }

  /** The replies held, to send with the job's completion; from now on none is held. */
  take(): string[] {
    if (!this.open) return [];
    this.open = false;
    const held = this.held;
    this.held = [];
    return held;
  }

  private release(): void {
    if (!this.open) return;
    this.open = false;
    if (this.held.length > 0) {
      this.sent = this.push(this.replyTo, this.held);
      // Awaited by the batch once its requests are done; if one of them failed first, nobody does.
      this.sent.catch(() => undefined);
    }
    this.held = [];
  }
}
