import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import {
  canonicalQuery,
  canonicalUri,
  formatAmzDate,
  HmacSha256,
  parseAmzDate,
  parseHttpDate,
  signaturesEqual,
  signingKey,
} from "./_sigv4.ts";
import { AWS_EXAMPLE } from "./_test_util.ts";

Deno.test("canonicalUri() decodes once and encodes again, keeping '/' and unreserved bytes", () => {
  const cases: [string, string][] = [
    ["", "/"],
    ["/", "/"],
    ["/b/k", "/b/k"],
    ["/b/a b", "/b/a%20b"],
    ["/b/a%20b", "/b/a%20b"],
    ["/b/a+b", "/b/a%2Bb"],
    ["/b/%7e%7E~", "/b/~~~"],
    ["/b/%e2%82%ac", "/b/%E2%82%AC"],
    ["/b/€", "/b/%E2%82%AC"],
    ["/b/a%2Fb", "/b/a/b"],
    ["/b/100%", "/b/100%25"],
    ["/b/%zz", "/b/%25zz"],
    ["/b/%252F", "/b/%252F"],
    ["/b//./../k", "/b//./../k"],
    ["/b/!*'();:@&=$,", "/b/%21%2A%27%28%29%3B%3A%40%26%3D%24%2C"],
  ];
  for (const [raw, canonical] of cases) assert.equal(canonicalUri(raw), canonical, raw);
});

Deno.test("canonicalQuery() sorts by name then value and always writes '='", () => {
  assert.equal(canonicalQuery("", null), "");
  assert.equal(canonicalQuery("acl", null), "acl=");
  assert.equal(canonicalQuery("b=2&a=1&a=0&c", null), "a=0&a=1&b=2&c=");
  assert.equal(canonicalQuery("prefix=a%20b&x=%7e&y=a%2Bb", null), "prefix=a%20b&x=~&y=a%2Bb");
  // A raw '+' is a space, as URLSearchParams reads it.
  assert.equal(canonicalQuery("y=a+b", null), "y=a%20b");
  assert.equal(canonicalQuery("k=a/b&&", null), "k=a%2Fb");
  assert.equal(
    canonicalQuery("X-Amz-Signature=abc&X-Amz-Date=1", "X-Amz-Signature"),
    "X-Amz-Date=1",
  );
  // Sorting is by encoded byte order: upper case before lower case.
  assert.equal(canonicalQuery("a=1&B=2&_=3", null), "B=2&_=3&a=1");
});

Deno.test("signaturesEqual() is equality of equal-length strings", () => {
  assert.equal(signaturesEqual("abc", "abc"), true);
  assert.equal(signaturesEqual("abc", "abd"), false);
  assert.equal(signaturesEqual("abc", "ab"), false);
  assert.equal(signaturesEqual("", ""), true);
  assert.equal(signaturesEqual("aĀ", "aĀ"), false); // non-Latin-1 never matches a hex signature
  assert.equal(signaturesEqual("x".repeat(300), "x".repeat(300)), true);
  assert.equal(signaturesEqual("x".repeat(300), "x".repeat(299) + "y"), false);
});

Deno.test("HmacSha256 equals createHmac() under the same key", () => {
  const key = signingKey(AWS_EXAMPLE.secretAccessKey, "20130524", "us-east-1");
  const mac = new HmacSha256(key);
  for (const data of ["", "a", "x".repeat(1000), "é€"]) {
    assert.equal(mac.hex(data), createHmac("sha256", key).update(data).digest("hex"));
  }
});

Deno.test("parseAmzDate() accepts only real YYYYMMDDTHHMMSSZ times", () => {
  assert.equal(parseAmzDate("20130524T000000Z"), Date.UTC(2013, 4, 24));
  assert.equal(formatAmzDate(Date.UTC(2013, 4, 24)), "20130524T000000Z");
  for (
    const bad of ["20130524T000000", "2013-05-24T00:00:00Z", "20130230T000000Z", "20131324T000000Z"]
  ) {
    assert.ok(Number.isNaN(parseAmzDate(bad)), bad);
  }
  assert.equal(parseHttpDate("Fri, 24 May 2013 00:00:00 GMT"), Date.UTC(2013, 4, 24));
  assert.ok(Number.isNaN(parseHttpDate("yesterday")));
});
