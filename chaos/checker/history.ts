// A client history: what each operation asked, what it got back, and when it was called and
// returned. Operations that timed out or whose node crashed have an unknown outcome: they may or may
// not have taken effect, so they return at Infinity with no output.

export interface Operation<Input, Output> {
  readonly id: number;
  /** A client runs one operation at a time (its operations never overlap). */
  readonly client: number;
  readonly input: Input;
  /** undefined when the outcome is unknown. */
  readonly output: Output | undefined;
  /** Logical call time: a strictly increasing event counter, or a clock. */
  readonly call: number;
  /** Logical return time; Infinity when the outcome is unknown. */
  readonly return: number;
}

/** A sequential specification of the object the history ran against. */
export interface Model<State, Input, Output> {
  readonly name: string;
  init(): State;
  /**
   * Applies `input` to `state`. Returns the next state when `output` is what the object would answer
   * (any output is allowed when it is undefined, i.e. unknown), or undefined when it is not.
   */
  step(state: State, input: Input, output: Output | undefined): State | undefined;
  /** A string equal for equal states (memoization of visited configurations). */
  stateKey(state: State): string;
  /** P-compositionality: independent sub-histories (e.g. per key) that can be checked apart. */
  partition(operations: readonly Operation<Input, Output>[]): Map<string, Operation<Input, Output>[]>;
  describe(operation: Operation<Input, Output>): string;
}
