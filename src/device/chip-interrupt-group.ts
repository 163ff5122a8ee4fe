/**
 * `ChipInterruptGroup`: an `InterruptSourceGroup` (seed 002) over a chip. `InterruptManager`
 * creates them.
 *
 * Masking follows seed-apis.md §3.8's recommendation and §6.1: a mask disarms the source (its
 * notifier event is unregistered from the chip, so its signals accumulate) and leaves its route in
 * place; an unmask drains what accumulated into the pending bit, puts the route in force, re-arms,
 * and then delivers the pending interrupt once (openvmm's order, §4.4: drain → route → arm →
 * deliver). Nothing is delivered twice: the counter is empty when the event is re-armed, and the
 * pending bit is cleared as it is delivered. Nothing is lost: a trigger that is not delivered sets
 * the pending bit, and a signal that is not consumed stays in the event until the next drain.
 *
 * MSI groups allocate GSIs lazily (§6.11): a source gets its GSI and route the first time it is
 * unmasked while the group is enabled, keeps them while it is masked and unmasked again (so
 * masking costs no routing work, §6.12), and gives them back when the group is disabled. A source
 * the guest never unmasks costs nothing. A legacy group's one source always has its GSI (the
 * group's base), and its route is the chip's own pin route.
 *
 * Notifier events are made by the chip (`createChipEvent`: eventfds on a KVM chip, which arms them
 * as irqfds) when first asked for, and closed when the group is destroyed.
 *
 * Differences from Dragonball (seed-apis.md §3.3–3.4), on purpose:
 * - `base` of an MSI group is not a GSI: its GSIs are allocated per source, lazily.
 * - `enable` stores the configs (Dragonball drops them, §6.24) and is all or nothing: if the GSIs
 *   its unmasked sources need are not all available, it throws ENOSPC and changes nothing.
 * - `notifier`, like every indexed method, throws EINVAL for an index out of range (Dragonball
 *   answers None), and a legacy group rejects index 1 (Dragonball's off-by-one, §6.24).
 * - `trigger` on a live source delivers through the chip at once rather than by writing the
 *   notifier event, so a device's own interrupts need no service-thread round trip.
 * - `getPendingState` drains the notifier into the pending bit instead of peeking (§6.25), so it
 *   is exact and never reports a stale count.
 */

import { ErrorCode, IrqChipError, check } from '../base/errors.ts';
import { isU32 } from '../base/integers.ts';
import { acquireLock, releaseLock, withLock } from '../base/shared-state.ts';
import type { IrqEventSource } from '../chip/types.ts';
import type { Event } from '../event/event.ts';
import { ChipIrqFd, createChipEvent, releaseChipEvent, type DeviceInterruptChip } from './device-chip.ts';
import type { GsiSource } from './gsi-budget.ts';
import {
  Delivery,
  GROUP_DESTROYED,
  GROUP_ENABLED,
  GROUP_FLAGS,
  InterruptTrigger,
  NO_GSI,
  SOURCE_LIVE,
  SOURCE_MASKED,
  SOURCE_PENDING,
  SOURCE_ROUTED,
  SourceWord,
  allocateGroupWords,
  checkSourceIndex,
  sourceWord,
  type InterruptTriggerDescriptor,
} from './interrupt-trigger.ts';
import {
  InterruptSourceType,
  type InterruptIndex,
  type InterruptSourceConfig,
  type InterruptSourceGroup,
  type MsiIrqSourceConfig,
} from './interrupt-source.ts';
import type { MsiRouteWriter } from './msi-route-writer.ts';
import type { MessageVectorGroup } from './pci-capability.ts';

/** What a group works with; its manager provides it. */
export interface GroupContext {
  readonly chip: DeviceInterruptChip;
  readonly routes: MsiRouteWriter;
  /** Where MSI sources take their GSIs from (the device's budget). */
  readonly gsis: GsiSource;
  /** Who registers the notifier events; `queueId` is replaced by the source's index. */
  readonly source: IrqEventSource;
}

export class ChipInterruptGroup implements InterruptSourceGroup, MessageVectorGroup {
  private readonly words: Int32Array;
  private readonly triggerPath: InterruptTrigger;
  private readonly notifiers: (ChipIrqFd | undefined)[] = [];
  /** Sources to make live once the pending route changes are pushed (see `scheduleLive`). */
  private readonly awaitingLive: number[] = [];
  private readonly goLiveAwaiting = (): void => {
    try {
      for (const index of this.awaitingLive) this.goLive(index);
    } finally {
      this.awaitingLive.length = 0;
    }
  };
  /** MSI sources take GSIs and routes; a legacy source rides its fixed line. */
  private readonly lazyGsis: boolean;

