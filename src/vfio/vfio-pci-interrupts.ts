/**
 * `VfioPciInterrupts`: the VMM side of a passed-through PCI function's interrupts. It stands
 * between the guest's view (the function's INTx pin, its MSI and MSI-X capabilities, modelled by
 * the device layer's `MsiCapability` and `MsixCapability` over the groups `msi` and `msix`)
 * and the host's VFIO device (`VfioIrqDevice`: the emulated `VfioIrqs`, or the real ioctls), and
 * makes the fewest VFIO_DEVICE_SET_IRQS calls that keep the host in step (seed-apis.md §5.7,
 * §6.13–17, §6.27).
 *
 * INTx. The pin is wired to an `IrqLevelEvent` registered on the chip at the INTx GSI: the host
 * signals its trigger (TRIGGER + EVENTFD) and listens on its resample event (UNMASK + EVENTFD), so
 * the guest's EOI, which makes the chip lower the line and signal resample, unmasks the host's
 * automasked INTx without any trap, and a device still asserting is re-delivered. Two calls enable
 * it: crosvm's extra MASK and UNMASK (a "known state") are not needed, because a fresh INTx starts
 * unmasked, and an unmask eventfd that is already readable when it is installed is honoured at once
 * by the kernel (`vfio_virqfd_enable` polls it) and by `VfioIrqs`. INTx is the host's index
 * whenever the guest has neither MSI nor MSI-X enabled.
 *
 * Who services the unmask eventfd: on the real kernel, the kernel (a virqfd). The emulated kernel
 * has no wait queue, so the chip owner's service loop waits on `serviceEvents()` (with `waitAsync`,
 * which does not consume) and calls `service()`, which lets the device consume the count and
 * unmask. The loop must never read that event itself: the count is the unmask. A resample that
 * arrives while `service()` runs stays in the event for the next pass, and `VfioIrqs` also
 * services it before every SET_IRQS and every raise, so an unmask is never lost nor late.
 *
 * MSI and MSI-X. Each vector in use has an `IrqFdRoute` (the group's), whose event the host vector
 * is bound to. The host side follows the guest with these calls, and no others:
 * - the guest enables the index: disable the other index (or INTx), then one enable call binding
 *   the vectors already in use; with none in use, vector 0 with fd -1 (§6.13: the physical
 *   function is in MSI-X mode with nothing bound, as crosvm and QEMU do);
 * - a vector's first unmask: one bind call covering the new vectors (a batch of unmasks, such as a
 *   Function Mask clear, is one call); past the host's vector count under NORESIZE, a resize
 *   instead: the live routes are masked (held), the index disabled and re-enabled with the new
 *   count and every binding, then the routes unmasked (replayed), §6.14 and §6.27. Nothing is lost
 *   across it: what the device sent before the window is in our route events, which the window
 *   does not touch, and what it holds for entries that had no host vector it sends when they are
 *   bound (`VfioIrqs`' pending bits). Host vectors grow to the highest vector in use + 1, as QEMU
 *   grows them; with dynamic MSI-X (NORESIZE clear) the new vectors are simply bound;
 * - mask, unmask of a vector in use, the Function Mask, and message changes: no call (the route
 *   does it, §6.1, §6.12);
 * - the guest disables the index: one disable call (then INTx again, if wired).
 *
 * Failures (§6.16). A call the host refuses is counted; then the full intended state is sent again
 * (the kernel has unbound every vector of a failed block, and an enable that fails enables
 * nothing); if that fails too, the vectors that came into use in this access are given up (masked
 * for delivery, retried at their next unmask, `vectorsRefused`) and the rest sent again. Guest
 * accesses never throw because of the host.
 *
 * Lives on the chip owner's thread, with the chip's event servicing (routes register events).
 */

