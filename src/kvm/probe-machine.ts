/**
 * Test and benchmark support: a KVM machine (one vCPU unless asked for more) running the
 * irq-probe guest (irq-probe.ts) with the chip of a given mode, each vCPU set up (vcpu-setup.ts)
 * in its own worker (probe-vcpu.fixture.ts), and, for the chips that service their events
 * themselves, the IRQ service loop on this thread. The same guest
 * code runs in every mode, so their deliveries and round trips compare. Not part of the API.
 */

import { existsSync } from 'node:fs';
import type { IrqChip } from '../chip/irq-chip.ts';
import type { DeviceInterruptChip } from '../device/device-chip.ts';
import { IrqEventService } from '../chip/irq-event-service.ts';
import { UserspaceIrqChip } from '../chip/userspace-irq-chip.ts';
import type { EventDescriptor } from '../event/event.ts';
import { createModeChip, describeModeChip, type ChipDescriptor, type ChipMode, type ModeChip } from './chip-mode.ts';
import { loadIrqProbe, type IrqProbeConfig } from './irq-probe.ts';
import { GuestTscClock, type GuestTscClockDescriptor } from './kvm-guest-tsc.ts';
import { waitForLogWord } from './kvm-test-support.ts';
import { KvmVm } from './kvm-vm.ts';
import { VcpuThread } from './vcpu-thread.ts';

export { CHIP_MODES, type ChipMode } from './chip-mode.ts';

/** The PVM module: /dev/kvm here is PVM (nested, software), not VMX or SVM (kvm-from-node.md §0). */
const PVM_MODULE = '/sys/module/kvm_pvm';

/** Whether /dev/kvm here is PVM's: the tests that prove a host difference expect it only there. */
export function isPvmHost(): boolean {
  return existsSync(PVM_MODULE);
}

/**
 * Whether the guest's local APIC EOIs a level-triggered interrupt when it is delivered rather than
 * when the handler writes EOI. True where the local APIC is KVM's (kernel and split chips) on a
 * PVM host: measured in kvm-from-node.md §8 (ISR and PPR read 0 in the handler; a handler that
 * never EOIs still ends the interrupt) and proved again by chip-modes.test.ts. Our local APIC
 * (userspace chip) follows the SDM everywhere.
 */
export function eoisAtDelivery(mode: ChipMode): boolean {
  return mode !== 'userspace' && isPvmHost();
}

/** The machine's log: Int32Array words over a SharedArrayBuffer, written by the vCPU worker. */
export const ProbeLog = {
  /** 1 once the guest reported ready. */
  Ready: 0,
  /** An exception's vector + 1, when the guest took one (fatal). */
  GuestException: 1,
  /** The KvmExit the loop could not serve, if any. */
  FatalExit: 2,
  /** Handler runs, all vectors. */
  Total: 3,
  /** The benchmark's device re-signals until Total reaches this. */
  DeviceTarget: 4,
  /** Set to Total when the benchmark's device reached its target. */
  DeviceDone: 5,
  /** Application processors that reported they run. */
  ApsStarted: 6,
  /** Bit n set once an application processor reported x2APIC ID n (IDs below 32). */
  ApIdsStarted: 7,
  /** vCPUs created and set up (CPUID; the BSP also at its entry): none runs before all are. */
  VcpusSetUp: 8,
  /** 1 once every vCPU is set up: the vCPUs run from then on. */
  Start: 9,
  /** 1 once the BSP sent its whole INIT, SIPI, SIPI sequence. */
  StartupSent: 10,
  /** Handler runs per vector: 256 words from here. */
  VectorCounts: 16,
} as const;
const LOG_WORDS = ProbeLog.VectorCounts + 256;

export interface ProbeVcpuData {
  readonly log: SharedArrayBuffer;
  readonly vcpuCount: number;
  readonly chip: ChipDescriptor;
  /** The userspace chip's local APIC clock (the guest's TSC); absent for KVM's local APICs. */
  readonly guestTsc?: GuestTscClockDescriptor;
  /** The benchmark's device: an eventfd the vCPU thread signals after each report, up to DeviceTarget. */
  readonly deviceTrigger?: EventDescriptor;
}

export interface ProbeMachine {
  readonly mode: ChipMode;
  readonly vcpuCount: number;
  readonly vm: KvmVm;
  readonly modeChip: ModeChip;
  readonly chip: IrqChip;
  readonly log: Int32Array;
  /** The same chip, as the device layer takes it. */
  readonly deviceChip: DeviceInterruptChip;
  /** The userspace chip, for its controllers. */
  readonly userspaceChip?: UserspaceIrqChip;
  /** The userspace chip's local APIC clock: the guest's TSC once a vCPU calibrated it. */
  readonly guestTsc?: GuestTscClock;
}

