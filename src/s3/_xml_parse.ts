/**
 * A small, strict XML 1.0 parser for S3 request bodies: elements, character
 * data, CDATA sections, comments and processing instructions; attributes are
 * checked for form and dropped; namespace prefixes are dropped from names. No
 * DTD: a DOCTYPE is refused, and the only references are XML's five predefined
 * entities and character references to characters XML 1.0 allows.
 *
 * Memory is bounded by the input: no recursion (an explicit stack, at most
 * {@link MAX_XML_DEPTH} deep), at most {@link MAX_XML_ELEMENTS} elements, and
 * references are decoded into one code-unit buffer per text run, so a body full
 * of `&amp;` costs a few times its size, not fifty.
 *
 * Pure: no clock, no I/O.
 *
 * @see https://www.w3.org/TR/xml/
 * @module
 */

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
const NAME = /[A-Za-z_:\u00C0-\uFFFD][A-Za-z0-9_:.\-\u00B7\u00C0-\uFFFD]*/y;
const ATTRIBUTE = /\s+([A-Za-z_:][A-Za-z0-9_:.\-]*)\s*=\s*("[^"<]*"|'[^'<]*')/y;
const TAG_END = /\s*(\/?)>/y;
const END_TAG_REST = /\s*>/y;
const WHITESPACE = /^[ \t\r\n]*$/;

