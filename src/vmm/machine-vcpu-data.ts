/**
 * What the machine hands each vCPU worker (structured-clone data): its view of the chip, the
 * device mailbox and the ranges to forward through it, the status block it reports to, and, for
 * the bootstrap processor, where the loaded image starts.
 */

import type { ChipDescriptor } from '../kvm/chip-mode.ts';
import type { GuestTscClockDescriptor } from '../kvm/kvm-guest-tsc.ts';
import type { BootEntry } from './loader/loaded-image.ts';

/** A device range on the device thread's bus, which the vCPU forwards there. */
export interface ForwardedRangeSpec {
  readonly name: string;
  readonly base: number;
  readonly length: number;
}

export interface MachineVcpuData {
  readonly chip: ChipDescriptor;
  readonly vcpuCount: number;
  readonly mailbox: SharedArrayBuffer;
  readonly forwarded: { readonly io: readonly ForwardedRangeSpec[]; readonly mmio: readonly ForwardedRangeSpec[] };
  readonly status: SharedArrayBuffer;
  /** The userspace chip's clock, which follows the guest's TSC (src/kvm/kvm-guest-tsc.ts); absent for KVM's local APICs. */
  readonly guestTsc?: GuestTscClockDescriptor;
  /** The bootstrap processor's entry; absent for application processors. */
  readonly boot?: BootEntry;
}
