#!/usr/bin/env node
/**
 * The `irqchip` command. `npm start` runs `irqchip demo`: a small simulated machine on the
 * package's `UserspaceIrqChip`, with a summary a person can read; the exit code is 1 when an
 * interrupt is not accounted for.
 */
import { Command, InvalidArgumentError } from 'commander';
import { runMachineDemo } from '../demo/machine-demo.ts';
import { formatMachineReport } from '../demo/machine-report.ts';

function positiveInteger(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value <= 0) throw new InvalidArgumentError('expected a positive integer');
  return value;
}

const program = new Command()
  .name('irqchip')
  .description('Interrupt delivery for a virtual machine monitor: demonstrations and tools.');

program
  .command('demo', { isDefault: true })
  .description('run a small simulated PC (vCPUs and devices on worker threads) and account for every interrupt')
  .option('-d, --duration <ms>', 'how long the devices raise interrupts, in ms of host time', positiveInteger, 2_000)
  .option('-t, --timer-period <µs>', "the guest's LAPIC timer period (the LAPIC holds it to at least 200 µs)", positiveInteger, 1_000)
  .option('--seed <n>', "seed of the devices' arrival schedule", positiveInteger)
  .action(async (options: { duration: number; timerPeriod: number; seed?: number }) => {
    try {
      const report = await runMachineDemo({
        durationMs: options.duration,
        timerPeriodUs: options.timerPeriod,
        ...(options.seed === undefined ? {} : { seed: options.seed }),
      });
      process.stdout.write(`${formatMachineReport(report)}\n`);
      if (!report.accounted) process.exitCode = 1;
    } catch (error) {
      process.stderr.write(`irqchip demo failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exitCode = 1;
    }
  });

await program.parseAsync();
