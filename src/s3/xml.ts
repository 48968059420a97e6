/**
 * XML for the S3 API: rendering responses and error documents (always
 * well-formed XML 1.0, whatever the stored keys hold), and parsing capped
 * request bodies (saxes, through _xml_parse.ts): values are taken as written
 * (nothing trimmed; only XML's own CR LF folding), DOCTYPEs (and so declared
 * entities) refused, and markup where text belongs is `MalformedXML`.
 *
 * Pure: no clock, no I/O.
 *
 * @module
 */
import {
  NOT_XML_CHAR,
  parseXmlDocument,
  type XmlElementNode,
  XmlSyntaxError,
} from "./_xml_parse.ts";
import { S3Error } from "./errors.ts";

/** The S3 XML namespace on every response document. */
export const S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/";

/** The largest XML request body accepted, in bytes (CompleteMultipartUpload of 10,000 parts fits). */
export const MAX_XML_BODY_BYTES = 2 * 1024 * 1024;

const utf16 = new TextDecoder("utf-16le");
const NEEDS_ESCAPE = new RegExp(`[&<>"'\\t\\n\\r]|${NOT_XML_CHAR.source}`);

/**
 * Escapes text for an XML 1.0 element or attribute as S3 does: the five markup
 * characters as entities, and tab, LF and CR as character references (so no
 * parser folds them). A code point XML 1.0 cannot carry at all (U+0001 to
 * U+001F but those three, U+FFFE, U+FFFF) becomes U+FFFD: AWS writes `&#x1;`,
 * which strict parsers (Python's expat, so boto3; Go's encoding/xml) refuse.
 * The exact value of such a key is available with `encoding-type=url`.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html#object-key-xml-related-constraints
 */
export function escapeXml(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return s;
  // Two passes over code units into one buffer: no per-character strings, so a value
  // full of markup characters costs a few times its size.
  let size = 0;
  for (let i = 0; i < s.length; i++) size += escapeOf(s, i)?.length ?? 1;
  const out = new Uint16Array(size);
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const esc = escapeOf(s, i);
    if (esc === undefined) {
      out[n++] = s.charCodeAt(i);
    } else {
      for (let j = 0; j < esc.length; j++) out[n++] = esc.charCodeAt(j);
    }
  }
  return utf16.decode(out);
}

/** What the code unit at `i` becomes, or undefined when it stays (the low half of a pair stays). */
function escapeOf(s: string, i: number): string | undefined {
  const c = s.charCodeAt(i);
  if (c >= 0x3f && c < 0xd800) return undefined;
  if (c < 0x20) return c === 0x9 ? "&#9;" : c === 0xa ? "&#10;" : c === 0xd ? "&#13;" : "\uFFFD";
  if (c < 0x3f) {
    return c === 0x26
      ? "&amp;"
      : c === 0x3c
      ? "&lt;"
      : c === 0x3e
      ? "&gt;"
      : c === 0x22
      ? "&quot;"
      : c === 0x27
      ? "&apos;"
      : undefined;
  }
  if (c <= 0xdbff) {
    const next = s.charCodeAt(i + 1);
    return next >= 0xdc00 && next <= 0xdfff ? undefined : "\uFFFD";
  }
  if (c <= 0xdfff) {
    const prev = s.charCodeAt(i - 1);
    return prev >= 0xd800 && prev <= 0xdbff ? undefined : "\uFFFD";
  }
  return c === 0xfffe || c === 0xffff ? "\uFFFD" : undefined;
}

/** Whether `s` holds a code point XML 1.0 cannot carry (see {@link escapeXml}). */
export function hasNonXmlChar(s: string): boolean {
  return NOT_XML_CHAR.test(s);
}

/** An XML node to render: text, a list of children, or absent. */
export type XmlNode = string | number | boolean | XmlElement | XmlNode[] | undefined | null;
/** Element children by name; an array value renders one element per item. */
export interface XmlElement {
  [name: string]: XmlNode;
}

function renderChildren(obj: XmlElement): string {
  let out = "";
  for (const [name, value] of Object.entries(obj)) {
    if (value === undefined || value === null) continue;
    if (Array.isArray(value)) {
      for (const item of value) out += renderElement(name, item);
    } else {
      out += renderElement(name, value);
    }
  }
  return out;
}

function renderElement(name: string, value: XmlNode): string {
  if (value === undefined || value === null) return "";
  if (typeof value === "object" && !Array.isArray(value)) {
    return `<${name}>${renderChildren(value)}</${name}>`;
  }
  return `<${name}>${escapeXml(String(value))}</${name}>`;
}

/**
 * Renders `<root xmlns="...">children</root>` with an XML declaration.
 *
 * @example
 * renderXml("LocationConstraint", {}) // an empty LocationConstraint document
 */
