/**
 * `irqchip run <image>`: boots an image on KVM with the chosen chip, copies the guest's serial
 * output to stdout, and returns the exit code the process should end with (the guest's, through
 * isa-debug-exit, or the machine's: machine.ts `MachineExitCode`). What the caller got wrong —
 * no usable KVM, an unreadable image or one we do not load, an option out of range — is an
 * `IrqChipError` with a message for a person; the command prints it and returns 1.
 */

import { readFileSync } from 'node:fs';
import { ErrorCode, IrqChipError } from '../base/errors.ts';
import type { ChipMode } from '../kvm/chip-mode.ts';
import { kvmUnavailableReason } from '../kvm/availability.ts';
import { Machine, checkMachineOptions, type MachineReport } from './machine.ts';
import { formatMachineReport } from './machine-report.ts';

export interface RunCommandOptions {
  readonly image: string;
  readonly chip: ChipMode;
  readonly cpus: number;
  readonly memoryMib: number;
  readonly commandLine: string;
  /** Seconds; 0: no limit. */
  readonly timeoutSeconds: number;
  /** Print the report even when the guest ended the run itself. */
  readonly stats: boolean;
  /** Where the report goes (default stderr). */
  readonly report?: (text: string) => void;
  readonly serialOutput?: (byte: number) => void;
}

/** What the common reasons a file cannot be read mean, for people. */
const READ_FAILURES: Readonly<Record<string, string>> = { ENOENT: 'no such file', EACCES: 'permission denied', EISDIR: 'it is a directory' };

/** Reads the image, refusing clearly what cannot be read. */
function readImage(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (error) {
    const code = error instanceof Error && 'code' in error ? String(error.code) : '';
    throw new IrqChipError(ErrorCode.ENOENT, `cannot read the image '${path}': ${READ_FAILURES[code] ?? (code || String(error))}`);
  }
}

/** Boots and runs the machine; returns its report. Throws `IrqChipError` for the caller's mistakes. */
export async function runImage(options: RunCommandOptions): Promise<MachineReport> {
  checkMachineOptions(options);
  const unavailable = kvmUnavailableReason();
  if (unavailable !== undefined) throw new IrqChipError(ErrorCode.ENODEV, `KVM is not usable here (${unavailable})`);
  const image = readImage(options.image);
  const machine = await Machine.boot({
    chip: options.chip,
    cpus: options.cpus,
    memoryMib: options.memoryMib,
    commandLine: options.commandLine,
    image,
    imageName: options.image,
    ...(options.serialOutput === undefined ? {} : { serialOutput: options.serialOutput }),
  });
  for (const warning of machine.loaded.warnings) (options.report ?? writeToStderr)(`irqchip run: ${warning}`);
  const stop = (): void => {
    machine.stop();
  };
  process.once('SIGINT', stop);
  try {
    return await machine.run({ timeoutMs: options.timeoutSeconds * 1000 });
  } finally {
    process.off('SIGINT', stop);
  }
}

/** The command: runs, prints the report when it should, and returns the process exit code. */
export async function runCommand(options: RunCommandOptions): Promise<number> {
  const report = await runImage(options);
  if (options.stats || report.end.kind !== 'guest-exit') (options.report ?? writeToStderr)(formatMachineReport(report));
  return report.exitCode;
}

function writeToStderr(text: string): void {
  process.stderr.write(`${text}\n`);
}
