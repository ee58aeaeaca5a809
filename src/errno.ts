// The text of an errno, as upstream prints it with `%m`, without the native
// addon: conf, state and run load (and their tests run) where it is not built.
// libuv's messages (util.getSystemErrorMap) are the C library's in lower case
// for most errnos; the table holds glibc's text where libuv words it another
// way (test/errno.test.ts compares every errno with the C library's strerror).
import { constants } from 'node:os';
import { getSystemErrorMap } from 'node:util';

const DIFFERENT_TEXT: Readonly<Record<string, string>> = {
  EADDRNOTAVAIL: 'Cannot assign requested address',
  EAFNOSUPPORT: 'Address family not supported by protocol',
  EALREADY: 'Operation already in progress',
  EBADMSG: 'Bad message',
  EBUSY: 'Device or resource busy',
  ECHILD: 'No child processes',
  EDEADLK: 'Resource deadlock avoided',
  EDOM: 'Numerical argument out of domain',
  EDQUOT: 'Disk quota exceeded',
  EEXIST: 'File exists',
  EFAULT: 'Bad address',
  EHOSTUNREACH: 'No route to host',
  EIDRM: 'Identifier removed',
  EILSEQ: 'Invalid or incomplete multibyte or wide character',
  EINPROGRESS: 'Operation now in progress',
  EIO: 'Input/output error',
  EISCONN: 'Transport endpoint is already connected',
  EISDIR: 'Is a directory',
  ELOOP: 'Too many levels of symbolic links',
  EMULTIHOP: 'Multihop attempted',
  ENAMETOOLONG: 'File name too long',
  ENETRESET: 'Network dropped connection on reset',
  ENFILE: 'Too many open files in system',
  ENOEXEC: 'Exec format error',
  ENOLCK: 'No locks available',
  ENOLINK: 'Link has been severed',
  ENOMEM: 'Cannot allocate memory',
  ENOMSG: 'No message of desired type',
  ENOSR: 'Out of streams resources',
  ENOSTR: 'Device not a stream',
  ENOTCONN: 'Transport endpoint is not connected',
  ENOTSUP: 'Operation not supported',
  EOPNOTSUPP: 'Operation not supported',
  ERANGE: 'Numerical result out of range',
  ESPIPE: 'Illegal seek',
  ESTALE: 'Stale file handle',
  ETIME: 'Timer expired',
  ETXTBSY: 'Text file busy',
  EXDEV: 'Invalid cross-device link',
};

/** errno number → name, from this platform's values. */
const NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, errno]) => [errno, name]));

const LIBUV_TEXT = getSystemErrorMap();

/** The C library's text for the errno `errno` (its sign does not matter: Node's errors carry it negative). */
export function errnoMessage(errno: number): string {
  const positive = Math.abs(errno);
  const name = NAMES.get(positive);
  const text = (name === undefined ? undefined : DIFFERENT_TEXT[name]) ?? LIBUV_TEXT.get(-positive)?.[1];
  return text === undefined ? `Unknown error ${positive}` : text[0]!.toUpperCase() + text.slice(1);
}

/** What a failed call says: its errno's text where it carries one (a system call's error), else its message. */
export function errnoText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (typeof err?.errno === 'number') return errnoMessage(err.errno);
  return e instanceof Error ? e.message : String(e);
}