export function renderXml(root: string, children: XmlElement, text?: string): string {
  const body = text !== undefined ? escapeXml(text) : renderChildren(children);
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${root} xmlns="${S3_XMLNS}">${body}</${root}>`;
}

/**
 * A parsed XML element. Read it through {@link childText}, {@link childTexts},
 * {@link childElement} and {@link childElements}, which refuse markup where text
 * belongs and text where elements belong.
 */
export type XmlDoc = XmlElementNode;

const WHITESPACE = /^[ \t\r\n]*$/;

function asElement(el: XmlElementNode): XmlDoc {
  if (!WHITESPACE.test(el.text)) {
    throw new S3Error("MalformedXML", `The element "${el.name}" must hold elements, not text`);
  }
  return el;
}

function asText(el: XmlElementNode): string {
  if (el.children.length > 0) {
    throw new S3Error("MalformedXML", `The element "${el.name}" must hold text, not markup`);
  }
  return el.text;
}

function all(el: XmlDoc, name: string): XmlElementNode[] {
  return el.children.filter((c) => c.name === name);
}

function one(el: XmlDoc, name: string): XmlElementNode | undefined {
  const items = all(el, name);
  if (items.length > 1) {
    throw new S3Error("MalformedXML", `The element "${name}" may appear only once`);
  }
  return items[0];
}

/**
 * The text of the child element `name`, byte for byte (references decoded), or
 * undefined when absent; `<Key/>` is "".
 *
 * @throws {S3Error} `MalformedXML` when it holds markup or appears more than once
 */
export function childText(el: XmlDoc, name: string): string | undefined {
  const c = one(el, name);
  return c === undefined ? undefined : asText(c);
}

/** The texts of every child element `name`. @throws {S3Error} `MalformedXML` when one holds markup */
export function childTexts(el: XmlDoc, name: string): string[] {
  return all(el, name).map(asText);
}

/**
 * The child element `name`, or undefined when absent.
 *
 * @throws {S3Error} `MalformedXML` when it holds text or appears more than once
 */
export function childElement(el: XmlDoc, name: string): XmlDoc | undefined {
  const c = one(el, name);
  return c === undefined ? undefined : asElement(c);
}

/** Every child element `name`. @throws {S3Error} `MalformedXML` when one holds text */
export function childElements(el: XmlDoc, name: string): XmlDoc[] {
  return all(el, name).map(asElement);
}

/** Whether `el` has a child element `name`. */
export function hasChild(el: XmlDoc, name: string): boolean {
  return el.children.some((c) => c.name === name);
}

/**
 * Parses a request body that must be XML with root element `root`.
 *
 * @returns the root element (read it with {@link childText} and friends)
 * @throws {S3Error} `MalformedXML` when the text is not well-formed XML 1.0, declares a DOCTYPE, has another root, or is too deep or large (see _xml_parse.ts)
 */
export function parseXmlBody(text: string, root: string): XmlDoc {
  let doc: XmlElementNode;
  try {
    doc = parseXmlDocument(text);
  } catch (err) {
    if (err instanceof XmlSyntaxError) throw new S3Error("MalformedXML", err.message);
    throw err;
  }
  if (doc.name !== root) {
    throw new S3Error("MalformedXML", `The XML root element must be "${root}"`);
  }
  return asElement(doc);
}

/** The XML error document of `err` for `resource` (the request path) and `requestId`. */
export function renderError(err: S3Error, resource: string, requestId: string): string {
  const extra = Object.entries(err.extra)
    .map(([k, v]) => `<${k}>${escapeXml(v)}</${k}>`)
    .join("");
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${err.code}</Code>` +
    `<Message>${escapeXml(err.message)}</Message>${extra}` +
    `<Resource>${escapeXml(resource)}</Resource><RequestId>${escapeXml(requestId)}</RequestId>` +
    `</Error>`;
}

/** Reads a request body into bytes, refusing more than `maxBytes` with `MaxMessageLengthExceeded`. */
export async function readCappedBytes(
  body: ReadableStream<Uint8Array> | null,
  maxBytes = MAX_XML_BODY_BYTES,
): Promise<Uint8Array> {
  if (body === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = body.getReader();
  while (true) {
    const { done, value } = await readOrIncomplete(reader);
    if (done) break;
    total += value.length;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      throw new S3Error("MaxMessageLengthExceeded", `The XML body exceeds ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  const all = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  return all;
}

/** Decodes a request body as UTF-8. @throws {S3Error} `MalformedXML` when it is not valid UTF-8 */
export function decodeXmlText(bytes: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new S3Error("MalformedXML", "The XML body is not valid UTF-8");
  }
}

/**
 * Reads from a request body; a transport failure (the client went away, the
 * body ended before its Content-Length) becomes `IncompleteBody`, while S3
 * and auth errors raised by the body's decoders pass through.
 */
export async function readOrIncomplete<T>(
  reader: ReadableStreamDefaultReader<T>,
): Promise<ReadableStreamReadResult<T>> {
  try {
    return await reader.read();
  } catch (err) {
    if (err instanceof S3Error || (typeof err === "object" && err !== null && "code" in err)) {
      throw err;
    }
    throw new S3Error("IncompleteBody", "The request body ended before it was complete");
  }
}

/**
 * Bounds how many XML request bodies are read and parsed at once: up to
 * `maxActive` run, up to `maxWaiting` more wait in arrival order, and any
 * request beyond that is refused with `SlowDown`. Pure: a promise queue, no
 * clock.
 */
export class XmlGate {
  #active = 0;
  #waiting: (() => void)[] = [];

  /** @param maxActive bodies read and parsed at once; @param maxWaiting bodies queued behind them */
  constructor(readonly maxActive: number, readonly maxWaiting: number) {}

  /**
   * Runs `fn` once a slot is free.
   *
   * @throws {S3Error} `SlowDown` when `maxWaiting` requests already wait
   */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#active >= this.maxActive) {
      if (this.#waiting.length >= this.maxWaiting) {
        throw new S3Error("SlowDown", "Too many XML request bodies are being parsed; retry later");
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      this.#active++;
    }
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      // The slot passes to the next waiter as is; only when none waits is it freed.
      if (next) next();
      else this.#active--;
    }
  }
}

/**
 * The gate every XML request body of this process passes (one process, one
 * event loop): 4 bodies at once, 64 waiting. With the 2 MiB cap that bounds
 * the bytes held for XML to a few MiB whatever the number of connections.
 */
export const XML_GATE = new XmlGate(4, 64);