import { check, checkRange, ErrorCode, IrqChipError } from '../base/errors.ts';
import type { IrqChip } from '../chip/irq-chip.ts';
import type { IrqEventSource } from '../chip/types.ts';
import { createChipEvent, type DeviceInterruptChip } from '../device/device-chip.ts';
import type { GsiSource } from '../device/gsi-budget.ts';
import { IrqFdRouteFactory } from '../device/irqfd-route.ts';
import { MsiRouteWriter } from '../device/msi-route-writer.ts';
import type { Event } from '../event/event.ts';
import { IrqLevelEvent } from '../event/irq-event.ts';
import { irqInfoOf, type VfioIrqDevice } from './vfio-irq-device.ts';
import {
  irqSetEventfds,
  irqSetNone,
  VFIO_EVENTFD_NONE,
  VFIO_IRQ_INFO_NORESIZE,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_PCI_MSIX_IRQ_INDEX,
} from './vfio-uapi.ts';
import { VfioVectorGroup, type VectorGroupHost } from './vfio-vector-group.ts';

/** What the VMM side needs from the chip: the device layer's part, and level events for INTx. */
export type VfioInterruptChip = DeviceInterruptChip & Pick<IrqChip, 'registerLevelIrqEvent' | 'unregisterLevelIrqEvent'>;

export interface VfioPciInterruptsOptions {
  /** The device's VFIO file: the emulated `VfioIrqs` or the real one. */
  readonly device: VfioIrqDevice;
  readonly chip: VfioInterruptChip;
  /** GSIs for the vectors' routes: the device's budget, or the VM's allocator. */
  readonly gsis: GsiSource;
  /** The GSI the function's INTx pin is routed to; omitted: INTx is not used. EINVAL if the function has no pin. */
  readonly intxGsi?: number;
  /** Shared with other users of the chip to batch route updates; default: a writer of its own. */
  readonly routes?: MsiRouteWriter;
  /** Who registers the events with the chip. */
  readonly source?: IrqEventSource;
}

export const VFIO_PCI_COUNTER_NAMES = [
  /** SET_IRQS calls made, by kind: INTx TRIGGER + EVENTFD (the level event's trigger). */
  'setIrqsIntxTrigger',
  /** INTx UNMASK + EVENTFD (the level event's resample). */
  'setIrqsIntxUnmask',
  /** MSI/MSI-X TRIGGER + EVENTFD on the inactive index: enable with bindings. */
  'setIrqsEnable',
  /** MSI/MSI-X TRIGGER + EVENTFD on the active index: bind vectors. */
  'setIrqsBind',
  /** TRIGGER + DATA_NONE, count 0: disable the active index. */
  'setIrqsDisable',
  /** Calls the host refused (each also counted in its kind). */
  'setIrqsFailed',
  /** Full intended state sent again after a refusal (§6.16). */
  'stateResends',
  /** NORESIZE growths: disable and re-enable with more vectors. */
  'resizes',
  /** Vectors the host could not take, given up until their next unmask. */
  'vectorsRefused',
  /** Vector unmasks that found no GSI left. */
  'gsiExhausted',
] as const;
export type VfioPciCounterName = (typeof VFIO_PCI_COUNTER_NAMES)[number];
type SetIrqsKind = 'setIrqsIntxTrigger' | 'setIrqsIntxUnmask' | 'setIrqsEnable' | 'setIrqsBind' | 'setIrqsDisable';

const DEFAULT_SOURCE: IrqEventSource = { deviceId: 0, queueId: 0, deviceName: 'vfio-pci' };
/** The host's binding of a vector is not known (a block failed part-way). */
const UNKNOWN_BINDING = -2;

/** The INTx pin's wiring: the level event on the chip and the numbers the host knows its halves by. */
interface IntxWiring {
  readonly gsi: number;
  readonly level: IrqLevelEvent;
  readonly triggerFd: number;
  readonly resampleFd: number;
}

export class VfioPciInterrupts implements Disposable {
  /** The MSI vectors, for `MsiCapability`; undefined when the function has no MSI capability. */
  readonly msi: VfioVectorGroup | undefined;
  /** The MSI-X vectors, for an `MsixCapability`; undefined when the function has no MSI-X capability. */
  readonly msix: VfioVectorGroup | undefined;
  private readonly device: VfioIrqDevice;
  private readonly chip: VfioInterruptChip;
  private readonly routes: MsiRouteWriter;
  private readonly intx: IntxWiring | undefined;
  /** INTx could be enabled on the host (false after the host refused it, e.g. ENODEV). */
  private intxUsable: boolean;
  /** MSI-X vectors can be bound past the enabled count (the host cleared NORESIZE). */
  private readonly dynamicMsix: boolean;
  /** The index the host has enabled, as far as the calls made tell. */
  private hostIndex: number | null = null;
  /** Host vectors allocated to the active MSI/MSI-X index. */
  private hostVectorCount = 0;
  /** The fd the host has bound to each vector of the active index (-1 none, UNKNOWN_BINDING). */
  private readonly hostFds: Int32Array;
  private batchDepth = 0;
  private disposed = false;
  private readonly counts = Object.fromEntries(VFIO_PCI_COUNTER_NAMES.map((name) => [name, 0])) as Record<VfioPciCounterName, number>;

