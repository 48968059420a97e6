/**
 * The request fuzzer: one seed drives a loop of random methods, paths, query strings
 * (sub-resources such as ?uploads, ?tagging, ?cors, ?acl, ?delete, and partNumber or
 * uploadId with junk), headers (junk Range, conditionals, checksums, Content-MD5,
 * x-amz-copy-source, ACLs, aws-chunked without chunks) and bodies (random bytes,
 * mutated S3 XML documents, with whitespace, control characters and markup in any
 * value) against one live server, over raw TCP. Most requests are
 * signed right, by any of the six auth modes, so they get past auth into the handlers;
 * the rest are signed wrong or not at all.
 *
 * Mixed in by the seed: idle and slow connections in the background (open and silent, a
 * request head a byte every 100 ms, an unsigned PUT head then a trickled body, a signed
 * keep-alive PUT trickled byte by byte) against a server started with
 * `-header-timeout 1s -idle-timeout 1s`; each must be closed by the server (EOF or reset
 * within 20 s; the trickled ones answered 403 or 200 first), and fuzz requests must keep being
 * answered meanwhile. And oversized records, right-signed, in the bucket `fz-acked`: user
 * metadata around 2 KB (`MetadataTooLarge`), stored headers up to the HTTP layer's 64 KiB
 * head limit, keys of 1000 to 1100 bytes (`KeyTooLongError`), tags at and past 10 x 128/256,
 * CORS documents of 60 to 300 KiB (`MaxMessageLengthExceeded`, also for rules that serialize
 * past Deno KV's 64 KiB), CompleteMultipartUpload naming 1000 to 10001 parts, and DeleteObjects
 * of 1000 to 1500 keys of 1024 bytes; each gets its expected status and code.
 *
 * Asserted for every answer: no 5xx but 501 NotImplemented and 503 SlowDown; an error
 * body is well-formed S3 XML with a Code (and the RequestId of its header); an XML
 * success body is well-formed XML 1.0 (no character XML forbids, raw or referenced);
 * no request hangs. After the run: the process is alive, every object acknowledged in
 * `fz-acked` (by oversized or slow PUTs) reads back with its bytes, metadata and tags,
 * an object and a multipart object written before the run (in a bucket no right-signed
 * write may name) read back byte-identical with their tags, the data dir holds no temp
 * file and no shard file beyond committed objects', and the server logged no internal error.
 *
 * Bounded: `HAMSTER_FUZZ_REQUESTS` requests (default 3000) or `HAMSTER_FUZZ_MS`
 * milliseconds (default 60000), whichever comes first. The seed is printed; replay with
 * `HAMSTER_FUZZ_SEED=N deno test -A --unstable-kv tests/security/fuzz_test.ts`; add
 * `HAMSTER_FUZZ_VERBOSE=1` to print every request and its answer. `HAMSTER_FUZZ_CONCURRENCY=N`
 * keeps N requests in flight to bring races into play (a seed then no longer replays exactly).
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  assertServing,
  assertStoreClean,
  AUTH_MODES,
  authenticate,
  type AuthMode,
  crc32Base64,
  createBucket,
  dataFiles,
  encodeKey,
  encodeRequest,
  errorCodeOf,
  exchange,
  expectedShardCount,
  type HttpReply,
  internalErrors,
  md5Base64,
  objectPath,
  putObject,
  REGION,
  s3,
  type S3Request,
  seededBytes,
  type ServerProcess,
  sha256,
  signHeaders,
  slowConnection,
  startServer,
  utf8,
  type WireRequest,
  WRONG_SECRET,
  xmlProblem,
  xmlText,
  xmlTexts,
} from "./_support.ts";
import { formatAmzDate, presignRequest } from "../../src/auth/sign.ts";

const SEED = Number(Deno.env.get("HAMSTER_FUZZ_SEED") ?? Math.floor(Math.random() * 2 ** 31));
const MAX_REQUESTS = Number(Deno.env.get("HAMSTER_FUZZ_REQUESTS") ?? 3000);
const MAX_MS = Number(Deno.env.get("HAMSTER_FUZZ_MS") ?? 60_000);
const REPLAY = `HAMSTER_FUZZ_SEED=${SEED} deno test -A --unstable-kv tests/security/fuzz_test.ts`;
/** The most failures collected before the run stops. */
const MAX_FAILURES = 25;
/**
 * Requests in flight at once (HAMSTER_FUZZ_CONCURRENCY, default 1). Above 1, races are
 * in play and a seed no longer replays exactly: what the server answers steers later requests.
 */
const CONCURRENCY = Math.max(1, Number(Deno.env.get("HAMSTER_FUZZ_CONCURRENCY") ?? 1));
/** With HAMSTER_FUZZ_VERBOSE=1, every request and its answer is printed. */
const VERBOSE = Deno.env.get("HAMSTER_FUZZ_VERBOSE") === "1";

const MAIN = "fz-main";
const OTHER = "fz-other";
const CANARY = "fz-canary";
const CANARY_KEY = "canary.bin";
const CANARY_MP_KEY = "canary-multipart.bin";
const CANARY_BYTES = seededBytes(300_000, 1234);
const CANARY_PARTS = [seededBytes(5 * 1024 * 1024, 55), seededBytes(70_000, 56)];
/**
 * The bucket of the oversized-record and slow-upload cases: only they write to it (a
 * generated right-signed write naming it goes to MAIN instead), so what they saw
 * acknowledged there must all read back after the run.
 */
const ACKED = "fz-acked";
/** The fuzz server's `-header-timeout` and `-idle-timeout`: short, so slow connections end within the run. */
const CONNECTION_TIMEOUT = "1s";
/** How long a slow connection may stay open before it counts as never closed by the server. */
const SLOW_HANG_MS = 20_000;

/** A small seeded generator (mulberry32). */
class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  /** A float in [0, 1). */
  next(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  /** Picks by weight: [[weight, value], ...]. */
  weighted<T>(items: readonly [number, T][]): T {
    const total = items.reduce((n, [w]) => n + w, 0);
    let r = this.next() * total;
    for (const [w, v] of items) {
      if ((r -= w) < 0) return v;
    }
    return items[items.length - 1][1];
  }
  bytes(n: number): Uint8Array {
    return seededBytes(n, this.int(2 ** 31) + 1);
  }
  /** A string of `n` characters from `alphabet`. */
  str(n: number, alphabet: string): string {
    let s = "";
    for (let i = 0; i < n; i++) s += alphabet[this.int(alphabet.length)];
    return s;
  }
}

const PRINTABLE =
  " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";
const SAFE = "abcdefghijklmnopqrstuvwxyz0123456789-_.";

/** What the fuzzer knows of the server's state, to aim requests at real things. */
interface World {
  keys: string[];
  uploads: { bucket: string; key: string; uploadId: string }[];
  etags: string[];
}

function junkValue(rng: Rng): string {
  return rng.weighted<() => string>([
    [3, () => ""],
    [3, () => rng.str(1 + rng.int(12), SAFE)],
    [2, () => rng.str(1 + rng.int(40), PRINTABLE)],
    [1, () => rng.str(2000 + rng.int(4000), SAFE)],
    [1, () => String(rng.pick([0, -1, 1, 2, 10000, 10001, 2 ** 31, 2 ** 53, 1e21]))],
    [1, () => rng.pick(["NaN", "1.5", "1e3", "0x10", " 1", "1 ", "+1", "00001", "Infinity"])],
    [1, () => "é😀\u00ff"],
    [1, () => "%zz%00%ff"],
  ])();
}

function junkKey(rng: Rng, world: World): string {
  return rng.weighted<() => string>([
    [6, () => rng.pick(world.keys.length > 0 ? world.keys : ["k"])],
    [4, () => rng.str(1 + rng.int(20), SAFE)],
    [
      2,
      () =>
        `${rng.str(1 + rng.int(5), SAFE)}/${rng.str(1 + rng.int(5), SAFE)}/${
          rng.str(1 + rng.int(5), SAFE)
        }`,
    ],
    [
      1,
      () => rng.pick(["../x", "..", ".", "a/../b", "/lead", "trail/", "a//b", "%2e%2e", "a%2Fb"]),
    ],
    [1, () => rng.str(1 + rng.int(30), PRINTABLE)],
    [1, () => "k\u0000\u0001\u001f\u007f\r\n\t"],
    [1, () => "é😀\u2028\ufeff"],
    [1, () => "k".repeat(rng.pick([1024, 1025, 2000]))],
    [1, () => CANARY_KEY],
  ])();
}

