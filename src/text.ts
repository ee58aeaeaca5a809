// Text that comes from outside (a client's message, a helper's output, a
// configuration): cut to a byte limit without splitting a character, and
// escaped before it reaches a log line.

/** The longest prefix of `bytes` of at most `max` bytes that does not split a UTF-8 sequence. */
export function cutUtf8(bytes: Buffer, max: number): Buffer {
  if (bytes.length <= max) return bytes;
  let end = max;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

/**
 * The received text as a string that is safe to log: printable ASCII and
 * valid UTF-8 pass, a backslash and a double quote get a backslash (the
 * text is logged as msg="…": no forged fields after it), and control characters,
 * invalid bytes and the Unicode line, paragraph and bidi controls are
 * written as `\n`, `\r`, `\t` or `\xNN`, so a client cannot forge log lines.
 */
export function decodeText(b: Buffer, start: number, end: number): string {
  for (let i = start; i < end; i++) {
    const c = b[i];
    if (c < 0x20 || c >= 0x7f || c === 0x5c || c === 0x22) return escapeText(b, start, end);
  }
  return b.toString('latin1', start, end);
}

/** Any string (a helper's output) escaped as decodeText escapes a message. */
export function printable(text: string): string {
  const b = Buffer.from(text);
  return decodeText(b, 0, b.length);
}

function escapeText(b: Buffer, start: number, end: number): string {
  let out = '';
  for (let i = start; i < end;) {
    const c = b[i];
    if (c >= 0x20 && c < 0x7f) {
      out += c === 0x5c || c === 0x22 ? `\\${String.fromCharCode(c)}` : String.fromCharCode(c);
      i++;
      continue;
    }
    const n = c >= 0x80 ? utf8SequenceLength(b, i, end) : 0;
    if (n > 0) {
      const ch = b.toString('utf8', i, i + n);
      if (!isFormatControl(ch.codePointAt(0) ?? 0)) {
        out += ch;
        i += n;
        continue;
      }
    }
    for (const stop = i + Math.max(n, 1); i < stop; i++) out += escapeByte(b[i]);
  }
  return out;
}

function escapeByte(c: number): string {
  if (c === 0x0a) return '\\n';
  if (c === 0x0d) return '\\r';
  if (c === 0x09) return '\\t';
  return `\\x${c.toString(16).padStart(2, '0')}`;
}

function isFormatControl(cp: number): boolean {
  return (cp >= 0x80 && cp <= 0x9f) || cp === 0x200e || cp === 0x200f || (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/** Length of the well-formed UTF-8 sequence at `i` (RFC 3629), 0 when there is none. */
function utf8SequenceLength(b: Buffer, i: number, end: number): number {
  const c = b[i];
  const cont = (k: number, lo = 0x80, hi = 0xbf): boolean => i + k < end && b[i + k] >= lo && b[i + k] <= hi;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if ((c >= 0xe1 && c <= 0xec) || c === 0xee || c === 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (c === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (c === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xf1 && c <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}
