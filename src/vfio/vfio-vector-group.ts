/**
 * `VfioVectorGroup`: the MSI or the MSI-X vectors of a passed-through function, as the VMM keeps
 * them. It takes the guest's view of each vector (its message, and whether it is masked for
 * delivery) from a capability model (the device layer's `MsixCapability`, `MsiCapability`)
 * through the `MessageVectorGroup` operations a `ChipInterruptGroup` has too (enable, disable,
 * update, mask, unmask, getPendingState, batch), and keeps what the VMM needs to deliver: one
 * `IrqFdRoute` per vector in use.
 * `VfioPciInterrupts` owns the groups and turns what they need into SET_IRQS calls.
 *
 * A vector is *in use* from the first time it is deliverable (the index enabled by the guest, the
 * vector unmasked) until the guest disables the index. Only then does it take a GSI, a route and a
 * host binding (seed-apis.md §6.11): a vector the guest never unmasks costs nothing.
 *
 * Masking is ours (§6.1): `mask` masks the vector's route (its irqfd is disarmed, the route stays,
 * the host vector stays bound), so what the device sends meanwhile accumulates in the route's event
 * and is injected once when `unmask` re-arms it (KVM's assign does the same with a readable
 * eventfd, §4.2): exactly once, and no SET_IRQS call either way. The event's count is the pending
 * bit (`getPendingState` peeks it; nothing consumes a disarmed event, §6.25).
 *
 * When the guest disables the index, the routes are masked at once (held), and retired once the
 * host index is disabled (`retire`): a count left in a route's event is kept as the vector's held
 * pending bit, the route and its GSI are freed, and the held interrupt is delivered once when the
 * vector is next in use. A vector whose host binding could not be made is given up the same way
 * (`refuseUnconfirmed`, then `retire`) and retried at its next unmask; so is one that could not
 * get a GSI.
 *
 * Used on the chip owner's thread (routes register their events with the chip).
 */

import { check, checkRange, ErrorCode } from '../base/errors.ts';
import { joinHalves } from '../base/integers.ts';
import { hasU32MessageWords, isOutOfGsis } from '../device/chip-interrupt-group.ts';
import { InterruptSourceType, type MsiIrqSourceConfig } from '../device/interrupt-source.ts';
import type { IrqFdRoute } from '../device/irqfd-route.ts';
import type { MessageVectorGroup } from '../device/pci-capability.ts';
import type { Event } from '../event/event.ts';
import { VFIO_EVENTFD_NONE } from './vfio-uapi.ts';

/** What a group needs from its owner (`VfioPciInterrupts`). */
export interface VectorGroupHost {
  /** Runs `body` as one guest access: routes pushed once, then the host brought up to date once. */
  batch<T>(body: () => T): T;
  /** A new irqfd route on a fresh GSI; ENOSPC when the GSI budget is spent. */
  newRoute(): IrqFdRoute;
  /** The number SET_IRQS payloads name `event` by. */
  openEventFd(event: Event): number;
  closeEventFd(fd: number): void;
  /** A vector could not get a GSI. */
  countGsiExhausted(): void;
}

/** A JavaScript caller may pass anything: the config is checked without trusting its type. */
function checkConfig(config: MsiIrqSourceConfig): void {
  const kind: unknown = config.kind;
  check(
    kind === 'msi' && hasU32MessageWords(config),
    ErrorCode.EINVAL,
    'an MSI config has u32 address low, address high and data',
  );
}

export class VfioVectorGroup implements MessageVectorGroup {
  private enabledFlag = false;
  private readonly configs: MsiIrqSourceConfig[];
  /** Deliverable as the guest wants it: unmasked for delivery (own mask, function mask and enable folded in). */
  private readonly deliverable: Uint8Array;
  private readonly routes: (IrqFdRoute | undefined)[];
  /** The fd number of each route's event, or -1. */
  private readonly fds: Int32Array;
  /** Pending bits held while the vector has no route (what a retired route's event held). */
  private readonly held: Uint8Array;
  /** In use, but not yet confirmed bound on the host (see `confirm`, `refuseUnconfirmed`). */
  private readonly unconfirmed: Uint8Array;
  /** Refused by the host: wanted unbound, its route masked until it can be retired. */
  private readonly refused: Uint8Array;
  /** Some vector is unconfirmed: the host has binding work (saves scanning every vector per access). */
  private hostWork = false;
  /** Some route waits to be retired (the group disabled, or a vector refused). */
  private retireWork = false;