/** A path: a bucket segment and an encoded (or deliberately raw) key. */
function junkPath(rng: Rng, world: World): { path: string; rawJunk: boolean } {
  const bucket = rng.weighted<string>([
    [12, MAIN],
    [3, OTHER],
    [3, CANARY],
    [1, "no-such-bucket"],
    [1, "Bad_Name"],
    [1, "ab"],
    [1, "x".repeat(64)],
    [1, ""],
    [1, "fz.dots.name"],
    [1, "192.168.1.1"],
  ]);
  const level = rng.weighted<"service" | "bucket" | "object">([[1, "service"], [4, "bucket"], [
    10,
    "object",
  ]]);
  if (level === "service") {
    return { path: rng.pick(["/", "//", "/?", "/%2F"]).replace("?", ""), rawJunk: false };
  }
  if (level === "bucket") {
    return { path: `/${bucket}${rng.chance(0.2) ? "/" : ""}`, rawJunk: false };
  }
  const key = junkKey(rng, world);
  const style = rng.weighted<string>([[10, "encoded"], [2, "dots"], [1, "raw"], [1, "double"]]);
  switch (style) {
    case "dots":
      return {
        path: `/${bucket}/${rng.pick(["../", "%2e%2e/", "./", "..%2F", "%2E%2E%2F"])}${
          encodeKey(key)
        }`,
        rawJunk: false,
      };
    case "raw":
      // Unencoded bytes in the request line: the HTTP layer may refuse them.
      return { path: `/${bucket}/${key}`, rawJunk: true };
    case "double":
      return { path: `/${bucket}//${encodeKey(key)}`, rawJunk: false };
    default:
      return { path: `/${bucket}/${encodeKey(key)}`, rawJunk: false };
  }
}

/** Sub-resources Hamster implements (mostly) and some it answers NotImplemented. */
const SUBRESOURCES = ["uploads", "tagging", "cors", "acl", "delete", "versioning", "location"];
const UNSUPPORTED = [
  "lifecycle",
  "policy",
  "versions",
  "select",
  "attributes",
  "restore",
  "website",
];

function junkQuery(rng: Rng, world: World): string {
  const params: string[] = [];
  const n = rng.weighted<number>([[4, 0], [5, 1], [3, 2], [1, 4]]);
  const enc = (s: string) => encodeURIComponent(s);
  for (let i = 0; i < n; i++) {
    const p = rng.weighted<() => string>([
      [6, () => rng.chance(0.7) ? `${rng.pick(SUBRESOURCES)}=` : rng.pick(SUBRESOURCES)],
      [1, () => `${rng.pick(UNSUPPORTED)}=`],
      [3, () => {
        const u = world.uploads.length > 0 && rng.chance(0.6)
          ? rng.pick(world.uploads).uploadId
          : junkValue(rng);
        return `uploadId=${enc(u)}`;
      }],
      [3, () => `partNumber=${enc(rng.chance(0.5) ? String(1 + rng.int(3)) : junkValue(rng))}`],
      [2, () => `list-type=${enc(rng.pick(["2", "1", "3", "", "x"]))}`],
      [1, () => `prefix=${enc(junkValue(rng))}`],
      [1, () => `delimiter=${enc(rng.pick(["/", "", "ab", "é", junkValue(rng)]))}`],
      [1, () => `max-keys=${enc(junkValue(rng))}`],
      [1, () => `marker=${enc(junkValue(rng))}`],
      [1, () => `start-after=${enc(junkValue(rng))}`],
      [
        1,
        () => `continuation-token=${enc(rng.pick(["", "AAAA", "!!!", btoa("k"), junkValue(rng)]))}`,
      ],
      [1, () => `encoding-type=${enc(rng.pick(["url", "URL", "", "xml"]))}`],
      [1, () => `versionId=${enc(rng.pick(["null", "1", junkValue(rng)]))}`],
      [1, () => `max-uploads=${enc(junkValue(rng))}`],
      [1, () => `key-marker=${enc(junkValue(rng))}`],
      [1, () => `upload-id-marker=${enc(junkValue(rng))}`],
      [1, () => `max-parts=${enc(junkValue(rng))}`],
      [1, () => `part-number-marker=${enc(junkValue(rng))}`],
      [1, () => `fetch-owner=${enc(rng.pick(["true", "false", "x"]))}`],
      [1, () => `response-content-type=${enc(junkValue(rng))}`],
      [1, () => `response-content-disposition=${enc(junkValue(rng))}`],
      [1, () => `x-id=${enc(junkValue(rng))}`],
      [1, () => `${enc(junkValue(rng))}=${enc(junkValue(rng))}`],
    ])();
    params.push(p);
  }
  return params.join("&");
}

function junkEtag(rng: Rng, world: World): string {
  const e = world.etags.length > 0 && rng.chance(0.5)
    ? rng.pick(world.etags)
    : `"${rng.str(32, "0123456789abcdef")}"`;
  return rng.pick([e, e.replaceAll('"', ""), "*", `W/${e}`, `${e}, "x"`, junkValue(rng)]);
}

const HTTP_DATES = [
  "Sun, 06 Nov 1994 08:49:37 GMT",
  "Fri, 01 Jan 2100 00:00:00 GMT",
  "yesterday",
  "0",
  "",
];