  constructor(options: VfioPciInterruptsOptions) {
    this.device = options.device;
    this.chip = options.chip;
    this.routes = options.routes ?? new MsiRouteWriter(options.chip);
    const source = options.source ?? DEFAULT_SOURCE;
    const factory = new IrqFdRouteFactory({ chip: options.chip, gsis: options.gsis, routes: this.routes, source });
    const host: VectorGroupHost = {
      batch: (body) => this.batch(body),
      newRoute: () => factory.newIrqFdRoute(),
      openEventFd: (event) => this.device.openEventFd(event),
      closeEventFd: (fd) => {
        this.device.closeEventFd(fd);
      },
      countGsiExhausted: () => {
        this.counts.gsiExhausted++;
      },
    };
    const msiInfo = irqInfoOf(this.device, VFIO_PCI_MSI_IRQ_INDEX);
    const msixInfo = irqInfoOf(this.device, VFIO_PCI_MSIX_IRQ_INDEX);
    this.msi = msiInfo.count > 0 ? new VfioVectorGroup(VFIO_PCI_MSI_IRQ_INDEX, msiInfo.count, host) : undefined;
    this.msix = msixInfo.count > 0 ? new VfioVectorGroup(VFIO_PCI_MSIX_IRQ_INDEX, msixInfo.count, host) : undefined;
    this.dynamicMsix = (msixInfo.flags & VFIO_IRQ_INFO_NORESIZE) === 0;
    this.hostFds = new Int32Array(Math.max(msiInfo.count, msixInfo.count)).fill(VFIO_EVENTFD_NONE);
    this.intx = options.intxGsi === undefined ? undefined : this.wireIntx(options.intxGsi, source);
    this.intxUsable = this.intx !== undefined;
    this.batch(() => undefined);
  }

  // ---- The owner's service loop -----------------------------------------------------------------

  /** Events whose readiness means `service()` has work: the INTx resample. Wait on them; never read them. */
  serviceEvents(): readonly Event[] {
    return this.intx === undefined ? [] : [this.intx.level.getResample()];
  }

  /** Lets the device run the work its eventfds asked for (the INTx unmask). Cheap when there is none. */
  service(): void {
    this.device.serviceIrqfds();
  }

  // ---- Observation ------------------------------------------------------------------------------

  /** The INTx level event registered on the chip, or undefined when INTx is not wired. */
  intxLevelEvent(): IrqLevelEvent | undefined {
    return this.intx?.level;
  }

  /** The index the host has enabled (INTx, MSI, MSI-X), or null. */
  activeHostIndex(): number | null {
    return this.hostIndex;
  }

  counters(): Readonly<Record<VfioPciCounterName, number>> {
    return { ...this.counts };
  }

  /** Total SET_IRQS calls made. */
  setIrqsCalls(): number {
    const { setIrqsIntxTrigger, setIrqsIntxUnmask, setIrqsEnable, setIrqsBind, setIrqsDisable } = this.counts;
    return setIrqsIntxTrigger + setIrqsIntxUnmask + setIrqsEnable + setIrqsBind + setIrqsDisable;
  }

  /**
   * Runs `body` as one guest access: the route changes it makes are pushed once, then the host is
   * brought up to date once (the capability models wrap each access in it).
   */
  batch<T>(body: () => T): T {
    check(!this.disposed, ErrorCode.EBADF, 'the VFIO interrupts were disposed');
    this.batchDepth++;
    try {
      return this.routes.batch(body);
    } finally {
      this.batchDepth--;
      // After the route push: routes made in `body` are in force before the host signals them.
      if (this.batchDepth === 0) this.reconcile();
    }
  }

