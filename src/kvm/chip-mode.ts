/**
 * The three chips a KVM VM can have, chosen by name: `kernel` (KVM's PIC, IOAPIC, local APICs and
 * PIT), `split` (KVM's local APICs; our 8259A pair and IOAPIC: `KvmSplitIrqChip`) and `userspace`
 * (every controller ours: `UserspaceIrqChip`, its local APIC MSRs routed to userspace). One place
 * creates each on a new VM, describes it for a vCPU worker, and builds the worker's view, so the
 * VMM and the tests build machines the same way.
 */

import type { Clock } from '../base/clock.ts';
import type { ChipMode } from './chip-mode-names.ts';
import type { IrqChip } from '../chip/irq-chip.ts';
import { UserspaceIrqChip, type UserspaceIrqChipDescriptor, type UserspaceIrqChipOptions } from '../chip/userspace-irq-chip.ts';
import type { DeviceInterruptChip } from '../device/device-chip.ts';
import type { LocalApic } from '../x86/lapic/local-apic.ts';
import type { KvmCapName } from './kvm-chip-handles.ts';
import { KVM_KERNEL_CHIP_CAPS, KvmKernelIrqChip, type KvmKernelIrqChipDescriptor } from './kvm-kernel-irq-chip.ts';
import { KVM_SPLIT_CHIP_CAPS, KvmSplitIrqChip, type KvmSplitIrqChipDescriptor } from './kvm-split-irq-chip.ts';
import type { KvmVm } from './kvm-vm.ts';
import { USERSPACE_APIC_MSR_CAPS, routeApicMsrsToUserspace } from './userspace-apic-msrs.ts';
import type { VcpuThreadOptions } from './vcpu-thread.ts';

export { CHIP_MODES, type ChipMode } from './chip-mode-names.ts';

/** A VM's chip of one mode, as the VMM's thread owns it. */
export type ModeChip =
  | { readonly mode: 'kernel'; readonly chip: KvmKernelIrqChip }
  | { readonly mode: 'split'; readonly chip: KvmSplitIrqChip }
  | { readonly mode: 'userspace'; readonly chip: UserspaceIrqChip };

/** What a vCPU worker needs to build its view of the chip (structured-clone data). */
export type ChipDescriptor =
  | { readonly mode: 'kernel'; readonly chip: KvmKernelIrqChipDescriptor }
  | { readonly mode: 'split'; readonly chip: KvmSplitIrqChipDescriptor }
  | { readonly mode: 'userspace'; readonly chip: UserspaceIrqChipDescriptor };

export interface ChipModeOptions {
  readonly vcpuCount: number;
  /** Userspace chip only: its local APICs' options (clock, TSC frequency). */
  readonly userspace?: Omit<UserspaceIrqChipOptions, 'vcpuCount'>;
}

/** Creates the chip of `mode` on `vm`, which must have no vCPU yet (KVM wants the chip first). */
export function createModeChip(vm: KvmVm, mode: ChipMode, options: ChipModeOptions): ModeChip {
  const { vcpuCount } = options;
  switch (mode) {
    case 'kernel':
      return { mode, chip: KvmKernelIrqChip.create(vm, { vcpuCount }) };
    case 'split':
      return { mode, chip: KvmSplitIrqChip.create(vm, { vcpuCount }) };
    case 'userspace':
      routeApicMsrsToUserspace(vm);
      return { mode, chip: UserspaceIrqChip.create({ ...options.userspace, vcpuCount }) };
  }
}

/** The chip as the device layer takes it (every mode's chip is one). */
export function deviceChipOf(modeChip: ModeChip): IrqChip & DeviceInterruptChip {
  return modeChip.chip;
}

/** A new view of the chip for one worker, with what must be transferred rather than cloned. */
export function describeModeChip(modeChip: ModeChip): { readonly descriptor: ChipDescriptor; readonly transferList: NonNullable<VcpuThreadOptions['transferList']> } {
  switch (modeChip.mode) {
    case 'kernel':
      return { descriptor: { mode: 'kernel', chip: modeChip.chip.descriptor() }, transferList: [] };
    case 'split': {
      const view = modeChip.chip.createView();
      return { descriptor: { mode: 'split', chip: view }, transferList: [view.registry] };
    }
    case 'userspace': {
      const view = modeChip.chip.createView();
      return { descriptor: { mode: 'userspace', chip: view }, transferList: [view.registry] };
    }
  }
}

/**
 * In a worker: the chip view a descriptor describes, and the local APIC its vCPU loop serves
 * (userspace chip), its timers on `clock` (the machine's `GuestTscClock` on this thread; without
 * one, the host's clock).
 */
export function modeChipView(descriptor: ChipDescriptor, clock?: Clock): { readonly chip: IrqChip; readonly localApic?: (vcpuId: number) => LocalApic } {
  switch (descriptor.mode) {
    case 'kernel':
      return { chip: KvmKernelIrqChip.fromDescriptor(descriptor.chip) };
    case 'split':
      return { chip: KvmSplitIrqChip.fromDescriptor(descriptor.chip) };
    case 'userspace': {
      const chip = UserspaceIrqChip.fromDescriptor(descriptor.chip, clock === undefined ? {} : { clock });
      return { chip, localApic: (vcpuId) => chip.localApic(vcpuId) };
    }
  }
}

/**
 * The counters of the chip's lines and events and of each controller that is ours, by section
 * ('chip', 'pic', 'ioapic', 'lapic0', ...). KVM keeps no counters it shows for its own
 * controllers: the kernel chip reports none.
 */
export function modeChipCounters(modeChip: ModeChip): Record<string, Readonly<Record<string, number>>> {
  if (modeChip.mode === 'kernel') return {};
  const { chip } = modeChip;
  const sections: Record<string, Readonly<Record<string, number>>> = { chip: chip.counters(), pic: chip.pic.counters(), ioapic: chip.ioapic.counters() };
  if (modeChip.mode === 'userspace') {
    sections.apicBus = modeChip.chip.apicBus.counters();
    for (let vcpuId = 0; vcpuId < modeChip.chip.vcpuCount; vcpuId++) sections[`lapic${vcpuId}`] = modeChip.chip.localApic(vcpuId).counters();
  }
  return sections;
}

/** The KVM capabilities each chip mode needs (the userspace chip: its local APIC's MSR exits, and kicks). */
export const CHIP_MODE_CAPS: Readonly<Record<ChipMode, readonly KvmCapName[]>> = {
  kernel: KVM_KERNEL_CHIP_CAPS,
  split: KVM_SPLIT_CHIP_CAPS,
  userspace: [...USERSPACE_APIC_MSR_CAPS, 'IMMEDIATE_EXIT'],
};
