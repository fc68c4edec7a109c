/**
 * The classic user-config example: reconfigure(userConfig) runs when a replica
 * starts and whenever userConfig changes, without restarting the process.
 */
export class Threshold {
  private readonly model = Math.random; // imagine a heavyweight model here
  private threshold = 0.5;

  reconfigure(config: { threshold: number }) {
    this.threshold = config.threshold;
  }

  call() {
    return this.model() > this.threshold;
  }
}
