/**
 * `ResampledLevelLine`: a level-triggered interrupt that a device on the device thread drives
 * through an `IrqLevelEvent` registered with the chip, with crosvm's and KVM's resample semantics
 * (seed-apis.md §2.2; KVM_IRQFD_FLAG_RESAMPLE): the device signals the trigger and the chip holds
 * the line asserted until the guest's EOI; the chip then lowers the line and signals the resample
 * event, and the device, which never lowers the line itself, looks at its state again and
 * triggers once more if it still wants service.
 *
 * The device says what it wants with `wanted()` and calls `update()` whenever that may have
 * become true. The line triggers at most once per resample: `held` says a trigger is in force
 * (the chip holds the line until the EOI), so further updates cost nothing. The resample event is
 * awaited on the device thread without blocking it (`Event.waitAsync`: `Atomics.waitAsync` for
 * the userspace chip's memory events, `uv_poll` for a KVM chip's eventfds), while the EOI that
 * signals it happens on a vCPU thread (our local APIC) or in the kernel (KVM's).
 *
 * Hardware differences that follow from the semantics, not from this model: a device that stops
 * wanting service cannot lower the line before the guest's EOI (an IOAPIC pin masked meanwhile
 * delivers the interrupt when unmasked); and where the host's local APIC ends an interrupt at
 * delivery (KVM's on this PVM host, docs/architecture.md decision 32) the resample comes before
 * the guest's handler has run, so a device that still has the work its handler is about to do
 * triggers again and the guest sees one more interrupt, with nothing to do.
 */

import type { IrqChip } from '../../../chip/irq-chip.ts';
import type { IrqEventSource } from '../../../chip/types.ts';
import { createChipEvent, releaseChipEvent, type DeviceInterruptChip } from '../../../device/device-chip.ts';
import { IrqLevelEvent } from '../../../event/irq-event.ts';

/** What the line needs from the chip: the device layer's view of it, with level events (of the chip's own kind: `createChipEvent`). */
export type LevelEventChip = DeviceInterruptChip & Pick<IrqChip, 'registerLevelIrqEvent' | 'unregisterLevelIrqEvent'>;

export const RESAMPLED_LEVEL_LINE_COUNTER_NAMES = [
  /** Triggers signalled: the first assertion, and each one after a resample. */
  'triggers',
  /** Resamples received: the guest's EOIs of the line. */
  'resamples',
] as const;
export type ResampledLevelLineCounterName = (typeof RESAMPLED_LEVEL_LINE_COUNTER_NAMES)[number];

export interface ResampledLevelLineOptions {
  readonly chip: LevelEventChip;
  readonly gsi: number;
  readonly source: IrqEventSource;
  /** Whether the device wants the line asserted now. */
  readonly wanted: () => boolean;
}

export class ResampledLevelLine {
  private readonly event: IrqLevelEvent;
  private readonly chip: LevelEventChip;
  private readonly gsi: number;
  private readonly wanted: () => boolean;
  /** A trigger is in force: the chip holds the line until the guest's EOI resamples it. */
  private held = false;
  private closed = false;
  private readonly resampleLoop: Promise<void>;
  private readonly counts: Record<ResampledLevelLineCounterName, number> = { triggers: 0, resamples: 0 };

  /** Registers the level event on `gsi` and starts awaiting its resamples. */
  constructor(options: ResampledLevelLineOptions) {
    const { chip, gsi, source } = options;
    this.chip = chip;
    this.gsi = gsi;
    this.wanted = options.wanted;
    this.event = IrqLevelEvent.fromEventPair(createChipEvent(chip), createChipEvent(chip));
    try {
      chip.registerLevelIrqEvent(gsi, this.event, source);
    } catch (error) {
      this.releaseEvents();
      throw error;
    }
    this.resampleLoop = this.serviceResamples();
  }

  /** The device's state changed: triggers when it wants service and no trigger is in force. */
  update(): void {
    if (this.held || this.closed || !this.wanted()) return;
    this.held = true;
    this.counts.triggers++;
    this.event.trigger();
  }

  counters(): Readonly<Record<ResampledLevelLineCounterName, number>> {
    return { ...this.counts };
  }

  /** Unregisters the event, stops awaiting resamples and releases the events. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.chip.unregisterLevelIrqEvent(this.gsi, this.event);
    this.event.triggerResample(); // wakes the loop, which sees `closed`
    await this.resampleLoop;
    this.releaseEvents();
  }

  private async serviceResamples(): Promise<void> {
    const resample = this.event.getResample();
    for (;;) {
      await resample.waitAsync();
      if (this.closed) return;
      if (!this.event.clearResample()) continue;
      this.counts.resamples++;
      this.held = false;
      this.update();
    }
  }

  private releaseEvents(): void {
    releaseChipEvent(this.event.getTrigger());
    releaseChipEvent(this.event.getResample());
  }
}
