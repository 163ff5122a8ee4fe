#!/usr/bin/env node
/**
 * The `irqchip` command. `npm start` runs `irqchip demo`: a demonstration of interrupts flowing
 * through what the package has, with a summary a person can read.
 */
import { Command, InvalidArgumentError } from 'commander';
import { runEventDemo, type SourceSummary } from '../demo/event-demo.ts';

function positiveInteger(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value <= 0) throw new InvalidArgumentError('expected a positive integer');
  return value;
}

function formatTable(rows: readonly SourceSummary[]): string {
  const header = ['source', 'kind', 'signalled', 'received', 'delivered', 'coalesced', 'resamples'];
  const cells = rows.map((row) => [row.source, row.kind, row.signalled, row.received, row.delivered, row.coalesced, row.resamples].map(String));
  const widths = header.map((title, column) => Math.max(title.length, ...cells.map((cell) => (cell[column] ?? '').length)));
  const line = (values: readonly string[]) => values.map((value, column) => value.padEnd(widths[column] ?? 0)).join('  ');
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...cells.map(line)].join('\n');
}

const program = new Command()
  .name('irqchip')
  .description('Interrupt delivery for a virtual machine monitor: demonstrations and tools.');

program
  .command('demo', { isDefault: true })
  .description('devices on worker threads raise edge and level interrupts; print what was delivered')
  .option('-n, --interrupts <count>', 'interrupts each device raises', positiveInteger, 2_000)
  .action(async (options: { interrupts: number }) => {
    const started = performance.now();
    const summary = await runEventDemo(options.interrupts);
    const elapsedMs = performance.now() - started;
    process.stdout.write(`irqchip demo: ${options.interrupts} interrupts per device, devices on worker threads\n\n`);
    process.stdout.write(`${formatTable(summary)}\n\n`);
    const lost = summary.reduce((sum, row) => sum + row.signalled - row.received, 0);
    process.stdout.write(`every signal accounted for: ${lost === 0 ? 'yes' : `no (${lost} missing)`}; ${elapsedMs.toFixed(0)} ms\n`);
    if (lost !== 0) process.exitCode = 1;
  });

await program.parseAsync();
