/**
 * The demonstration `npm start` runs where KVM can be used: the demo guest (guests/demo.c) on the
 * VMM's `Machine` with two vCPUs and the userspace chip — all of the interrupt path ours. vCPU 0's
 * LAPIC timer drives IPIs to vCPU 1, level work on one PCI test function (INTA# through the
 * IOAPIC, resampled) and MSI-X messages from another.
 *
 * While the guest runs, this thread samples the guest's status block in guest RAM every 250 ms
 * (DEFAULT_SAMPLE_INTERVAL_MS; demo-sampler.ts) and hands each sample to the caller, who draws
 * the status line. After the run, the books (demo-accounting.ts) compare the guest's counts with
 * the devices' and the chip's from the machine report.
 */

import { readFileSync } from 'node:fs';
import { HostClock, type Clock } from '../../base/clock.ts';
import { ErrorCode, IrqChipError, checkRange } from '../../base/errors.ts';
import { Machine, type MachineReport } from '../machine.ts';
import { formatMachineReport } from '../machine-report.ts';
import { accountDemo, type DemoAccounting } from './demo-accounting.ts';
import { CLEAR_LINE, formatDemoReport, redrawStatusLine } from './demo-format.ts';
import {
  DEMO_DEFAULT_DURATION_MS,
  DEMO_DEFAULT_TIMER_PERIOD_US,
  DEMO_MAX_DURATION_MS,
  DEMO_MAX_TIMER_PERIOD_US,
  DEMO_MIN_TIMER_PERIOD_US,
  demoCommandLine,
} from './demo-layout.ts';
import { DemoRateSampler, type DemoCounts, type DemoSample } from './demo-sampler.ts';
import { DemoStatusReader, type DemoStatus } from './demo-status.ts';

export const DEMO_IMAGE = new URL('../../../guests/build/demo.elf', import.meta.url);
export const DEMO_CHIP = 'userspace';
export const DEMO_CPUS = 2;
/** Enough for the guest (its image at 1 MiB, its tables and stacks below 2 MiB). */
const DEMO_MEMORY_MIB = 16;
const DEFAULT_SAMPLE_INTERVAL_MS = 250;
const MAX_SAMPLE_INTERVAL_MS = 60_000;
/**
 * The run's limit beyond the guest's own duration: booting two vCPUs (workers load TypeScript;
 * the AP's mode switches are emulated on this host), the guest's bounded drain (2 s) and a loaded
 * machine. A guest that overruns it ends the run as a timeout, never a hang.
 */
const RUN_ALLOWANCE_MS = 60_000;

export interface KvmDemoOptions {
  /** How long the guest runs its sources, in ms of its own TSC time (default 2000). */
  readonly durationMs?: number;
  /** The guest's LAPIC timer period, µs (default 1000; at least 200, the LAPIC's floor). */
  readonly timerPeriodUs?: number;
  /** Called with each sample of the status block while the guest runs. */
  readonly onSample?: (sample: DemoSample) => void;
  readonly sampleIntervalMs?: number;
  /** The clock rates are measured on (default the host's). */
  readonly clock?: Clock;
  /** Stops the run early (the command's SIGINT). */
  readonly signal?: AbortSignal;
}

export interface KvmDemoResult {
  readonly report: MachineReport;
  /** The status block after the run. */
  readonly status: DemoStatus;
  readonly accounting: DemoAccounting;
  /** Status samples taken while the guest ran, and the highest rate each source reached in them. */
  readonly samples: number;
  readonly peakRates: DemoCounts;
  /** What the guest wrote to its serial port. */
  readonly serialOutput: string;
}

function readDemoImage(): Uint8Array {
  try {
    return readFileSync(DEMO_IMAGE);
  } catch {
    throw new IrqChipError(ErrorCode.ENOENT, `the demo guest ${DEMO_IMAGE.pathname} is missing or unreadable: run 'npm run build:guests'`);
  }
}

