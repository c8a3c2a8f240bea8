/** A moment for people to read, in local time and one format everywhere: `2026-12-07 01:32:27`. */
export function localTime(epochSec: number): string {
  const d = new Date(epochSec * 1000)
  const p = (n: number) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`
}
