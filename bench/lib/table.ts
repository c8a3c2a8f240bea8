/** The result table: every figure with its same-run reference, the ratio, the target and a verdict. */

export type Verdict = 'pass' | 'FAIL' | 'info' | 'error' | 'partial'

export interface Row {
  /** which benchmark, e.g. "1 ticks" */
  group: string
  /** what was measured */
  figure: string
  /** the figure, formatted with its unit */
  value: string
  /** the reference measured in the same run, if any */
  reference?: string
  /** value ÷ reference, or the difference where that is what the target is about */
  ratio?: string
  /** the target from DESIGN.md §5 */
  target?: string
  verdict: Verdict
}

export interface Section {
  rows: Row[]
  /** how it was measured, and anything a reader must know to trust the figure */
  notes: string[]
}

export function errorSection(group: string, err: unknown): Section {
  const msg = err instanceof Error ? err.message : String(err)
  return { rows: [{ group, figure: 'benchmark did not complete', value: '—', verdict: 'error' }], notes: [`${group}: failed: ${msg.split('\n')[0]}`] }
}

const COLUMNS: Array<{ key: keyof Row; title: string }> = [
  { key: 'group', title: 'bench' },
  { key: 'figure', title: 'figure' },
  { key: 'value', title: 'measured' },
  { key: 'reference', title: 'reference (same run)' },
  { key: 'ratio', title: 'ratio' },
  { key: 'target', title: 'target (§5)' },
  { key: 'verdict', title: 'verdict' },
]

function cell(r: Row, key: keyof Row): string {
  const v = r[key]
  return v === undefined || v === '' ? '—' : String(v)
}

/** Fixed-width text for the terminal. */
export function renderText(rows: Row[]): string {
  const widths = COLUMNS.map((c) => Math.max(c.title.length, ...rows.map((r) => cell(r, c.key).length)))
  const line = (cells: string[]) => cells.map((s, i) => s.padEnd(widths[i] as number)).join('  ').trimEnd()
  const out = [line(COLUMNS.map((c) => c.title)), line(widths.map((w) => '-'.repeat(w)))]
  let last = ''
  for (const r of rows) {
    out.push(line(COLUMNS.map((c) => (c.key === 'group' && r.group === last ? '' : cell(r, c.key)))))
    last = r.group
  }
  return out.join('\n')
}

/** A GitHub-flavoured Markdown table. */
export function renderMarkdown(rows: Row[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|')
  const out = [`| ${COLUMNS.map((c) => c.title).join(' | ')} |`, `| ${COLUMNS.map(() => '---').join(' | ')} |`]
  for (const r of rows) out.push(`| ${COLUMNS.map((c) => esc(cell(r, c.key))).join(' | ')} |`)
  return out.join('\n')
}
