/**
 * A HashPool backed by Deno Workers: each worker keeps hashing sessions
 * (MD5 and one optional checksum) that the main thread feeds with copies of
 * the body's 1 MiB blocks. Per session at most one block is in flight, so
 * memory stays bounded and the hashing of block N overlaps the receiving of
 * block N+1. Bodies smaller than one block are hashed inline: messaging would
 * cost more than it saves.
 *
 * Messages (main → worker): `{t: "open", id, algorithm?}`, `{t: "update", id, bytes}`,
 * `{t: "digest", id}`, `{t: "drop", id}` (no reply). Replies (worker → main): `{id, ok: true}` per update,
 * `{id, md5Hex, checksum?}` per digest, `{id, error}` on failure.
 *
 * Thin adapter: the hashing itself is `inlineHashPool` from `src/s3/hashing.ts`.
 *
 * @module
 */
import type { BodyDigest, BodyHasher, HashPool } from "../../s3/hashing.ts";
import { inlineHashPool } from "../../s3/hashing.ts";
import type { ChecksumAlgorithm } from "../../meta/records.ts";

/** Blocks at least this large go to a worker; smaller updates are hashed inline. */
export const WORKER_MIN_BYTES = 512 * 1024;

type Reply = { id: number; ok?: true; md5Hex?: string; checksum?: string; error?: string };

class WorkerHandle {
  readonly worker: Worker;
  readonly waiting = new Map<number, { resolve(r: Reply): void; reject(e: Error): void }[]>();

  constructor() {
    this.worker = new Worker(new URL("./hash_worker_main.ts", import.meta.url), { type: "module" });
    this.worker.onmessage = (e: MessageEvent<Reply>) => {
      const queue = this.waiting.get(e.data.id);
      const next = queue?.shift();
      if (queue && queue.length === 0) this.waiting.delete(e.data.id);
      if (!next) return;
      if (e.data.error) next.reject(new Error(e.data.error));
      else next.resolve(e.data);
    };
  }

  call(id: number, message: unknown): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const queue = this.waiting.get(id) ?? [];
      queue.push({ resolve, reject });
      this.waiting.set(id, queue);
      this.worker.postMessage(message);
    });
  }
}

/** A pool of `size` hashing workers, started on first use. */
export function workerHashPool(size: number): HashPool {
  const workers: WorkerHandle[] = [];
  let nextId = 1;
  let turn = 0;
  const pick = () => {
    if (workers.length < size) workers.push(new WorkerHandle());
    return workers[turn++ % workers.length];
  };
  return {
    async open(algorithm?: ChecksumAlgorithm): Promise<BodyHasher> {
      // Until a large block arrives, hash inline; switch to a worker session once one does.
      const inline = await inlineHashPool.open(algorithm);
      let remote: { handle: WorkerHandle; id: number } | undefined;
      let inlineBytes = 0;
      let inFlight: Promise<unknown> = Promise.resolve();
      const hasher: BodyHasher = {
        async update(bytes: Uint8Array): Promise<void> {
          if (!remote && (bytes.length < WORKER_MIN_BYTES || inlineBytes > 0)) {
            inlineBytes += bytes.length;
            return await inline.update(bytes);
          }
          if (!remote) {
            const handle = pick();
            const id = nextId++;
            await handle.call(id, { t: "open", id, algorithm });
            remote = { handle, id };
          }
          await inFlight;
          // postMessage copies the block, so the caller may reuse it at once.
          inFlight = remote.handle.call(remote.id, { t: "update", id: remote.id, bytes });
        },
        async digest(): Promise<BodyDigest> {
          if (!remote) return await inline.digest();
          await inFlight;
          const r = await remote.handle.call(remote.id, { t: "digest", id: remote.id });
          return r.checksum !== undefined
            ? { md5Hex: r.md5Hex!, checksum: r.checksum }
            : { md5Hex: r.md5Hex! };
        },
        discard() {
          if (remote) remote.handle.worker.postMessage({ t: "drop", id: remote.id });
        },
      };
      return hasher;
    },
    close() {
      for (const w of workers) w.worker.terminate();
      workers.length = 0;
    },
  };
}
