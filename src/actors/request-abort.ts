/**
 * A request's abort signal, made only when something reads it: most
 * handlers never look at theirs, and an AbortController per request is a
 * good part of what a fast request costs a replica. Aborting before anyone
 * read the signal is remembered; a signal read later is already aborted,
 * with the same reason.
 */

/** What aborts a running request: an AbortController, or a RequestAbort. */
export interface Abortable {
  readonly signal: AbortSignal;
  abort(reason?: unknown): void;
}

export class RequestAbort implements Abortable {
  private controller: AbortController | undefined;
  private aborted = false;
  private reason: unknown;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason?: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}
