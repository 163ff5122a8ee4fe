/**
 * I/O-port and MMIO buses: ranges of addresses mapped to devices (crosvm `devices::Bus`).
 *
 * `finalizeDevices` places the chip's controllers here (PIC ports, the IOAPIC window, the local
 * APIC window); a VMM forwards the guest's port and MMIO exits to `read`/`write`. A device sees
 * the offset into its range, the access size, and which vCPU made the access (the local APIC
 * window is per vCPU). Accesses that hit no device are the guest's business: reads return all ones
 * and writes are dropped, and both are counted.
 */

import { ErrorCode, IrqChipError, checkRange } from '../base/errors.ts';
import { allOnes } from '../base/integers.ts';

/** The `addressLimit` of a port bus: x86 has 64 Ki I/O ports, 0 to 0xFFFF (SDM vol. 1, "I/O Port Addressing"). */
export const IO_ADDRESS_LIMIT = 0x10000;
/** The `addressLimit` of an MMIO bus: physical addresses are at most 52 bits wide (MAXPHYADDR ≤ 52, SDM vol. 3). */
export const MMIO_ADDRESS_LIMIT = 2 ** 52;

/** Who made a bus access. */
export interface BusAccessor {
  /** The vCPU whose exit this is. */
  readonly vcpuIndex: number;
}

export interface BusDevice {
  /** A short name, for errors and observation. */
  readonly busName: string;
  read(offset: number, size: number, accessor: BusAccessor): number;
  write(offset: number, size: number, value: number, accessor: BusAccessor): void;
}

interface BusRange {
  readonly base: number;
  readonly length: number;
  readonly device: BusDevice;
}

/**
 * Access sizes a bus carries: 1, 2, 4 or 8 bytes. Values are JavaScript numbers of at most 32
 * bits: the controllers here define nothing wider, and an 8-byte access carries its low half.
 */
const ACCESS_SIZES: ReadonlySet<number> = new Set([1, 2, 4, 8]);

export class Bus {
  /** Ranges sorted by base; they never overlap. */
  private ranges: BusRange[] = [];
  private unclaimedReads = 0;
  private unclaimedWrites = 0;

  /**
   * @param name 'io' or 'mmio', for messages.
   * @param addressLimit one past the highest address (`IO_ADDRESS_LIMIT` for ports, `MMIO_ADDRESS_LIMIT` for MMIO).
   */
  constructor(
    readonly name: string,
    private readonly addressLimit: number,
  ) {}

  /** Places `device` at [base, base + length). EEXIST when that overlaps a range already placed. */
  insert(device: BusDevice, base: number, length: number): void {
    checkRange(length, 1, this.addressLimit, `${this.name} bus range length`);
    checkRange(base, 0, this.addressLimit - length, `${this.name} bus base`);
    const clash = this.ranges.find((range) => base < range.base + range.length && range.base < base + length);
    if (clash !== undefined) {
      throw new IrqChipError(
        ErrorCode.EEXIST,
        `${this.name} bus: ${device.busName} at 0x${base.toString(16)}+0x${length.toString(16)} overlaps ${clash.device.busName} at 0x${clash.base.toString(16)}`,
      );
    }
    this.ranges = [...this.ranges, { base, length, device }].sort((a, b) => a.base - b.base);
  }

  /** Removes the range that starts at `base`; ENOENT when none does. */
  remove(base: number): void {
    const index = this.ranges.findIndex((range) => range.base === base);
    if (index < 0) throw new IrqChipError(ErrorCode.ENOENT, `${this.name} bus: nothing placed at 0x${base.toString(16)}`);
    this.ranges = this.ranges.filter((_, i) => i !== index);
  }

  /** The device and offset an address falls in, or undefined. */
  resolve(address: number): { readonly device: BusDevice; readonly offset: number } | undefined {
    let low = 0;
    let high = this.ranges.length - 1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      const range = this.ranges[middle];
      if (range === undefined) break;
      if (address < range.base) high = middle - 1;
      else if (address >= range.base + range.length) low = middle + 1;
      else return { device: range.device, offset: address - range.base };
    }
    return undefined;
  }

  /** A guest read. Unclaimed addresses read as all ones (an undriven bus), counted. */
  read(address: number, size: number, accessor: BusAccessor): number {
    checkAccessSize(size);
    const hit = this.resolve(address);
    if (hit === undefined) {
      this.unclaimedReads++;
      return allOnes(size);
    }
    return hit.device.read(hit.offset, size, accessor);
  }

  /** A guest write. Unclaimed addresses drop it, counted. */
  write(address: number, size: number, value: number, accessor: BusAccessor): void {
    checkAccessSize(size);
    const hit = this.resolve(address);
    if (hit === undefined) {
      this.unclaimedWrites++;
      return;
    }
    hit.device.write(hit.offset, size, value, accessor);
  }

  counters(): { readonly unclaimedReads: number; readonly unclaimedWrites: number } {
    return { unclaimedReads: this.unclaimedReads, unclaimedWrites: this.unclaimedWrites };
  }
}

/** Whether a bus carries accesses of `size` bytes (1, 2, 4 or 8). */
export function isBusAccessSize(size: number): boolean {
  return ACCESS_SIZES.has(size);
}

function checkAccessSize(size: number): void {
  if (!isBusAccessSize(size)) throw new IrqChipError(ErrorCode.EINVAL, `access size must be 1, 2, 4 or 8 bytes, got ${String(size)}`);
}

