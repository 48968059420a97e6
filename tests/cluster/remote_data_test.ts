/**
 * Remote reads and operator requests on real loopback mTLS: a member streams
 * object bytes held by another member with a bounded window (whole objects
 * larger than the window, ranges, packed small objects, a missing object, a
 * reader that stops early), and the CLI's own-certificate requests.
 */
import assert from "node:assert/strict";
import type { TlsIdentity } from "../../src/io/conn.ts";
import { DenoDisk, systemClock, systemRng } from "../../src/io/deno/mod.ts";
import { dialCluster, listenCluster } from "../../src/io/deno/tls.ts";
import {
  type ClusterCa,
  createClusterCa,
  createCsr,
  issueNodeCertificate,
  verifyNodeCertificate,
} from "../../src/cluster/pki.ts";
import { FrameType } from "../../src/transport/frame.ts";
import { Transport } from "../../src/transport/peer.ts";
import { LocalDataPath } from "../../src/data/local.ts";
import type { DataRef } from "../../src/meta/mod.ts";
import { jsonFrame, PeerRpc, RpcError, StreamIds } from "../../src/cluster/rpc.ts";
import { DEFAULT_WINDOW_BYTES, RemoteData } from "../../src/cluster/remote_data.ts";
import { ClusterDataPath } from "../../src/cluster/cluster_data.ts";
import { AdminError, callAdmin } from "../../src/cluster/admin.ts";

const timers = {
  setTimeout(ms: number, fn: () => void) {
    const h = setTimeout(fn, ms);
    return () => clearTimeout(h);
  },
};

async function identityFor(ca: ClusterCa, nodeId: string): Promise<TlsIdentity> {
  const csr = await createCsr(nodeId);
  const certPem = await issueNodeCertificate(ca, nodeId, csr.csrPem, {
    nowMs: Date.now(),
    serial: systemRng.fill(new Uint8Array(16)),
  });
  return { caCertPem: ca.certPem, certPem, keyPem: csr.keyPem };
}

/** A member: transport, listener, local data, remote reads, member calls. */
async function startMember(ca: ClusterCa, nodeId: string, dir: string) {
  const identity = await identityFor(ca, nodeId);
  const local = new LocalDataPath(new DenoDisk(dir));
  await local.init();
  const ids = new StreamIds(nodeId);
  // deno-lint-ignore prefer-const -- assigned once the transport they use exists
  let remote: RemoteData;
  // deno-lint-ignore prefer-const -- assigned once the transport they use exists
  let rpc: PeerRpc;
  const transport = new Transport({
    selfId: nodeId,
    clock: systemClock,
    rng: systemRng,
    dial: (addr) => dialCluster(addr, identity),
    identify: (der) => verifyNodeCertificate(der, ca.certPem, Date.now()),
    onMessage: (peerId, frame) => {
      if (!rpc.onFrame(peerId, frame)) remote.onFrame(peerId, frame);
    },
    onPeerChange: (peerId, up) => {
      if (!up) {
        rpc.peerLost(peerId);
        remote.peerLost(peerId);
      }
    },
    onLocalRequest: (frame) => {
      const body = JSON.parse(new TextDecoder().decode(frame.payload));
      if (body.op === "fail") {
        return Promise.resolve(
          jsonFrame(FrameType.Error, frame.streamId, { code: "NoCaKey", message: "no key here" }),
        );
      }
      return Promise.resolve(jsonFrame(FrameType.Response, frame.streamId, { echo: body }));
    },
  }, { backoffMinMs: 20, backoffMaxMs: 100 });
  const send = (peerId: string, f: Parameters<Transport["send"]>[1]) => transport.send(peerId, f);
  remote = new RemoteData(ids, send, local, timers);
  rpc = new PeerRpc(ids, send, timers, (peerId, body) => Promise.resolve({ from: peerId, body }));
  const listener = await listenCluster({
    hostname: "127.0.0.1",
    port: 0,
    identity,
    onConn: (conn) => transport.accept(conn),
  });
  const data = new ClusterDataPath(nodeId, local, remote, () => null);
  return {
    nodeId,
    identity,
    local,
    data,
    remote,
    rpc,
    transport,
    addr: listener.addr,
    async stop() {
      await listener.close();
      await transport.close();
    },
  };
}

