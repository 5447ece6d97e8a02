/**
 * The lifecycle of a batch, for decision outputs and batched event destinations alike:
 *
 *   open ──> closed ──> sealed ──> in_flight ──> done
 *                         ^            │
 *                         └────────────┘  (an event batch whose attempt failed waits for its next one)
 *
 * - open: decisions (or events) of one stream are still added to it; held by OpenBatches, in memory only.
 * - closed: it reached a limit (events, bytes, age) and takes nothing more, but its seal has not committed
 *   yet (a full disk): it is never uploaded before it is sealed, and it holds the output's cursor.
 * - sealed: recorded durably with its first and last positions, which name its object: after a crash it is
 *   uploaded again under the same key with the same bytes.
 * - in_flight: being uploaded (and retried); it holds the cursor until its delivery is recorded.
 * - done: its delivery is recorded; nothing remembers it in memory.
 *
 * Batches sealed before a restart enter at `sealed`. Event batches are sealed in the same step as they
 * close (the store records them at once) and live in the store while sealed: they are tracked here from
 * the moment they are due (sealed -> in_flight), and forgotten again when they go back to wait.
 */
export type BatchState = 'open' | 'closed' | 'sealed' | 'in_flight' | 'done';

type Tracked = Exclude<BatchState, 'open' | 'done'>;

const NEXT: { readonly [S in BatchState]: readonly BatchState[] } = {
  open: ['closed', 'sealed'],
  closed: ['sealed'],
  sealed: ['in_flight'],
  in_flight: ['done', 'sealed'],
  done: [],
};

/** Batches past `open`, by state; within a state, in the order they entered it (uploads go first in, first out). */
export class BatchStates<K> {
  private readonly stateOf = new Map<K, Tracked>();
  private readonly byState: { readonly [S in Tracked]: Set<K> } = {
    closed: new Set(),
    sealed: new Set(),
    in_flight: new Set(),
  };

  /** A batch closed from `open`, or found sealed (before a restart, or in the store). */
  enter(batch: K, state: 'closed' | 'sealed'): void {
    if (this.stateOf.has(batch))
      throw new Error(`batch lifecycle: a batch already ${this.stateOf.get(batch)} enters again as ${state}`);
    this.stateOf.set(batch, state);
    this.byState[state].add(batch);
  }

  move(batch: K, to: Exclude<BatchState, 'open' | 'closed'>): void {
    const from = this.stateOf.get(batch);
    if (from === undefined) throw new Error(`batch lifecycle: an untracked batch cannot go to ${to}`);
    if (!NEXT[from].includes(to)) throw new Error(`batch lifecycle: ${from} -> ${to} is not a transition`);
    this.byState[from].delete(batch);
    if (to === 'done') {
      this.stateOf.delete(batch);
    } else {
      this.stateOf.set(batch, to);
      this.byState[to].add(batch);
    }
  }

  /** A sealed batch whose record lives elsewhere (an event batch, in the store): memory forgets it until it is due again. */
  forget(batch: K): void {
    if (this.stateOf.get(batch) !== 'sealed')
      throw new Error(
        `batch lifecycle: only a sealed batch can be forgotten, not a ${this.stateOf.get(batch) ?? 'untracked'} one`,
      );
    this.stateOf.delete(batch);
    this.byState.sealed.delete(batch);
  }

  state(batch: K): BatchState | undefined {
    return this.stateOf.get(batch);
  }

  in(state: Tracked): ReadonlySet<K> {
    return this.byState[state];
  }

  /** The batch that entered `state` first. */
  first(state: Tracked): K | undefined {
    for (const batch of this.byState[state]) return batch;
    return undefined;
  }

  count(...states: Tracked[]): number {
    let n = 0;
    for (const s of states) n += this.byState[s].size;
    return n;
  }

  all(): IterableIterator<K> {
    return this.stateOf.keys();
  }
}