/** Boots the demo guest, samples it until it ends, and closes the books. */
export async function runKvmDemo(options: KvmDemoOptions = {}): Promise<KvmDemoResult> {
  const durationMs = options.durationMs ?? DEMO_DEFAULT_DURATION_MS;
  const timerPeriodUs = options.timerPeriodUs ?? DEMO_DEFAULT_TIMER_PERIOD_US;
  const sampleIntervalMs = options.sampleIntervalMs ?? DEFAULT_SAMPLE_INTERVAL_MS;
  checkRange(durationMs, 1, DEMO_MAX_DURATION_MS, 'demo duration in ms');
  checkRange(timerPeriodUs, DEMO_MIN_TIMER_PERIOD_US, DEMO_MAX_TIMER_PERIOD_US, 'demo timer period in µs');
  checkRange(sampleIntervalMs, 1, MAX_SAMPLE_INTERVAL_MS, 'status sample interval in ms');
  const image = readDemoImage();
  const serial: number[] = [];
  const machine = await Machine.boot({
    chip: DEMO_CHIP,
    cpus: DEMO_CPUS,
    memoryMib: DEMO_MEMORY_MIB,
    image,
    imageName: DEMO_IMAGE.pathname,
    commandLine: demoCommandLine({ durationMs, timerPeriodUs }),
    serialOutput: (byte) => {
      serial.push(byte);
    },
  });
  const reader = new DemoStatusReader(machine.memory);
  const sampler = new DemoRateSampler(() => reader.read(), options.clock ?? new HostClock());
  const sampling = setInterval(() => {
    const sample = sampler.sample();
    options.onSample?.(sample);
  }, sampleIntervalMs);
  const stop = (): void => {
    machine.stop();
  };
  options.signal?.addEventListener('abort', stop);
  if (options.signal?.aborted === true) stop();
  let report: MachineReport;
  try {
    report = await machine.run({ timeoutMs: durationMs + RUN_ALLOWANCE_MS });
  } finally {
    clearInterval(sampling);
    options.signal?.removeEventListener('abort', stop);
  }
  const status = reader.read();
  return {
    report,
    status,
    accounting: accountDemo({ status, counters: report.counters, end: report.end }),
    samples: sampler.samples,
    peakRates: sampler.peakRates(),
    serialOutput: Buffer.from(serial).toString('latin1'),
  };
}

export interface KvmDemoCommandOptions {
  readonly durationMs: number;
  readonly timerPeriodUs: number;
}

/**
 * `irqchip demo` on KVM: the live status line on stderr when it is a terminal, then the guest's
 * serial output and the final table on stdout (and the machine's report when the guest did not end
 * the run itself). SIGINT stops the guest. Returns the process exit code: 0 when every interrupt
 * is accounted for.
 */
export async function kvmDemoCommand(options: KvmDemoCommandOptions): Promise<number> {
  const liveLine = process.stderr.isTTY;
  const interrupt = new AbortController();
  const onSigint = (): void => {
    interrupt.abort();
  };
  process.once('SIGINT', onSigint);
  let result: KvmDemoResult;
  try {
    result = await runKvmDemo({
      durationMs: options.durationMs,
      timerPeriodUs: options.timerPeriodUs,
      signal: interrupt.signal,
      ...(liveLine ? { onSample: (sample: DemoSample) => process.stderr.write(redrawStatusLine(sample)) } : {}),
    });
  } finally {
    process.off('SIGINT', onSigint);
    if (liveLine) process.stderr.write(CLEAR_LINE);
  }
  const output = [result.serialOutput.trimEnd(), ''];
  if (result.report.end.kind !== 'guest-exit') output.push(formatMachineReport(result.report), '');
  output.push(formatDemoReport(result.accounting, { chip: DEMO_CHIP, cpus: DEMO_CPUS }));
  process.stdout.write(`${output.join('\n')}\n`);
  return result.accounting.accounted ? 0 : 1;
}