  /** Disables the host's interrupts, frees every route and the INTx registration. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.intxUsable = false;
    this.batch(() => {
      this.msix?.disable();
      this.msi?.disable();
    });
    this.disposed = true;
    if (this.intx === undefined) return;
    this.chip.unregisterLevelIrqEvent(this.intx.gsi, this.intx.level);
    this.device.closeEventFd(this.intx.triggerFd);
    this.device.closeEventFd(this.intx.resampleFd);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  // ---- Bringing the host in step ------------------------------------------------------------------

  private wireIntx(gsi: number, source: IrqEventSource): IntxWiring {
    checkRange(gsi, 0, Number.MAX_SAFE_INTEGER, 'INTx GSI');
    check(irqInfoOf(this.device, VFIO_PCI_INTX_IRQ_INDEX).count === 1, ErrorCode.EINVAL, 'the function has no INTx pin');
    // The chip's kind of events: eventfds on a KVM chip, which reads and signals them itself.
    const level = IrqLevelEvent.fromEventPair(createChipEvent(this.chip), createChipEvent(this.chip));
    this.chip.registerLevelIrqEvent(gsi, level, source);
    return { gsi, level, triggerFd: this.device.openEventFd(level.getTrigger()), resampleFd: this.device.openEventFd(level.getResample()) };
  }

  /** The index the guest's state asks for: MSI-X over MSI over INTx (a guest enabling both is undefined; MSI-X wins). */
  private wantedIndex(): number | null {
    if (this.msix?.enabled === true) return VFIO_PCI_MSIX_IRQ_INDEX;
    if (this.msi?.enabled === true) return VFIO_PCI_MSI_IRQ_INDEX;
    return this.intxUsable ? VFIO_PCI_INTX_IRQ_INDEX : null;
  }

  private groupOf(index: number): VfioVectorGroup | undefined {
    if (index === VFIO_PCI_MSIX_IRQ_INDEX) return this.msix;
    return index === VFIO_PCI_MSI_IRQ_INDEX ? this.msi : undefined;
  }

  private reconcile(): void {
    const wanted = this.wantedIndex();
    if (wanted !== this.hostIndex) this.switchHostIndex(wanted);
    else if (wanted !== null && this.groupOf(wanted)?.hasHostWork() === true) this.syncVectors(wanted);
    for (const group of [this.msi, this.msix]) {
      group?.retire((vector) => this.hostIndex === group.index && this.hostFds[vector] !== VFIO_EVENTFD_NONE);
    }
  }

  private switchHostIndex(wanted: number | null): void {
    if (this.hostIndex !== null && !this.attempt(() => { this.disableHostIndex(); })) return;
    if (wanted === VFIO_PCI_INTX_IRQ_INDEX) this.enableIntx();
    else if (wanted !== null) this.syncVectors(wanted);
  }

  private enableIntx(): void {
    const intx = this.intx;
    if (intx === undefined) return;
    const enabled =
      this.attempt(() => {
        this.call(irqSetEventfds(VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_INTX_IRQ_INDEX, 0, [intx.triggerFd]), 'setIrqsIntxTrigger');
        this.hostIndex = VFIO_PCI_INTX_IRQ_INDEX;
      }) &&
      this.attempt(() => {
        this.call(irqSetEventfds(VFIO_IRQ_SET_ACTION_UNMASK, VFIO_PCI_INTX_IRQ_INDEX, 0, [intx.resampleFd]), 'setIrqsIntxUnmask');
      });
    if (enabled) return;
    // A host that refuses INTx (ENODEV: no host IRQ) refuses it for good: stop asking.
    this.intxUsable = false;
    if (this.hostIndex === VFIO_PCI_INTX_IRQ_INDEX) this.attempt(() => { this.disableHostIndex(); });
  }

  /** Brings the host's MSI/MSI-X vectors to the group's; on a refusal, §6.16 (see the file comment). */
  private syncVectors(index: number): void {
    const group = this.groupOf(index);
    if (group === undefined) return;
    let synced = this.attempt(() => { this.applyVectors(group, false); });
    if (!synced) {
      this.counts.stateResends++;
      synced = this.attempt(() => { this.applyVectors(group, true); });
    }
    if (!synced) {
      this.counts.vectorsRefused += group.refuseUnconfirmed();
      this.counts.stateResends++;
      synced = this.attempt(() => { this.applyVectors(group, true); });
    }
    if (synced) group.confirm();
  }