function junkHeaders(rng: Rng, world: World, hasBody: boolean): Record<string, string> {
  const h: Record<string, string> = {};
  const n = rng.weighted<number>([[3, 0], [4, 1], [3, 2], [2, 4], [1, 7]]);
  const source = () => {
    const b = rng.pick([MAIN, OTHER, CANARY, "no-such-bucket", ""]);
    const k = rng.chance(0.5) ? CANARY_KEY : junkKey(rng, world);
    return rng.pick([
      `/${b}/${encodeKey(k)}`,
      `${b}/${encodeKey(k)}`,
      `${b}/../${OTHER}/${encodeKey(k)}`,
      `/${b}/${encodeKey(k)}?versionId=${rng.pick(["null", "x"])}`,
      junkValue(rng),
    ]);
  };
  const gens: [number, () => void][] = [
    [
      3,
      () =>
        h["range"] = rng.pick([
          "bytes=0-10",
          "bytes=-5",
          "bytes=10-5",
          "bytes=abc",
          "bytes=0-0,5-9",
          "bytes=99999999999999999999-",
          "items=0-1",
          "bytes=-0",
          "bytes=0-",
          "bytes=5000000-",
        ]),
    ],
    [2, () => h["if-match"] = junkEtag(rng, world)],
    [2, () => h["if-none-match"] = junkEtag(rng, world)],
    [1, () => h["if-modified-since"] = rng.pick(HTTP_DATES)],
    [1, () => h["if-unmodified-since"] = rng.pick(HTTP_DATES)],
    [
      2,
      () =>
        h["content-md5"] = rng.pick([
          md5Base64(rng.bytes(4)),
          "AAAA",
          "not base64!",
          "",
          "1B2M2Y8AsgTpgAmY7PhCfg==",
        ]),
    ],
    [2, () => {
      const name = rng.pick(["crc32", "crc32c", "crc64nvme", "sha1", "sha256"]);
      h[`x-amz-checksum-${name}`] = rng.pick([
        crc32Base64(rng.bytes(3)),
        "AAAAAA==",
        "!!",
        "",
        junkValue(rng),
      ]);
    }],
    [
      1,
      () =>
        h["x-amz-sdk-checksum-algorithm"] = rng.pick([
          "CRC32",
          "SHA256",
          "MD5",
          "crc32",
          "",
          junkValue(rng),
        ]),
    ],
    [1, () => h["x-amz-checksum-algorithm"] = rng.pick(["CRC32", "CRC64NVME", "SHA1", "x"])],
    [4, () => h["x-amz-copy-source"] = source()],
    [
      1,
      () =>
        h["x-amz-copy-source-range"] = rng.pick([
          "bytes=0-9",
          "bytes=5-1",
          "bytes=0-99999999",
          "bytes=-5",
          junkValue(rng),
        ]),
    ],
    [
      1,
      () =>
        h[rng.pick(["x-amz-copy-source-if-match", "x-amz-copy-source-if-none-match"])] = junkEtag(
          rng,
          world,
        ),
    ],
    [
      1,
      () =>
        h[
          rng.pick(["x-amz-copy-source-if-modified-since", "x-amz-copy-source-if-unmodified-since"])
        ] = rng.pick(HTTP_DATES),
    ],
    [1, () => h["x-amz-metadata-directive"] = rng.pick(["COPY", "REPLACE", "replace", "x"])],
    [1, () => h["x-amz-tagging-directive"] = rng.pick(["COPY", "REPLACE", "x"])],
    [
      2,
      () =>
        h["x-amz-tagging"] = rng.pick([
          "a=b",
          "a=b&c=d",
          "",
          "=b",
          "a",
          "aws:x=1",
          Array.from({ length: 11 }, (_, i) => `k${i}=v`).join("&"),
          `${"k".repeat(129)}=v`,
          junkValue(rng),
        ]),
    ],
    [
      2,
      () =>
        h[`x-amz-meta-${rng.str(1 + rng.int(8), "abcdefgh-")}`] = rng.chance(0.2)
          ? "v".repeat(2100)
          : rng.str(rng.int(30), PRINTABLE),
    ],
    [
      1,
      () =>
        h["content-type"] = rng.pick([
          "application/xml",
          "text/plain",
          "",
          'x/y; charset=""',
          junkValue(rng),
        ]),
    ],
    [1, () => h["x-amz-acl"] = rng.pick(["private", "public-read", "authenticated-read", "x"])],
    [1, () => h["x-amz-grant-read"] = 'id="x"'],
    [1, () => h["x-amz-storage-class"] = rng.pick(["STANDARD", "GLACIER", "x"])],
    [1, () => h["x-amz-server-side-encryption"] = "AES256"],
    [1, () => h["x-amz-object-lock-mode"] = "GOVERNANCE"],
    [1, () => h["x-amz-website-redirect-location"] = "/x"],
    [1, () => h["expect"] = rng.pick(["100-continue", "nonsense"])],
    [1, () => h["cache-control"] = junkValue(rng)],
    [1, () => h["expires"] = rng.pick(HTTP_DATES)],
    [1, () => h["content-disposition"] = junkValue(rng)],
    [1, () => h["origin"] = rng.pick(["https://a.example", "null", "", junkValue(rng)])],
    [1, () => h["access-control-request-method"] = rng.pick(["GET", "PUT", "DELETE", "x", ""])],
    [
      1,
      () =>
        h["access-control-request-headers"] = rng.pick(["x-amz-date", "a, b", "", junkValue(rng)]),
    ],
    [1, () => h["x-amz-expected-bucket-owner"] = junkValue(rng)],
    [1, () => h["x-amz-request-payer"] = "requester"],
    [1, () => h["x-amz-checksum-mode"] = rng.pick(["ENABLED", "x"])],
    [
      1,
      () =>
        h["x-amz-decoded-content-length"] = rng.pick(["0", "5", "-1", "abc", "99999999999999999"]),
    ],
    [
      1,
      () => h["x-amz-trailer"] = rng.pick(["x-amz-checksum-crc32", "x-amz-checksum-x", "", "a,b"]),
    ],
    [1, () => h["content-encoding"] = rng.pick(["aws-chunked", "gzip", "aws-chunked,gzip", ""])],
    // Another Host (signed as sent): without -domain, path style must still decide the bucket.
    [1, () =>
      h["host"] = rng.pick([
        `${CANARY}.localhost`,
        `${MAIN}.127.0.0.1`,
        "127.0.0.1",
        "evil.example:80",
        "[::1]:9000",
        "a".repeat(300),
      ])],
    [1, () => {
      for (let i = 0; i < 100; i++) h[`x-amz-meta-m${i}`] = rng.str(rng.int(30), SAFE);
    }],
  ];
  for (let i = 0; i < n; i++) rng.weighted(gens)();
  if (!hasBody) delete h["x-amz-decoded-content-length"];
  return h;
}

/** Whitespace, control characters (raw or as references) and markup to put in XML values. */
const SPICE = [
  " ",
  "  ",
  "\t",
  "\n",
  "\r\n",
  "&#9;",
  "&#10;",
  "&#13;",
  "&#x20;",
  "\u0001",
  "\u001f",
  "\u000b",
  "&#1;",
  "&#x1F;",
  "&#0;",
  "&#xFFFE;",
  "\u0085",
  "\u00a0",
  "\u2028",
  "\ufeff",
  "<a/>",
  "<a>x</a>",
  "<![CDATA[ ]]>",
  "<!-- c -->",
];

/** `v`, or (one time in five) `v` with whitespace, a control character or markup around or in it. */
function spice(rng: Rng, v: string): string {
  if (!rng.chance(0.2)) return v;
  const bit = rng.pick(SPICE);
  return rng.pick([
    () => bit + v,
    () => v + bit,
    () => v.slice(0, 1) + bit + v.slice(1),
    () => bit,
  ])();
}

/** S3 XML documents, as sent, for mutation; every value may carry {@link spice}. */
function xmlDoc(rng: Rng, world: World): string {
  const f = (v: string) => spice(rng, v);
  const key = () => f(junkKey(rng, world).replace(/[<&]/g, (c) => c === "<" ? "&lt;" : "&amp;"));
  return rng.weighted<() => string>([
    [
      3,
      () =>
        `<Delete>${rng.chance(0.3) ? `<Quiet>${f("true")}</Quiet>` : ""}${
          Array.from({ length: 1 + rng.int(4) }, () =>
            `<Object><Key>${key()}</Key>${
              rng.chance(0.1) ? `<VersionId>${f("x")}</VersionId>` : ""
            }</Object>`).join("")
        }</Delete>`,
    ],
    [
      3,
      () =>
        `<CompleteMultipartUpload>${
          Array.from({ length: 1 + rng.int(3) }, (_, i) =>
            `<Part><PartNumber>${
              f(rng.chance(0.8) ? String(i + 1) : junkValue(rng))
            }</PartNumber><ETag>${f(junkEtag(rng, world))}</ETag></Part>`).join("")
        }</CompleteMultipartUpload>`,
    ],
    [
      3,
      () =>
        `<Tagging><TagSet>${
          Array.from({ length: rng.int(12) }, () =>
            `<Tag><Key>${f(rng.str(1 + rng.int(10), SAFE))}</Key><Value>${
              f(rng.str(rng.int(10), SAFE))
            }</Value></Tag>`).join("")
        }</TagSet></Tagging>`,
    ],
    [
      3,
      () =>
        `<CORSConfiguration>${
          Array.from({ length: 1 + rng.int(2) }, () =>
            `<CORSRule>${rng.chance(0.2) ? `<ID>${f("rule")}</ID>` : ""}<AllowedOrigin>${
              f(rng.pick(["*", "https://a.example", "https://*.b.example", "**"]))
            }</AllowedOrigin><AllowedMethod>${
              f(rng.pick(["GET", "PUT", "PATCH", ""]))
            }</AllowedMethod>${rng.chance(0.5) ? `<AllowedHeader>${f("*")}</AllowedHeader>` : ""}${
              rng.chance(0.3) ? `<ExposeHeader>${f("x-amz-request-id")}</ExposeHeader>` : ""
            }${
              rng.chance(0.3) ? `<MaxAgeSeconds>${f(junkValue(rng))}</MaxAgeSeconds>` : ""
            }</CORSRule>`).join("")
        }</CORSConfiguration>`,
    ],
    [
      1,
      () =>
        `<AccessControlPolicy><Owner><ID>x</ID></Owner><AccessControlList/></AccessControlPolicy>`,
    ],
    [
      1,
      () =>
        `<CreateBucketConfiguration><LocationConstraint>${
          f(rng.pick(["us-east-1", "eu-west-1", ""]))
        }</LocationConstraint></CreateBucketConfiguration>`,
    ],
  ])();
}

function mutateXml(rng: Rng, doc: string): string {
  return rng.weighted<() => string>([
    [6, () => doc],
    [2, () => doc.slice(0, rng.int(doc.length))],
    [1, () => doc.replace(/<(\w+)>/, "<$1><$1>")],
    [1, () => `<?xml version="1.0" encoding="UTF-8"?>\n${doc}`],
    [1, () => doc.replace(/>([^<]*)</, `>&lol;<`)],
    [1, () => `<!DOCTYPE x [<!ENTITY a "aaaa">]>${doc}`],
    [1, () => doc.replace(/>([^<]*)</, `><![CDATA[$1]]><`)],
    [1, () => doc.replace(/<\/(\w+)>$/, "</Wrong>")],
    [1, () => `${doc}${doc}`],
    [1, () => doc.replace(/>/, ` xmlns="http://s3.amazonaws.com/doc/2006-03-01/" a="&amp;">`)],
    [1, () => doc.replaceAll(">", ">\n  ")],
  ])();
}

