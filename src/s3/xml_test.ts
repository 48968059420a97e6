import assert from "node:assert/strict";
import { S3Error } from "./errors.ts";
import {
  childElements,
  childText,
  escapeXml,
  hasNonXmlChar,
  parseXmlBody,
  renderError,
  renderXml,
  XmlGate,
} from "./xml.ts";
import { MAX_XML_DEPTH, MAX_XML_ELEMENTS } from "./_xml_parse.ts";

function malformed(text: string, root = "R"): string {
  try {
    parseXmlBody(text, root);
  } catch (err) {
    assert.ok(err instanceof S3Error, String(err));
    assert.equal(err.code, "MalformedXML", err.message);
    return err.message;
  }
  assert.fail(`accepted: ${JSON.stringify(text)}`);
}

Deno.test("parseXmlBody() keeps values byte for byte and decodes each reference once", () => {
  const doc = parseXmlBody(
    `<?xml version="1.0" encoding="UTF-8"?>\n<R xmlns="x"><K> a </K><K>&amp;lt;&#x41;&#65;&#x1F600;</K>` +
      `<K><![CDATA[<b> &amp;]]>c<!-- note -->d</K><K/><s3:K xmlns:s3="y">\r\n</s3:K>` +
      `<K>a\rb&#13;&#10;c\t</K></R>`,
    "R",
  );
  assert.deepEqual(doc.children.map((c) => c.text), [
    " a ",
    "&lt;AA\u{1F600}",
    "<b> &amp;cd",
    "",
    // XML 1.0 end-of-line handling folds a raw CR LF or CR into LF; references stay as written.
    "\n",
    "a\nb\r\nc\t",
  ]);
});

Deno.test("parseXmlBody() refuses what XML 1.0 without a DTD does not allow", () => {
  for (
    const text of [
      "<R>&nbsp;</R>",
      "<R>&amp</R>",
      "<R>a & b</R>",
      "<R>&#1;</R>",
      "<R>&#x0;</R>",
      "<R>&#xD800;</R>",
      "<R>&#xFFFE;</R>",
      "<R>&#x110000;</R>",
      "<R>&#xZZ;</R>",
      "<R>\u0001</R>",
      "<R>\uFFFF</R>",
      "<R>\uD800</R>",
      "<R>\uD800a</R>",
      "<R>a\uDC00</R>",
      '<?xml version="1.1"?><R>&#1;</R>',
      '<?xml version="1.1"?><R>\u0085\u0001</R>',
      "<!DOCTYPE R><R/>",
      "<R><!DOCTYPE R></R>",
      "<R>&#X41;</R>",
      "<R a='1' a='2'/>",
      "<R></r>",
      '<!DOCTYPE R [<!ENTITY e "x">]><R>&e;</R>',
      "<R><a></R>",
      "<R></R><R></R>",
      "<R>]]></R>",
      "<R><!-- a -- b --></R>",
      "text<R/>",
      "<R/>text",
      " <?xml version='1.0'?><R/>",
      "<R a='<'/>",
      "<R a=x/>",
      "<R",
      "",
      "<Other/>",
    ]
  ) {
    malformed(text);
  }
});

Deno.test("parseXmlBody() bounds depth and element count without recursion", () => {
  const deep = (n: number) => `<R>${"<a>".repeat(n)}${"</a>".repeat(n)}</R>`;
  parseXmlBody(deep(MAX_XML_DEPTH - 1), "R");
  malformed(deep(MAX_XML_DEPTH));
  malformed(deep(250_000));
  malformed(`<R>${"<a/>".repeat(MAX_XML_ELEMENTS)}</R>`);
});

Deno.test("childText() refuses markup where text belongs; childElements() text where elements belong", () => {
  const doc = parseXmlBody(
    "<R><O><K><a>x</a></K></O><O>text</O><O><K>k</K><K>k</K></O><O><K>ok</K></O></R>",
    "R",
  );
  assert.throws(() => childElements(doc, "O"), /must hold elements, not text/);
  const [markup, , twice, ok] = doc.children;
  assert.throws(() => childText(markup, "K"), /must hold text, not markup/);
  assert.throws(() => childText(twice, "K"), /only once/);
  assert.equal(childText(ok, "K"), "ok");
  assert.equal(childText(ok, "Missing"), undefined);
});

Deno.test("escapeXml() writes XML 1.0 for any string: entities, CR LF tab as references, U+FFFD for the rest", () => {
  assert.equal(
    escapeXml(`a&b<c>d"e'f\tg\nh\ri\u0001j\u{1F600}k\uD800l\uDC00m\uFFFEn\u0000`),
    "a&amp;b&lt;c&gt;d&quot;e&apos;f&#9;g&#10;h&#13;i\uFFFDj\u{1F600}k\uFFFDl\uFFFDm\uFFFDn\uFFFD",
  );
  assert.equal(escapeXml("plain é"), "plain é");
  const key = "m\u0001k\r\n";
  assert.equal(parseXmlBody(renderXml("R", { K: key }), "R").children[0].text, "m\uFFFDk\r\n");
  const err = renderError(new S3Error("NoSuchKey", "no \u0002"), "/b/\u0003", "id");
  assert.ok(!hasNonXmlChar(err), err);
});

Deno.test("XmlGate runs at most maxActive at once, queues maxWaiting in order, refuses the rest with SlowDown", async () => {
  const gate = new XmlGate(2, 2);
  const started: number[] = [];
  const releases: (() => void)[] = [];
  const run = (i: number) =>
    gate.run(() => {
      started.push(i);
      return new Promise<number>((resolve) => releases[i] = () => resolve(i));
    });
  const runs = [run(0), run(1), run(2), run(3)];
  await Promise.resolve();
  assert.deepEqual(started, [0, 1]);
  await assert.rejects(run(4), (err: unknown) => err instanceof S3Error && err.code === "SlowDown");
  releases[1]();
  await runs[1];
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(started, [0, 1, 2]);
  releases[0]();
  releases[2]();
  await Promise.all([runs[0], runs[2]]);
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(started, [0, 1, 2, 3]);
  releases[3]();
  assert.deepEqual(await Promise.all(runs), [0, 1, 2, 3]);
  // A failing body frees its slot too.
  await assert.rejects(gate.run(() => Promise.reject(new Error("boom"))), /boom/);
  assert.equal(await gate.run(() => Promise.resolve(7)), 7);
});
