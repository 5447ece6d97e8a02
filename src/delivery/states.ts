/**
 * A named state and the transitions allowed out of each. Any other transition is a bug of the code that
 * asks for it, thrown at once instead of leaving flags that disagree with each other.
 */
export class States<S extends string> {
  private current: S;

  constructor(
    private readonly what: string,
    initial: S,
    private readonly allowed: { readonly [K in S]: readonly S[] },
  ) {
    this.current = initial;
  }

  get state(): S {
    return this.current;
  }

  is(...states: S[]): boolean {
    return states.includes(this.current);
  }

  to(next: S): void {
    if (!this.allowed[this.current].includes(next))
      throw new Error(`${this.what}: ${this.current} -> ${next} is not a transition`);
    this.current = next;
  }
}
