/** Lets idle workers sleep until a deadline, and wakes them all early when something changes. */
export class Waker {
  private waiters = new Set<() => void>();

  /** Resolves after `ms`, or earlier on wakeAll(). */
  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.waiters.add(done);
    });
  }

  wakeAll(): void {
    for (const wake of [...this.waiters]) wake();
  }
}
