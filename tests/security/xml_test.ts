/**
 * XML in and out: request bodies are taken byte for byte (no trimming, markup where text
 * belongs is refused), CORS rules are checked as AWS checks them before they are stored,
 * and every XML answer is well-formed XML 1.0 whatever the stored keys hold, with
 * `encoding-type=url` honoured by ListObjects, ListObjectsV2, ListMultipartUploads and ListParts.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  createBucket,
  expectError,
  expectOk,
  getObject,
  type HttpReply,
  md5Base64,
  objectPath,
  putObject,
  s3,
  send,
  type ServerProcess,
  startServer,
  xmlProblem,
  xmlText,
  xmlTexts,
} from "./_support.ts";

function deleteObjects(server: ServerProcess, bucket: string, body: string): Promise<HttpReply> {
  return s3(server, {
    method: "POST",
    path: `/${bucket}`,
    query: "delete=",
    body,
    headers: { "content-md5": md5Base64(body) },
  });
}

async function exists(server: ServerProcess, bucket: string, key: string): Promise<boolean> {
  const r = await getObject(server, bucket, key);
  assert.ok(r.status === 200 || r.status === 404, `GET ${key}: ${r.status}`);
  return r.status === 200;
}

/** Asserts `reply` is 2xx and its body well-formed XML 1.0; returns the text. */
function wellFormed(reply: HttpReply, what: string): string {
  expectOk(reply, what);
  assert.equal(xmlProblem(reply.text), null, `${what}: ${JSON.stringify(reply.text)}`);
  return reply.text;
}

const cors = (rule: string) =>
  `<CORSConfiguration><CORSRule>${rule}</CORSRule></CORSConfiguration>`;
const GOOD_RULE =
  `<AllowedOrigin>https://ok.example</AllowedOrigin><AllowedMethod>GET</AllowedMethod>`;

