/**
 * The cluster's own records in replicated metadata, and the commands that
 * write them, as the node wiring reads and proposes them: members, the CA
 * certificate, join tokens and S3 credentials. Keys and command shapes are
 * the ones fixed in the cluster plan (apply() lives in `src/meta`).
 *
 * Reads here are of the local replica: callers that need a linearizable
 * answer wait on `readBarrier()` first.
 *
 * @module
 */
import type { MetaKv } from "../io/mod.ts";
import type { Command } from "../meta/mod.ts";
import type { BurnJoinTokenCommand, IssueJoinTokenCommand, JoinTokenRecord } from "./token.ts";

/** A member as replicated metadata knows it. */
export interface MemberRecord {
  /** Node id, as its certificate names it. */
  id: string;
  /** Its cluster port, `host:port`. */
  addr: string;
  /** Set once the member was removed: its certificate is refused from then on. */
  removed?: boolean;
  /**
   * Set on the member that founded the cluster: data refs without a `node`
   * (written before it was a cluster, by `serve`) are on it.
   */
  founder?: boolean;
}

/** A stored S3 key pair. */
export interface CredentialRecord {
  /** The secret of the access key id in the key. */
  secretAccessKey: string;
}

/** Deno KV keys of the cluster records. */
export const clusterKeys = {
  member: (id: string) => ["sys", "member", id] as const,
  members: () => ["sys", "member"] as const,
  ca: () => ["sys", "ca"] as const,
  token: (tokenId: string) => ["sys", "token", tokenId] as const,
  credential: (accessKeyId: string) => ["sys", "cred", accessKeyId] as const,
  credentials: () => ["sys", "cred"] as const,
};

/** The metadata commands the cluster wiring proposes. */
export type ClusterCommand =
  | { type: "PutMember"; member: MemberRecord }
  | { type: "RemoveMember"; id: string }
  | { type: "PutClusterCa"; pem: string }
  | IssueJoinTokenCommand
  | BurnJoinTokenCommand
  | { type: "PutCredential"; accessKeyId: string; secretAccessKey: string };

/** `cmd` as a metadata command (the union in `src/meta` carries these shapes). */
export function asCommand(cmd: ClusterCommand): Command {
  return cmd as unknown as Command;
}

/** Every member record, removed ones included, by id. */
export async function readMembers(kv: MetaKv): Promise<Map<string, MemberRecord>> {
  const out = new Map<string, MemberRecord>();
  for await (const e of kv.list<MemberRecord>({ prefix: clusterKeys.members() })) {
    out.set(e.value.id, e.value);
  }
  return out;
}

/** The cluster CA certificate (PEM) in metadata, or `null`. */
export async function readClusterCa(kv: MetaKv): Promise<string | null> {
  return (await kv.get<string>(clusterKeys.ca()))?.value ?? null;
}

/** The record of `tokenId`, or `null`. */
export async function readJoinToken(kv: MetaKv, tokenId: string): Promise<JoinTokenRecord | null> {
  return (await kv.get<JoinTokenRecord>(clusterKeys.token(tokenId)))?.value ?? null;
}

/** Every stored credential: access key id to secret. */
export async function readCredentials(kv: MetaKv): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const e of kv.list<CredentialRecord>({ prefix: clusterKeys.credentials() })) {
    out.set(e.key[2] as string, e.value.secretAccessKey);
  }
  return out;
}
