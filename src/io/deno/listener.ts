/**
 * The HTTP listener of an S3 port: our own accept loop over `Deno.listen` (or
 * `Deno.listenTls`, HTTP/2 by ALPN), each connection handed to Deno's HTTP
 * server, with the connection controls `Deno.serve` lacks:
 *
 * - a cap on open connections: one over the cap is accepted and closed at once
 *   (refused), and the refusals are logged, at most once a second;
 * - a header timeout: a new connection that has not sent a whole request head
 *   within `headerTimeoutMs` is closed (slowloris);
 * - an idle timeout: a connection with no request in flight for
 *   `idleTimeoutMs` is closed (an unfinished next request head included);
 * - accept errors (`EMFILE` when descriptors run out) are logged and retried
 *   with a back-off; they never end the process.
 *
 * A timeout closes with Deno's graceful close of that connection (an idle or
 * half-sent head is dropped), and cuts it a second later if still open. Over
 * TLS the handshake runs here first; one that stalls cannot be closed in Deno
 * 2.9.6, so it keeps its place under the cap until the peer goes. A
 * response that says `connection: close` closes the connection at once after it
 * is sent, without reading the rest of the request body (Deno would otherwise
 * read it all, however long): that is how a refused upload is cut short.
 *
 * @see docs/adr/0013-connection-control.md
 * @module
 */

/** Handles one request. A response with `connection: close` ends the connection once sent. */
export type RequestHandler = (req: Request) => Response | Promise<Response>;

/** How an S3 port listens. */
export interface ListenerOptions {
  hostname: string;
  port: number;
  /** PEM certificate chain and key: HTTPS, with HTTP/2 offered by ALPN. */
  tls?: { cert: string; key: string };
  /** Connections open at once; one more is accepted and closed at once. */
  maxConnections: number;
  /** How long a new connection may take to send its first whole request head, ms. */
  headerTimeoutMs: number;
  /** How long a connection may stay without a request in flight, ms. */
  idleTimeoutMs: number;
  /** Where refusals and accept errors are reported (one line each). */
  log: (line: string) => void;
  /** Answers a request whose handler threw. */
  onError: (err: unknown) => Response | Promise<Response>;
}

/** A listening S3 port. */
export interface S3Listener {
  /** The bound address (the real port when 0 was asked for). */
  readonly addr: Deno.NetAddr;
  /** Connections open now. */
  readonly openConnections: number;
  /** Connections refused over the cap since start. */
  readonly refusedConnections: number;
  /** Resolves when the listener stops accepting (after {@link shutdown}); never rejects. */
  readonly finished: Promise<void>;
  /** Stops accepting, closes idle connections, and resolves when in-flight requests are done. */
  shutdown(): Promise<void>;
}

/** The internal per-connection entry of Deno's HTTP server (the one `Deno.serve` uses per listener). */
type ServeOnConnection = (
  conn: Deno.Conn,
  signal: AbortSignal,
  handler: (req: Request, info: { completed: Promise<void> }) => Promise<Response>,
  onError: (err: unknown) => Response | Promise<Response>,
  onListen: (scheme: string) => void,
) => { finished: Promise<void>; shutdown(): Promise<void> };

/** Shortest and longest pause after a failed accept, ms. */
const ACCEPT_BACKOFF_MIN_MS = 10;
const ACCEPT_BACKOFF_MAX_MS = 1_000;
/** How long a timed-out connection gets to close gracefully before it is cut, ms. */
const CLOSE_GRACE_MS = 1_000;
/** At most one log line per this many ms about refusals or accept errors. */
const LOG_EVERY_MS = 1_000;

function serveOnConnection(): ServeOnConnection {
  // deno-lint-ignore no-explicit-any
  const internal = (Deno as any)[(Deno as any).internal];
  const fn = internal?.serveHttpOnConnection;
  if (typeof fn !== "function") {
    throw new Error(
      `Deno ${Deno.version.deno} lacks Deno[Deno.internal].serveHttpOnConnection, which ` +
        "the S3 listener needs for its connection limits (see docs/adr/0013-connection-control.md)",
    );
  }
  return fn;
}

/**
 * Listens on `opts.hostname:opts.port` and serves `handler` on every connection,
 * under the cap and timeouts of `opts`.
 *
 * @throws {Deno.errors.AddrInUse} and other errors of binding the port
 * @throws {Error} when this Deno lacks the internal per-connection server entry
 * @see docs/adr/0013-connection-control.md
 */