  /** Use `InterruptManager.createGroup`. */
  constructor(
    private readonly context: GroupContext,
    private readonly type: InterruptSourceType,
    private readonly baseId: number,
    count: number,
  ) {
    this.lazyGsis = type === InterruptSourceType.Msi;
    this.words = allocateGroupWords(count, this.lazyGsis ? Delivery.Message : Delivery.Pulse);
    if (!this.lazyGsis) this.words[sourceWord(0, SourceWord.Gsi)] = baseId;
    this.triggerPath = new InterruptTrigger(this.words, context.chip);
  }

  // ---- Seed 002 ---------------------------------------------------------------------------------

  interruptType(): InterruptSourceType {
    return this.type;
  }

  len(): number {
    return this.triggerPath.length;
  }

  base(): number {
    return this.baseId;
  }

  enable(configs: readonly InterruptSourceConfig[]): void {
    this.checkAlive();
    check(!this.enabled, ErrorCode.EBUSY, 'the interrupt source group is already enabled');
    // A JavaScript caller may pass anything: count what arrived without trusting the type.
    const given: number | undefined = Array.isArray(configs) ? configs.length : undefined;
    check(given === this.len(), ErrorCode.EINVAL, () => `enable needs ${this.len()} configs, got ${given ?? 'no array'}`);
    configs.forEach((config, index) => {
      this.checkConfig(config, index);
    });
    const unmasked = this.indexes().filter((index) => (this.flags(index) & SOURCE_MASKED) === 0);
    this.allocateGsis(unmasked);
    this.context.routes.batch(() => {
      withLock(this.words, () => {
        configs.forEach((config, index) => {
          this.storeConfig(index, config);
        });
        this.words[GROUP_FLAGS] = (this.words[GROUP_FLAGS] ?? 0) | GROUP_ENABLED;
      });
      for (const index of unmasked) this.scheduleLive(index);
    });
  }

  disable(): void {
    this.checkAlive();
    if (!this.enabled) return;
    const freed: number[] = [];
    this.context.routes.batch(() => {
      withLock(this.words, () => {
        this.words[GROUP_FLAGS] = (this.words[GROUP_FLAGS] ?? 0) & ~GROUP_ENABLED;
        for (const index of this.indexes()) {
          this.goDormantLocked(index);
          if (this.lazyGsis) this.takeGsiLocked(index, freed);
        }
      });
      // Disarmed above; the routes go now; the GSIs are freed once they are gone (§6.2).
      for (const gsi of freed) this.context.routes.clear(gsi);
      this.context.routes.afterCommit(() => {
        for (const gsi of freed) this.context.gsis.release(gsi);
      });
    });
  }

  update(index: InterruptIndex, config: InterruptSourceConfig): void {
    this.checkAlive();
    checkSourceIndex(index, this.len());
    this.checkConfig(config, index);
    check(this.enabled, ErrorCode.EINVAL, 'update before enable: the interrupt source group is not enabled');
    this.context.routes.batch(() => {
      withLock(this.words, () => {
        this.storeConfig(index, config);
      });
      // A masked source's route is brought up to date when it is next unmasked (scheduleLive).
      if (this.lazyGsis && (this.flags(index) & SOURCE_LIVE) !== 0) this.queueRoute(index);
    });
  }

  trigger(index: InterruptIndex): void {
    this.triggerPath.trigger(index);
  }

  notifier(index: InterruptIndex): Event {
    this.checkAlive();
    checkSourceIndex(index, this.len());
    let irqfd = this.notifiers[index];
    if (irqfd === undefined) {
      const created = new ChipIrqFd(this.context.chip, createChipEvent(this.context.chip), { ...this.context.source, queueId: index });
      this.notifiers[index] = created;
      withLock(this.words, () => {
        if ((this.flags(index) & SOURCE_LIVE) !== 0) created.arm(this.gsi(index));
      });
      irqfd = created;
    }
    return irqfd.event;
  }

  mask(index: InterruptIndex): void {
    this.checkAlive();
    checkSourceIndex(index, this.len());
    acquireLock(this.words);
    try {
      this.setFlags(index, this.flags(index) | SOURCE_MASKED);
      this.goDormantLocked(index);
    } finally {
      releaseLock(this.words);
    }
  }

  unmask(index: InterruptIndex): void {
    this.checkAlive();
    checkSourceIndex(index, this.len());
    if ((this.flags(index) & SOURCE_MASKED) === 0) return;
    if (!this.enabled) {
      withLock(this.words, () => {
        this.setFlags(index, this.flags(index) & ~SOURCE_MASKED);
      });
      return;
    }
    if (this.gsi(index) === NO_GSI) this.allocateGsis([index]);
    const { routes } = this.context;
    routes.begin();
    try {
      acquireLock(this.words);
      try {
        this.setFlags(index, this.flags(index) & ~SOURCE_MASKED);
      } finally {
        releaseLock(this.words);
      }
      this.scheduleLive(index);
    } finally {
      routes.end();
    }
  }

