/**
 * `checkCapability` for every chip of this package (`UserspaceIrqChip`, `KvmKernelIrqChip`,
 * `KvmSplitIrqChip`): each has local APICs with x2APIC mode (our `LocalApic`, or KVM's) and gets and
 * sets MP states (our LAPIC's, or KVM_GET/SET_MP_STATE). Only the TSC-deadline timer depends on
 * the chip: whether its local APICs have that timer mode.
 */

import type { IrqChipCap } from './types.ts';

export function chipHasCapability(cap: IrqChipCap, tscDeadlineTimer: boolean): boolean {
  switch (cap) {
    case 'tsc-deadline-timer':
      return tscDeadlineTimer;
    case 'x2apic':
    case 'mp-state-get-set':
      return true;
  }
}
