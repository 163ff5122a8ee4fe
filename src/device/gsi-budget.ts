/**
 * GSI budgets. Every MSI vector in use and every irqfd route holds one GSI, and a VM's GSIs are few
 * (KVM_MAX_IRQ_ROUTES is 4096; crosvm hands out 24..1023). A device with a large MSI-X table (an
 * NVMe controller has up to 2048 entries) could take them all, so each device draws from its own
 * budget, which draws from the VM's (seed-apis.md §6.11). The VM's pool is the chip's
 * `IrqAllocator`, whose own budget bounds the whole VM. A spent budget answers ENOSPC.
 */

import { ErrorCode, IrqChipError, checkRange } from '../base/errors.ts';

/** Where GSIs come from: `IrqAllocator` is one; `DeviceGsiBudget` is one over another. */
export interface GsiSource {
  /** A free GSI; ENOSPC when none is left. */
  allocate(): number;
  /** Returns a GSI taken from this source. */
  release(gsi: number): void;
}

/** Dragonball's default cap on one device's MSI vectors (`DEFAULT_MAX_MSI_IRQS_PER_DEVICE`). */
export const DEFAULT_DEVICE_GSI_BUDGET = 256;

/** A device's share of the VM's GSIs: at most `limit` outstanding at once. */
export class DeviceGsiBudget implements GsiSource {
  private readonly outstanding = new Set<number>();

  constructor(
    private readonly vm: GsiSource,
    readonly limit: number = DEFAULT_DEVICE_GSI_BUDGET,
  ) {
    checkRange(limit, 0, Number.MAX_SAFE_INTEGER, 'device GSI budget');
  }

  allocate(): number {
    if (this.outstanding.size >= this.limit) {
      throw new IrqChipError(ErrorCode.ENOSPC, `the device's GSI budget of ${this.limit} is spent`);
    }
    const gsi = this.vm.allocate();
    this.outstanding.add(gsi);
    return gsi;
  }

  /** ENOENT for a GSI this device does not hold. */
  release(gsi: number): void {
    if (!this.outstanding.has(gsi)) throw new IrqChipError(ErrorCode.ENOENT, `GSI ${gsi} is not held by this device`);
    this.vm.release(gsi);
    this.outstanding.delete(gsi);
  }

  /** How many GSIs the device holds now. */
  get inUse(): number {
    return this.outstanding.size;
  }
}