  getPendingState(index: InterruptIndex): boolean {
    this.checkAlive();
    checkSourceIndex(index, this.len());
    acquireLock(this.words);
    try {
      const flags = this.flags(index);
      // A disarmed notifier's signals are interrupts nobody has delivered: they are pending.
      if ((flags & SOURCE_LIVE) === 0 && this.drainNotifier(index)) this.setFlags(index, flags | SOURCE_PENDING);
      return (this.flags(index) & SOURCE_PENDING) !== 0;
    } finally {
      releaseLock(this.words);
    }
  }

  // ---- Beyond the seed --------------------------------------------------------------------------

  get enabled(): boolean {
    return ((this.words[GROUP_FLAGS] ?? 0) & GROUP_ENABLED) !== 0;
  }

  get destroyed(): boolean {
    return ((this.words[GROUP_FLAGS] ?? 0) & GROUP_DESTROYED) !== 0;
  }

  /** The GSI source `index` holds now, or undefined (an MSI source gets one at its first unmask). */
  gsiOf(index: InterruptIndex): number | undefined {
    checkSourceIndex(index, this.len());
    const gsi = this.gsi(index);
    return gsi === NO_GSI ? undefined : gsi;
  }

  /** Runs `body`, pushing the route changes its calls make once, at the end (seed-apis.md §6.12). */
  batch<T>(body: () => T): T {
    return this.context.routes.batch(body);
  }

  /** For a device on another thread: `InterruptTrigger.fromDescriptor(descriptor, chipView)`. */
  triggerDescriptor(): InterruptTriggerDescriptor {
    return this.triggerPath.descriptor();
  }

  /**
   * Called by the manager: EBUSY while enabled (the caller disables first, as in Dragonball). The
   * notifier events, which the group made (eventfds on a KVM chip), are closed.
   */
  destroy(): void {
    this.checkAlive();
    check(!this.enabled, ErrorCode.EBUSY, 'disable the interrupt source group before destroying it');
    withLock(this.words, () => {
      this.words[GROUP_FLAGS] = (this.words[GROUP_FLAGS] ?? 0) | GROUP_DESTROYED;
    });
    for (const irqfd of this.notifiers) if (irqfd !== undefined) releaseChipEvent(irqfd.event);
  }

  // ---- Internals --------------------------------------------------------------------------------

  private checkAlive(): void {
    check(!this.destroyed, ErrorCode.EBADF, 'the interrupt source group was destroyed');
  }

  private checkConfig(config: InterruptSourceConfig, index: number): void {
    const kind: unknown = (config as Partial<InterruptSourceConfig> | undefined)?.kind;
    check(kind === this.type, ErrorCode.EINVAL, () => `config ${index}: a ${this.type} group takes ${this.type} configs, got ${String(kind)}`);
    if (config.kind !== 'msi') return;
    check(
      hasU32MessageWords(config),
      ErrorCode.EINVAL,
      () => `config ${index}: MSI address low, address high and data must be unsigned 32-bit integers`,
    );
  }

  private storeConfig(index: number, config: InterruptSourceConfig): void {
    if (config.kind !== 'msi') return;
    this.words[sourceWord(index, SourceWord.ConfigAddressLow)] = config.addressLow | 0;
    this.words[sourceWord(index, SourceWord.ConfigAddressHigh)] = config.addressHigh | 0;
    this.words[sourceWord(index, SourceWord.ConfigData)] = config.data | 0;
  }

  /** Gives a GSI to each of `indexes` that has none: all of them, or (ENOSPC) none. */
  private allocateGsis(indexes: readonly number[]): void {
    if (!this.lazyGsis) return;
    const taken: [index: number, gsi: number][] = [];
    try {
      for (const index of indexes) if (this.gsi(index) === NO_GSI) taken.push([index, this.context.gsis.allocate()]);
    } catch (error) {
      for (const [, gsi] of taken) this.context.gsis.release(gsi);
      throw error;
    }
    withLock(this.words, () => {
      for (const [index, gsi] of taken) this.words[sourceWord(index, SourceWord.Gsi)] = gsi;
    });
  }

  /** Takes a source's GSI away (it is freed by the caller once its route is gone). */
  private takeGsiLocked(index: number, freed: number[]): void {
    const gsi = this.gsi(index);
    if (gsi === NO_GSI) return;
    freed.push(gsi);
    this.words[sourceWord(index, SourceWord.Gsi)] = NO_GSI;
    this.setFlags(index, this.flags(index) & ~SOURCE_ROUTED);
  }

