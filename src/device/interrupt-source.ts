/**
 * What a device model sees of interrupts: groups of interrupt sources (seed 002, Dragonball
 * `dbs-interrupt`; seed-apis.md §3.1).
 *
 * A device may offer several kinds of interrupt, each a block of sources configured together: one
 * legacy INTx line, or a block of message-signalled vectors. A group is one such block.
 *
 * MSI-X is not a separate source type. Its vectors are plain MSI messages, so an MSI-X function is
 * an MSI group (`interruptType() === 'msi'`, one source per table entry) driven by the MSI-X
 * capability model (`msix-capability.ts`): the capability owns what is MSI-X specific — the table
 * the guest programs, the PBA, the per-vector and function masks, the enable bit — and turns guest
 * writes into the group's `enable`/`update`/`mask`/`unmask`, and PBA reads into
 * `getPendingState`. PCI MSI and non-PCI "generic" MSI (virtio-mmio) use the same group type with
 * their own register models. Dragonball does the same (seed-apis.md §3.1), and for the same reason:
 * delivery, routing and masking are identical for all three; only the guest's register interface
 * differs, and that belongs to the device's capability model, not to the interrupt path.
 */

import type { Event } from '../event/event.ts';

/** A sub-index into a group: 0 .. len()-1. */
export type InterruptIndex = number;

/** The kinds of interrupt source (Dragonball `InterruptSourceType`). */
export const InterruptSourceType = {
  /** A legacy line (INTx, ISA IRQ): exactly one source, on a fixed GSI below 24. */
  Legacy: 'legacy',
  /** Message-signalled interrupts: PCI MSI, PCI MSI-X and generic MSI. */
  Msi: 'msi',
} as const;
export type InterruptSourceType = (typeof InterruptSourceType)[keyof typeof InterruptSourceType];

/** A legacy source has nothing to configure: its GSI is the group's base, its pins are the chip's. */
export interface LegacyIrqSourceConfig {
  readonly kind: 'legacy';
}

/**
 * One MSI vector's message: the 64-bit address as two 32-bit halves, and the 32-bit data, as an
 * MSI or MSI-X table entry holds them (x86 layout: `src/x86/msi/msi-codec.ts`).
 */
export interface MsiIrqSourceConfig {
  readonly kind: 'msi';
  readonly addressLow: number;
  readonly addressHigh: number;
  readonly data: number;
}

export type InterruptSourceConfig = LegacyIrqSourceConfig | MsiIrqSourceConfig;

/**
 * A group of interrupt sources of one device (seed 002). Every method that takes an index throws
 * `IrqChipError('EINVAL')` for an index outside 0 .. len()-1, and every method but the three
 * read-only facts throws `EBADF` once the group has been destroyed (a closed handle, as a closed
 * eventfd is to the kernel); a throwing call changes nothing.
 *
 * Masking never loses an interrupt: a trigger on a masked (or not yet enabled) source is held
 * pending and delivered once when the source becomes deliverable; several triggers while masked
 * coalesce into that one delivery, as the MSI-X pending bit does.
 */
export interface InterruptSourceGroup {
  interruptType(): InterruptSourceType;
  /** Number of sources in the group. */
  len(): number;
  /**
   * Base of the group's interrupt source identifiers: for a legacy group its GSI; for an MSI group
   * the number of its first vector in the device's vector space (GSIs are allocated per vector,
   * lazily: see `MsiInterruptGroup`).
   */
  base(): number;
  /**
   * Lets the sources generate interrupts, with one config per source (EINVAL for another count or a
   * config of another kind; EBUSY if already enabled). Interrupts held pending on unmasked sources
   * are delivered now.
   */
  enable(configs: readonly InterruptSourceConfig[]): void;
  /** Stops the sources generating interrupts; pending interrupts are kept. A disabled group: no-op. */
  disable(): void;
  /** Changes one source's config (EINVAL before `enable`, or for a config of another kind). */
  update(index: InterruptIndex, config: InterruptSourceConfig): void;
  /** Raises an interrupt from a source: delivered now if deliverable, else held pending. */
  trigger(index: InterruptIndex): void;
  /**
   * The source's event: signalling it is a trigger that need not go through the VMM (an irqfd for
   * VFIO, vhost, or a device on another thread). While the source is masked its signals accumulate
   * in the event and `getPendingState` reports them.
   */
  notifier(index: InterruptIndex): Event;
  /** Masks a source: later triggers are held pending. */
  mask(index: InterruptIndex): void;
  /** Unmasks a source: an interrupt held pending is delivered once, now (if the group is enabled). */
  unmask(index: InterruptIndex): void;
  /**
   * Whether an interrupt is held pending on the source (masked, or the group not enabled), counting
   * the signals its notifier received meanwhile. A live source holds nothing: what it receives is
   * delivered.
   */
  getPendingState(index: InterruptIndex): boolean;
}
