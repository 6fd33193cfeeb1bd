/**
 * Runs async tasks one at a time, in the order they were queued. The agent puts every apply, drift
 * check and hello scan through one queue, so a drift check never reads a file halfway through a
 * bundle apply and a hello never describes a folder that a queued push is about to change.
 */
export class SerialQueue {
  private tail: Promise<void> = Promise.resolve();

  /** Queues `task`; the returned promise settles with the task's own result. */
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** Resolves once every task queued so far has finished. */
  idle(): Promise<void> {
    return this.tail;
  }
}
