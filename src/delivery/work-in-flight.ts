/**
 * Work started and not yet ended (passes over the store, attempts, uploads, prunes), so that a stop can wait
 * for it to end before the store closes: what an aborted attempt still does on its way out (recording
 * nothing, giving back its claim) must not reach a store already closed.
 */
export class WorkInFlight {
  private readonly running = new Set<Promise<unknown>>();

  /** Runs `work` and keeps it until it ends; its outcome is the caller's, as it was. */
  track<T>(work: Promise<T>): Promise<T> {
    this.running.add(work);
    const forget = () => this.running.delete(work);
    work.then(forget, forget);
    return work;
  }

  get size(): number {
    return this.running.size;
  }

  /**
   * Resolves once nothing is running (work started while waiting counts too), or at `deadline` (ms since
   * the epoch) with what was still running: true when everything ended.
   */
  async ended(deadline: number): Promise<boolean> {
    while (this.running.size > 0) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, left);
      });
      await Promise.race([Promise.allSettled([...this.running]), timeout]);
      clearTimeout(timer);
    }
    return true;
  }
}
