// A task the leader runs every so often (rotation sweeps, expiry cleanup): started and stopped with
// the node, skipped while this node may not act (not the leader, sealed), and never run twice at
// once - a sweep slower than its interval is not stacked on. A run that fails is reported and the
// next one comes at its time: a sweep's failure must never take the node down.

export class PeriodicTask {
  private timer: NodeJS.Timeout | null = null;
  private running = false;

  constructor(
    private readonly everyMs: number,
    private readonly mayRun: () => boolean,
    private readonly task: () => Promise<void>,
    private readonly onError: (error: unknown) => void,
  ) {}

  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => void this.runOnce(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private async runOnce(): Promise<void> {
    if (this.running || !this.mayRun()) return;
    this.running = true;
    try {
      await this.task();
    } catch (error) {
      this.onError(error);
    } finally {
      this.running = false;
    }
  }
}
