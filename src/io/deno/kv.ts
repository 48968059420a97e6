/**
 * The real MetaKv: Deno KV (SQLite on the local disk) at an explicit path.
 * Thin adapter, no decisions.
 *
 * @module
 */
import {
  KV_LIMITS,
  type KvAtomic,
  type KvEntry,
  type KvKey,
  type KvSelector,
  type MetaKv,
} from "../mod.ts";

/** Opens (creating if needed) the Deno KV database file at `path`. */
export async function openDenoKv(path: string): Promise<MetaKv> {
  const kv = await Deno.openKv(path);
  return new DenoMetaKv(kv);
}

class DenoMetaKv implements MetaKv {
  constructor(readonly kv: Deno.Kv) {}

  async get<T>(key: KvKey): Promise<KvEntry<T> | null> {
    const e = await this.kv.get<T>(key as Deno.KvKey);
    return e.versionstamp === null
      ? null
      : { key, value: e.value as T, versionstamp: e.versionstamp };
  }

  async getMany<T>(keys: KvKey[]): Promise<(KvEntry<T> | null)[]> {
    const out: (KvEntry<T> | null)[] = [];
    for (let i = 0; i < keys.length; i += KV_LIMITS.keysPerGetMany) {
      const batch = await this.kv.getMany<T[]>(
        keys.slice(i, i + KV_LIMITS.keysPerGetMany) as Deno.KvKey[],
      );
      for (const e of batch) {
        out.push(
          e.versionstamp === null ? null : {
            key: e.key as KvKey,
            value: e.value as T,
            versionstamp: e.versionstamp,
          },
        );
      }
    }
    return out;
  }

  async *list<T>(
    selector: KvSelector,
    options: { limit?: number; reverse?: boolean; batchSize?: number } = {},
  ): AsyncIterable<KvEntry<T>> {
    const iter = this.kv.list<T>(selector as Deno.KvListSelector, {
      limit: options.limit,
      reverse: options.reverse,
      batchSize: options.batchSize ?? Math.min(options.limit ?? 500, 1000),
    });
    for await (const e of iter) {
      yield { key: e.key as KvKey, value: e.value, versionstamp: e.versionstamp };
    }
  }

  atomic(): KvAtomic {
    const op = this.kv.atomic();
    const wrapper: KvAtomic = {
      check: (key, versionstamp) => {
        op.check({ key: key as Deno.KvKey, versionstamp });
        return wrapper;
      },
      set: (key, value) => {
        op.set(key as Deno.KvKey, value);
        return wrapper;
      },
      delete: (key) => {
        op.delete(key as Deno.KvKey);
        return wrapper;
      },
      commit: async () => (await op.commit()).ok,
    };
    return wrapper;
  }

  close(): void {
    this.kv.close();
  }
}
