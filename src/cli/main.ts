#!/usr/bin/env node
/**
 * The `irqchip` command. `npm start` runs `irqchip demo`: a demonstration of interrupts flowing
 * through what the package has, with a summary a person can read.
 */
import { Command, InvalidArgumentError } from 'commander';
import { runControllerDemo } from '../demo/controller-demo.ts';
import { runEventDemo } from '../demo/event-demo.ts';

function positiveInteger(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value <= 0) throw new InvalidArgumentError('expected a positive integer');
  return value;
}

/** Formats rows of one shape as an aligned text table, columns in the order of the first row's keys. */
function formatTable(rows: readonly Readonly<Record<string, string | number>>[]): string {
  const header = Object.keys(rows[0] ?? {});
  const cells = rows.map((row) => header.map((key) => String(row[key])));
  const widths = header.map((title, column) => Math.max(title.length, ...cells.map((cell) => (cell[column] ?? '').length)));
  const line = (values: readonly string[]) => values.map((value, column) => value.padEnd(widths[column] ?? 0)).join('  ').trimEnd();
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...cells.map(line)].join('\n');
}

const program = new Command()
  .name('irqchip')
  .description('Interrupt delivery for a virtual machine monitor: demonstrations and tools.');

program
  .command('demo', { isDefault: true })
  .description('interrupts through events across threads, then through the x86 controllers; print what was delivered')
  .option('-n, --interrupts <count>', 'interrupts each event-demo device raises', positiveInteger, 2_000)
  .option('-s, --steps <count>', '10 µs steps of virtual time the controller demo runs', positiveInteger, 2_000)
  .action(async (options: { interrupts: number; steps: number }) => {
    const started = performance.now();
    const events = await runEventDemo(options.interrupts);
    const eventsMs = performance.now() - started;
    process.stdout.write(`1. Events: devices on worker threads, this thread as the controller (${eventsMs.toFixed(0)} ms)\n\n`);
    process.stdout.write(`${formatTable(events.map((row) => ({ ...row })))}\n\n`);

    const controllers = runControllerDemo(options.steps);
    process.stdout.write(`2. Controllers: 8259A, IOAPIC, two local APICs and the APIC bus, ${options.steps * 10} µs of virtual time\n\n`);
    process.stdout.write(`${formatTable(controllers.map((row) => ({ ...row })))}\n\n`);

    const lostEvents = events.reduce((sum, row) => sum + row.signalled - row.received, 0);
    const lostInterrupts = controllers.reduce((sum, row) => sum + row.raised - row.handled, 0);
    const accounted = lostEvents === 0 && lostInterrupts === 0;
    process.stdout.write(`every signal and interrupt accounted for: ${accounted ? 'yes' : `no (${lostEvents} signals, ${lostInterrupts} interrupts missing)`}\n`);
    if (!accounted) process.exitCode = 1;
  });

await program.parseAsync();
