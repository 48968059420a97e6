/**
 * The data path of a cluster member until erasure coding: bytes of a PUT
 * stay on the member that received it (1+0, as `serve` stores them) and the
 * data ref names that member; a read of bytes held elsewhere streams them
 * from the holder (`remote_data.ts`). A member releases only data it holds.
 *
 * No `Deno.*`.
 *
 * @module
 */
import type { MetaKv } from "../io/mod.ts";
import type { DataRef, ManifestChunk, ObjectRecord, PartRecord } from "../meta/mod.ts";
import type { CreateOptions, DataPath, DataWriter } from "../data/local.ts";

/** Streams bytes held by another member. */
export interface RemoteReader {
  read(
    holder: string,
    ref: DataRef,
    startByte: number,
    endByte: number,
  ): ReadableStream<Uint8Array>;
}

/**
 * A {@link DataPath} for member `selfId` over its local disk.
 * `founderId()` names the member holding refs without a `node` (data from
 * before the cluster: a `serve` directory adopted by `cluster init`).
 */
export class ClusterDataPath implements DataPath {
  /** See the class doc. */
  constructor(
    readonly selfId: string,
    readonly local: DataPath,
    readonly remote: RemoteReader,
    readonly founderId: () => string | null,
  ) {}

  /** The member holding `ref`'s bytes. */
  holderOf(ref: DataRef): string {
    return ref.node ?? this.founderId() ?? this.selfId;
  }

  async create(dataId: string, opts?: CreateOptions): Promise<DataWriter> {
    const inner = await this.local.create(dataId, opts);
    const selfId = this.selfId;
    return {
      write: (bytes) => inner.write(bytes),
      get sizeBytes() {
        return inner.sizeBytes;
      },
      end: () => inner.end(),
      commit: async () => ({ ...await inner.commit(), node: selfId }),
      abort: () => inner.abort(),
    };
  }

  read(ref: DataRef, startByte: number, endByte: number): ReadableStream<Uint8Array> {
    const holder = this.holderOf(ref);
    if (holder === this.selfId) return this.local.read(localRef(ref), startByte, endByte);
    return this.remote.read(holder, localRef(ref), startByte, endByte);
  }

  /** Removes `ref` when this member holds it; data held elsewhere is its holder's to remove. */
  async remove(ref: DataRef): Promise<void> {
    if (this.holderOf(ref) === this.selfId) await this.local.remove(localRef(ref));
  }

  settle(ref: DataRef): void {
    if (this.holderOf(ref) === this.selfId) this.local.settle(localRef(ref));
  }

  sweep(live: ReadonlyMap<string, DataRef>): Promise<number> {
    return this.local.sweep(live);
  }
}

/** `ref` without the holder, as the local data path and the holder know it. */
function localRef(ref: DataRef): DataRef {
  if (ref.node === undefined) return ref;
  const { node: _node, ...rest } = ref;
  return rest;
}

/**
 * Every data ref the local replica holds whose bytes are on `selfId`, by
 * data id, without writing anything (a replica changes only through the
 * log). `founderId`: the holder of refs without a `node`. For the startup
 * sweep, run after a read barrier so that the replica has every committed
 * write.
 */
export async function liveLocalRefs(
  kv: MetaKv,
  selfId: string,
  founderId: string | null,
): Promise<Map<string, DataRef>> {
  const live = new Map<string, DataRef>();
  const add = (ref: DataRef) => {
    if ((ref.node ?? founderId ?? selfId) === selfId) live.set(ref.dataId, localRef(ref));
  };
  const manifests = new Set<string>();
  for await (const e of kv.list<ObjectRecord>({ prefix: ["cur"] })) {
    if (e.value.data) add(e.value.data);
    if (e.value.multipart) manifests.add(e.value.multipart.manifestId);
  }
  for await (const e of kv.list<ManifestChunk>({ prefix: ["manifest"] })) {
    if (manifests.has(e.key[1] as string)) { for (const p of e.value.parts) add(p.data); }
  }
  for await (const e of kv.list<PartRecord>({ prefix: ["part"] })) add(e.value.data);
  return live;
}
