/**
 * What both KVM chips (`KvmKernelIrqChip`, `KvmSplitIrqChip`) do alike: the checks before they
 * create KVM's irqchip, and one thread's handles on the VM they configure (its irqfds, its MSI
 * sender, the vCPUs added on that thread, and whether its local APICs have the TSC-deadline timer).
 */

import { ErrorCode, IrqChipError, checkRange } from '../base/errors.ts';
import { chipHasCapability } from '../chip/chip-capabilities.ts';
import type { IrqChipCap } from '../chip/types.ts';
import { KvmCap } from './kvm-abi.ts';
import { KvmChipVcpus } from './kvm-chip-vcpus.ts';
import { KvmIrqfds } from './kvm-irqfd.ts';
import { KvmMsiSender } from './kvm-msi-sender.ts';
import type { KvmVm } from './kvm-vm.ts';

/** A capability by its name in kvm-abi.ts (`KVM_CAP_` + the name in the kernel's headers). */
export type KvmCapName = keyof typeof KvmCap;

/**
 * Before a chip is created on `vm`: `vcpuCount` from 1 to KVM's KVM_CAP_MAX_VCPUS (EINVAL), and
 * every capability in `required` present (ENODEV, naming the first one missing).
 */
export function checkKvmChipRequirements(vm: KvmVm, vcpuCount: number, required: readonly KvmCapName[]): void {
  checkRange(vcpuCount, 1, Math.max(1, vm.checkExtension(KvmCap.MAX_VCPUS)), 'vCPU count');
  for (const name of required) {
    if (vm.checkExtension(KvmCap[name]) === 0) throw new IrqChipError(ErrorCode.ENODEV, `this KVM lacks KVM_CAP_${name}`);
  }
}

/** One thread's handles on a KVM chip's VM; each reuses its own ioctl struct, so one per thread. */
export class KvmChipHandles {
  readonly vcpus: KvmChipVcpus;
  readonly irqfds: KvmIrqfds;
  readonly msiSender: KvmMsiSender;
  private readonly tscDeadlineTimer: boolean;

  constructor(
    readonly vm: KvmVm,
    chipName: string,
    vcpuCount: number,
  ) {
    this.vcpus = new KvmChipVcpus(chipName, vcpuCount);
    this.irqfds = new KvmIrqfds(vm);
    this.msiSender = new KvmMsiSender(vm);
    this.tscDeadlineTimer = vm.checkExtension(KvmCap.TSC_DEADLINE_TIMER) !== 0;
  }

  /** `checkCapability`: KVM's local APICs have x2APIC and MP states, and the TSC-deadline timer where KVM says so. */
  hasCapability(cap: IrqChipCap): boolean {
    return chipHasCapability(cap, this.tscDeadlineTimer);
  }
}
