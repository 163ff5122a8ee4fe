/**
 * Test and benchmark support: a one-vCPU KVM machine running the irq-probe guest (irq-probe.ts)
 * with the chip of a given mode, the vCPU in its own worker (probe-vcpu.fixture.ts), and, for the
 * chips that service their events themselves, the IRQ service loop on this thread. The same guest
 * code runs in every mode, so their deliveries and round trips compare. Not part of the API.
 */

import { existsSync } from 'node:fs';
import type { IrqChip } from '../chip/irq-chip.ts';
import type { DeviceInterruptChip } from '../device/device-chip.ts';
import { IrqEventService } from '../chip/irq-event-service.ts';
import { UserspaceIrqChip, type UserspaceIrqChipDescriptor } from '../chip/userspace-irq-chip.ts';
import type { EventDescriptor } from '../event/event.ts';
import type { LocalApic } from '../x86/lapic/local-apic.ts';
import { loadIrqProbe, type IrqProbeConfig } from './irq-probe.ts';
import { KvmKernelIrqChip, type KvmKernelIrqChipDescriptor } from './kvm-kernel-irq-chip.ts';
import { KvmSplitIrqChip, type KvmSplitIrqChipDescriptor } from './kvm-split-irq-chip.ts';
import { waitForLogWord } from './kvm-test-support.ts';
import { KvmVm } from './kvm-vm.ts';
import { routeApicMsrsToUserspace } from './userspace-apic-msrs.ts';
import { VcpuThread, type VcpuThreadOptions } from './vcpu-thread.ts';

export type ChipMode = 'kernel' | 'split' | 'userspace';
export const CHIP_MODES: readonly ChipMode[] = ['kernel', 'split', 'userspace'];

/** The PVM module: /dev/kvm here is PVM (nested, software), not VMX or SVM (kvm-from-node.md §0). */
const PVM_MODULE = '/sys/module/kvm_pvm';

/**
 * Whether the guest's local APIC EOIs a level-triggered interrupt when it is delivered rather than
 * when the handler writes EOI. True where the local APIC is KVM's (kernel and split chips) on a
 * PVM host: measured in kvm-from-node.md §8 (ISR and PPR read 0 in the handler; a handler that
 * never EOIs still ends the interrupt) and proved again by chip-modes.test.ts. Our local APIC
 * (userspace chip) follows the SDM everywhere.
 */
export function eoisAtDelivery(mode: ChipMode): boolean {
  return mode !== 'userspace' && existsSync(PVM_MODULE);
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
  /** Handler runs per vector: 256 words from here. */
  VectorCounts: 8,
} as const;
const LOG_WORDS = ProbeLog.VectorCounts + 256;

type ChipDescriptor =
  | { readonly mode: 'kernel'; readonly chip: KvmKernelIrqChipDescriptor }
  | { readonly mode: 'split'; readonly chip: KvmSplitIrqChipDescriptor }
  | { readonly mode: 'userspace'; readonly chip: UserspaceIrqChipDescriptor };

export interface ProbeVcpuData {
  readonly log: SharedArrayBuffer;
  readonly chip: ChipDescriptor;
  /** The benchmark's device: an eventfd the vCPU thread signals after each report, up to DeviceTarget. */
  readonly deviceTrigger?: EventDescriptor;
}

export interface ProbeMachine {
  readonly mode: ChipMode;
  readonly vcpuCount: number;
  readonly vm: KvmVm;
  readonly chip: IrqChip;
  readonly log: Int32Array;
  /** The same chip, as the device layer takes it. */
  readonly deviceChip: DeviceInterruptChip;
  /** The userspace chip, for its controllers. */
  readonly userspaceChip?: UserspaceIrqChip;
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
  switch (mode) {
    case 'kernel': {
      const chip = KvmKernelIrqChip.create(vm, { vcpuCount });
      return { mode, vcpuCount, vm, log, chip, deviceChip: chip };
    }
    case 'userspace': {
      routeApicMsrsToUserspace(vm);
      const chip = UserspaceIrqChip.create({ vcpuCount });
      return { mode, vcpuCount, vm, log, chip, deviceChip: chip, userspaceChip: chip };
    }
    case 'split': {
      const chip = KvmSplitIrqChip.create(vm, { vcpuCount });
      return { mode, vcpuCount, vm, log, chip, deviceChip: chip };
    }
  }
}

/** The chip view the vCPU worker builds, and the local APIC its loop serves (userspace chip). */
export function chipView(descriptor: ChipDescriptor): { readonly chip: IrqChip; readonly localApic?: (vcpuId: number) => LocalApic } {
  switch (descriptor.mode) {
    case 'kernel':
      return { chip: KvmKernelIrqChip.fromDescriptor(descriptor.chip) };
    case 'split':
      return { chip: KvmSplitIrqChip.fromDescriptor(descriptor.chip) };
    case 'userspace': {
      const chip = UserspaceIrqChip.fromDescriptor(descriptor.chip);
      return { chip, localApic: (vcpuId) => chip.localApic(vcpuId) };
    }
  }
}

function describeChip(machine: ProbeMachine): { readonly descriptor: ChipDescriptor; readonly transfer: NonNullable<VcpuThreadOptions['transferList']> } {
  const { chip } = machine;
  if (chip instanceof KvmKernelIrqChip) return { descriptor: { mode: 'kernel', chip: chip.descriptor() }, transfer: [] };
  if (chip instanceof UserspaceIrqChip) {
    const view = chip.createView();
    return { descriptor: { mode: 'userspace', chip: view }, transfer: [view.registry] };
  }
  if (chip instanceof KvmSplitIrqChip) {
    const view = chip.createView();
    return { descriptor: { mode: 'split', chip: view }, transfer: [view.registry] };
  }
  throw new Error(`no view for a ${machine.mode} chip`);
}

/** A running probe: its vCPU threads and (for chips that need one) the service loop. */
export interface RunningProbe {
  readonly threads: readonly VcpuThread[];
  readonly service: IrqEventService;
}

/**
 * Loads the guest with `config`, starts the vCPU and the service loop, waits for the guest's
 * Ready, runs `body`, and then stops everything and closes the VM, however `body` ended.
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
      const { descriptor, transfer } = describeChip(machine);
      const data: ProbeVcpuData = { log: machine.log.buffer as SharedArrayBuffer, chip: descriptor, ...(options.deviceTrigger === undefined ? {} : { deviceTrigger: options.deviceTrigger }) };
      threads.push(await VcpuThread.start(machine.vm, { vcpuId, module: PROBE_VCPU, data, transferList: transfer }));
    }
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
