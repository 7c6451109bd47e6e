/**
 * Undo log for all-or-nothing operations. A map, an unmap or a batch runs with a log open; on a refusal the
 * session rolls the emulated RAM and the allocators back to exactly where they were. Word writes are kept as
 * flat numbers (the hot case: one descriptor each), and so is a run of words written over zeros (a page-table
 * run: undone by zeroing it again); anything else registers a closure.
 */
export class UndoLog {
  /**
   * Pairs (address, old value) of 32-bit words written to RAM, in order: the first `n` entries; a pair
   * (-(address + 1), count) stands for `count` words from address that were zero. The array keeps its length
   * between operations (emptying it would drop its backing store, regrown by every map and unmap).
   */
  words: number[] = [];
  n = 0;
  readonly actions: Array<{ at: number; undo: () => void }> = [];

  /** Emptied for the next operation; a log grown past KEEP_WORDS by a large one is let go. */
  reset(): void {
    this.n = 0;
    if (this.words.length > KEEP_WORDS) this.words = [];
    if (this.actions.length) this.actions.length = 0;
  }

  word(addr: number, old: number): void {
    const w = this.words;
    w[this.n++] = addr;
    w[this.n++] = old;
  }

  /** `count` words from addr, all zero before, are about to be written. */
  zeroRun(addr: number, count: number): void {
    const w = this.words;
    w[this.n++] = -(addr + 1);
    w[this.n++] = count;
  }

  addAction(undo: () => void): void {
    // `at` orders closures against word writes, so rollback replays both in exact reverse order.
    this.actions.push({ at: this.n, undo });
  }
}

/** Entries kept between operations: a map or unmap of a few thousand pages reuses them. */
const KEEP_WORDS = 8192;