function junkBody(rng: Rng, world: World, method: string): Uint8Array | undefined {
  const kind = rng.weighted<string>([
    [method === "GET" || method === "HEAD" || method === "DELETE" ? 12 : 3, "none"],
    [4, "bytes"],
    [5, "xml"],
    [1, "big"],
    [1, "text"],
  ]);
  switch (kind) {
    case "none":
      return undefined;
    case "bytes":
      return rng.bytes(rng.pick([0, 1, 100, 8192, 20_000]));
    case "big":
      return rng.bytes(200_000 + rng.int(300_000));
    case "text":
      return utf8.encode(junkValue(rng));
    default:
      return utf8.encode(mutateXml(rng, xmlDoc(rng, world)));
  }
}

/** How a fuzz request authenticates. */
type Auth =
  | { kind: "mode"; mode: AuthMode }
  | { kind: "wrong-secret"; mode: AuthMode }
  | { kind: "none" }
  | { kind: "garbage" }
  | { kind: "expired-presign" }
  | { kind: "skewed" }
  | { kind: "bad-content-sha256" };

function pickAuth(rng: Rng): Auth {
  return rng.weighted<Auth>([
    [50, { kind: "mode", mode: "signed-payload" }],
    [12, { kind: "mode", mode: "unsigned-payload" }],
    [5, { kind: "mode", mode: rng.pick(AUTH_MODES) }],
    [4, { kind: "wrong-secret", mode: rng.pick(AUTH_MODES) }],
    [3, { kind: "none" }],
    [3, { kind: "garbage" }],
    [1, { kind: "expired-presign" }],
    [1, { kind: "skewed" }],
    [1, { kind: "bad-content-sha256" }],
  ]);
}

/** A generated request, ready for the wire, and what may legitimately happen to it. */
interface FuzzCase {
  wire: WireRequest;
  /** Raw bytes in the request line or headers the HTTP layer may refuse (or close on). */
  rawJunk: boolean;
  /** Whether the request is signed right (it may change state). */
  valid: boolean;
  describe: string;
}

const READ_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

function firstSegment(path: string): string {
  let decoded = path;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return "";
  }
  return decoded.slice(1).split("/")[0];
}

