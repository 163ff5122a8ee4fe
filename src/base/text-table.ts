/**
 * An aligned text table for a person: columns in the order of the first row's keys, headed by
 * the keys and a rule; numbers right-aligned, text left-aligned, two spaces between columns.
 */

export type TableCell = string | number;

export function formatTable(rows: readonly Readonly<Record<string, TableCell>>[]): string {
  const header = Object.keys(rows[0] ?? {});
  const cells = rows.map((row) => header.map((key) => row[key] ?? ''));
  const widths = header.map((title, column) => Math.max(title.length, ...cells.map((cell) => String(cell[column] ?? '').length)));
  const line = (values: readonly TableCell[]): string =>
    values
      .map((value, column) => (typeof value === 'number' ? String(value).padStart(widths[column] ?? 0) : value.padEnd(widths[column] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...cells.map(line)].join('\n');
}
