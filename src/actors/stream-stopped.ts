/** Why a request's signal fired when the request itself was stopped: its requester went away, or a stream ran past a timeout. */
export class StreamStopped extends Error {
  constructor(
    message: string,
    readonly timeout: boolean,
  ) {
    super(message);
  }
}
