// The simulator's safety checker on hand-built situations: it must flag each broken property and
// must not flag what Raft allows (such as a leader of an older term elected late).

import { describe, expect, it } from "vitest";
import { type Entry, RaftCore, SeededRandom } from "../../raft/core/index.js";
import { type DurableLog, SafetyChecker } from "../../raft/sim/safety-checker.js";

const bytes = (text: string) => new TextEncoder().encode(text);
const entry = (index: number, term: number, text = `e${index}`): Entry => ({
  index,
  term,
  type: "normal",
  data: bytes(text),
});
const log = (...entries: Entry[]): DurableLog => ({ offset: { index: 0, term: 0 }, entries });
const coreWith = (id: string, entries: Entry[], term: number) =>
  new RaftCore(
    { id, random: new SeededRandom(1) },
    { hardState: { term, vote: null, commit: 0 }, snapshot: null, offset: { index: 0, term: 0 }, entries },
  );

describe("safety checker", () => {
  it("flags two leaders in one term", () => {
    const checker = new SafetyChecker();
    checker.onLeader("n1", 5, coreWith("n1", [], 5));
    expect(() => checker.onLeader("n2", 5, coreWith("n2", [], 5))).toThrow(
      /election-safety: two leaders in term 5: n1 and n2/,
    );
  });

  it("flags two nodes holding the same index and term with different data (log matching)", () => {
    const checker = new SafetyChecker();
    checker.onPersist("n1", log(entry(1, 1, "a")), 1, 0);
    expect(() => checker.onPersist("n2", log(entry(1, 1, "b")), 1, 0)).toThrow(/log-matching/);
  });

  it("flags a leader of a later term that lacks an entry committed earlier", () => {
    const checker = new SafetyChecker();
    checker.onCommitted("n2", log(entry(1, 1), entry(2, 3)), 2, 3);
    expect(() => checker.onLeader("n1", 4, coreWith("n1", [entry(1, 1)], 4))).toThrow(
      /leader-completeness: n1, leader of term 4, lacks entry 2 \(term 3\) committed in term 3/,
    );
  });

  it("does not flag a leader of an older term elected late, by votes cast before the commit", () => {
    const checker = new SafetyChecker();
    checker.onCommitted("n2", log(entry(1, 1), entry(2, 3)), 2, 3);
    expect(() => checker.onLeader("n1", 2, coreWith("n1", [entry(1, 1)], 2))).not.toThrow();
  });

  it("flags a commit while a node that could still win an election lacks the entry", () => {
    const checker = new SafetyChecker();
    const logs = new Map<string, DurableLog>([
      ["n1", log(entry(1, 1), entry(2, 2))],
      ["n2", log(entry(1, 1), entry(2, 2))],
      ["n3", log(entry(1, 1), entry(2, 3))],
    ]);
    checker.onCommitted("n1", logs.get("n1") as DurableLog, 2, 4);
    expect(() => checker.onLeaderCommitted("n1", ["n1", "n2", "n3"], logs, 1, 2)).toThrow(
      /n1 committed entry 2 \(term 2\), but n3 lacks it and could still be elected/,
    );
  });

  it("flags two different entries applied at one index, and a persisted commit that goes back", () => {
    const checker = new SafetyChecker();
    checker.onApply("n1", entry(3, 2, "x"), 2);
    expect(() => checker.onApply("n2", entry(3, 2, "y"), 2)).toThrow(/state-machine-safety/);
    checker.onPersist("n3", log(entry(1, 1), entry(2, 1)), 1, 2);
    expect(() => checker.onPersist("n3", log(entry(1, 1), entry(2, 1)), Infinity, 1)).toThrow(
      /commit-monotonic/,
    );
  });

  it("flags a read from a lease once a newer leader exists, or while a quorum could elect one", () => {
    const voters = ["n1", "n2", "n3", "n4", "n5"];
    const checker = new SafetyChecker();
    checker.onLeader("n1", 2, coreWith("n1", [], 2));
    // The leader and two of the four others withhold their votes: no one else can win now.
    expect(() => checker.onLeaseRead("n1", 2, 1, voters, new Set(["n1", "n2", "n3"]))).not.toThrow();
    expect(() => checker.onLeaseRead("n1", 2, 1, voters, new Set(["n1", "n2"]))).toThrow(
      /read-lease: n1 answered a read from its lease of term 2 while n3, n4, n5 of voters n1, n2, n3, n4, n5 could vote for another leader/,
    );
    // Who withholds counts only among the voters (n6: a learner).
    expect(() => checker.onLeaseRead("n1", 2, 1, voters, new Set(["n1", "n2", "n6"]))).toThrow(/read-lease/);
    checker.onLeader("n4", 3, coreWith("n4", [], 3));
    expect(() => checker.onLeaseRead("n1", 2, 1, voters, new Set(voters))).toThrow(
      /read-lease: n1 answered a read from its lease of term 2 after n4 was elected leader of term 3/,
    );
    expect(checker.leaseReadsChecked).toBe(4);
  });

  it("records what a node newly commits once, though it restarts with an older commit index", () => {
    const checker = new SafetyChecker();
    const durable = log(entry(1, 1), entry(2, 1), entry(3, 2));
    expect(checker.onCommitted("n1", durable, 2, 1)).toEqual({ from: 1, to: 2 });
    // Restarted with the commit index it had persisted (1): nothing new, nothing flagged.
    checker.onRestart("n1");
    expect(checker.onCommitted("n1", durable, 1, 1)).toEqual({ from: 3, to: 2 });
    expect(checker.onCommitted("n1", durable, 3, 2)).toEqual({ from: 3, to: 3 });
    // What it committed is held to: another node committing other data at 2 is flagged.
    expect(() => checker.onCommitted("n2", log(entry(1, 1), entry(2, 2, "other")), 2, 2)).toThrow(
      /state-machine-safety: n2 committed entry 2 of term 2; term 1 was committed there before/,
    );
  });
});