export function listenS3(opts: ListenerOptions, handler: RequestHandler): S3Listener {
  const serveConn = serveOnConnection();
  const listener: Deno.Listener = opts.tls
    ? Deno.listenTls({
      hostname: opts.hostname,
      port: opts.port,
      cert: opts.tls.cert,
      key: opts.tls.key,
      alpnProtocols: ["h2", "http/1.1"],
    })
    : Deno.listen({ hostname: opts.hostname, port: opts.port });
  const open = new Map<Deno.Conn, { close: () => void; finished: Promise<void> }>();
  let refused = 0;
  let refusedLogged = 0;
  let acceptErrors = 0;
  let lastLogMs = -Infinity;
  let stopping = false;

  const logSometimes = (line: () => string) => {
    const now = Date.now();
    if (now - lastLogMs < LOG_EVERY_MS) return;
    lastLogMs = now;
    opts.log(line());
  };

  const closeConn = (conn: Deno.Conn) => {
    try {
      conn.close();
    } catch {
      // already closed
    }
  };

  // A TLS handshake happens before Deno's HTTP server has the connection. In Deno 2.9.6 no
  // close ends one that stalls (the socket stays open until the peer leaves, ADR 0013), so the
  // connection keeps its place under the cap until the handshake settles: descriptors stay
  // bounded by `maxConnections`. What is left of the header timeout then applies.
  const handshakeThenServe = (conn: Deno.TlsConn) => {
    const startMs = Date.now();
    const finished = conn.handshake().then(
      () => true,
      () => false,
    ).then((ok) => {
      open.delete(conn);
      if (!ok || stopping) return closeConn(conn);
      serveConnection(conn, Math.max(1, opts.headerTimeoutMs - (Date.now() - startMs)));
    });
    open.set(conn, { close: () => closeConn(conn), finished });
  };

  const serveConnection = (conn: Deno.Conn, headerTimeoutMs = opts.headerTimeoutMs) => {
    // Deno's shutdown of one connection: tolerates one already closed, answers requests in flight.
    let served: { finished: Promise<void>; shutdown(): Promise<void> } | undefined;
    let closing = false;
    const close = () => {
      if (closing) return;
      closing = true;
      served?.shutdown().catch((err) =>
        logSometimes(() => `listener: closing a connection failed: ${(err as Error).message}`)
      );
    };
    // Deno's abort of one connection (no graceful part): it takes only `addEventListener`
    // from the signal, and throws when the connection is gone already, so it is called here.
    let abortNow: (() => void) | undefined;
    const abortHook = {
      addEventListener: (type: string, fn: () => void) => {
        if (type === "abort") abortNow = fn;
      },
    } as unknown as AbortSignal;
    const closeNow = () => {
      closing = true;
      try {
        abortNow?.();
      } catch {
        // already closed
      }
    };
    // A timeout closes gracefully (a head that completes meanwhile is answered), then at once
    // after CLOSE_GRACE_MS: a graceful close does not end a TLS handshake that never finishes.
    const timedOut = () => {
      close();
      timer = setTimeout(closeNow, CLOSE_GRACE_MS);
    };
    let inFlight = 0;
    let timer: ReturnType<typeof setTimeout> | undefined = setTimeout(timedOut, headerTimeoutMs);
    const perRequest = async (
      req: Request,
      info: { completed: Promise<void> },
    ): Promise<Response> => {
      if (inFlight++ === 0) clearTimeout(timer);
      let res: Response | undefined;
      try {
        res = await handler(req);
        return res;
      } finally {
        if (--inFlight === 0 && !closing) timer = setTimeout(timedOut, opts.idleTimeoutMs);
        if (res?.headers.get("connection")?.toLowerCase() === "close") {
          // Once the answer is out (the next macrotask: `completed` comes just before the
          // last bytes are flushed), end the connection instead of draining the body.
          info.completed.catch(() => {}).then(() => setTimeout(closeNow, 0));
        }
      }
    };
    try {
      served = serveConn(conn, abortHook, perRequest, opts.onError, () => {});
    } catch (err) {
      clearTimeout(timer);
      closeConn(conn);
      logSometimes(() => `listener: cannot serve a connection: ${(err as Error).message}`);
      return;
    }
    const entry = {
      close,
      finished: served.finished.catch(() => {}).finally(() => {
        clearTimeout(timer);
        timer = undefined;
        open.delete(conn);
      }),
    };
    open.set(conn, entry);
  };

  const acceptLoop = async () => {
    let backoffMs = ACCEPT_BACKOFF_MIN_MS;
    while (!stopping) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (stopping || err instanceof Deno.errors.BadResource) return;
        acceptErrors++;
        logSometimes(() =>
          `listener: accept failed (${acceptErrors} so far): ${(err as Error).message}; ` +
          `${open.size} connection(s) open; retrying`
        );
        await new Promise((r) => setTimeout(r, backoffMs));
        backoffMs = Math.min(ACCEPT_BACKOFF_MAX_MS, backoffMs * 2);
        continue;
      }
      backoffMs = ACCEPT_BACKOFF_MIN_MS;
      if (open.size >= opts.maxConnections) {
        refused++;
        closeConn(conn);
        logSometimes(() => {
          const line = `listener: ${refused - refusedLogged} connection(s) refused: ` +
            `${open.size} open, the limit is ${opts.maxConnections} (-max-connections)`;
          refusedLogged = refused;
          return line;
        });
        continue;
      }
      if (opts.tls) handshakeThenServe(conn as Deno.TlsConn);
      else serveConnection(conn);
    }
  };
  const accepting = acceptLoop();

  return {
    addr: listener.addr as Deno.NetAddr,
    get openConnections() {
      return open.size;
    },
    get refusedConnections() {
      return refused;
    },
    finished: accepting,
    async shutdown() {
      stopping = true;
      try {
        listener.close();
      } catch {
        // already closed
      }
      await accepting;
      const entries = [...open.values()];
      for (const e of entries) e.close();
      await Promise.all(entries.map((e) => e.finished));
    },
  };
}
