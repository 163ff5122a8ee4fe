/**
 * `IrqFdRoute` (seed 003; openvmm `vmcore::irqfd`, seed-apis.md §4): one GSI with an event. While
 * the route has an MSI and is unmasked, a signal on the event injects that MSI without the VMM
 * (the event is what VFIO `map_msix` or vhost is given). Disposing the route frees its GSI.
 *
 * The route is built on `ChipIrqFd` (device-chip.ts): `setMsi` puts the route in force and then
 * arms the event; `mask` disarms it, leaving the route, so signals accumulate for
 * `consumePending`; `unmask` re-arms it. The caller owns the pending bit: drain with
 * `consumePending` while masked, deliver what it found before unmasking (seed 003's contract). A
 * count still in the event at re-arm is injected once, as KVM's assign does (§4.2), and is then
 * gone from the event (`ChipIrqFd.arm`), so a later `consumePending` does not report it again.
 *
 * The route owns its event, made by the chip (`createChipEvent`: an eventfd on a KVM chip), and
 * closes it on `dispose`.
 *
 * Differences from openvmm, on purpose:
 * - `setMsi` does not unmask (openvmm's KVM `set_msi` re-arms a masked route, §4.2, which is why its
 *   MSI-X emulator never calls `unmask`); the mask is only changed by `mask`/`unmask`.
 * - Dropping a route never panics: `dispose()` disarms, removes the route, then frees the GSI, and
 *   a second `dispose()` does nothing. Every other method throws EBADF after it (a closed handle).
 */

import { ErrorCode, check } from '../base/errors.ts';
import { highHalf, isU32, isU64, lowHalf } from '../base/integers.ts';
import type { IrqEventSource } from '../chip/types.ts';
import type { Event } from '../event/event.ts';
import { ChipIrqFd, createChipEvent, releaseChipEvent, type DeviceInterruptChip } from './device-chip.ts';
import type { GsiSource } from './gsi-budget.ts';
import { MsiRouteWriter } from './msi-route-writer.ts';

export interface IrqFdRoute extends Disposable {
  /** The GSI this route holds. */
  readonly gsi: number;
  /** The event that injects the route's MSI when signalled. */
  event(): Event;
  /** Routes the GSI to this x86 MSI (address: a u64 bigint; data: a u32). EINVAL otherwise. */
  setMsi(address: bigint, data: number): void;
  /** Removes the MSI: nothing is injected (signals accumulate) until the next `setMsi`. */
  clearMsi(): void;
  /** Stops injection; signals accumulate for `consumePending`. The route stays. */
  mask(): void;
  /** Restores injection with the last MSI set. */
  unmask(): void;
  /** Reads and clears the event: true if it had been signalled (store it in the PBA). */
  consumePending(): boolean;
  /** Disarms, removes the route, frees the GSI, closes the event. Idempotent. */
  dispose(): void;
}

export interface IrqFdRouteFactoryOptions {
  readonly chip: DeviceInterruptChip;
  /** Where each route's GSI comes from (a device budget, or the VM's allocator). */
  readonly gsis: GsiSource;
  /** Shared with other users of the chip to batch their route updates; default: a writer of its own. */
  readonly routes?: MsiRouteWriter;
  /** Who registers the events with the chip. */
  readonly source?: IrqEventSource;
}

const DEFAULT_SOURCE: IrqEventSource = { deviceId: 0, queueId: 0, deviceName: 'irqfd-route' };

/** Makes irqfd routes on a chip (openvmm `IrqFd::new_irqfd_route`). */
export class IrqFdRouteFactory {
  private readonly routes: MsiRouteWriter;

  constructor(private readonly options: IrqFdRouteFactoryOptions) {
    this.routes = options.routes ?? new MsiRouteWriter(options.chip);
  }

  /** A new route on a fresh GSI (ENOSPC when the budget is spent), with a new event, no MSI, unmasked. */
  newIrqFdRoute(): IrqFdRoute {
    const gsi = this.options.gsis.allocate();
    const source = this.options.source ?? DEFAULT_SOURCE;
    return new ChipIrqFdRoute(gsi, new ChipIrqFd(this.options.chip, createChipEvent(this.options.chip), source), this.routes, this.options.gsis);
  }
}

interface MsiMessage {
  readonly addressLow: number;
  readonly addressHigh: number;
  readonly data: number;
}

class ChipIrqFdRoute implements IrqFdRoute {
  private message: MsiMessage | undefined;
  private masked = false;
  private disposed = false;

  constructor(
    readonly gsi: number,
    private readonly irqfd: ChipIrqFd,
    private readonly routes: MsiRouteWriter,
    private readonly gsis: GsiSource,
  ) {}

  event(): Event {
    this.checkAlive();
    return this.irqfd.event;
  }

  setMsi(address: bigint, data: number): void {
    this.checkAlive();
    check(isU64(address), ErrorCode.EINVAL, () => `MSI address must be a u64 bigint, got ${String(address)}`);
    check(isU32(data), ErrorCode.EINVAL, () => `MSI data must be a u32, got ${String(data)}`);
    const message = { addressLow: lowHalf(address) >>> 0, addressHigh: highHalf(address) >>> 0, data };
    this.routes.batch(() => {
      this.routes.setMsi(this.gsi, message.addressLow, message.addressHigh, message.data);
      this.message = message;
      if (!this.masked) this.routes.afterCommit(() => {
        this.armIfDeliverable();
      });
    });
  }

  clearMsi(): void {
    this.checkAlive();
    this.irqfd.disarm();
    if (this.message === undefined) return;
    this.message = undefined;
    this.routes.clear(this.gsi);
  }

  mask(): void {
    this.checkAlive();
    this.masked = true;
    this.irqfd.disarm();
  }

  unmask(): void {
    this.checkAlive();
    this.masked = false;
    this.armIfDeliverable();
  }

  consumePending(): boolean {
    this.checkAlive();
    return this.irqfd.event.tryRead() !== 0n;
  }

  dispose(): void {
    if (this.disposed) return;
    this.irqfd.disarm();
    this.routes.batch(() => {
      if (this.message !== undefined) this.routes.clear(this.gsi);
      this.routes.afterCommit(() => {
        this.gsis.release(this.gsi);
      });
    });
    this.message = undefined;
    this.disposed = true;
    releaseChipEvent(this.irqfd.event);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  private armIfDeliverable(): void {
    if (!this.disposed && !this.masked && this.message !== undefined) this.irqfd.arm(this.gsi);
  }

  private checkAlive(): void {
    check(!this.disposed, ErrorCode.EBADF, () => `the irqfd route on GSI ${this.gsi} was disposed`);
  }
}
