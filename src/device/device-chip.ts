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
 *
 * The events come from the chip (`createChipEvent`): a KVM chip arms only eventfds, which the device
 * layer cannot make itself (it must not import `src/kvm`, nor load native code), so a chip whose
 * kernel consumes the events says which kind it needs with `createIrqEvent`.
 */

import { Event } from '../event/event.ts';
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
  /**
   * A new event of the kind this chip can arm. Optional: a chip without it arms memory events
   * (`Event.create()`). KVM's chips return an eventfd (`OsEvent`), because KVM_IRQFD takes only
   * file descriptors.
   */
  createIrqEvent?(): Event;
};

/** A new event that `chip` can arm: the chip's own kind, or a memory event when it names none. */
export function createChipEvent(chip: DeviceInterruptChip): Event {
  return chip.createIrqEvent?.() ?? Event.create();
}

/**
 * Lets go of an event made by `createChipEvent` once its owner is done with it: an OS event holds
 * a file descriptor, closed now rather than whenever the garbage collector gets to it. A memory
 * event holds nothing.
 */
export function releaseChipEvent(event: Event): void {
  if (isDisposable(event)) event[Symbol.dispose]();
}

function isDisposable(value: object): value is Disposable {
  return Symbol.dispose in value;
}

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
   * Arms the event on `gsi`; its route must already be in place (seed-apis.md §6.2). An event
   * that already holds signals is injected once, now:
   * - a chip that services its events itself (it returned an index) services it;
   * - a chip whose kernel consumes the event (no index: a KVM irqfd) has already done it. KVM's
   *   assign polls the eventfd and, when it is readable, schedules one injection (virt/kvm/eventfd.c
   *   `kvm_irqfd_assign` → `irqfd_inject`), but reads nothing, so the count stays until the next
   *   signal's wake-up (`irqfd_wakeup` reads it all) or a deassign (`irqfd_shutdown` reads it).
   *   Left there, a delivered interrupt would read as pending (`consumePending`, a PBA read). Every
   *   signal after the assign is drained by `irqfd_wakeup` under the eventfd's lock, so what this
   *   read finds is that stale count: it is cleared, not delivered again.
   */
  arm(gsi: number): void {
    if (this.armedGsi !== undefined) return;
    const index = this.chip.registerEdgeIrqEvent(gsi, this.edge, this.source);
    this.armedGsi = gsi;
    if (index === undefined) this.event.tryRead();
    else if (this.event.readCount() !== 0n) this.chip.serviceIrqEvent(index);
  }

  /**
   * Disarms the event; later signals accumulate in it. Before its route goes (§6.2). (KVM's
   * deassign also reads the eventfd, in `irqfd_shutdown`: only a count already injected can be
   * there, as above, and the deassign waits for a pending injection to finish.)
   */
  disarm(): void {
    if (this.armedGsi === undefined) return;
    this.chip.unregisterEdgeIrqEvent(this.armedGsi, this.edge);
    this.armedGsi = undefined;
  }
}