function generate(rng: Rng, world: World, server: ServerProcess): FuzzCase {
  const method = rng.weighted<string>([
    [25, "GET"],
    [25, "PUT"],
    [15, "POST"],
    [12, "DELETE"],
    [8, "HEAD"],
    [4, "OPTIONS"],
    [1, "PATCH"],
    [1, rng.pick(["FOO", "get", "PROPFIND", "TRACE", "M-SEARCH", "CONNECT"])],
  ]);
  let { path, rawJunk } = junkPath(rng, world);
  const query = junkQuery(rng, world);
  const body = junkBody(rng, world, method);
  const headers = junkHeaders(rng, world, body !== undefined);
  const auth = pickAuth(rng);
  const valid = auth.kind === "mode";
  // A right-signed write never names the canary bucket: the canary must survive the run.
  if (valid && !READ_METHODS.has(method) && firstSegment(path) === CANARY) {
    path = path.replace(CANARY, MAIN);
  }
  if (valid && !READ_METHODS.has(method) && firstSegment(path) === ACKED) {
    path = path.replace(ACKED, MAIN);
  }
  const req: S3Request = { method, path, query, headers, body };
  let wire: WireRequest;
  let signable = true;
  try {
    switch (auth.kind) {
      case "mode":
      case "wrong-secret":
        wire = authenticate(
          server,
          auth.mode,
          req,
          auth.kind === "wrong-secret" ? { secret: WRONG_SECRET } : {},
        );
        break;
      case "none":
        wire = { method, path, query, headers: Object.entries(headers), body };
        break;
      case "garbage": {
        const h = Object.entries(headers);
        h.push([
          "authorization",
          rng.pick([
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 Credential=, SignedHeaders=, Signature=",
            `AWS ${server.credentials.accessKeyId}:abc`,
            "Bearer x",
            `AWS4-HMAC-SHA256 Credential=${server.credentials.accessKeyId}/20200101/${REGION}/s3/aws4_request, SignedHeaders=host, Signature=${
              "0".repeat(64)
            }`,
            junkValue(rng),
          ]),
        ]);
        h.push(["x-amz-content-sha256", rng.pick(["UNSIGNED-PAYLOAD", "x", ""])]);
        h.push(["x-amz-date", rng.pick([formatAmzDate(Date.now()), "20200101T000000Z", "x"])]);
        wire = { method, path, query, headers: h, body };
        break;
      }
      case "expired-presign": {
        const q = presignRequest({
          method,
          rawPath: path,
          rawQuery: query,
          headers: { host: server.host },
          credentials: server.credentials,
          region: REGION,
          amzDate: formatAmzDate(Date.now() - 3600_000),
          expiresSec: 60,
        });
        wire = { method, path, query: q, headers: Object.entries(headers), body };
        break;
      }
      case "skewed": {
        // Signed right, an hour ago: RequestTimeTooSkewed.
        const { headers: h } = signHeaders(server, req, {
          amzDate: formatAmzDate(Date.now() - 3600_000),
        });
        wire = { method, path, query, headers: h, body };
        break;
      }
      case "bad-content-sha256": {
        const w = authenticate(server, "signed-payload", req);
        (w.headers as Headers).set(
          "x-amz-content-sha256",
          rng.pick(["nothex", sha256("other"), "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"]),
        );
        wire = w;
        break;
      }
    }
  } catch {
    // A header value the signer's Headers refuses: send it unsigned instead.
    signable = false;
    wire = { method, path, query, headers: Object.entries(headers), body };
  }
  // Sometimes send the request target in absolute form (RFC 9112 section 3.2.2), even
  // naming another authority than Host: the path still decides bucket and key.
  if (rng.chance(0.02)) {
    wire.path = `${
      rng.pick([
        `http://127.0.0.1:${server.port}`,
        "http://evil.example",
        `http://${CANARY}.localhost`,
      ])
    }${wire.path}`;
    rawJunk = true;
  }
  // Sometimes announce a body the request does not have, or corrupt a chunked one.
  if (wire.body !== undefined && (wire.body as Uint8Array).length > 0 && rng.chance(0.03)) {
    const b = new Uint8Array(wire.body as Uint8Array);
    b[rng.int(b.length)] ^= 0xff;
    wire.body = b;
  }
  const shown = [...(wire.headers instanceof Headers ? wire.headers : (wire.headers ?? []))]
    .filter(([k]) => k !== "authorization")
    .map(([k, v]) => `${k}: ${v.length > 80 ? `${v.slice(0, 80)}...(${v.length})` : v}`);
  const bodyBytes = wire.body === undefined ? 0 : (wire.body as Uint8Array).length;
  const describe = `${method} ${wire.path}${wire.query ? `?${wire.query.slice(0, 300)}` : ""} ` +
    `[auth ${auth.kind}${"mode" in auth ? `/${auth.mode}` : ""}${
      signable ? "" : " (unsignable)"
    }] ` +
    `{${shown.join("; ")}} body ${bodyBytes} bytes` +
    (bodyBytes > 0 && bodyBytes < 400
      ? `: ${JSON.stringify(new TextDecoder().decode(wire.body as Uint8Array))}`
      : "");
  return { wire, rawJunk: rawJunk || !signable, valid: valid && signable, describe };
}

/** Checks one answer; returns a failure description, or null. */
function judge(
  c: FuzzCase,
  ex: { reply: HttpReply | null; timedOut: boolean; closed: boolean },
): string | null {
  if (ex.timedOut) return "no answer within 15 s (a hang)";
  const r = ex.reply;
  if (r === null) {
    return c.rawJunk || !["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS"].includes(c.wire.method)
      ? null
      : "the connection closed without an answer";
  }
  const head = c.wire.method === "HEAD";
  const fromHamster = r.headers.has("x-amz-request-id");
  if (r.status >= 500) {
    let code = "";
    try {
      code = head || r.body.length === 0 ? "" : errorCodeOf(r);
    } catch (err) {
      return `status ${r.status} with a broken error body: ${(err as Error).message}`;
    }
    const allowed = (r.status === 501 && (code === "NotImplemented" || head)) ||
      (r.status === 503 && (code === "SlowDown" || head));
    if (!allowed) return `status ${r.status} ${code}: ${r.text.slice(0, 500)}`;
  }
  if (!fromHamster) {
    // The HTTP layer itself refused the request (a parse error): only a bare 4xx is fine.
    if (r.status >= 400 && r.status < 500 && r.body.length === 0) return null;
    return `an answer without x-amz-request-id: ${r.status} ${r.text.slice(0, 300)}`;
  }
  if (r.status >= 300 && r.status !== 304 && !head) {
    if (r.status >= 300 && r.status < 400 && r.body.length === 0) {
      return `a ${r.status} without a body`;
    }
    try {
      errorCodeOf(r);
    } catch (err) {
      return `error body is not S3 error XML: ${(err as Error).message}`;
    }
  }
  // Hamster's own XML documents (not object bytes, which carry accept-ranges) must parse.
  const ownXml = (r.headers.get("content-type") ?? "").includes("xml") &&
    !r.headers.has("accept-ranges");
  if (r.status < 300 && !head && ownXml && r.body.length > 0) {
    const problem = xmlProblem(r.text);
    if (problem !== null) {
      return `a ${r.status} XML body is not well-formed XML 1.0 (${problem}): ${
        JSON.stringify(r.text.slice(0, 300))
      }`;
    }
  }
  if (!c.valid && r.status < 300 && c.wire.method !== "OPTIONS") {
    return `a request signed wrong (or not at all) succeeded with ${r.status}`;
  }
  return null;
}

/** Learns keys, ETags and upload ids from an answer, to aim later requests at them. */
function learn(world: World, c: FuzzCase, r: HttpReply | null): void {
  if (r === null || r.status >= 300) return;
  if (c.wire.method === "PUT" && world.keys.length < 200) {
    try {
      const key = decodeURIComponent(c.wire.path).split("/").slice(2).join("/");
      if (key !== "" && !world.keys.includes(key)) world.keys.push(key);
    } catch {
      // not a decodable path: nothing to learn
    }
  }
  const etag = r.headers.get("etag");
  if (etag && world.etags.length < 200) world.etags.push(etag);
  const uploadId = xmlText(r.text, "UploadId");
  const key = xmlText(r.text, "Key");
  const bucket = xmlText(r.text, "Bucket");
  if (uploadId && key !== undefined && bucket && world.uploads.length < 100) {
    world.uploads.push({ bucket, key, uploadId });
  }
}

/** What an oversized or slow case expects: one of these statuses, and with a 4xx this Code. */
interface Expect {
  statuses: number[];
  code?: string;
}

/** An object the server acknowledged in {@link ACKED}: what it must read back as. */
interface AckedObject {
  sha: string;
  meta: Record<string, string>;
  /** `<Key>k</Key><Value>v</Value>` per tag, in order, when tags were set. */
  tags?: string[];
}

/** Sends one right-signed request to {@link ACKED} or another bucket and reports back. */
type Probe = (
  what: string,
  req: S3Request,
  expect: Expect,
) => Promise<HttpReply | null>;

/** `n` lowercase letters and digits from the run's generator (a header or tag name). */
function word(rng: Rng, n: number): string {
  return rng.str(n, "abcdefghijklmnopqrstuvwxyz0123456789");
}

/** User metadata of exactly `totalBytes` (names plus values, as AWS counts) over `count` headers. */
function userMeta(rng: Rng, totalBytes: number, count: number): Record<string, string> {
  const h: Record<string, string> = {};
  const per = Math.floor(totalBytes / count);
  let left = totalBytes;
  for (let i = 0; i < count; i++) {
    const name = `${i.toString(36)}${word(rng, Math.min(8, per - 4))}`.slice(0, per - 1);
    const size = i === count - 1 ? left : per;
    h[`x-amz-meta-${name}`] = "v".repeat(size - name.length);
    left -= size;
  }
  return h;
}

/** Stored object headers (content-type and the like) of about `totalBytes` in all. */
function bigObjectHeaders(rng: Rng, totalBytes: number): Record<string, string> {
  const names = ["content-disposition", "cache-control", "content-language", "content-type"];
  const h: Record<string, string> = {};
  for (const name of names) {
    h[name] = `${name === "content-type" ? "text/x-" : "x"}${
      word(rng, Math.floor(totalBytes / names.length))
    }`;
  }
  return h;
}

/** A key of exactly `sizeBytes` UTF-8 bytes (some of them two-byte characters), unique by `n`. */
function keyOfBytes(rng: Rng, sizeBytes: number, prefix: string): string {
  let key = prefix;
  let n = utf8.encode(prefix).length;
  while (n + 2 <= sizeBytes) {
    const two = rng.chance(0.2);
    key += two ? "é" : word(rng, 1);
    n += two ? 2 : 1;
  }
  return n < sizeBytes ? `${key}k` : key;
}

/** Tags as an XML document and as the `<Key>..</Key><Value>..</Value>` the read-back shows. */
function tagSet(rng: Rng, count: number, keyChars: number, valueChars: number): {
  xml: string;
  header: string;
  shown: string[];
} {
  const tags = Array.from({ length: count }, (_, i) => [
    `${i}${word(rng, keyChars - String(i).length)}`,
    word(rng, valueChars),
  ]);
  return {
    xml: `<Tagging><TagSet>${
      tags.map(([k, v]) => `<Tag><Key>${k}</Key><Value>${v}</Value></Tag>`).join("")
    }</TagSet></Tagging>`,
    header: tags.map(([k, v]) => `${k}=${v}`).join("&"),
    shown: tags.map(([k, v]) => `<Key>${k}</Key><Value>${v}</Value>`),
  };
}

/**
 * A CORS configuration of about `sizeBytes` bytes in at most 100 rules. With `wide`, 100
 * rules each have a 255-character ID beyond Latin-1, so the stored rules (UTF-16 in V8's
 * serialization, which Deno KV counts) are larger than the document: past 64 KiB from a
 * document under AWS's 64 KB cap.
 */
function corsOfBytes(rng: Rng, sizeBytes: number, wide: boolean): string {
  const rules = wide ? 100 : 1 + rng.int(100);
  const origin = () => `https://${word(rng, 20)}.example`;
  const id = () => wide ? `<ID>${word(rng, 254)}\u20ac</ID>` : "";
  const perRule = Math.floor(sizeBytes / rules);
  const fixed =
    utf8.encode(`<CORSRule>${id()}<AllowedMethod>GET</AllowedMethod></CORSRule>`).length;
  const origins = Math.max(1, Math.floor((perRule - fixed) / 52));
  let doc = "<CORSConfiguration>";
  for (let r = 0; r < rules; r++) {
    doc += `<CORSRule>${id()}<AllowedMethod>GET</AllowedMethod>`;
    for (let o = 0; o < origins; o++) doc += `<AllowedOrigin>${origin()}</AllowedOrigin>`;
    doc += "</CORSRule>";
  }
  doc += "</CORSConfiguration>";
  // Pad to the asked size with whitespace, which XML ignores.
  const short = sizeBytes - utf8.encode(doc).length;
  return short > 0 ? doc.replace("<CORSRule>", `<CORSRule>${" ".repeat(short)}`) : doc;
}

/**
 * One oversized-record case, chosen by `rng`: metadata records at and across AWS's limits
 * (2 KB of user metadata, 1024-byte keys, 10 tags of 128/256 characters, 64 KB CORS
 * documents, 1000 keys a DeleteObjects, 10000 parts) and Deno KV's 64 KiB value limit
 * (stored headers of 20 to 70 KB; the HTTP layer refuses a request head over 64 KiB with a
 * bare 400, and CORS rules that serialize larger than their document). What is acknowledged in {@link ACKED} joins `acked`.
 * Returns how many requests it sent.
 */
