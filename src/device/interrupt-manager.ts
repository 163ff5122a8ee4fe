/**
 * `InterruptManager`: one device's interrupts on a chip (Dragonball `InterruptManager`,
 * seed-apis.md §3.1–3.2). It creates and destroys the device's interrupt source groups and irqfd
 * routes, gives them GSIs from the device's budget (which draws from the VM's allocator), and
 * batches their routing changes.
 *
 * Use it on the chip owner's thread (groups register events with the chip), with the VM's
 * `IrqAllocator` after `finalizeDevices`, so every GSI handed out is past the IOAPIC's pins and an
 * MSI route never displaces a pin route.
 */

import { ErrorCode, IrqChipError, check, checkRange } from '../base/errors.ts';
import type { IrqEventSource } from '../chip/types.ts';
import { IOAPIC_PIN_COUNT } from '../x86/ioapic/ioapic.ts';
import { ChipInterruptGroup } from './chip-interrupt-group.ts';
import type { DeviceInterruptChip } from './device-chip.ts';
import { DEFAULT_DEVICE_GSI_BUDGET, DeviceGsiBudget, type GsiSource } from './gsi-budget.ts';
import { InterruptSourceType } from './interrupt-source.ts';
import { IrqFdRouteFactory, type IrqFdRoute } from './irqfd-route.ts';
import { MsiRouteWriter, type MsiRouteWriterCounters } from './msi-route-writer.ts';
import { MSIX_MAX_VECTORS } from './msix-capability.ts';

/** The most vectors an MSI group may have: an MSI-X table's (its size field is 11 bits). */
export const MAX_MSI_GROUP_SOURCES = MSIX_MAX_VECTORS;

export interface InterruptManagerOptions {
  readonly chip: DeviceInterruptChip;
  /** The VM's GSIs: the chip's `IrqAllocator` (whose budget is the VM's budget). */
  readonly gsis: GsiSource;
  /** How many GSIs this device may hold at once (default 256, Dragonball's per-device MSI cap). */
  readonly gsiBudget?: number;
  /** The device, as the chip's event tokens name it. */
  readonly device?: { readonly id: number; readonly name: string };
}

export interface InterruptManagerCounters extends MsiRouteWriterCounters {
  /** GSIs the device holds now (MSI sources in use and irqfd routes). */
  readonly gsisInUse: number;
}

export class InterruptManager {
  private readonly budget: DeviceGsiBudget;
  private readonly routes: MsiRouteWriter;
  private readonly source: IrqEventSource;
  private readonly irqFdRoutes: IrqFdRouteFactory;
  private readonly groups = new Set<ChipInterruptGroup>();

  constructor(private readonly options: InterruptManagerOptions) {
    this.budget = new DeviceGsiBudget(options.gsis, options.gsiBudget ?? DEFAULT_DEVICE_GSI_BUDGET);
    this.routes = new MsiRouteWriter(options.chip);
    this.source = { deviceId: options.device?.id ?? 0, queueId: 0, deviceName: options.device?.name ?? 'device' };
    this.irqFdRoutes = new IrqFdRouteFactory({ chip: options.chip, gsis: this.budget, routes: this.routes, source: this.source });
  }

  /**
   * A new, disabled group of `count` sources of `type`, all unmasked:
   * - legacy: exactly one source, on GSI `base` (below 24: an ISA/IOAPIC line);
   * - MSI: 1..2048 sources numbered from `base` in the device's vector space; their GSIs come
   *   later, one per source at its first unmask.
   * EINVAL for anything else; EEXIST when it overlaps a group of the same type this device has.
   */
  createGroup(type: InterruptSourceType, base: number, count: number): ChipInterruptGroup {
    const known: readonly unknown[] = Object.values(InterruptSourceType);
    check(known.includes(type), ErrorCode.EINVAL, () => `unknown interrupt source type '${type}'`);
    if (type === InterruptSourceType.Legacy) {
      check(count === 1, ErrorCode.EINVAL, () => `a legacy group has exactly one source, not ${String(count)}`);
      checkRange(base, 0, IOAPIC_PIN_COUNT - 1, 'legacy GSI');
    } else {
      checkRange(count, 1, MAX_MSI_GROUP_SOURCES, 'MSI group size');
      checkRange(base, 0, Number.MAX_SAFE_INTEGER - count, 'MSI group base');
    }
    for (const group of this.groups) {
      if (group.interruptType() === type && base < group.base() + group.len() && group.base() < base + count) {
        throw new IrqChipError(ErrorCode.EEXIST, `a ${type} group already covers ${group.base()}..${group.base() + group.len() - 1}`);
      }
    }
    const group = new ChipInterruptGroup({ chip: this.options.chip, routes: this.routes, gsis: this.budget, source: this.source }, type, base, count);
    this.groups.add(group);
    return group;
  }

  /** Destroys a disabled group of this manager (EBUSY while enabled; ENOENT for any other group). */
  destroyGroup(group: ChipInterruptGroup): void {
    check(this.groups.has(group), ErrorCode.ENOENT, 'not a live group of this interrupt manager');
    group.destroy();
    this.groups.delete(group);
  }

  /** A new irqfd route on one of the device's GSIs (ENOSPC when its budget or the VM's is spent). */
  newIrqFdRoute(): IrqFdRoute {
    return this.irqFdRoutes.newIrqFdRoute();
  }

  /** Runs `body`; the route changes of all this device's groups and routes are pushed once, after it. */
  batchRouteUpdates<T>(body: () => T): T {
    return this.routes.batch(body);
  }

  counters(): InterruptManagerCounters {
    return { ...this.routes.counters(), gsisInUse: this.budget.inUse };
  }
}