Deno.test("XML: byte-for-byte values, CORS rules checked, well-formed answers for any key", async (t) => {
  const server = await startServer();
  try {
    await t.step("DeleteObjects deletes exactly the key named: no trimming", async () => {
      const b = "xml-trim";
      await createBucket(server, b);
      for (const k of ["report", "report ", "lead", "  lead", "tab\t", "tab", "nl\n", "nl"]) {
        await putObject(server, b, k, `bytes of ${JSON.stringify(k)}`);
      }
      const reply = await deleteObjects(
        server,
        b,
        `<Delete><Object><Key>report </Key></Object><Object><Key>  lead</Key></Object>` +
          `<Object><Key>tab&#9;</Key></Object><Object><Key>nl&#10;</Key></Object></Delete>`,
      );
      expectOk(reply, "DeleteObjects");
      const want: Record<string, boolean> = {
        "report": true,
        "report ": false,
        "lead": true,
        "  lead": false,
        "tab": true,
        "tab\t": false,
        "nl": true,
        "nl\n": false,
      };
      const got: Record<string, boolean> = {};
      for (const k of Object.keys(want)) got[k] = await exists(server, b, k);
      assert.deepEqual(got, want, reply.text);
    });

    await t.step(
      "DeleteObjects with markup in <Key> is 400 MalformedXML and deletes nothing",
      async () => {
        const b = "xml-markup";
        await createBucket(server, b);
        await putObject(server, b, "[object Object]", "o");
        await putObject(server, b, "xy", "xy");
        await putObject(server, b, "keep", "k");
        for (
          const key of ["<a>x</a>", "x<a/>y", "<a/>"]
        ) {
          const body = `<Delete><Object><Key>keep</Key></Object><Object><Key>${key}</Key>` +
            `</Object></Delete>`;
          expectError(await deleteObjects(server, b, body), 400, "MalformedXML");
        }
        // Two Keys in one Object, or text where elements belong, are malformed too.
        for (
          const body of [
            "<Delete><Object><Key>keep</Key><Key>xy</Key></Object></Delete>",
            "<Delete><Object>keep</Object></Delete>",
            "<Delete>keep</Delete>",
          ]
        ) {
          expectError(await deleteObjects(server, b, body), 400, "MalformedXML");
        }
        for (const k of ["[object Object]", "xy", "keep"]) {
          assert.ok(await exists(server, b, k), `${k} was deleted`);
        }
      },
    );

    await t.step(
      "a character XML 1.0 forbids in a request body, raw or as a reference, is 400 MalformedXML",
      async () => {
        const b = "xml-forbidden";
        await createBucket(server, b);
        await putObject(server, b, "m\x01k", "ctl");
        for (const key of ["m\x01k", "m&#1;k", "m&#x1;k", "m&#xFFFE;k", "m&#0;k"]) {
          const body = `<Delete><Object><Key>${key}</Key></Object></Delete>`;
          expectError(await deleteObjects(server, b, body), 400, "MalformedXML");
        }
        assert.ok(await exists(server, b, "m\x01k"));
      },
    );

    await t.step(
      "tag keys and values are kept byte for byte; control characters are InvalidTag",
      async () => {
        const b = "xml-tags";
        await createBucket(server, b);
        await putObject(server, b, "o", "o");
        const path = objectPath(b, "o");
        expectOk(
          await s3(server, {
            method: "PUT",
            path,
            query: "tagging=",
            body:
              `<Tagging><TagSet><Tag><Key> k </Key><Value>  v  </Value></Tag></TagSet></Tagging>`,
          }),
          "PutObjectTagging",
        );
        const got = wellFormed(
          await s3(server, { method: "GET", path, query: "tagging=" }),
          "GetObjectTagging",
        );
        assert.match(got, /<Key> k <\/Key><Value> {2}v {2}<\/Value>/, got);
        for (const [k, v] of [["k&#9;", "v"], ["k", "v&#13;&#10;x"], ["k", "v\u0085"]]) {
          expectError(
            await s3(server, {
              method: "PUT",
              path,
              query: "tagging=",
              body: `<Tagging><TagSet><Tag><Key>${k}</Key><Value>${v}</Value></Tag></TagSet>` +
                `</Tagging>`,
            }),
            400,
            "InvalidTag",
          );
        }
        expectError(
          await s3(server, {
            method: "PUT",
            path: objectPath(b, "p"),
            headers: { "x-amz-tagging": "k=a%01b" },
            body: "p",
          }),
          400,
          "InvalidTag",
        );
        expectError(
          await s3(server, {
            method: "PUT",
            path,
            query: "tagging=",
            body: `<Tagging><TagSet><Tag><Key><b>k</b></Key><Value>v</Value></Tag></TagSet>` +
              `</Tagging>`,
          }),
          400,
          "MalformedXML",
        );
      },
    );

    await t.step(
      "PutBucketCors refuses a rule AWS refuses, so a preflight never meets one",
      async () => {
        const b = "xml-cors";
        await createBucket(server, b);
        expectOk(
          await s3(server, {
            method: "PUT",
            path: `/${b}`,
            query: "cors=",
            body: cors(`${GOOD_RULE}<ExposeHeader>x-amz-request-id</ExposeHeader>`),
          }),
          "PutBucketCors",
        );
        const stored = (await s3(server, { method: "GET", path: `/${b}`, query: "cors=" })).text;
        const refused: [string, string, number, string][] = [
          [
            "ExposeHeader with CR LF (reference)",
            "<ExposeHeader>x-a&#13;&#10;x-b</ExposeHeader>",
            400,
            "InvalidRequest",
          ],
          [
            "ExposeHeader with CR LF (raw)",
            "<ExposeHeader>x-a\r\nx-b</ExposeHeader>",
            400,
            "InvalidRequest",
          ],
          ["ExposeHeader with a space", "<ExposeHeader> x-a</ExposeHeader>", 400, "InvalidRequest"],
          [
            "ExposeHeader with a wildcard",
            "<ExposeHeader>x-*</ExposeHeader>",
            400,
            "InvalidRequest",
          ],
          [
            "AllowedHeader with LF",
            "<AllowedHeader>x-a&#10;</AllowedHeader>",
            400,
            "InvalidRequest",
          ],
          [
            "AllowedHeader with two wildcards",
            "<AllowedHeader>*-*</AllowedHeader>",
            400,
            "InvalidRequest",
          ],
          ["a PATCH method", "<AllowedMethod>PATCH</AllowedMethod>", 400, "InvalidRequest"],
          ["a method with a space", "<AllowedMethod>GET </AllowedMethod>", 400, "InvalidRequest"],
          [
            "an origin with two wildcards",
            "<AllowedOrigin>https://*.*.example</AllowedOrigin>",
            400,
            "InvalidRequest",
          ],
          [
            "an origin with CR",
            "<AllowedOrigin>https://a.example&#13;</AllowedOrigin>",
            400,
            "InvalidRequest",
          ],
          ["MaxAgeSeconds 1e3", "<MaxAgeSeconds>1e3</MaxAgeSeconds>", 400, "MalformedXML"],
          ["MaxAgeSeconds -1", "<MaxAgeSeconds>-1</MaxAgeSeconds>", 400, "MalformedXML"],
          ["MaxAgeSeconds 2^31", "<MaxAgeSeconds>2147483648</MaxAgeSeconds>", 400, "MalformedXML"],
          ["MaxAgeSeconds with a space", "<MaxAgeSeconds> 1</MaxAgeSeconds>", 400, "MalformedXML"],
          ["an ID of 256 characters", `<ID>${"i".repeat(256)}</ID>`, 400, "InvalidArgument"],
          ["two IDs", "<ID>a</ID><ID>b</ID>", 400, "MalformedXML"],
        ];
        for (const [what, extra, status, code] of refused) {
          const reply = await s3(server, {
            method: "PUT",
            path: `/${b}`,
            query: "cors=",
            body: cors(GOOD_RULE + extra),
          });
          assert.equal(reply.status, status, `${what}: ${reply.status} ${reply.text}`);
          expectError(reply, status, code);
        }
        const many = `<CORSConfiguration>${
          `<CORSRule>${GOOD_RULE}</CORSRule>`.repeat(101)
        }</CORSConfiguration>`;
        expectError(
          await s3(server, { method: "PUT", path: `/${b}`, query: "cors=", body: many }),
          400,
          "MalformedXML",
        );
        expectOk(
          await s3(server, {
            method: "PUT",
            path: `/${b}`,
            query: "cors=",
            body: cors(
              `<ID>${"i".repeat(255)}</ID>${GOOD_RULE}<MaxAgeSeconds>3000</MaxAgeSeconds>`,
            ),
          }),
          "PutBucketCors with a 255-character ID",
        );
        expectOk(
          await s3(server, {
            method: "PUT",
            path: `/${b}`,
            query: "cors=",
            body: cors(`${GOOD_RULE}<ExposeHeader>x-amz-request-id</ExposeHeader>`),
          }),
          "PutBucketCors back",
        );
        assert.equal(
          (await s3(server, { method: "GET", path: `/${b}`, query: "cors=" })).text,
          stored,
        );
        const preflight = await send(server, {
          method: "OPTIONS",
          path: `/${b}/k`,
          headers: [["origin", "https://ok.example"], ["access-control-request-method", "GET"]],
        });
        assert.equal(preflight.status, 200, preflight.text);
        assert.equal(preflight.headers.get("access-control-expose-headers"), "x-amz-request-id");
      },
    );

    await t.step(
      "a key with control characters: every answer is well-formed XML 1.0",
      async () => {
        const b = "xml-ctl";
        await createBucket(server, b);
        const key = "m\x01k";
        const created = wellFormed(
          await s3(server, { method: "POST", path: objectPath(b, key), query: "uploads=" }),
          "CreateMultipartUpload",
        );
        const uploadId = xmlText(created, "UploadId")!;
        wellFormed(
          await s3(server, { method: "GET", path: `/${b}`, query: "uploads=" }),
          "ListMultipartUploads",
        );
        wellFormed(
          await s3(server, {
            method: "GET",
            path: objectPath(b, key),
            query: `uploadId=${uploadId}`,
          }),
          "ListParts",
        );
        await putObject(server, b, key, "ctl");
        await putObject(server, b, "cr\rlf\n\u{fffe}", "crlf");
        for (const query of ["", "list-type=2", "delimiter=%01", "prefix=m%01"]) {
          wellFormed(await s3(server, { method: "GET", path: `/${b}`, query }), `list ?${query}`);
        }
        const missing = await s3(server, { method: "GET", path: objectPath(b, "gone\x01\x02") });
        expectError(missing, 404, "NoSuchKey");
        // CR and LF survive a parser that folds raw line breaks: they come as references.
        const listed = wellFormed(await s3(server, { method: "GET", path: `/${b}` }), "list");
        assert.ok(listed.includes("<Key>cr&#13;lf&#10;\u{fffd}</Key>"), listed);
      },
    );

    await t.step(
      "encoding-type=url: ListMultipartUploads, ListParts, ListObjects and ListObjectsV2 give the exact key",
      async () => {
        const b = "xml-ctl";
        for (
          const [query, field] of [
            ["uploads=&encoding-type=url", "Key"],
            ["encoding-type=url", "Key"],
            ["list-type=2&encoding-type=url", "Key"],
          ]
        ) {
          const text = wellFormed(
            await s3(server, { method: "GET", path: `/${b}`, query }),
            query,
          );
          assert.equal(xmlText(text, "EncodingType"), "url", `${query}: ${text}`);
          assert.ok(
            xmlTexts(text, field).map(decodeURIComponent).includes("m\x01k"),
            `${query}: ${text}`,
          );
        }
        const parts = wellFormed(
          await s3(server, {
            method: "GET",
            path: objectPath(b, "m\x01k"),
            query: `uploadId=${
              xmlText(
                (await s3(server, { method: "GET", path: `/${b}`, query: "uploads=" })).text,
                "UploadId",
              )
            }&encoding-type=url`,
          }),
          "ListParts with encoding-type=url",
        );
        assert.equal(xmlText(parts, "Key"), "m%01k", parts);
        assert.equal(xmlText(parts, "EncodingType"), "url", parts);
        const withPrefix = wellFormed(
          await s3(server, {
            method: "GET",
            path: `/${b}`,
            query: "uploads=&encoding-type=url&prefix=m%01&delimiter=%01",
          }),
          "ListMultipartUploads with prefix and delimiter",
        );
        assert.equal(xmlText(withPrefix, "Prefix"), "m%01", withPrefix);
        assert.equal(xmlText(withPrefix, "Delimiter"), "%01", withPrefix);
        expectError(
          await s3(server, { method: "GET", path: `/${b}`, query: "uploads=&encoding-type=xml" }),
          400,
          "InvalidArgument",
        );
      },
    );
  } finally {
    await server.stop();
  }
});
