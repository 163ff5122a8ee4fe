/**
 * `PciBarDecoder`: puts the functions' memory BARs on the device thread's MMIO bus where the guest
 * (or the firmware) programmed them, as a host bridge forwards memory cycles to the function that
 * claims them (PCI Local Bus 3.0 §6.2.5.1).
 *
 * A BAR is decoded while its function's Memory Space bit (Command bit 1) is set, at the address
 * its register holds. Moving it (a new address) moves its range; clearing Memory Space removes it.
 * This machine forwards only `PCI_MMIO_WINDOW` (machine-layout.ts) to the PCI bus: RAM lies below
 * it and the IOAPIC and local APICs above it, so a BAR programmed outside the window, or
 * overlapping a BAR already decoded, is not decoded (the guest's mistake, counted once per
 * address it was given); it is decoded once it is given a free address in the window, or when
 * the BAR in its way goes. (Real hardware would decode such a BAR and clash with RAM or another
 * device; an overlap's outcome is undefined, §6.2.5.1.)
 *
 * Size probing writes all ones to a BAR: done with Memory Space on (which Linux avoids), the BAR
 * lands at the top of the 32-bit space, outside the window, and is not decoded until restored.
 * Used on the device thread; `sync()` after every configuration write that can move a BAR.
 */

import { IrqChipError } from '../../../base/errors.ts';
import type { Bus } from '../../../chip/bus.ts';
import { PciCommand, PciConfigOffset, barOffset, type PciFunction, type PciMemoryBar } from './pci-function.ts';

export const PCI_BAR_DECODER_COUNTER_NAMES = [
  /** A BAR given an address (with Memory Space on) outside the PCI window: not decoded. */
  'barsOutsideWindow',
  /** A BAR given an address overlapping a decoded BAR or another device: not decoded. */
  'barsOverlapping',
] as const;
export type PciBarDecoderCounterName = (typeof PCI_BAR_DECODER_COUNTER_NAMES)[number];

/** A range of guest-physical addresses. */
export interface AddressWindow {
  readonly base: number;
  readonly bytes: number;
}

const DWORD_BYTES = 4;

/** One BAR of one function, and what the decoder did with it. */
interface TrackedBar {
  readonly function: PciFunction;
  readonly bar: PciMemoryBar;
  /** Where its regions are on the bus, or undefined. */
  placedAt: number | undefined;
  /** The address it was refused at (counted once), or undefined. */
  refusedAt: number | undefined;
}

export class PciBarDecoder {
  private readonly tracked: TrackedBar[] = [];
  private readonly counts: Record<PciBarDecoderCounterName, number> = { barsOutsideWindow: 0, barsOverlapping: 0 };

  constructor(
    private readonly mmio: Bus,
    private readonly window: AddressWindow,
  ) {}

  /** Tracks `fn`'s memory BARs (decoded from the next `sync`). */
  add(fn: PciFunction): void {
    for (const bar of fn.memoryBars) this.tracked.push({ function: fn, bar, placedAt: undefined, refusedAt: undefined });
  }

  /**
   * Brings the bus in line with every function's Command and BARs: first removes what moved or
   * stopped decoding, then places what should decode (in the order the functions were added, so
   * a BAR already decoded keeps its place against a newcomer).
   */
  sync(): void {
    const wanted = this.tracked.map((entry) => wantedAddress(entry.function, entry.bar));
    this.tracked.forEach((entry, index) => {
      if (entry.placedAt !== undefined && entry.placedAt !== wanted[index]) this.unplace(entry);
      if (wanted[index] === undefined) entry.refusedAt = undefined;
    });
    this.tracked.forEach((entry, index) => {
      const address = wanted[index];
      if (address !== undefined && entry.placedAt === undefined) this.place(entry, address);
    });
  }

  /** Takes every BAR off the bus and stops tracking them. */
  clear(): void {
    for (const entry of this.tracked) this.unplace(entry);
    this.tracked.length = 0;
  }

  /** Where BAR `index` of `fn` is decoded now, or undefined. */
  decodedAddress(fn: PciFunction, index: number): number | undefined {
    return this.tracked.find((entry) => entry.function === fn && entry.bar.index === index)?.placedAt;
  }

  counters(): Readonly<Record<PciBarDecoderCounterName, number>> {
    return { ...this.counts };
  }

  // ---- Internals ------------------------------------------------------------------------------

  private place(entry: TrackedBar, address: number): void {
    const { bar } = entry;
    if (address < this.window.base || address + bar.bytes > this.window.base + this.window.bytes) {
      this.refuse(entry, address, 'barsOutsideWindow');
      return;
    }
    if (this.tracked.some((other) => other.placedAt !== undefined && address < other.placedAt + other.bar.bytes && other.placedAt < address + bar.bytes)) {
      this.refuse(entry, address, 'barsOverlapping');
      return;
    }
    const inserted: number[] = [];
    try {
      for (const region of bar.regions) {
        this.mmio.insert(region.device, address + region.offset, region.bytes);
        inserted.push(address + region.offset);
      }
    } catch (error) {
      // Something that is not a BAR (another device on the bus) holds part of the range.
      if (!(error instanceof IrqChipError)) throw error;
      for (const base of inserted) this.mmio.remove(base);
      this.refuse(entry, address, 'barsOverlapping');
      return;
    }
    entry.placedAt = address;
    entry.refusedAt = undefined;
  }

  private unplace(entry: TrackedBar): void {
    const { placedAt } = entry;
    if (placedAt === undefined) return;
    for (const region of entry.bar.regions) this.mmio.remove(placedAt + region.offset);
    entry.placedAt = undefined;
  }

  private refuse(entry: TrackedBar, address: number, counter: PciBarDecoderCounterName): void {
    if (entry.refusedAt === address) return;
    entry.refusedAt = address;
    this.counts[counter]++;
  }
}

/** The address a BAR should decode at: its register's, while Memory Space is on. */
function wantedAddress(fn: PciFunction, bar: PciMemoryBar): number | undefined {
  if ((fn.readConfig(PciConfigOffset.Command, 2) & PciCommand.MemorySpace) === 0) return undefined;
  return fn.readConfig(barOffset(bar.index), DWORD_BYTES);
}
