/**
 * With the local APICs in userspace, their MSRs must come to us. KVM without an in-kernel LAPIC
 * keeps IA32_APIC_BASE itself (and refuses x2APIC mode unless the guest's CPUID has it) and
 * silently swallows IA32_TSC_DEADLINE writes (measured here), and fails x2APIC MSR accesses. So
 * the VM gets KVM_CAP_X86_USER_SPACE_MSR, and an MSR filter (KVM_X86_SET_MSR_FILTER) that denies
 * IA32_APIC_BASE (0x1b) and IA32_TSC_DEADLINE (0x6e0) to the kernel: the guest's RDMSR/WRMSR of
 * them exit (reason FILTER) for our LocalApic to answer. KVM never filters the x2APIC range
 * 0x800–0x8ff (kvm_msr_allowed lets it through), but without an in-kernel APIC it fails those
 * accesses, which exit too when the INVAL reason is enabled. Every other MSR stays KVM's, and a
 * guest access KVM does not know (UNKNOWN) exits to us as well, to be answered with #GP.
 */

import { ErrorCode, IrqChipError } from '../base/errors.ts';
import { MSR_IA32_APIC_BASE, MSR_IA32_TSC_DEADLINE, MSR_X2APIC_FIRST, MSR_X2APIC_LAST } from '../x86/lapic/apic-registers.ts';
import { addon } from './addon.ts';
import {
  KVM_MSR_FILTER_BYTES,
  KVM_MSR_FILTER_RANGES_AT,
  KVM_MSR_FILTER_RANGE_BYTES,
  KvmCap,
  KvmIoctl,
  KvmMsrExitReason,
  KvmMsrFilterFlag,
} from './kvm-abi.ts';
import type { KvmVm } from './kvm-vm.ts';

type MsrRange = readonly [first: number, count: number];

/** The local APIC's MSRs that the filter denies to KVM. */
const FILTERED_APIC_MSR_RANGES: readonly MsrRange[] = [
  [MSR_IA32_APIC_BASE, 1],
  [MSR_IA32_TSC_DEADLINE, 1],
];
/** Every MSR range our local APIC owns: the filtered ones and the x2APIC block (which exits as INVAL). */
export const USERSPACE_APIC_MSR_RANGES: readonly MsrRange[] = [...FILTERED_APIC_MSR_RANGES, [MSR_X2APIC_FIRST, MSR_X2APIC_LAST - MSR_X2APIC_FIRST + 1]];
const BITS_PER_BYTE = 8;

/** Whether `index` is one of the MSRs routed to userspace. */
export function isUserspaceApicMsr(index: number): boolean {
  return USERSPACE_APIC_MSR_RANGES.some(([first, count]) => index >= first && index < first + count);
}

/** What KVM must offer to route the local APIC's MSRs to userspace. */
export const USERSPACE_APIC_MSR_CAPS = ['X86_USER_SPACE_MSR', 'X86_MSR_FILTER'] as const;

/** Makes the guest's accesses to the local APIC's MSRs exit to userspace (see above). Before any vCPU runs. */
export function routeApicMsrsToUserspace(vm: KvmVm): void {
  for (const name of USERSPACE_APIC_MSR_CAPS) {
    if (vm.checkExtension(KvmCap[name]) === 0) throw new IrqChipError(ErrorCode.ENODEV, `this KVM lacks KVM_CAP_${name}, which a userspace local APIC needs for its MSRs`);
  }
  const exitReasons = KvmMsrExitReason.FILTER | KvmMsrExitReason.INVAL | KvmMsrExitReason.UNKNOWN;
  vm.enableCapability(KvmCap.X86_USER_SPACE_MSR, BigInt(exitReasons), 'KVM_CAP_X86_USER_SPACE_MSR');
  const filter = new DataView(new ArrayBuffer(KVM_MSR_FILTER_BYTES));
  // flags 0: MSRs outside the ranges are allowed (KVM's). In a range a clear bit denies, so
  // all-zero bitmaps send every access of the range to us. KVM copies the bitmaps.
  const bitmaps = FILTERED_APIC_MSR_RANGES.map(([, count]) => new Uint8Array(Math.ceil(count / BITS_PER_BYTE)));
  FILTERED_APIC_MSR_RANGES.forEach(([first, count], index) => {
    const range = KVM_MSR_FILTER_RANGES_AT + index * KVM_MSR_FILTER_RANGE_BYTES;
    filter.setUint32(range, KvmMsrFilterFlag.READ | KvmMsrFilterFlag.WRITE, true);
    filter.setUint32(range + 4, count, true);
    filter.setUint32(range + 8, first, true);
    filter.setBigUint64(range + 16, addon.addressOf(bitmaps[index] ?? new Uint8Array(1)), true);
  });
  vm.ioctl(KvmIoctl.X86_SET_MSR_FILTER, filter, 'KVM_X86_SET_MSR_FILTER');
}