async function put(data: ClusterDataPath, bytes: Uint8Array, pack = false): Promise<DataRef> {
  const dataId = Array.from(
    systemRng.fill(new Uint8Array(16)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const w = await data.create(
    dataId,
    pack ? { packFor: { bucket: "b", key: "k" } } : undefined,
  );
  for (let i = 0; i < bytes.length; i += 100_000) await w.write(bytes.subarray(i, i + 100_000));
  const ref = await w.commit();
  data.settle(ref);
  return ref;
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("remote reads stream another member's bytes over mTLS with a bounded window", async () => {
  const ca = await createClusterCa({
    clusterId: "t",
    nowMs: Date.now(),
    serial: systemRng.fill(new Uint8Array(16)),
  });
  const dirA = await Deno.makeTempDir();
  const dirB = await Deno.makeTempDir();
  const a = await startMember(ca, "a", dirA);
  const b = await startMember(ca, "b", dirB);
  try {
    a.transport.setPeerAddr("b", b.addr);
    b.transport.setPeerAddr("a", a.addr);

    // Bytes written through the cluster data path name their holder.
    const big = systemRng.fill(new Uint8Array(3 * DEFAULT_WINDOW_BYTES + 12345));
    const ref = await put(b.data, big);
    assert.equal(ref.node, "b");
    const small = new TextEncoder().encode("packed into a segment");
    const packed = await put(b.data, small, true);
    assert.ok(packed.segment, "small objects are packed");
    assert.equal(packed.node, "b");

    // A reads them from B: whole (larger than the window), a range, a packed record.
    assert.deepEqual(await readAll(a.data.read(ref, 0, big.length)), big);
    assert.deepEqual(
      await readAll(a.data.read(ref, 1_000_000, 2_500_001)),
      big.subarray(1_000_000, 2_500_001),
    );
    assert.deepEqual(await readAll(a.data.read(packed, 0, small.length)), small);
    assert.deepEqual(await readAll(a.data.read(packed, 3, 9)), small.subarray(3, 9));

    // Missing data is an error the reader sees, not an empty body.
    const missing: DataRef = { ...ref, dataId: "0".repeat(32) };
    await assert.rejects(readAll(a.data.read(missing, 0, 10)), (err: unknown) => {
      assert.ok(err instanceof RpcError);
      assert.equal(err.code, "NoSuchData");
      return true;
    });

    // A reader that stops early releases the holder's side.
    const reader = a.data.read(ref, 0, big.length).getReader();
    const first = await reader.read();
    assert.ok(first.value && first.value.length > 0);
    await reader.cancel();
    for (let i = 0; i < 100 && b.remote.openStreams.serving > 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(b.remote.openStreams.serving, 0);
    assert.equal(a.remote.openStreams.reading, 0);

    // Only the holder removes bytes: A's remove of B's ref leaves them on B.
    await a.data.remove(ref);
    assert.deepEqual(await readAll(b.data.read(ref, 0, 5)), big.subarray(0, 5));

    // Member calls: a request answered on its id.
    assert.deepEqual(await a.rpc.call("b", { op: "ping" }, 5000), {
      from: "a",
      body: { op: "ping" },
    });
  } finally {
    await a.stop();
    await b.stop();
    await Deno.remove(dirA, { recursive: true });
    await Deno.remove(dirB, { recursive: true });
  }
});

Deno.test("a dropped connection fails a remote read at once", async () => {
  const ca = await createClusterCa({
    clusterId: "t",
    nowMs: Date.now(),
    serial: systemRng.fill(new Uint8Array(16)),
  });
  const dirA = await Deno.makeTempDir();
  const dirB = await Deno.makeTempDir();
  const a = await startMember(ca, "a", dirA);
  const b = await startMember(ca, "b", dirB);
  try {
    a.transport.setPeerAddr("b", b.addr);
    const big = systemRng.fill(new Uint8Array(4 * DEFAULT_WINDOW_BYTES));
    const ref = await put(b.data, big);
    const reader = a.data.read(ref, 0, big.length).getReader();
    await reader.read();
    await b.stop(); // the holder goes away mid-stream
    await assert.rejects(
      (async () => {
        for (;;) if ((await reader.read()).done) return;
      })(),
      (err: unknown) => err instanceof RpcError && err.code === "Unreachable",
    );
  } finally {
    await a.stop();
    await Deno.remove(dirA, { recursive: true });
    await Deno.remove(dirB, { recursive: true });
  }
});

Deno.test("operator requests: only the node's own certificate gets an answer", async () => {
  const ca = await createClusterCa({
    clusterId: "t",
    nowMs: Date.now(),
    serial: systemRng.fill(new Uint8Array(16)),
  });
  const dir = await Deno.makeTempDir();
  const a = await startMember(ca, "a", dir);
  try {
    // The CLI: the node's own identity.
    const answer = await callAdmin(await dialCluster(a.addr, a.identity), { op: "status" });
    assert.deepEqual(answer, { echo: { op: "status" } });
    await assert.rejects(
      callAdmin(await dialCluster(a.addr, a.identity), { op: "fail" } as never),
      (err: unknown) => err instanceof AdminError && err.code === "NoCaKey",
    );
    // Another member's certificate is a peer connection: no operator answers.
    const other = await identityFor(ca, "b");
    const conn = await dialCluster(a.addr, other);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      callAdmin(conn, { op: "status" }).then(() => "answered", () => "refused"),
      new Promise((r) => timer = setTimeout(() => r("no answer"), 1000)),
    ]);
    clearTimeout(timer);
    conn.close();
    assert.equal(outcome, "no answer");
    // A certificate from another CA does not get through the handshake's check.
    const foreignCa = await createClusterCa({
      clusterId: "x",
      nowMs: Date.now(),
      serial: systemRng.fill(new Uint8Array(16)),
    });
    const foreign = { ...(await identityFor(foreignCa, "a")), caCertPem: ca.certPem };
    await assert.rejects(
      (async () => callAdmin(await dialCluster(a.addr, foreign), { op: "status" }))(),
    );
  } finally {
    await a.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a holder that never answers fails the read as Unreachable, not a hang", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const local = new LocalDataPath(new DenoDisk(dir));
    // The transport queues for a peer it cannot reach: nothing ever comes back.
    const remote = new RemoteData(new StreamIds("a"), () => true, local, timers, 1 << 20, 200);
    const ref: DataRef = { dataId: "1".repeat(32), k: 1, m: 0, sizeBytes: 10 };
    await assert.rejects(
      readAll(remote.read("gone", ref, 0, 10)),
      (err: unknown) => err instanceof RpcError && err.code === "Unreachable",
    );
    assert.equal(remote.openStreams.reading, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
