/**
 * The real Disk: files under one root directory through `Deno.*` file APIs.
 * Thin adapter, no decisions.
 *
 * @module
 */
import {
  AlreadyExistsError,
  type DirEntry,
  type Disk,
  NotFoundError,
  type ReadHandle,
  type WriteHandle,
} from "../mod.ts";

/**
 * A Disk rooted at `root`. Paths given to it must be relative, `/`-separated,
 * and free of `..` segments.
 *
 * @throws {RangeError} when a path is absolute or climbs out of the root.
 */
export class DenoDisk implements Disk {
  constructor(readonly root: string) {}

  #abs(path: string): string {
    if (path.startsWith("/") || path.split("/").some((p) => p === "..")) {
      throw new RangeError(`Disk path must stay under the root: "${path}"`);
    }
    return path === "" || path === "." ? this.root : `${this.root}/${path}`;
  }

  async mkdirp(path: string): Promise<void> {
    await Deno.mkdir(this.#abs(path), { recursive: true });
  }

  async create(path: string): Promise<WriteHandle> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(this.#abs(path), { write: true, createNew: true, mode: 0o644 });
    } catch (err) {
      throw mapError(err, path);
    }
    return {
      write: async (bytes) => {
        let off = 0;
        while (off < bytes.length) off += await file.write(bytes.subarray(off));
      },
      sync: () => file.sync(),
      close: () => file.close(),
    };
  }

  async open(path: string): Promise<ReadHandle> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(this.#abs(path), { read: true });
    } catch (err) {
      throw mapError(err, path);
    }
    const info = await file.stat();
    let position = 0;
    return {
      sizeBytes: info.size,
      read: async (buf, offsetBytes) => {
        if (position !== offsetBytes) {
          await file.seek(offsetBytes, Deno.SeekMode.Start);
          position = offsetBytes;
        }
        const n = await file.read(buf);
        if (n === null) return 0;
        position += n;
        return n;
      },
      close: () => file.close(),
    };
  }

  async rename(from: string, to: string): Promise<void> {
    try {
      await Deno.rename(this.#abs(from), this.#abs(to));
    } catch (err) {
      throw mapError(err, from);
    }
  }

  async remove(path: string): Promise<void> {
    try {
      await Deno.remove(this.#abs(path));
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }

  async syncDir(path: string): Promise<void> {
    const dir = await Deno.open(this.#abs(path), { read: true });
    try {
      await dir.sync();
    } finally {
      dir.close();
    }
  }

  async *list(path: string): AsyncIterable<DirEntry> {
    try {
      for await (const e of Deno.readDir(this.#abs(path))) {
        yield { name: e.name, isFile: e.isFile, isDirectory: e.isDirectory };
      }
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }

  async stat(path: string): Promise<{ sizeBytes: number; mtimeMs: number } | null> {
    try {
      const info = await Deno.stat(this.#abs(path));
      return { sizeBytes: info.size, mtimeMs: info.mtime?.getTime() ?? 0 };
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return null;
      throw err;
    }
  }
}

function mapError(err: unknown, path: string): unknown {
  if (err instanceof Deno.errors.NotFound) return new NotFoundError(`No such file: "${path}"`);
  if (err instanceof Deno.errors.AlreadyExists) {
    return new AlreadyExistsError(`File exists: "${path}"`);
  }
  return err;
}
