// blocklistctl --json: one envelope for every command, control commands,
// config, test and dump alike, errors included (blocklistctl(8), JSON OUTPUT):
//   {"ok": true, "command": "status", "result": {...}}
//   {"ok": false, "command": "block", "error": {"code": "...", "message": "...", "details": ...}}
// `ok` is true exactly when the exit status is 0; a failure that still has
// a result (config with a rejected line, test without a match, a block of
// several addresses of which some failed, a dump cut short) carries both.
import type { ControlErrorBody } from '../protocol/control.js';
import type { Output } from './conf.js';

export interface Outcome {
  result?: unknown;
  error?: ControlErrorBody;
}

/** The envelope of a command's outcome, as printed. */
export function envelope(command: string, { result, error }: Outcome): string {
  const body = { ok: error === undefined, command, ...(result === undefined ? {} : { result }), ...(error === undefined ? {} : { error }) };
  return `${JSON.stringify(body, null, 2)}\n`;
}

/**
 * The envelope of a result that is an array too long to hold (dump): its
 * items written as they come, `ok` (and the error) at the end, when known.
 */
export class EnvelopeStream {
  private items = 0;

  constructor(command: string, io: Output) {
    io.out(`{\n  "command": ${JSON.stringify(command)},\n  "result": [`);
  }

  /** An item's text, to be written by the caller with others (one write for many). */
  item(value: unknown): string {
    return `${this.items++ === 0 ? '' : ','}\n    ${JSON.stringify(value)}`;
  }

  /** The closing text: the array ended, ok, and the error if any. */
  end(error?: ControlErrorBody): string {
    const close = this.items === 0 ? ']' : '\n  ]';
    return `${close},\n  "ok": ${error === undefined}${error === undefined ? '' : `,\n  "error": ${JSON.stringify(error)}`}\n}\n`;
  }
}