async function oversized(
  rng: Rng,
  n: number,
  probe: Probe,
  acked: Map<string, AckedObject>,
): Promise<number> {
  const kind = rng.weighted<string>([
    [3, "user-meta"],
    [3, "object-headers"],
    [3, "long-key"],
    [2, "tagging"],
    [2, "cors"],
    [2, "multipart"],
    [1, "delete"],
  ]);
  const body = rng.bytes(1 + rng.int(200));
  const put = async (
    key: string,
    headers: Record<string, string>,
    what: string,
    ok: boolean,
    code: string,
    tags?: string[],
  ) => {
    const r = await probe(`${what}: PutObject ${ACKED}/${key.slice(0, 40)}...`, {
      method: "PUT",
      path: objectPath(ACKED, key),
      headers,
      body,
    }, ok ? { statuses: [200] } : { statuses: [400], code });
    if (r?.status === 200) {
      const meta: Record<string, string> = {};
      for (const [k, v] of Object.entries(headers)) if (k.startsWith("x-amz-meta-")) meta[k] = v;
      acked.set(key, { sha: sha256(body), meta, tags });
    }
  };
  switch (kind) {
    case "user-meta": {
      const total = rng.pick([1500, 2047, 2048, 2049, 3000, 8000]);
      const count = rng.pick([1, 2, 10, 40]);
      await put(
        `meta-${n}`,
        userMeta(rng, total, count),
        `${total} bytes of user metadata in ${count} headers`,
        total <= 2048,
        "MetadataTooLarge",
      );
      return 1;
    }
    case "object-headers": {
      // The object record carries these headers: past 64 KiB Deno KV would refuse the commit.
      const total = rng.pick([20_000, 56_000, 60_000, 62_000, 70_000]);
      const headers = { ...bigObjectHeaders(rng, total), ...userMeta(rng, 2048, 8) };
      const key = `headers-${n}`;
      const r = await probe(`${total} bytes of stored headers: PutObject ${ACKED}/${key}`, {
        method: "PUT",
        path: objectPath(ACKED, key),
        headers,
        body,
      }, { statuses: total > 65_536 ? [400] : [200, 400], code: "MetadataTooLarge" });
      if (r?.status === 200) {
        const meta = Object.fromEntries(
          Object.entries(headers).filter(([k]) => k.startsWith("x-amz-meta-")),
        );
        acked.set(key, { sha: sha256(body), meta });
      }
      return 1;
    }
    case "long-key": {
      const sizeBytes = rng.pick([1000, 1023, 1024, 1025, 1100]);
      const key = keyOfBytes(rng, sizeBytes, `big-${n}-`);
      // At the key limit, with metadata and tags at theirs too: the largest object record.
      const tags = rng.chance(0.5) ? tagSet(rng, 10, 128, 256) : undefined;
      const headers = {
        ...userMeta(rng, 2048, 4),
        ...(tags ? { "x-amz-tagging": tags.header } : {}),
      };
      await put(
        key,
        headers,
        `a ${sizeBytes}-byte key`,
        sizeBytes <= 1024,
        "KeyTooLongError",
        tags?.shown,
      );
      return 1;
    }
    case "tagging": {
      const count = rng.pick([10, 10, 11]);
      const keyChars = rng.pick([128, 128, 129]);
      const valueChars = rng.pick([256, 256, 257]);
      const tags = tagSet(rng, count, keyChars, valueChars);
      const ok = count <= 10 && keyChars <= 128 && valueChars <= 256;
      const expect: Expect = ok
        ? { statuses: [200] }
        : { statuses: [400], code: count > 10 ? "BadRequest" : "InvalidTag" };
      const known = [...acked.keys()];
      if (known.length === 0 || rng.chance(0.3)) {
        const key = `tagged-${n}`;
        await put(
          key,
          { "x-amz-tagging": tags.header },
          `${count} tags (${keyChars}/${valueChars} chars) in x-amz-tagging`,
          ok,
          expect.code ?? "",
          tags.shown,
        );
        return 1;
      }
      const key = rng.pick(known);
      // An object stored with up to 64 KiB of headers may have no room left for 3.8 KB of tags:
      // its record would pass Deno KV's value limit, which is refused as MetadataTooLarge.
      const nearLimit = key.startsWith("headers-");
      const r = await probe(`${count} tags (${keyChars}/${valueChars} chars): PutObjectTagging`, {
        method: "PUT",
        path: objectPath(ACKED, key),
        query: "tagging=",
        body: tags.xml,
      }, ok && nearLimit ? { statuses: [200, 400], code: "MetadataTooLarge" } : expect);
      if (r?.status === 200) acked.get(key)!.tags = tags.shown;
      return 1;
    }
    case "cors": {
      const sizeBytes = rng.pick([60 * 1024, 64 * 1024, 64 * 1024 + 1, 100 * 1024, 300 * 1024]);
      const wide = rng.chance(0.5);
      const doc = corsOfBytes(rng, sizeBytes, wide);
      const docBytes = utf8.encode(doc).length;
      await probe(
        `a ${docBytes}-byte CORS configuration${wide ? " with 100 non-Latin-1 rule IDs" : ""}`,
        {
          method: "PUT",
          path: `/${ACKED}`,
          query: "cors=",
          headers: { "content-md5": md5Base64(doc) },
          body: doc,
        },
        {
          // Under the cap, stored rules past Deno KV's 64 KiB are refused too, never a 500.
          statuses: docBytes > 64 * 1024 ? [400] : wide ? [200, 400] : [200],
          code: "MaxMessageLengthExceeded",
        },
      );
      return 1;
    }
    case "multipart": {
      const key = `multipart-${n}`;
      const metaBytes = rng.pick([2048, 2049]);
      const headerBytes = rng.pick([0, 30_000, 70_000]);
      const headers = {
        ...userMeta(rng, metaBytes, 3),
        ...(headerBytes ? bigObjectHeaders(rng, headerBytes) : {}),
      };
      const created = await probe(
        `CreateMultipartUpload with ${metaBytes} bytes of user metadata, ${headerBytes} of headers`,
        {
          method: "POST",
          path: objectPath(ACKED, key),
          query: "uploads=",
          headers,
        },
        metaBytes > 2048 || headerBytes > 65_536
          ? { statuses: [400], code: "MetadataTooLarge" }
          : { statuses: [200] },
      );
      const uploadId = created?.status === 200 ? xmlText(created.text, "UploadId") : undefined;
      if (!uploadId) return 1;
      const part = await probe("UploadPart 1", {
        method: "PUT",
        path: objectPath(ACKED, key),
        query: `partNumber=1&uploadId=${uploadId}`,
        body,
      }, { statuses: [200] });
      const etag = part?.headers.get("etag");
      if (!etag) return 2;
      const parts = rng.pick([1000, 10_000, 10_001]);
      const many =
        `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${etag}</ETag></Part>${
          Array.from({ length: parts - 1 }, (_, i) =>
            `<Part><PartNumber>${i + 2}</PartNumber><ETag>"${md5Base64(String(i))}"</ETag></Part>`)
            .join("")
        }</CompleteMultipartUpload>`;
      // Parts that were never uploaded (or more than 10000): refused, and the upload stays.
      await probe(`CompleteMultipartUpload naming ${parts} parts`, {
        method: "POST",
        path: objectPath(ACKED, key),
        query: `uploadId=${uploadId}`,
        body: many,
      }, { statuses: [400] });
      const done = await probe("CompleteMultipartUpload of the one part", {
        method: "POST",
        path: objectPath(ACKED, key),
        query: `uploadId=${uploadId}`,
        body:
          `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${etag}</ETag></Part></CompleteMultipartUpload>`,
      }, { statuses: [200] });
      if (done?.status === 200) {
        const meta = Object.fromEntries(
          Object.entries(headers).filter(([k]) => k.startsWith("x-amz-meta-")),
        );
        acked.set(key, { sha: sha256(body), meta });
      }
      return 4;
    }
    default: {
      // 1000 keys is AWS's most a DeleteObjects; these keys are never written, so nothing acked goes.
      const count = rng.pick([1000, 1001, 1500]);
      const doc = `<Delete><Quiet>true</Quiet>${
        Array.from({ length: count }, (_, i) =>
          `<Object><Key>${keyOfBytes(rng, 1024, `gone/${i}-`)}</Key></Object>`).join("")
      }</Delete>`;
      await probe(`DeleteObjects of ${count} 1024-byte keys (${doc.length} bytes)`, {
        method: "POST",
        path: `/${ACKED}`,
        query: "delete=",
        headers: { "content-md5": md5Base64(doc) },
        body: doc,
      }, count > 1000 ? { statuses: [400], code: "MalformedXML" } : { statuses: [200] });
      return 1;
    }
  }
}