  constructor(
    /** VFIO_PCI_MSI_IRQ_INDEX or VFIO_PCI_MSIX_IRQ_INDEX. */
    readonly index: number,
    count: number,
    private readonly host: VectorGroupHost,
  ) {
    checkRange(count, 1, 2048, 'vector count');
    this.configs = Array.from({ length: count }, () => ({ kind: 'msi', addressLow: 0, addressHigh: 0, data: 0 }) as const);
    this.deliverable = new Uint8Array(count);
    this.routes = new Array<IrqFdRoute | undefined>(count).fill(undefined);
    this.fds = new Int32Array(count).fill(VFIO_EVENTFD_NONE);
    this.held = new Uint8Array(count);
    this.unconfirmed = new Uint8Array(count);
    this.refused = new Uint8Array(count);
  }

  // ---- The guest's view, from a capability model ----------------------------------------------

  /** Message vectors, as a capability model checks (MSI and MSI-X alike). */
  interruptType(): InterruptSourceType {
    return InterruptSourceType.Msi;
  }

  len(): number {
    return this.configs.length;
  }

  /** The guest enabled the index (MSI Enable, MSI-X Enable). */
  get enabled(): boolean {
    return this.enabledFlag;
  }

  /** Runs `body` as one guest access (see `VectorGroupHost.batch`). */
  batch<T>(body: () => T): T {
    return this.host.batch(body);
  }

  /**
   * The guest enables the index with one message per vector; the vectors unmasked for delivery
   * since the last disable go live (a capability model then unmasks the vectors it wants).
   */
  enable(configs: readonly MsiIrqSourceConfig[]): void {
    check(!this.enabledFlag, ErrorCode.EBUSY, 'the vectors are already enabled');
    check(configs.length === this.len(), ErrorCode.EINVAL, () => `enable needs ${this.len()} configs, got ${configs.length}`);
    configs.forEach(checkConfig);
    this.host.batch(() => {
      configs.forEach((config, vector) => {
        this.configs[vector] = config;
      });
      this.enabledFlag = true;
      for (let vector = 0; vector < this.len(); vector++) if (this.deliverable[vector] === 1) this.goLive(vector);
    });
  }

  /**
   * The guest disables the index: every vector is masked for delivery, and every route held
   * (masked) until the host index is disabled.
   */
  disable(): void {
    if (!this.enabledFlag) return;
    this.host.batch(() => {
      this.enabledFlag = false;
      this.deliverable.fill(0);
      this.retireWork = true;
      for (const route of this.routes) route?.mask();
    });
  }

  /** The guest reprograms a vector's message: its route follows (no SET_IRQS: the binding is the event). */
  update(vector: number, config: MsiIrqSourceConfig): void {
    this.checkVector(vector);
    checkConfig(config);
    this.configs[vector] = config;
    this.routes[vector]?.setMsi(messageAddress(config), config.data);
  }

  /** The vector is masked for delivery: its route is masked, its host vector stays bound. */
  mask(vector: number): void {
    this.checkVector(vector);
    this.deliverable[vector] = 0;
    this.routes[vector]?.mask();
  }

  /**
   * The vector is unmasked for delivery. While the index is enabled it goes live: its route is
   * unmasked (what it held is injected once), or, at its first use, made and bound on the host.
   * One that finds no GSI is held back here (counted by the host) rather than refused with ENOSPC.
   */
  unmask(vector: number): void {
    this.checkVector(vector);
    this.host.batch(() => {
      this.deliverable[vector] = 1;
      if (this.enabledFlag) this.goLive(vector);
    });
  }

  /** Whether the vector holds an interrupt the guest has not been given (the PBA bit). */
  getPendingState(vector: number): boolean {
    this.checkVector(vector);
    if (this.held[vector] === 1) return true;
    const route = this.routes[vector];
    return route !== undefined && !this.isLive(vector) && route.event().readCount() !== 0n;
  }

  // ---- For VfioPciInterrupts --------------------------------------------------------------------

  /** The fd the host should have bound to `vector`: its route's event while in use, else -1. */
  wantedFd(vector: number): number {
    return this.refused[vector] === 1 ? VFIO_EVENTFD_NONE : (this.fds[vector] ?? VFIO_EVENTFD_NONE);
  }

