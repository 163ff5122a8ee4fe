/**
 * The part of a chip the device layer uses, and the irqfd built on it.
 *
 * An irqfd is an event bound to a GSI: while it is *armed*, a signal on the event injects the GSI
 * without the device asking anyone (KVM_IRQFD). The `IrqChip` interface already has that shape:
 * `registerEdgeIrqEvent(gsi, event)` arms (on a KVM chip it is KVM_IRQFD assign; on the userspace
 * chip the service thread then consumes the event and asserts the GSI), `unregisterEdgeIrqEvent`
 * disarms. While disarmed, nothing consumes the event, so its signals accumulate in its counter:
 * that is how masking keeps interrupts (seed-apis.md §6.1), and where pending state is read from
 * (§6.3).
 */

import type { Event } from '../event/event.ts';
import { IrqEdgeEvent } from '../event/irq-event.ts';
import type { IrqChip } from '../chip/irq-chip.ts';
import type { IrqEventSource } from '../chip/types.ts';
import type { IrqRoute } from '../routing/irq-route.ts';

/**
 * What the device layer needs from a chip. `UserspaceIrqChip` has all of it; `IrqChip` lacks
 * `routes()` (reading the table is how one MSI route is changed without disturbing the others).
 * Registration is done by the chip's owner, so groups and routes live on the owner's thread.
 */
export type DeviceInterruptChip = Pick<
  IrqChip,
  'registerEdgeIrqEvent' | 'unregisterEdgeIrqEvent' | 'setIrqRoutes' | 'serviceIrq' | 'serviceIrqEvent'
> & {
  /** The routes now in force. */
  routes(): IrqRoute[];
};

/** One event that can be armed on a GSI of a chip, and disarmed. */
export class ChipIrqFd {
  private readonly edge: IrqEdgeEvent;
  private armedGsi: number | undefined;

  constructor(
    private readonly chip: DeviceInterruptChip,
    readonly event: Event,
    private readonly source: IrqEventSource,
  ) {
    this.edge = IrqEdgeEvent.fromEvent(event);
  }

  /**
   * Arms the event on `gsi`; its route must already be in place (seed-apis.md §6.2). Like KVM's
   * assign, which injects at once when the eventfd is already readable (§4.2), an event that holds
   * signals is serviced now, when the chip services its events itself.
   */
  arm(gsi: number): void {
    if (this.armedGsi !== undefined) return;
    const index = this.chip.registerEdgeIrqEvent(gsi, this.edge, this.source);
    this.armedGsi = gsi;
    if (index !== undefined && this.event.readCount() !== 0n) this.chip.serviceIrqEvent(index);
  }

  /** Disarms the event; later signals accumulate in it. Before its route goes (§6.2). */
  disarm(): void {
    if (this.armedGsi === undefined) return;
    this.chip.unregisterEdgeIrqEvent(this.armedGsi, this.edge);
    this.armedGsi = undefined;
  }
}
