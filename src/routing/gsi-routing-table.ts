/**
 * The GSI routing table (crosvm `Routes`; x86-controllers.md §5.1, §5.3).
 *
 * Rules, per GSI: routes of one kind only (irqchip pins, or one MSI), so the IOAPIC's inputs and
 * the MSIs it could send never form a cycle; a new route replaces the one it conflicts with (the
 * MSI, or the pin of the same chip) and otherwise joins the others. Unlike crosvm's
 * `replace_all`, which leaves a half-built table when an entry fails, `replaceAll` validates the
 * whole input first and either applies all of it or changes nothing.
 *
 * The table also keeps the reverse map, controller pin → GSIs, which turns a PIC or IOAPIC
 * acknowledge into the GSIs whose level events need a resample.
 */

import { ErrorCode, IrqChipError } from '../base/errors.ts';
import { IOAPIC_PIN_COUNT } from '../x86/ioapic/ioapic.ts';
import {
  IrqSourceChip,
  defaultIrqRoutes,
  sourcesConflict,
  validateRoute,
  type IrqRoute,
  type IrqSource,
} from './irq-route.ts';

const NO_SOURCES: readonly IrqSource[] = Object.freeze([]);

type PinKey = `${IrqSourceChip}:${number}`;

function pinKey(chip: IrqSourceChip, pin: number): PinKey {
  return `${chip}:${pin}`;
}

export class GsiRoutingTable {
  private sourcesByGsi = new Map<number, readonly IrqSource[]>();
  private gsisByPin = new Map<PinKey, readonly number[]>();

  /** A table holding `routes` (default: the standard PIC + IOAPIC table). */
  constructor(
    readonly ioapicPins: number = IOAPIC_PIN_COUNT,
    routes: readonly IrqRoute[] = defaultIrqRoutes(ioapicPins),
  ) {
    this.replaceAll(routes);
  }

  /** Adds one route under the rules above. EINVAL, with nothing changed, on a bad route or a kind conflict. */
  add(route: IrqRoute): void {
    const next = new Map(this.sourcesByGsi);
    addTo(next, route, this.ioapicPins);
    this.install(next);
  }

  /** Replaces the whole table: every route is checked first, and a failure leaves the old table. */
  replaceAll(routes: readonly IrqRoute[]): void {
    const next = new Map<number, readonly IrqSource[]>();
    for (const route of routes) addTo(next, route, this.ioapicPins);
    this.install(next);
  }

  /** The sources of one GSI (empty for an unrouted GSI, including any past the end). */
  sources(gsi: number): readonly IrqSource[] {
    return this.sourcesByGsi.get(gsi) ?? NO_SOURCES;
  }

  /** Every route, GSI by GSI in ascending order. */
  routes(): IrqRoute[] {
    return [...this.sourcesByGsi.entries()]
      .sort(([a], [b]) => a - b)
      .flatMap(([gsi, sources]) => sources.map((source) => ({ gsi, source })));
  }

  /** The GSIs routed to a controller pin (for acknowledge → resample). */
  gsisOfPin(chip: IrqSourceChip, pin: number): readonly number[] {
    return this.gsisByPin.get(pinKey(chip, pin)) ?? [];
  }

  private install(next: Map<number, readonly IrqSource[]>): void {
    const reverse = new Map<PinKey, number[]>();
    for (const [gsi, sources] of next) {
      for (const source of sources) {
        if (source.kind !== 'irqchip') continue;
        const key = pinKey(source.chip, source.pin);
        const gsis = reverse.get(key);
        if (gsis === undefined) reverse.set(key, [gsi]);
        else gsis.push(gsi);
      }
    }
    this.sourcesByGsi = next;
    this.gsisByPin = reverse;
  }
}

function addTo(table: Map<number, readonly IrqSource[]>, route: IrqRoute, ioapicPins: number): void {
  validateRoute(route, ioapicPins);
  const existing = table.get(route.gsi) ?? NO_SOURCES;
  const first = existing[0];
  if (first !== undefined && (first.kind === 'msi') !== (route.source.kind === 'msi')) {
    throw new IrqChipError(ErrorCode.EINVAL, `GSI ${route.gsi} already has ${first.kind} routes; it cannot also take a ${route.source.kind} route`);
  }
  const kept = existing.filter((source) => !sourcesConflict(source, route.source));
  table.set(route.gsi, Object.freeze([...kept, Object.freeze({ ...route.source })]));
}