/** What a slow connection does. */
const SLOW_KINDS = ["idle", "slowloris", "trickle-refused", "trickle-acked"] as const;
type SlowKind = typeof SLOW_KINDS[number];

/**
 * One idle or slow connection, chosen by `rng`, run in the background of the fuzz traffic:
 * open and send nothing; send a request head a byte every 100 ms that never ends; send an
 * unsigned PUT head then trickle its body (refused: the error, then the close); or send a
 * signed keep-alive PUT head then trickle its body for longer than the header timeout (the
 * upload is acknowledged and joins `acked`, then the idle connection is closed). Returns a
 * failure description, or null: the server must close every one of them.
 */
async function slowCase(
  rng: Rng,
  kind: SlowKind,
  n: number,
  server: ServerProcess,
  acked: Map<string, AckedObject>,
): Promise<{ kind: SlowKind; failure: string | null }> {
  const bytes = (s: string) => [...utf8.encode(s)].map((b) => Uint8Array.of(b));
  const key = `slow-${n}`;
  const body = rng.bytes(15 + rng.int(20));
  let pieces: Uint8Array[] = [];
  let expectStatus: number | undefined;
  switch (kind) {
    case "idle":
      break;
    case "slowloris": {
      const head = `PUT ${objectPath(MAIN, key)} HTTP/1.1\r\nhost: ${server.host}\r\n` +
        `x-amz-meta-slow: ${"s".repeat(400)}`;
      pieces = bytes(head);
      break;
    }
    case "trickle-refused": {
      // No signature: AccessDenied before the body is read, then the connection closes.
      const { head } = encodeRequest(server, {
        method: "PUT",
        path: objectPath(MAIN, key),
        headers: [["connection", "keep-alive"]],
        contentLength: 1000,
      });
      pieces = [head, ...Array.from({ length: 1000 }, () => rng.bytes(1))];
      expectStatus = 403;
      break;
    }
    case "trickle-acked": {
      const req: S3Request = { method: "PUT", path: objectPath(ACKED, key), body };
      const { headers } = signHeaders(server, req);
      headers.set("connection", "keep-alive");
      const { head } = encodeRequest(server, { ...req, headers });
      pieces = [head, ...[...body].map((b) => Uint8Array.of(b))];
      expectStatus = 200;
      break;
    }
  }
  const seen = await slowConnection(server, pieces, { gapMs: 100, timeoutMs: SLOW_HANG_MS });
  const what = `slow connection #${n} (${kind}, ${seen.sentBytes} of ${
    pieces.reduce((s, p) => s + p.length, 0)
  } bytes sent)`;
  if (kind === "trickle-acked" && seen.reply?.status === 200) {
    acked.set(key, { sha: sha256(body), meta: {} });
  }
  if (seen.timedOut) {
    return {
      kind,
      failure:
        `${what}: still open after ${SLOW_HANG_MS} ms (-header-timeout/-idle-timeout ${CONNECTION_TIMEOUT})`,
    };
  }
  if (expectStatus !== undefined && seen.reply?.status !== expectStatus) {
    return {
      kind,
      failure: `${what}: want ${expectStatus}, got ${
        seen.reply ? `${seen.reply.status} ${seen.reply.text.slice(0, 300)}` : "no answer"
      }`,
    };
  }
  if (expectStatus === undefined && seen.reply !== null) {
    return { kind, failure: `${what}: an answer to an unfinished head: ${seen.reply.status}` };
  }
  if (seen.reply && seen.reply.status >= 400) {
    try {
      errorCodeOf(seen.reply);
    } catch (err) {
      return {
        kind,
        failure: `${what}: error body is not S3 error XML: ${(err as Error).message}`,
      };
    }
  }
  return { kind, failure: null };
}

/** Reads back every object acknowledged in {@link ACKED}: bytes, user metadata, tags. */
async function checkAcked(server: ServerProcess, acked: Map<string, AckedObject>): Promise<void> {
  for (const [key, want] of acked) {
    const name = `acknowledged ${ACKED}/${key.slice(0, 60)}${key.length > 60 ? "..." : ""}`;
    const got = await s3(server, { method: "GET", path: objectPath(ACKED, key) });
    assert.equal(got.status, 200, `${name} is gone: ${got.text.slice(0, 300)}`);
    assert.equal(sha256(got.body), want.sha, `${name}: its bytes changed`);
    for (const [k, v] of Object.entries(want.meta)) {
      assert.equal(got.headers.get(k), v, `${name}: its ${k} changed`);
    }
    if (want.tags) {
      const tags = await s3(server, {
        method: "GET",
        path: objectPath(ACKED, key),
        query: "tagging=",
      });
      assert.deepEqual(xmlTexts(tags.text, "Tag"), want.tags, `${name}: its tags changed`);
    }
  }
}

