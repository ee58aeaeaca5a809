// Cutting a byte stream into lines of bounded length: the control protocol
// (a request or answer a line) and blocklistd-watch's sources (log lines,
// journal entries).

/**
 * Splits a byte stream into lines of at most `max` bytes.  A longer line
 * is dropped whole: `tooLong` is told when it is found (before its end has
 * come), and reading goes on after its newline.
 */
export class LineReader {
  private parts: Buffer[] = [];
  private size = 0;
  private skipping = false;

  constructor(
    private readonly max: number,
    private readonly tooLong: () => void,
  ) {}

  /** `line` gets each line and the offset in `chunk` just past its newline. */
  push(chunk: Buffer, line: (text: string, end: number) => void): void {
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      if (!this.skipping && this.size + nl - start > this.max) this.tooLong();
      else if (!this.skipping) {
        this.parts.push(chunk.subarray(start, nl));
        line(Buffer.concat(this.parts).toString('utf8'), nl + 1);
      }
      this.skipping = false;
      this.parts = [];
      this.size = 0;
      start = nl + 1;
    }
    if (start < chunk.length && !this.skipping) {
      this.size += chunk.length - start;
      if (this.size > this.max) {
        this.skipping = true;
        this.parts = [];
        this.tooLong();
      } else this.parts.push(Buffer.from(chunk.subarray(start)));
    }
  }

  /** The end of a stream: what came after the last newline, if anything, is a line. */
  end(line: (text: string) => void): void {
    if (!this.skipping && this.size > 0) line(Buffer.concat(this.parts).toString('utf8'));
    this.skipping = false;
    this.parts = [];
    this.size = 0;
  }
}