/** Guest RAM: the guest and its tables live in the first 2 MiB. */
const PROBE_MEMORY_BYTES = 4 << 20;
const PROBE_VCPU = new URL('./probe-vcpu.fixture.ts', import.meta.url);

export function recordLog(log: Int32Array, word: number, value: number): void {
  Atomics.store(log, word, value);
  Atomics.notify(log, word);
}

/** A VM with the chip of `mode` and `vcpuCount` vCPUs (default 1), not yet running. */
export function createProbeMachine(mode: ChipMode, vcpuCount = 1): ProbeMachine {
  const vm = KvmVm.create({ memoryBytes: PROBE_MEMORY_BYTES });
  const log = new Int32Array(new SharedArrayBuffer(LOG_WORDS * Int32Array.BYTES_PER_ELEMENT));
  // Our local APICs count the guest's TSC: their clock follows it, at its frequency.
  const guestTsc = mode === 'userspace' ? GuestTscClock.create(vm) : undefined;
  const modeChip = createModeChip(vm, mode, { vcpuCount, ...(guestTsc === undefined ? {} : { userspace: { clock: guestTsc, tscHz: guestTsc.tscHz } }) });
  const machine: ProbeMachine = { mode, vcpuCount, vm, log, modeChip, chip: modeChip.chip, deviceChip: modeChip.chip };
  return modeChip.mode === 'userspace' && guestTsc !== undefined ? { ...machine, userspaceChip: modeChip.chip, guestTsc } : machine;
}

/** A running probe: its vCPU threads and (for chips that need one) the service loop. */
export interface RunningProbe {
  readonly threads: readonly VcpuThread[];
  readonly service: IrqEventService;
}

/**
 * Loads the guest with `config`, starts every vCPU and the service loop, lets the vCPUs run once
 * all are created and set up (KVM delivers the guest's INIT and SIPI only to vCPUs that exist:
 * vcpu-setup.ts), waits for the guest's Ready, runs `body`, and then stops everything and closes
 * the VM, however `body` ended.
 */
export async function withProbe<T>(
  machine: ProbeMachine,
  config: IrqProbeConfig,
  body: (probe: RunningProbe) => Promise<T>,
  options: { readonly deviceTrigger?: EventDescriptor } = {},
): Promise<T> {
  const service = new IrqEventService(machine.chip);
  const threads: VcpuThread[] = [];
  try {
    loadIrqProbe(machine.vm.memory, config);
    for (let vcpuId = 0; vcpuId < machine.vcpuCount; vcpuId++) {
      const { descriptor, transferList } = describeModeChip(machine.modeChip);
      const data: ProbeVcpuData = {
        log: machine.log.buffer as SharedArrayBuffer,
        vcpuCount: machine.vcpuCount,
        chip: descriptor,
        ...(machine.guestTsc === undefined ? {} : { guestTsc: machine.guestTsc.descriptor() }),
        ...(options.deviceTrigger === undefined ? {} : { deviceTrigger: options.deviceTrigger }),
      };
      threads.push(await VcpuThread.start(machine.vm, { vcpuId, module: PROBE_VCPU, data, transferList }));
    }
    await waitForLog(machine.log, ProbeLog.VcpusSetUp, machine.vcpuCount);
    recordLog(machine.log, ProbeLog.Start, 1);
    service.start();
    await waitForLog(machine.log, ProbeLog.Ready, 1);
    return await body({ threads, service });
  } finally {
    await service.stop();
    for (const thread of threads) thread.requestStop();
    machine.chip.kickHaltedVcpus();
    await Promise.all(threads.map((thread) => thread.stop()));
    machine.vm.close();
  }
}

/** Handler runs of `vector` so far. */
export function vectorCount(machine: ProbeMachine, vector: number): number {
  return Atomics.load(machine.log, ProbeLog.VectorCounts + vector);
}

/** Waits until `log[word] >= value`; fails on a guest exception, a fatal exit, or after a long timeout. */
export async function waitForLog(log: Int32Array, word: number, value: number): Promise<void> {
  await waitForLogWord(log, word, value, () => {
    const exception = Atomics.load(log, ProbeLog.GuestException);
    if (exception !== 0) return `the guest took exception ${exception - 1}`;
    const fatal = Atomics.load(log, ProbeLog.FatalExit);
    return fatal === 0 ? undefined : `the guest's vCPU stopped on exit reason ${fatal}`;
  });
}

/** Waits until the guest's handler ran for `vector` at least `count` times. */
export async function waitForVector(machine: ProbeMachine, vector: number, count: number): Promise<void> {
  await waitForLog(machine.log, ProbeLog.VectorCounts + vector, count);
}