  /** Puts the source's route in force (if it changed), then makes it live once the route is pushed. */
  private scheduleLive(index: number): void {
    if (this.lazyGsis) this.queueRoute(index);
    // One follow-up per batch serves every source scheduled in it (no closure per source).
    if (this.awaitingLive.push(index) === 1) this.context.routes.afterCommit(this.goLiveAwaiting);
  }

  /** Queues the source's config as its GSI's route, unless that route is already in force. */
  private queueRoute(index: number): void {
    const addressLow = this.sourceValue(index, SourceWord.ConfigAddressLow);
    const addressHigh = this.sourceValue(index, SourceWord.ConfigAddressHigh);
    const data = this.sourceValue(index, SourceWord.ConfigData);
    if (
      (this.flags(index) & SOURCE_ROUTED) !== 0 &&
      addressLow === this.sourceValue(index, SourceWord.RouteAddressLow) &&
      addressHigh === this.sourceValue(index, SourceWord.RouteAddressHigh) &&
      data === this.sourceValue(index, SourceWord.RouteData)
    ) {
      return;
    }
    this.context.routes.setMsi(this.gsi(index), addressLow, addressHigh, data);
    withLock(this.words, () => {
      this.words[sourceWord(index, SourceWord.RouteAddressLow)] = addressLow;
      this.words[sourceWord(index, SourceWord.RouteAddressHigh)] = addressHigh;
      this.words[sourceWord(index, SourceWord.RouteData)] = data;
      this.setFlags(index, this.flags(index) | SOURCE_ROUTED);
    });
  }

  /**
   * The unmask sequence, after the route is in force: drain the disarmed notifier into the pending
   * bit, re-arm it, go live, and deliver what was pending, once. Does nothing if the source should
   * not be live (a mask or a disable came in between) or already is.
   */
  private goLive(index: number): void {
    acquireLock(this.words);
    try {
      const flags = this.flags(index);
      if (!this.enabled || this.destroyed || (flags & (SOURCE_MASKED | SOURCE_LIVE)) !== 0) return;
      // Drain first, always: a count left in the event would be injected again when it is re-armed.
      const drained = this.drainNotifier(index);
      const pending = drained || (flags & SOURCE_PENDING) !== 0;
      const gsi = this.gsi(index);
      this.notifiers[index]?.arm(gsi);
      this.setFlags(index, (flags | SOURCE_LIVE) & ~SOURCE_PENDING);
      if (pending) this.triggerPath.deliverLocked(gsi);
    } finally {
      releaseLock(this.words);
    }
  }

  /** Stops a live source: disarm its notifier (its route stays). Later triggers are held pending. */
  private goDormantLocked(index: number): void {
    const flags = this.flags(index);
    if ((flags & SOURCE_LIVE) === 0) return;
    this.notifiers[index]?.disarm();
    this.setFlags(index, flags & ~SOURCE_LIVE);
  }

  /** Reads and clears the source's notifier event: true if it had been signalled. */
  private drainNotifier(index: number): boolean {
    const irqfd = this.notifiers[index];
    return irqfd !== undefined && irqfd.event.tryRead() !== 0n;
  }

  private flags(index: number): number {
    return this.sourceValue(index, SourceWord.Flags);
  }

  private sourceValue(index: number, offset: number): number {
    return this.words[sourceWord(index, offset)] ?? 0;
  }

  private setFlags(index: number, flags: number): void {
    this.words[sourceWord(index, SourceWord.Flags)] = flags;
  }

  private gsi(index: number): number {
    return this.words[sourceWord(index, SourceWord.Gsi)] ?? NO_GSI;
  }

  private indexes(): number[] {
    return Array.from({ length: this.len() }, (_, index) => index);
  }
}

/** An MSI config from a table entry's three message words. */
export function msiConfig(addressLow: number, addressHigh: number, data: number): MsiIrqSourceConfig {
  return { kind: 'msi', addressLow: addressLow >>> 0, addressHigh: addressHigh >>> 0, data: data >>> 0 };
}

/** Whether an MSI config's address halves and data are unsigned 32-bit integers, as a table entry holds them (JavaScript callers may pass anything). */
export function hasU32MessageWords(config: MsiIrqSourceConfig): boolean {
  return isU32(config.addressLow) && isU32(config.addressHigh) && isU32(config.data);
}

/** Whether `error` is the chip's answer that a GSI budget is spent. */
export function isOutOfGsis(error: unknown): boolean {
  return error instanceof IrqChipError && error.code === ErrorCode.ENOSPC;
}
