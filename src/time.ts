// Times as upstream prints them, shared by the daemon's log and blocklistctl.

const two = (n: number): string => String(n).padStart(2, '0');

/** Seconds since the epoch as local time, `YYYY/MM/DD HH:MM:SS` (daemon.md §9.2, state-and-ctl.md §2.3). */
export function localTime(seconds: number): string {
  const d = new Date(seconds * 1000);
  if (Number.isNaN(d.getTime())) return String(seconds); // beyond what a Date holds
  return `${d.getFullYear()}/${two(d.getMonth() + 1)}/${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}
