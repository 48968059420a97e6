/**
 * Operator requests on the cluster port: `hamster cluster token | status |
 * remove` talk to the running node with the node's own certificate from
 * `-data-dir`, one `Request` frame answered by one `Response` or `Error`
 * frame (bodies UTF-8 JSON). The transport accepts such a connection only
 * when its client certificate is this node's own (`onLocalRequest`).
 *
 * No `Deno.*`: the connection comes through the `SecureConn` port.
 *
 * @module
 */
import type { SecureConn } from "../io/conn.ts";
import {
  decodeErrorFrame,
  encodeFrame,
  type Frame,
  FrameReader,
  FrameType,
} from "../transport/frame.ts";
import { jsonFrame } from "./rpc.ts";

/** One operator request. */
export type AdminRequest =
  | { op: "token"; ttlMs: number }
  | { op: "status" }
  | { op: "remove"; nodeId: string };

/** The answer to `token`. */
export interface TokenAnswer {
  /** The join token to pass to `cluster run -token`. */
  token: string;
  /** When it stops working, ms since the epoch. */
  expiresAtMs: number;
}

/** One member in {@link ClusterStatus}. */
export interface MemberStatus {
  /** Node id. */
  id: string;
  /** Cluster port, `host:port` (`null` when no member record names it yet). */
  addr: string | null;
  /** `voter` or `learner` in the Raft configuration. */
  role: "voter" | "learner";
  /** Whether the reporting node has a connection to it (itself: always). */
  reachable: boolean;
  /** Highest log index known to be on its disk (the leader's view; `null` when unknown). */
  matchIndex: number | null;
  /** Entries it is behind the leader's last index (`null` when unknown). */
  lag: number | null;
}

/** The answer to `status`; the shape the README documents for `status -json`. */
export interface ClusterStatus {
  /** The node that answered. */
  nodeId: string;
  /** Its cluster port. */
  addr: string;
  /** `leader`, `follower`, `candidate`, `precandidate` or `learner`. */
  role: string;
  /** The leader this node knows, or `null`. */
  leader: string | null;
  /** Its current term. */
  term: number;
  /** Its commit index. */
  commitIndex: number;
  /** Its applied index. */
  appliedIndex: number;
  /** Members (voters, then learners), with the leader's view of replication when it could be asked. */
  members: MemberStatus[];
}

/** A refused or failed operator request. */
export class AdminError extends Error {
  /** Always `"AdminError"`. */
  override name = "AdminError";
  /** `code` from the node's answer (`NoCaKey`, `NoSuchMember`, ...). */
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/**
 * Sends `request` on `conn` (dialled with the node's own certificate) and
 * returns the answer's body. Closes `conn`.
 * @throws {AdminError} with the node's error code and message, or
 *   `BadResponse` when the answer is not one frame of JSON.
 */
export async function callAdmin(conn: SecureConn, request: AdminRequest): Promise<unknown> {
  try {
    await conn.write(encodeFrame(jsonFrame(FrameType.Request, 1, request)));
    const reader = new FrameReader();
    let answer: Frame | undefined;
    for await (const chunk of conn.chunks) {
      const frames = reader.push(chunk);
      if (frames.length > 0) {
        answer = frames[0];
        break;
      }
    }
    if (answer?.type === FrameType.Error) {
      const { code, message } = decodeErrorFrame(answer);
      throw new AdminError(code, message);
    }
    if (answer?.type !== FrameType.Response || answer.streamId !== 1) {
      throw new AdminError("BadResponse", "The node closed the connection without an answer");
    }
    return JSON.parse(new TextDecoder().decode(answer.payload));
  } finally {
    conn.close();
  }
}

/**
 * Checks an operator request's body.
 * @throws {AdminError} `BadRequest` naming what is wrong.
 */
export function decodeAdminRequest(body: unknown): AdminRequest {
  const v = body as Partial<Record<string, unknown>> | null;
  switch (v?.op) {
    case "status":
      return { op: "status" };
    case "token":
      if (!Number.isSafeInteger(v.ttlMs) || (v.ttlMs as number) < 1000) {
        throw new AdminError("BadRequest", "token ttlMs must be at least 1000");
      }
      return { op: "token", ttlMs: v.ttlMs as number };
    case "remove":
      if (typeof v.nodeId !== "string" || v.nodeId === "") {
        throw new AdminError("BadRequest", "remove needs a node id");
      }
      return { op: "remove", nodeId: v.nodeId };
    default:
      throw new AdminError("BadRequest", `Unknown request ${JSON.stringify(v?.op)}`);
  }
}

/** `status` as the text `hamster cluster status` prints. */
export function formatStatus(s: ClusterStatus): string {
  const lines = [
    `node ${s.nodeId} (${s.role}) at ${s.addr}`,
    `leader: ${
      s.leader ?? "(none known)"
    }  term: ${s.term}  commit: ${s.commitIndex}  applied: ${s.appliedIndex}`,
    "",
    "ID                ADDRESS                 ROLE     REACHABLE  MATCH     LAG",
  ];
  for (const m of s.members) {
    lines.push(
      [
        m.id.padEnd(17),
        (m.addr ?? "-").padEnd(23),
        m.role.padEnd(8),
        (m.reachable ? "yes" : "no").padEnd(10),
        String(m.matchIndex ?? "-").padEnd(9),
        String(m.lag ?? "-"),
      ].join(" "),
    );
  }
  return lines.join("\n");
}
