/**
 * XML for the S3 API: rendering responses and parsing capped request bodies
 * with fast-xml-parser (character references are decoded; DOCTYPEs, and so
 * declared entities, are refused).
 *
 * Pure: no clock, no I/O.
 *
 * @module
 */
import { XMLParser, XMLValidator } from "fast-xml-parser";
import { S3Error } from "./errors.ts";

/** The S3 XML namespace on every response document. */
export const S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/";

/** The largest XML request body accepted, in bytes (CompleteMultipartUpload of 10,000 parts fits). */
export const MAX_XML_BODY_BYTES = 2 * 1024 * 1024;

/** Escapes text for an XML element or attribute. */
export function escapeXml(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) =>
      c === "&"
        ? "&amp;"
        : c === "<"
        ? "&lt;"
        : c === ">"
        ? "&gt;"
        : c === '"'
        ? "&quot;"
        : "&apos;",
  );
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

const parser = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false,
  trimValues: true,
  // Predefined and numeric references are decoded (SDKs send ETags as &quot;...&quot; or &#34;...&#34;);
  // DOCTYPEs are refused before parsing, so no declared entity can ever expand.
  processEntities: true,
  htmlEntities: true,
  removeNSPrefix: true,
});

/**
 * Parses a request body that must be XML with root element `root`.
 *
 * @returns the root element's children as parsed by fast-xml-parser (text values as strings)
 * @throws {S3Error} `MalformedXML` when the text is not well-formed, declares a DOCTYPE, or has another root
 */
export function parseXmlBody(text: string, root: string): Record<string, unknown> {
  if (/<!DOCTYPE|<!ENTITY/i.test(text)) {
    throw new S3Error(
      "MalformedXML",
      "XML documents with a DOCTYPE or entity declarations are not accepted",
    );
  }
  // Only XML's five predefined entities and character references are well-formed without a DTD.
  for (const m of text.matchAll(/&([^;&\s]*);?/g)) {
    const name = m[1];
    if (!m[0].endsWith(";") || !/^(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+)$/.test(name)) {
      throw new S3Error("MalformedXML", `The XML holds an undeclared entity reference "&${name}"`);
    }
  }
  if (XMLValidator.validate(text) !== true) throw new S3Error("MalformedXML");
  let doc: Record<string, unknown>;
  try {
    doc = parser.parse(text) as Record<string, unknown>;
  } catch {
    throw new S3Error("MalformedXML");
  }
  const value = doc[root];
  if (value === undefined) {
    throw new S3Error("MalformedXML", `The XML root element must be "${root}"`);
  }
  return (typeof value === "object" && value !== null ? value : {}) as Record<string, unknown>;
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

/** A parsed element that may hold one child or many: always an array. */
export function asArray<T>(v: T | T[] | undefined): T[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}