  /**
   * The calls that take the host from what it has to what the group wants. `full`: re-send every
   * binding, as after a refusal the host's bindings are not known.
   */
  private applyVectors(group: VfioVectorGroup, full: boolean): void {
    const used = group.usedVectors();
    if (this.hostIndex !== group.index) {
      this.enableVectors(group, used);
      return;
    }
    const stale: number[] = [];
    for (let vector = 0; vector < group.len(); vector++) {
      const wanted = group.wantedFd(vector);
      const bound = this.hostFds[vector] ?? VFIO_EVENTFD_NONE;
      if (full ? wanted !== VFIO_EVENTFD_NONE || bound !== VFIO_EVENTFD_NONE : wanted !== bound) stale.push(vector);
    }
    const first = stale[0];
    const last = stale[stale.length - 1];
    if (first === undefined || last === undefined) return;
    const growsInPlace = group.index === VFIO_PCI_MSIX_IRQ_INDEX && this.dynamicMsix;
    if (last >= this.hostVectorCount && !growsInPlace) this.resize(group, used);
    else this.bindVectors(group, first, last);
  }

  /** One enable call: host vectors up to the highest in use (vector 0 with -1 when none is, §6.13). */
  private enableVectors(group: VfioVectorGroup, used: readonly number[]): void {
    const vectorCount = (used[used.length - 1] ?? 0) + 1;
    const fds = Array.from({ length: vectorCount }, (_, vector) => group.wantedFd(vector));
    // A failed enable enables nothing (the kernel disables again if binding fails part-way).
    this.call(irqSetEventfds(VFIO_IRQ_SET_ACTION_TRIGGER, group.index, 0, fds), 'setIrqsEnable');
    this.hostIndex = group.index;
    this.hostVectorCount = vectorCount;
    this.hostFds.fill(VFIO_EVENTFD_NONE);
    this.hostFds.set(fds);
  }

  /** One bind call over vectors first..last (unchanged ones in between are sent as they are). */
  private bindVectors(group: VfioVectorGroup, first: number, last: number): void {
    const fds = Array.from({ length: last - first + 1 }, (_, position) => group.wantedFd(first + position));
    try {
      this.call(irqSetEventfds(VFIO_IRQ_SET_ACTION_TRIGGER, group.index, first, fds), 'setIrqsBind');
    } catch (error) {
      // The kernel unbound the vectors it processed; which ones, the error does not say.
      this.hostFds.fill(UNKNOWN_BINDING, first, last + 1);
      throw error;
    }
    this.hostFds.set(fds, first);
    // Dynamic MSI-X allocates a host vector for each fd bound past the count.
    fds.forEach((fd, position) => {
      if (fd !== VFIO_EVENTFD_NONE) this.hostVectorCount = Math.max(this.hostVectorCount, first + position + 1);
    });
  }

  /** NORESIZE growth: hold the live routes, disable, re-enable with every binding, replay (§6.14, §6.27). */
  private resize(group: VfioVectorGroup, used: readonly number[]): void {
    this.counts.resizes++;
    const held = group.holdLive();
    try {
      this.disableHostIndex();
      this.enableVectors(group, used);
    } finally {
      group.replay(held);
    }
  }

  private disableHostIndex(): void {
    const index = this.hostIndex;
    if (index === null) return;
    this.call(irqSetNone(VFIO_IRQ_SET_ACTION_TRIGGER, index, 0, 0), 'setIrqsDisable');
    this.hostIndex = null;
    this.hostVectorCount = 0;
    this.hostFds.fill(VFIO_EVENTFD_NONE);
  }

  /** One SET_IRQS call, counted by kind, and counted again when the host refuses it. */
  private call(bytes: Uint8Array, kind: SetIrqsKind): void {
    this.counts[kind]++;
    try {
      this.device.setIrqs(bytes);
    } catch (error) {
      if (error instanceof IrqChipError) this.counts.setIrqsFailed++;
      throw error;
    }
  }

  /** Runs host calls; false when the host refused one (an `IrqChipError`). Anything else is a bug and propagates. */
  private attempt(calls: () => void): boolean {
    try {
      calls();
      return true;
    } catch (error) {
      if (error instanceof IrqChipError) return false;
      throw error;
    }
  }
}
