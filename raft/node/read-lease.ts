// How long a leader's read lease may last for the ticks a node runs with (RaftCore.setReadLease).

/**
 * The longest read lease sound for members ticking every `tickMs` with `electionTicks` ticks to an
 * election timeout, on clocks whose rates differ by at most `clockDrift` (a fraction): a member
 * withholds its vote for electionTicks ticks after it heard from the leader, the first of which may
 * come at once and the others at least tickMs - 1 apart (RaftNode's tick); the lease, measured on
 * the leader's clock from before it sent the heartbeat, must end before that by the drift.
 */
export function readLeaseMsFor(tickMs: number, electionTicks: number, clockDrift: number): number {
  return Math.floor((electionTicks - 1) * (tickMs - 1) * (1 - clockDrift));
}
