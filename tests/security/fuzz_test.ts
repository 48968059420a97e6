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
 * Asserted for every answer: no 5xx but 501 NotImplemented and 503 SlowDown; an error
 * body is well-formed S3 XML with a Code (and the RequestId of its header); an XML
 * success body is well-formed XML 1.0 (no character XML forbids, raw or referenced);
 * no request hangs. After the run: the process is alive,
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
  startServer,
  utf8,
  type WireRequest,
  WRONG_SECRET,
  xmlProblem,
  xmlText,
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
  const server = await startServer();
  try {
    await createBucket(server, MAIN);
    await createBucket(server, OTHER);
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
      /** Shard or temp files beyond what the committed state needs, once garbage has gone. */
      const excessFiles = async (): Promise<number> => {
        let excess = 0;
        for (let i = 0; i < 30; i++) {
          const files = await dataFiles(server.dataDir);
          excess = files.shards.length + files.tmp.length - await expectedShardCount(server);
          if (excess <= leaked) return excess;
          await new Promise((r) => setTimeout(r, 100));
        }
        return excess;
      };
      let stop = false;
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
      "after the run: alive, the canary byte-identical, the store clean, no internal error logged",
      async () => {
        await assertServing(server);
        await checkCanary(server);
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
