/**
 * Strict XML 1.0 parsing of S3 request bodies into a small element tree, on top
 * of the `saxes` SAX parser (well-formedness, names, attributes, comments,
 * CDATA, processing instructions, the five predefined entities and character
 * references are its work). This module adds what S3 bodies need on top:
 *
 * - no DTD: a DOCTYPE is refused (saxes reports it; we never read entity
 *   declarations, so no entity expansion of any kind),
 * - XML 1.0 rules always (an `<?xml version="1.1"?>` does not widen the
 *   character set), and no character XML 1.0 forbids, lone surrogates included
 *   (saxes lets a lone high surrogate through),
 * - at most {@link MAX_XML_DEPTH} levels and {@link MAX_XML_ELEMENTS} elements,
 * - attributes checked (by saxes) and dropped, namespace prefixes dropped.
 *
 * Text is kept as the parser delivers it: nothing is trimmed or collapsed; only
 * XML's own end-of-line handling applies (a raw CR LF or CR reads as LF, as in
 * every conforming parser; `&#13;` stays CR).
 *
 * Pure: no clock, no I/O.
 *
 * @see https://www.w3.org/TR/xml/
 * @see https://github.com/lddubeau/saxes
 * @module
 */
import { SaxesParser } from "saxes";

/** One parsed element: its local name, child elements in order, and its character data. */
export interface XmlElementNode {
  readonly name: string;
  readonly children: XmlElementNode[];
  /** The element's own character data (references decoded, CDATA included), concatenated. */
  text: string;
}

/** The deepest element nesting accepted. */
export const MAX_XML_DEPTH = 64;
/** The most elements one document may hold (CompleteMultipartUpload of 10,000 parts needs ~50,000). */
export const MAX_XML_ELEMENTS = 100_000;

/** Why a document is not accepted; the caller maps it to `MalformedXML`. */
export class XmlSyntaxError extends Error {
  override name = "XmlSyntaxError";
}

/**
 * Code points XML 1.0 forbids anywhere in a document, even as character references:
 * C0 controls other than tab, LF and CR, U+FFFE, U+FFFF and lone surrogates.
 */
export const NOT_XML_CHAR =
  // deno-lint-ignore no-control-regex
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function localName(qname: string): string {
  const colon = qname.indexOf(":");
  return colon === -1 ? qname : qname.slice(colon + 1);
}

/**
 * Parses a whole document and returns its root element.
 *
 * @throws {XmlSyntaxError} when `text` is not a well-formed XML 1.0 document without a DTD, or exceeds the depth or element limits
 */
export function parseXmlDocument(text: string): XmlElementNode {
  const bad = NOT_XML_CHAR.exec(text);
  if (bad) {
    throw new XmlSyntaxError(
      `The XML holds a character XML 1.0 forbids (U+${
        bad[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")
      })`,
    );
  }
  const parser = new SaxesParser({
    position: false,
    defaultXMLVersion: "1.0",
    forceXMLVersion: true,
  });
  let root: XmlElementNode | undefined;
  // Open elements, innermost last; saxes checks that end tags match.
  const stack: XmlElementNode[] = [];
  let elements = 0;
  parser.on("error", (err) => {
    throw new XmlSyntaxError(`The XML is not well-formed: ${err.message}`);
  });
  parser.on("doctype", () => {
    throw new XmlSyntaxError("DOCTYPE and other declarations are not accepted");
  });
  parser.on("opentagstart", () => {
    if (++elements > MAX_XML_ELEMENTS) {
      throw new XmlSyntaxError(`The XML holds more than ${MAX_XML_ELEMENTS} elements`);
    }
    if (stack.length >= MAX_XML_DEPTH) {
      throw new XmlSyntaxError(`The XML nests deeper than ${MAX_XML_DEPTH} elements`);
    }
  });
  parser.on("opentag", (tag) => {
    const node: XmlElementNode = { name: localName(tag.name), children: [], text: "" };
    const parent = stack[stack.length - 1];
    if (parent) parent.children.push(node);
    else if (root) throw new XmlSyntaxError("A second root element");
    else root = node;
    stack.push(node);
  });
  parser.on("closetag", () => {
    const node = stack.pop();
    // saxes builds a run of text with one string concatenation per reference; a
    // search flattens that chain of pieces (tens of bytes each) into one string.
    if (node && node.text.length > 0) node.text.indexOf("\u0000");
  });
  // Whitespace outside the root arrives here too (saxes refuses any other text there).
  const append = (data: string) => {
    const top = stack[stack.length - 1];
    if (top) top.text += data;
  };
  parser.on("text", append);
  parser.on("cdata", append);
  parser.write(text).close();
  if (!root) throw new XmlSyntaxError("The XML has no root element");
  return root;
}
