/**
 * Batched MSI route updates (seed-apis.md §6.12).
 *
 * A routing change replaces the chip's whole table (KVM_SET_GSI_ROUTING pushes every entry; the
 * userspace chip rebuilds its maps and republishes them to every thread), so the device layer
 * collects its changes and pushes them once: a guest that clears the MSI-X function mask with
 * 32 vectors unmasked costs one push, not 32. A push whose changes are already in force is skipped.
 *
 * Order matters around a push (§6.2): an irqfd is armed only after its route is in force, and a
 * GSI is freed only after its route is gone. Work that must follow the push is queued with
 * `afterCommit` and runs right after it, in order.
 */

import { joinHalves } from '../base/integers.ts';
import type { IrqRoute, IrqSource } from '../routing/irq-route.ts';
import type { DeviceInterruptChip } from './device-chip.ts';

export interface MsiRouteWriterCounters {
  /** Pushes of the routing table. */
  readonly routePushes: number;
  /** Batches whose changes were already in force: no push. */
  readonly unchangedSkipped: number;
}

export class MsiRouteWriter {
  /** GSI → its new MSI, or undefined to remove its route. The last change to a GSI wins. */
  private readonly changes = new Map<number, IrqSource | undefined>();
  private readonly followUps: (() => void)[] = [];
  private depth = 0;
  private routePushes = 0;
  private unchangedSkipped = 0;

  constructor(private readonly chip: Pick<DeviceInterruptChip, 'routes' | 'setIrqRoutes'>) {}

  /** Runs `body`; the changes it makes are pushed once, when the outermost batch ends. */
  batch<T>(body: () => T): T {
    this.begin();
    try {
      return body();
    } finally {
      this.end();
    }
  }

  /** Opens a batch without a closure (for hot paths); pair with `end()` in a `finally`. */
  begin(): void {
    this.depth++;
  }

  /** Closes a batch; the outermost one pushes the changes and runs the follow-ups. */
  end(): void {
    this.depth--;
    if (this.depth === 0) this.commit();
  }

  /** Routes `gsi` to the MSI (address low, address high, data). */
  setMsi(gsi: number, addressLow: number, addressHigh: number, data: number): void {
    this.changes.set(gsi, { kind: 'msi', address: joinHalves(addressLow, addressHigh), data: data >>> 0 });
    this.commitUnlessBatching();
  }

  /** Removes the route of `gsi`. */
  clear(gsi: number): void {
    this.changes.set(gsi, undefined);
    this.commitUnlessBatching();
  }

  /** Runs `action` after the pending changes are in force (at once outside a batch). */
  afterCommit(action: () => void): void {
    this.followUps.push(action);
    this.commitUnlessBatching();
  }

  counters(): MsiRouteWriterCounters {
    return { routePushes: this.routePushes, unchangedSkipped: this.unchangedSkipped };
  }

  private commitUnlessBatching(): void {
    if (this.depth === 0) this.commit();
  }

  private commit(): void {
    if (this.changes.size !== 0) this.push();
    if (this.followUps.length === 0) return;
    // A follow-up may queue more work; it then commits on its own (depth is 0 here).
    const followUps = this.followUps.splice(0);
    for (const action of followUps) action();
  }

  private push(): void {
    const current = this.chip.routes();
    const changes = [...this.changes];
    this.changes.clear();
    if (changes.every(([gsi, source]) => isInForce(current, gsi, source))) {
      this.unchangedSkipped++;
      return;
    }
    const changed = new Set(changes.map(([gsi]) => gsi));
    const next: IrqRoute[] = current.filter((route) => !changed.has(route.gsi));
    for (const [gsi, source] of changes) if (source !== undefined) next.push({ gsi, source });
    this.chip.setIrqRoutes(next);
    this.routePushes++;
  }
}

/** Whether `current` routes `gsi` exactly to `wanted` (no route at all when undefined). */
function isInForce(current: readonly IrqRoute[], gsi: number, wanted: IrqSource | undefined): boolean {
  const sources = current.filter((route) => route.gsi === gsi).map((route) => route.source);
  if (wanted === undefined) return sources.length === 0;
  const [only] = sources;
  return (
    sources.length === 1 &&
    only?.kind === 'msi' &&
    wanted.kind === 'msi' &&
    only.address === wanted.address &&
    only.data === wanted.data
  );
}
