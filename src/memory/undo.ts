/**
 * Undo log for all-or-nothing operations. A map, an unmap or a batch runs with a log open; on a refusal the
 * session rolls the emulated RAM and the allocators back to exactly where they were. Word writes are kept as
 * flat numbers (the hot case: one descriptor each); anything else registers a closure.
 */
export class UndoLog {
  /** Pairs (address, old value) of 32-bit words written to RAM, in order. */
  readonly words: number[] = [];
  readonly actions: Array<{ at: number; undo: () => void }> = [];

  addAction(undo: () => void): void {
    // `at` orders closures against word writes, so rollback replays both in exact reverse order.
    this.actions.push({ at: this.words.length, undo });
  }
}
