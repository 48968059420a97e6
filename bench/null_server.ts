/**
 * The null server: the ceiling of Deno's HTTP stack on this machine. A PUT
 * reads and discards its body; a GET of `/<anything>?size=N` answers N bytes
 * from memory. No S3, no disk.
 *
 * Usage: deno run -A bench/null_server.ts PORT
 *
 * @module
 */
const port = Number(Deno.args[0] ?? 9900);
const block = new Uint8Array(1 << 20).map((_, i) => (i * 31) & 0xff);

Deno.serve(
  { hostname: "127.0.0.1", port, onListen: () => console.log(`null server on ${port}`) },
  async (req) => {
    if (req.method === "PUT") {
      if (req.body) { for await (const _ of req.body) { /* discard */ } }
      return new Response(null, { status: 200, headers: { etag: '"0"' } });
    }
    const size = Number(new URL(req.url).searchParams.get("size") ?? "0");
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent >= size) return c.close();
        const n = Math.min(block.length, size - sent);
        c.enqueue(block.slice(0, n));
        sent += n;
      },
    }, { highWaterMark: 0 });
    return new Response(body, { headers: { "content-length": String(size) } });
  },
);