function isXmlChar(cp: number): boolean {
  return cp === 0x9 || cp === 0xa || cp === 0xd || (cp >= 0x20 && cp <= 0xd7ff) ||
    (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
}

const PREDEFINED: Record<string, number> = { amp: 38, lt: 60, gt: 62, quot: 34, apos: 39 };
const utf16 = new TextDecoder("utf-16le");

/**
 * Decodes the references in `s` (character data or an attribute value).
 *
 * @throws {XmlSyntaxError} for an undeclared entity, a bad reference, or `<`
 */
function decodeReferences(s: string): string {
  let amp = s.indexOf("&");
  if (amp === -1) return s;
  // The decoded text is never longer than the raw text, in UTF-16 code units.
  const out = new Uint16Array(s.length);
  let n = 0;
  let from = 0;
  while (amp !== -1) {
    for (let i = from; i < amp; i++) out[n++] = s.charCodeAt(i);
    const semi = s.indexOf(";", amp);
    const name = semi === -1 ? "" : s.slice(amp + 1, semi);
    if (semi === -1 || name.length === 0 || name.length > 10) {
      throw new XmlSyntaxError(`An undeclared entity reference "${s.slice(amp, amp + 12)}"`);
    }
    if (name[0] === "#") {
      const digits = name[1] === "x" ? name.slice(2) : name.slice(1);
      const ok = name[1] === "x" ? /^[0-9a-fA-F]+$/.test(digits) : /^[0-9]+$/.test(digits);
      const cp = ok ? parseInt(digits, name[1] === "x" ? 16 : 10) : NaN;
      if (!isXmlChar(cp)) {
        throw new XmlSyntaxError(`A reference to a character XML 1.0 forbids "&${name};"`);
      }
      if (cp > 0xffff) {
        out[n++] = 0xd800 + ((cp - 0x10000) >> 10);
        out[n++] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
      } else {
        out[n++] = cp;
      }
    } else {
      const c = PREDEFINED[name];
      if (c === undefined || !Object.hasOwn(PREDEFINED, name)) {
        throw new XmlSyntaxError(`An undeclared entity reference "&${name};"`);
      }
      out[n++] = c;
    }
    from = semi + 1;
    amp = s.indexOf("&", from);
  }
  for (let i = from; i < s.length; i++) out[n++] = s.charCodeAt(i);
  return utf16.decode(out.subarray(0, n));
}

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
  let root: XmlElementNode | undefined;
  // Open elements with their qualified names, innermost last.
  const stack: { node: XmlElementNode; qname: string }[] = [];
  let elements = 0;
  let at = text.startsWith("\uFEFF") ? 1 : 0;
  while (at < text.length) {
    const lt = text.indexOf("<", at);
    const end = lt === -1 ? text.length : lt;
    if (end > at) {
      const raw = text.slice(at, end);
      if (raw.includes("]]>")) throw new XmlSyntaxError(`"]]>" in character data`);
      const top = stack[stack.length - 1];
      if (top) top.node.text += decodeReferences(raw);
      else if (!WHITESPACE.test(raw)) throw new XmlSyntaxError("Text outside the root element");
    }
    if (lt === -1) break;
    if (text.startsWith("<!--", lt)) {
      const close = text.indexOf("-->", lt + 4);
      if (close === -1 || text.slice(lt + 4, close).includes("--")) {
        throw new XmlSyntaxError("A malformed comment");
      }
      at = close + 3;
    } else if (text.startsWith("<![CDATA[", lt)) {
      const top = stack[stack.length - 1];
      const close = text.indexOf("]]>", lt + 9);
      if (!top || close === -1) throw new XmlSyntaxError("A malformed CDATA section");
      top.node.text += text.slice(lt + 9, close);
      at = close + 3;
    } else if (text.startsWith("<?", lt)) {
      const close = text.indexOf("?>", lt + 2);
      NAME.lastIndex = lt + 2;
      if (close === -1 || !NAME.test(text)) {
        throw new XmlSyntaxError("A malformed processing instruction");
      }
      const target = text.slice(lt + 2, NAME.lastIndex);
      if (target.toLowerCase() === "xml" && lt !== (text.startsWith("\uFEFF") ? 1 : 0)) {
        throw new XmlSyntaxError("An XML declaration not at the start");
      }
      at = close + 2;
    } else if (text.startsWith("<!", lt)) {
      throw new XmlSyntaxError("DOCTYPE and other declarations are not accepted");
    } else if (text.startsWith("</", lt)) {
      NAME.lastIndex = lt + 2;
      const m = NAME.exec(text);
      const top = stack.pop();
      if (!m || !top || m[0] !== top.qname) {
        throw new XmlSyntaxError(`An end tag "${text.slice(lt, lt + 40)}" that opens nothing`);
      }
      END_TAG_REST.lastIndex = NAME.lastIndex;
      if (!END_TAG_REST.test(text)) throw new XmlSyntaxError("A malformed end tag");
      at = END_TAG_REST.lastIndex;
    } else {
      NAME.lastIndex = lt + 1;
      const m = NAME.exec(text);
      if (!m) throw new XmlSyntaxError(`A malformed tag "${text.slice(lt, lt + 40)}"`);
      let pos = NAME.lastIndex;
      for (;;) {
        ATTRIBUTE.lastIndex = pos;
        const a = ATTRIBUTE.exec(text);
        if (!a) break;
        decodeReferences(a[2].slice(1, -1));
        pos = ATTRIBUTE.lastIndex;
      }
      TAG_END.lastIndex = pos;
      const close = TAG_END.exec(text);
      if (!close) throw new XmlSyntaxError(`A malformed tag "${text.slice(lt, lt + 40)}"`);
      if (++elements > MAX_XML_ELEMENTS) {
        throw new XmlSyntaxError(`The XML holds more than ${MAX_XML_ELEMENTS} elements`);
      }
      const node: XmlElementNode = { name: localName(m[0]), children: [], text: "" };
      const parent = stack[stack.length - 1];
      if (parent) parent.node.children.push(node);
      else if (root) throw new XmlSyntaxError("A second root element");
      else root = node;
      if (close[1] !== "/") {
        if (stack.length >= MAX_XML_DEPTH) {
          throw new XmlSyntaxError(`The XML nests deeper than ${MAX_XML_DEPTH} elements`);
        }
        stack.push({ node, qname: m[0] });
      }
      at = TAG_END.lastIndex;
    }
  }
  if (!root) throw new XmlSyntaxError("The XML has no root element");
  if (stack.length > 0) throw new XmlSyntaxError(`The element "${stack[0].qname}" is not closed`);
  return root;
}