async function setupCanary(server: ServerProcess): Promise<void> {
  await createBucket(server, CANARY);
  await putObject(server, CANARY, CANARY_KEY, CANARY_BYTES, {
    "x-amz-tagging": "canary=yes",
    "x-amz-meta-canary": "yes",
  });
  const created = await s3(server, {
    method: "POST",
    path: objectPath(CANARY, CANARY_MP_KEY),
    query: "uploads=",
  });
  const uploadId = xmlText(created.text, "UploadId")!;
  const etags: string[] = [];
  for (const [i, part] of CANARY_PARTS.entries()) {
    const r = await s3(server, {
      method: "PUT",
      path: objectPath(CANARY, CANARY_MP_KEY),
      query: `partNumber=${i + 1}&uploadId=${uploadId}`,
      body: part,
    });
    assert.equal(r.status, 200, r.text);
    etags.push(r.headers.get("etag")!);
  }
  const done = await s3(server, {
    method: "POST",
    path: objectPath(CANARY, CANARY_MP_KEY),
    query: `uploadId=${uploadId}`,
    body: `<CompleteMultipartUpload>${
      etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e}</ETag></Part>`).join(
        "",
      )
    }</CompleteMultipartUpload>`,
  });
  assert.equal(done.status, 200, done.text);
}

async function checkCanary(server: ServerProcess): Promise<void> {
  const got = await s3(server, { method: "GET", path: objectPath(CANARY, CANARY_KEY) });
  assert.equal(got.status, 200, `the canary is gone: ${got.text}`);
  assert.equal(sha256(got.body), sha256(CANARY_BYTES), "the canary's bytes changed");
  assert.equal(got.headers.get("x-amz-meta-canary"), "yes");
  const tags = await s3(server, {
    method: "GET",
    path: objectPath(CANARY, CANARY_KEY),
    query: "tagging=",
  });
  assert.match(tags.text, /<Key>canary<\/Key><Value>yes<\/Value>/, "the canary's tags changed");
  const mp = await s3(server, { method: "GET", path: objectPath(CANARY, CANARY_MP_KEY) });
  assert.equal(mp.status, 200, `the multipart canary is gone: ${mp.text}`);
  const whole = new Uint8Array(CANARY_PARTS[0].length + CANARY_PARTS[1].length);
  whole.set(CANARY_PARTS[0]);
  whole.set(CANARY_PARTS[1], CANARY_PARTS[0].length);
  assert.equal(sha256(mp.body), sha256(whole), "the multipart canary's bytes changed");
  const range = await s3(server, {
    method: "GET",
    path: objectPath(CANARY, CANARY_MP_KEY),
    headers: { range: `bytes=${CANARY_PARTS[0].length - 10}-${CANARY_PARTS[0].length + 9}` },
  });
  assert.equal(range.status, 206);
  assert.deepEqual(
    range.body,
    whole.subarray(CANARY_PARTS[0].length - 10, CANARY_PARTS[0].length + 10),
  );
}

Deno.test(`request fuzzer: no 5xx, S3 error XML, no crash, the canary intact (seed=${SEED})`, async (t) => {
  console.log(
    `fuzz seed=${SEED}, up to ${MAX_REQUESTS} requests or ${MAX_MS} ms, ${CONCURRENCY} at a time; replay: ${REPLAY}`,
  );
  const server = await startServer({
    args: ["-header-timeout", CONNECTION_TIMEOUT, "-idle-timeout", CONNECTION_TIMEOUT],
  });
  const acked = new Map<string, AckedObject>();
  try {
    await createBucket(server, MAIN);
    await createBucket(server, OTHER);
    await createBucket(server, ACKED);
    await setupCanary(server);
    await putObject(server, MAIN, "k", "k");
    const world: World = { keys: ["k", "a/b/c", "x"], uploads: [], etags: [] };

    await t.step(`seed=${SEED}`, async () => {
      const rng = new Rng(SEED);
      const failures: string[] = [];
      const statuses = new Map<string, number>();
      const started = Date.now();
      let sent = 0;
      let leaked = 0;
      let checkpoint = 0;
      /**
       * Shard or temp files beyond what the committed state needs, once garbage has gone; a
       * slow upload still trickling may hold one (the check after the run has none in flight).
       */
      const excessFiles = async (): Promise<number> => {
        let excess = 0;
        for (let i = 0; i < 30; i++) {
          const files = await dataFiles(server.dataDir);
          excess = files.shards.length + files.tmp.length - await expectedShardCount(server) -
            uploading.size;
          if (excess <= leaked) return excess;
          await new Promise((r) => setTimeout(r, 100));
        }
        return excess;
      };
      let stop = false;
      /** Slow connections in the background, those trickling an upload, and how many are open. */
      const slow: Promise<{ kind: SlowKind; failure: string | null }>[] = [];
      const uploading = new Set<Promise<unknown>>();
      let slowOpen = 0;
      /** Answers to the fuzz traffic that came while a slow connection was open. */
      let answeredWhileSlow = 0;
      let oversizedMs = 0;
      /** Sends one right-signed oversized request, judges it and checks `expect`. */
      const probe: Probe = async (what, req, expect) => {
        const { headers } = signHeaders(server, req);
        const wire: WireRequest = { ...req, headers };
        const c: FuzzCase = { wire, rawJunk: false, valid: true, describe: what };
        const ex = await exchange(server, Object.values(encodeRequest(server, wire)), {
          head: req.method === "HEAD",
          timeoutMs: 15_000,
        });
        const code = ex.reply && ex.reply.status >= 400 ? xmlText(ex.reply.text, "Code") : "";
        const tag = ex.reply ? `${ex.reply.status} ${code ?? ""}`.trim() : "no answer";
        statuses.set(`oversized ${tag}`, (statuses.get(`oversized ${tag}`) ?? 0) + 1);
        if (VERBOSE) console.log(`oversized ${tag}: ${what}`);
        let failure = judge(c, ex);
        if (failure === null && !expect.statuses.includes(ex.reply?.status ?? 0)) {
          failure = `want status ${expect.statuses.join(" or ")}, got ${tag}`;
        }
        if (
          failure === null && ex.reply!.status >= 400 && expect.code !== undefined &&
          code !== expect.code && ex.reply!.headers.has("x-amz-request-id")
        ) {
          failure = `want ${expect.code}, got ${tag}`;
        }
        if (failure) {
          failures.push(`#${sent} (oversized): ${failure}\n    request: ${what}`);
          if (failures.length >= MAX_FAILURES) stop = true;
        }
        return ex.reply;
      };
      /** Sends one generated request and judges its answer. */
      const runOne = async (c: FuzzCase, index: number): Promise<void> => {
        const { head, body } = encodeRequest(server, c.wire);
        const ex = await exchange(server, [head, body], {
          head: c.wire.method === "HEAD",
          timeoutMs: 15_000,
        });
        const tag = ex.reply
          ? `${ex.reply.status} ${
            ex.reply.status >= 400 && c.wire.method !== "HEAD" && ex.reply.body.length > 0
              ? xmlText(ex.reply.text, "Code") ?? ""
              : ""
          }`.trim()
          : ex.timedOut
          ? "hang"
          : "closed";
        statuses.set(tag, (statuses.get(tag) ?? 0) + 1);
        if (slowOpen > 0 && ex.reply !== null) answeredWhileSlow++;
        if (VERBOSE) console.log(`#${index} ${tag}: ${c.describe}`);
        const failure = judge(c, ex);
        if (failure) {
          const id = ex.reply?.headers.get("x-amz-request-id");
          const logged = id
            ? server.output.split("\n").find((l) => l.startsWith(`request ${id}:`))
            : undefined;
          failures.push(
            `#${index}: ${failure}\n    request: ${c.describe}${
              logged ? `\n    server log: ${logged}` : ""
            }`,
          );
          if (failures.length >= MAX_FAILURES) stop = true;
        }
        learn(world, c, ex.reply);
      };
      while (!stop && sent < MAX_REQUESTS && Date.now() - started < MAX_MS) {
        if (sent - checkpoint >= 250 || sent === 0) {
          // Leaked files are pinned to the 250 or so requests that left them.
          const excess = await excessFiles();
          if (excess > leaked) {
            failures.push(
              `#${checkpoint}..#${sent - 1}: ${
                excess - leaked
              } shard or temp file(s) beyond the committed state leaked (replay with HAMSTER_FUZZ_VERBOSE=1 and HAMSTER_FUZZ_REQUESTS to bisect)`,
            );
            leaked = excess;
          }
          checkpoint = sent;
          // Buckets the fuzzer deleted come back, so requests keep reaching the handlers.
          for (const b of [MAIN, OTHER]) await s3(server, { method: "PUT", path: `/${b}` });
        }
        if (rng.chance(0.01)) {
          slowOpen++;
          const kind = rng.pick(SLOW_KINDS);
          const one = slowCase(rng, kind, slow.length, server, acked).finally(() => slowOpen--);
          slow.push(one);
          if (kind === "trickle-acked") {
            uploading.add(one);
            one.finally(() => uploading.delete(one));
          }
        }
        if (rng.chance(0.012)) {
          const t0 = Date.now();
          sent += await oversized(rng, sent, probe, acked);
          oversizedMs += Date.now() - t0;
          continue;
        }
        const batch: Promise<void>[] = [];
        for (let j = 0; j < CONCURRENCY && sent < MAX_REQUESTS; j++, sent++) {
          batch.push(runOne(generate(rng, world, server), sent));
        }
        await Promise.all(batch);
        let exited = false;
        await Promise.race([
          server.child.status.then(() => exited = true),
          new Promise((r) => setTimeout(r, 0)),
        ]);
        if (exited) {
          failures.push(
            `#${sent - 1}: the server process exited\n${server.output.slice(-3000)}`,
          );
          break;
        }
      }
      for (const { failure } of await Promise.all(slow)) if (failure) failures.push(failure);
      if (slow.length > 0 && answeredWhileSlow === 0) {
        failures.push(
          `${slow.length} slow connection(s) were open, and no fuzz request was answered meanwhile`,
        );
      }
      const excess = await excessFiles();
      if (excess > leaked) {
        failures.push(
          `#${checkpoint}..#${sent - 1}: ${
            excess - leaked
          } shard or temp file(s) beyond the committed state leaked (replay with HAMSTER_FUZZ_VERBOSE=1 and HAMSTER_FUZZ_REQUESTS to bisect)`,
        );
      }
      const elapsedMs = Date.now() - started;
      console.log(`fuzz seed=${SEED}: ${sent} requests in ${elapsedMs} ms`);
      const kinds = new Map<string, number>();
      for (const { kind } of await Promise.all(slow)) kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
      console.log(
        `  slow connections: ${[...kinds].map(([k, v]) => `${k} x${v}`).join(", ") || "none"}, ` +
          `${answeredWhileSlow} fuzz answers while one was open; oversized cases ${oversizedMs} ms; ${acked.size} objects acknowledged in ${ACKED}`,
      );
      console.log(
        `  answers: ${
          [...statuses].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} x${v}`).join(", ")
        }`,
      );
      assert.ok(
        failures.length === 0,
        `${failures.length} bad answer(s) (seed=${SEED}; replay: ${REPLAY}):\n${
          failures.join("\n")
        }`,
      );
    });

    await t.step(
      "after the run: alive, the canary and every acknowledged object byte-identical, the store clean, no internal error logged",
      async () => {
        await assertServing(server);
        await checkCanary(server);
        await checkAcked(server, acked);
        await assertStoreClean(server, `after the fuzz run (seed=${SEED}; replay: ${REPLAY})`);
        assert.deepEqual(
          internalErrors(server),
          [],
          `internal errors logged (seed=${SEED}; replay: ${REPLAY})`,
        );
      },
    );
  } finally {
    await server.stop();
  }
});
