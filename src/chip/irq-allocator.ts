/**
 * Allocation of interrupt numbers (GSIs) for devices (crosvm `SystemAllocator`'s IRQ pool).
 *
 * x86 starts at 9 (5 is the ACPI SCI and 8 the CMOS RTC, both fixed) and ends at 1023. After
 * `finalizeDevices` the chip moves the allocator past the IOAPIC's pins, so every GSI handed out
 * later (MSI, MSI-X) is ≥ 24 and can never collide with a pin route (seed-apis.md §2.3). A released
 * GSI is reused; an optional budget bounds how many may be outstanding, and allocation past it,
 * like allocation from an empty pool, fails with ENOSPC.
 */

import { ErrorCode, IrqChipError, check, checkRange } from '../base/errors.ts';

/** crosvm's x86 first dynamically allocated IRQ. */
export const FIRST_ALLOCATABLE_IRQ = 9;
/** crosvm's last allocatable IRQ. */
export const LAST_ALLOCATABLE_IRQ = 1023;

export class IrqAllocator {
  private next: number;
  private readonly released: number[] = [];
  private readonly outstanding = new Set<number>();

  constructor(
    first: number = FIRST_ALLOCATABLE_IRQ,
    private readonly last: number = LAST_ALLOCATABLE_IRQ,
    private readonly budget: number = Number.POSITIVE_INFINITY,
  ) {
    checkRange(first, 0, last, 'first IRQ');
    check(budget === Number.POSITIVE_INFINITY || (Number.isInteger(budget) && budget >= 0), ErrorCode.EINVAL, 'IRQ budget must be a non-negative integer or Infinity');
    this.next = first;
  }

  /** A free GSI; ENOSPC when the pool or the budget is spent. */
  allocate(): number {
    if (this.outstanding.size >= this.budget) {
      throw new IrqChipError(ErrorCode.ENOSPC, `IRQ budget of ${this.budget} is spent`);
    }
    const gsi = this.released.pop() ?? this.takeNext();
    this.outstanding.add(gsi);
    return gsi;
  }

  /** Returns a GSI to the pool; ENOENT if it is not outstanding. */
  release(gsi: number): void {
    if (!this.outstanding.delete(gsi)) throw new IrqChipError(ErrorCode.ENOENT, `IRQ ${gsi} was not allocated`);
    this.released.push(gsi);
  }

  /**
   * Skips every number below `floor` that was never handed out (crosvm leaks them on purpose):
   * later allocations are all ≥ `floor`. Released numbers below it are dropped too.
   */
  advanceTo(floor: number): void {
    checkRange(floor, 0, Number.MAX_SAFE_INTEGER, 'IRQ floor');
    this.next = Math.max(this.next, floor);
    const kept = this.released.filter((gsi) => gsi >= floor);
    this.released.length = 0;
    this.released.push(...kept);
  }

  /** How many GSIs are allocated and not yet released. */
  get allocatedCount(): number {
    return this.outstanding.size;
  }

  private takeNext(): number {
    if (this.next > this.last) throw new IrqChipError(ErrorCode.ENOSPC, `no IRQ left below ${this.last + 1}`);
    return this.next++;
  }
}
