// Runs an API method where it belongs. A "local" or "peer" method runs here. A "leader" method runs here if
// this node leads; otherwise it is forwarded to the leader, and while there is none (an election)
// it waits, within the request's deadline, instead of failing at once. A write that never reached
// the log (this node lost the lead before proposing, or the proposal was dropped) is retried; one
// whose outcome is unknown (a timeout after proposing) is not.

import { NotLeaderError, RaftError } from "../raft/core/index.js";
import { RaftNodeError } from "../raft/node/index.js";
import type { AnyApiMethod } from "./api/api-method.js";
import { ForwardedError, NodeError } from "./errors.js";
import type { Forwarder } from "./forwarder.js";
import { cutOffError } from "./peer-contact.js";
import { type Handler, type Interceptor, intercepted, type RequestContext } from "./request.js";

export interface ExecutorOptions {
  readonly leader: () => { readonly isLeader: boolean; readonly leaderId: string | null };
  readonly forwarder: Forwarder;
  readonly interceptors: readonly Interceptor[];
  /** How often to look for a leader again while there is none. */
  readonly leaderPollMs?: number;
  /**
   * How long a call waits for a leader (an election) before NO_LEADER, within its deadline: long
   * enough for an election, short enough that a client of a node cut off from the others goes to
   * another node rather than waiting out its deadline here.
   */
  readonly leaderWaitMs?: number;
  /** Whether this node is cut off from every other member: a call waiting for a leader gives up at once. */
  readonly cutOff?: () => boolean;
  /** Whether this node was removed from the cluster: calls for the leader are refused at once. */
  readonly removed?: () => boolean;
  /**
   * Runs just before a call's handler runs on this node, once the call is to run here rather than
   * be forwarded: where a use-limited token spends its use.
   */
  readonly beforeRun?: (context: RequestContext) => Promise<void>;
}

export class Executor {
  private readonly runners = new Map<AnyApiMethod, Handler<unknown, unknown>>();

  constructor(private readonly options: ExecutorOptions) {}

  /**
   * Runs a call: the interceptors (audit, rate limits, authorization) around everything this node
   * does with it, routing and forwarding included, so the node that took a call records it even
   * when the leader serves it (the leader records it too, as forwarded).
   */
  execute(method: AnyApiMethod, request: unknown, context: RequestContext): Promise<unknown> {
    return this.runnerOf(method)(request, context);
  }

  /**
   * The end of the chain. `actAfter` (the request entry being written) must settle before the call
   * is run here; a call forwarded to the leader goes at once, as the leader records it before it
   * acts, and this node answers only once its own entry is written (server/audit/audit-trail.ts).
   */
  private async route(
    method: AnyApiMethod,
    request: unknown,
    context: RequestContext,
    actAfter: Promise<unknown> | null,
  ): Promise<unknown> {
    const handler = method.handler as Handler<unknown, unknown>;
    if (context.forwardedBy === null) method.guard?.();
    if (method.route !== "leader") {
      if (actAfter !== null) await actAfter;
      await this.options.beforeRun?.(context);
      return handler(request, context);
    }
    if (this.options.removed?.() === true) {
      throw new NodeError("REMOVED", "this node was removed from the cluster; ask another member");
    }
    const pollMs = this.options.leaderPollMs ?? 20;
    const giveUpAt = Math.min(
      context.answerBy,
      performance.now() + (this.options.leaderWaitMs ?? Number.POSITIVE_INFINITY),
    );
    let lastLeaderHint: string | null = null;
    for (;;) {
      const { isLeader, leaderId } = this.options.leader();
      lastLeaderHint = leaderId ?? lastLeaderHint;
      try {
        if (isLeader) {
          if (actAfter !== null) await actAfter;
          await this.options.beforeRun?.(context);
          return await handler(request, context);
        }
        if (leaderId !== null && context.forwardedBy === null) {
          return await this.options.forwarder.forward(leaderId, method, request, context);
        }
        if (context.forwardedBy !== null) throw new NotLeaderError(leaderId);
      } catch (error) {
        if (!isRetryable(error) || context.forwardedBy !== null) throw error;
      }
      if (this.options.cutOff?.() === true) throw cutOffError();
      if (performance.now() + pollMs >= giveUpAt) {
        throw new NodeError(
          "NO_LEADER",
          "no leader could take the request before its deadline (an election?)",
          {
            leaderHint: lastLeaderHint,
          },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  }

  private runnerOf(method: AnyApiMethod): Handler<unknown, unknown> {
    let runner = this.runners.get(method);
    if (runner === undefined) {
      runner = intercepted(
        this.options.interceptors,
        (request, context, actAfter) => this.route(method, request, context, actAfter),
        method,
      );
      this.runners.set(method, runner);
    }
    return runner;
  }
}

/** Errors after which the request certainly did not take effect, so trying again is safe. */
function isRetryable(error: unknown): boolean {
  if (error instanceof NotLeaderError) return true;
  // A leadership transfer refuses proposals until it completes or times out.
  if (error instanceof RaftError) return error.code === "TRANSFER_IN_PROGRESS";
  if (error instanceof RaftNodeError) return error.code === "PROPOSAL_DROPPED";
  if (error instanceof ForwardedError) {
    // The leader refused before proposing: it lost the lead, dropped the proposal, or is sealed
    // (leadership is moving to an unsealed node).
    return ["NOT_LEADER", "PROPOSAL_DROPPED", "NO_LEADER", "LEADER_SEALED", "TRANSFER_IN_PROGRESS"].includes(
      error.reason,
    );
  }
  // The leader could not be reached, so nothing was sent (FORWARD_FAILED, sent but unanswered, is not retried).
  if (error instanceof NodeError) return error.code === "NO_LEADER";
  return false;
}