  /** Vectors in use (not refused), ascending. */
  usedVectors(): number[] {
    const used: number[] = [];
    this.routes.forEach((route, vector) => {
      if (route !== undefined && this.refused[vector] === 0) used.push(vector);
    });
    return used;
  }

  /** Masks every live route (seed-apis.md §6.27: mask before the host disables); returns them for `replay`. */
  holdLive(): number[] {
    const live: number[] = [];
    this.routes.forEach((route, vector) => {
      if (route === undefined || !this.isLive(vector)) return;
      route.mask();
      live.push(vector);
    });
    return live;
  }

  /** Unmasks the routes `holdLive` masked that are still wanted live: what they held is injected once. */
  replay(vectors: readonly number[]): void {
    for (const vector of vectors) if (this.isLive(vector)) this.routes[vector]?.unmask();
  }

  /** Whether vectors came into use that the host has not confirmed bound. */
  hasHostWork(): boolean {
    return this.hostWork;
  }

  /** The host has every vector in use bound: none is new any more. */
  confirm(): void {
    this.unconfirmed.fill(0);
    this.hostWork = false;
  }

  /**
   * Gives up the vectors that came into use since the last `confirm` (the host could not bind
   * them): they are wanted unbound, masked for delivery, and retried at their next unmask. Their
   * routes go at the next `retire` that finds them unbound on the host. Returns how many.
   */
  refuseUnconfirmed(): number {
    this.hostWork = false;
    let refused = 0;
    this.unconfirmed.forEach((flag, vector) => {
      if (flag === 0) return;
      this.unconfirmed[vector] = 0;
      this.refused[vector] = 1;
      this.deliverable[vector] = 0;
      this.routes[vector]?.mask();
      refused++;
    });
    if (refused > 0) this.retireWork = true;
    return refused;
  }

  /**
   * Frees the routes the host no longer signals: every route of a disabled group, and refused
   * vectors, once `hostBinds(vector)` says the host has no binding for them. What a route's event
   * held is kept as the vector's pending bit.
   */
  retire(hostBinds: (vector: number) => boolean): void {
    if (!this.retireWork) return;
    this.retireWork = false;
    this.routes.forEach((route, vector) => {
      if (route === undefined || (this.enabledFlag && this.refused[vector] === 0)) return;
      if (hostBinds(vector)) this.retireWork = true; // not yet: the host may still signal it
      else this.retireVector(vector);
    });
  }

  // ---- Internals ------------------------------------------------------------------------------

  private isLive(vector: number): boolean {
    return this.enabledFlag && this.deliverable[vector] === 1;
  }

  private goLive(vector: number): void {
    const route = this.routes[vector];
    if (route !== undefined) {
      if (this.refused[vector] === 1) {
        // Retried: wanted bound again.
        this.refused[vector] = 0;
        this.markUnconfirmed(vector);
      }
      route.unmask();
      return;
    }
    let created: IrqFdRoute;
    try {
      created = this.host.newRoute();
    } catch (error) {
      if (!isOutOfGsis(error)) throw error;
      // Held back (its interrupts stay with the device or in `held`), retried at its next unmask.
      this.deliverable[vector] = 0;
      this.host.countGsiExhausted();
      return;
    }
    this.routes[vector] = created;
    this.fds[vector] = this.host.openEventFd(created.event());
    this.markUnconfirmed(vector);
    if (this.held[vector] === 1) {
      // Delivered once, when setMsi arms the route (as KVM's assign injects a readable eventfd).
      this.held[vector] = 0;
      created.event().signal();
    }
    const config = this.configs[vector];
    if (config !== undefined) created.setMsi(messageAddress(config), config.data);
  }

  private markUnconfirmed(vector: number): void {
    this.unconfirmed[vector] = 1;
    this.hostWork = true;
  }

  private retireVector(vector: number): void {
    const route = this.routes[vector];
    if (route === undefined) return;
    if (route.consumePending()) this.held[vector] = 1;
    this.host.closeEventFd(this.fds[vector] ?? VFIO_EVENTFD_NONE);
    route.dispose();
    this.routes[vector] = undefined;
    this.fds[vector] = VFIO_EVENTFD_NONE;
    this.unconfirmed[vector] = 0;
    this.refused[vector] = 0;
  }

  private checkVector(vector: number): void {
    checkRange(vector, 0, this.len() - 1, 'vector');
  }
}

/** The 64-bit message address of a config. */
function messageAddress(config: MsiIrqSourceConfig): bigint {
  return joinHalves(config.addressLow, config.addressHigh);
}
