#!/usr/bin/env node
/**
 * The `irqchip` command.
 *   irqchip run <image>   boots an image on KVM with the chosen chip (src/vmm/run-command.ts)
 *   irqchip info          what this host's KVM offers (src/vmm/host-info.ts)
 *   irqchip demo          the demonstration `npm start` runs (the default command): the demo guest
 *                         on KVM (src/vmm/demo/), or the simulated machine (src/demo/) without KVM
 * A caller's mistake (no KVM, a bad image, an option out of range) prints one line, not a stack
 * trace, and exits with 1.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { IrqChipError } from '../base/errors.ts';
import { CHIP_MODES, type ChipMode } from '../kvm/chip-mode-names.ts';
import { runMachineDemo } from '../demo/machine-demo.ts';
import { formatMachineReport } from '../demo/machine-report.ts';
import { DEFAULT_MEMORY_MIB } from '../vmm/machine-layout.ts';

function integerOption(text: string, minimum: number): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < minimum) throw new InvalidArgumentError(`expected an integer of at least ${minimum}`);
  return value;
}
const positiveInteger = (text: string): number => integerOption(text, 1);
const nonNegativeInteger = (text: string): number => integerOption(text, 0);

/** Runs a command's body: an IrqChipError is the caller's mistake (one line); anything else is a bug (with its stack). */
async function guarded(command: string, body: () => Promise<number>): Promise<void> {
  try {
    process.exitCode = await body();
  } catch (error) {
    if (error instanceof IrqChipError) process.stderr.write(`irqchip ${command}: ${error.message}\n`);
    else process.stderr.write(`irqchip ${command} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  }
}

const program = new Command()
  .name('irqchip')
  .description('Interrupt delivery for a virtual machine monitor: a minimal VMM, demonstrations and tools.');

program
  .command('run')
  .description('boot an image (our 64-bit ELF or flat guests, or a multiboot v1 image as qemu -kernel boots it) on KVM')
  .argument('<image>', 'the image file')
  .addOption(new Option('--chip <mode>', 'which interrupt controllers: KVM\'s (kernel), KVM\'s local APICs only (split), or all ours (userspace)').choices(CHIP_MODES).default('userspace'))
  .option('--cpus <n>', 'vCPUs', positiveInteger, 1)
  .option('--memory <MiB>', 'RAM from guest-physical 0', positiveInteger, DEFAULT_MEMORY_MIB)
  .option('--append <cmdline>', 'the command line the guest is given', '')
  .option('--timeout <seconds>', 'stop the guest after this long (0: never)', nonNegativeInteger, 0)
  .option('--stats', 'print the counters even when the guest exits normally', false)
  .action(async (image: string, options: { chip: ChipMode; cpus: number; memory: number; append: string; timeout: number; stats: boolean }) => {
    const { runCommand } = await import('../vmm/run-command.ts');
    await guarded('run', () =>
      runCommand({ image, chip: options.chip, cpus: options.cpus, memoryMib: options.memory, commandLine: options.append, timeoutSeconds: options.timeout, stats: options.stats }),
    );
  });

program
  .command('info')
  .description("print what this host's KVM offers: capabilities and usable chip modes")
  .action(async () => {
    const { formatHostKvmInfo, readHostKvmInfo } = await import('../vmm/host-info.ts');
    await guarded('info', () => {
      process.stdout.write(`${formatHostKvmInfo(readHostKvmInfo())}\n`);
      return Promise.resolve(0);
    });
  });

/** Why the KVM demo cannot run here, or undefined: /dev/kvm must open and the native addon load (imported only now, so the simulated demo needs neither). */
async function kvmDemoUnavailableReason(): Promise<string | undefined> {
  try {
    const { kvmUnavailableReason } = await import('../kvm/availability.ts');
    return kvmUnavailableReason();
  } catch (error) {
    return `the native addon cannot be loaded: ${error instanceof Error ? error.message : String(error)}`;
  }
}

interface DemoOptions {
  duration: number;
  timerPeriod: number;
  simulated: boolean;
  seed?: number;
}

/** The simulated PC (src/demo/): vCPUs and devices on worker threads, no KVM. */
async function simulatedDemo(options: DemoOptions): Promise<number> {
  const report = await runMachineDemo({
    durationMs: options.duration,
    timerPeriodUs: options.timerPeriod,
    ...(options.seed === undefined ? {} : { seed: options.seed }),
  });
  process.stdout.write(`${formatMachineReport(report)}\n`);
  return report.accounted ? 0 : 1;
}

program
  .command('demo', { isDefault: true })
  .description(
    'boot the demo guest on KVM (two vCPUs, the userspace chip: a LAPIC timer, IPIs, a level-triggered PCI device, MSI-X) with a live status line and a final table; where KVM cannot be used, run the simulated machine instead',
  )
  .option('-d, --duration <ms>', 'how long the interrupt sources run, in ms', positiveInteger, 2_000)
  .option('-t, --timer-period <µs>', "the guest's LAPIC timer period (the LAPIC holds it to at least 200 µs)", positiveInteger, 1_000)
  .option('--simulated', 'run the simulated machine even where KVM can be used', false)
  .option('--seed <n>', "seed of the simulated machine's device arrival schedule", positiveInteger)
  .action(async (options: DemoOptions) => {
    await guarded('demo', async () => {
      if (options.simulated) return simulatedDemo(options);
      const unavailable = await kvmDemoUnavailableReason();
      if (unavailable !== undefined) {
        process.stderr.write(`irqchip demo: KVM cannot be used here (${unavailable}); running the simulated machine instead\n`);
        return simulatedDemo(options);
      }
      const { kvmDemoCommand } = await import('../vmm/demo/kvm-demo.ts');
      return kvmDemoCommand({ durationMs: options.duration, timerPeriodUs: options.timerPeriod });
    });
  });

await program.parseAsync();
