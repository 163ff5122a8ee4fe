/**
 * The GSI routing table shared between threads.
 *
 * Routes change rarely and are read on every interrupt, so each thread keeps its own
 * `GsiRoutingTable` and the shared copy is the source of truth: a SharedArrayBuffer holding the
 * encoded route list and a generation number. A thread re-reads the list only when the generation
 * moved. Any thread may change routes: under the lock it catches up, applies the change to its
 * table (which validates it, so a bad change throws and nothing is written), writes the new list
 * and bumps the generation.
 *
 * Layout (Int32Array over the buffer; words 0–1 are the lock, shared-state.ts):
 *   2            generation: bumped after every change
 *   3            number of routes
 *   4 + 5r ...   route r: GSI, source code (1 PIC primary, 2 PIC secondary, 3 IOAPIC, 4 MSI),
 *                then pin, 0, 0 for a pin, or address low, address high, data for an MSI
 */

import { ErrorCode, IrqChipError } from '../base/errors.ts';
import { LOCK_WORDS, acquireLock, allocateStateWords, releaseLock } from '../base/shared-state.ts';
import { GsiRoutingTable } from './gsi-routing-table.ts';
import { IrqSourceChip, MAX_GSI_COUNT, type IrqRoute, type IrqSource } from './irq-route.ts';

const GENERATION = LOCK_WORDS;
const ROUTE_COUNT = LOCK_WORDS + 1;
const FIRST_ROUTE = LOCK_WORDS + 2;
const WORDS_PER_ROUTE = 5;
/** Every GSI may carry one route per controller (PIC primary, PIC secondary, IOAPIC) at most. */
const MAX_ROUTES = MAX_GSI_COUNT * 3;

const SOURCE_CODE: Readonly<Record<IrqSourceChip, number>> = {
  [IrqSourceChip.PicPrimary]: 1,
  [IrqSourceChip.PicSecondary]: 2,
  [IrqSourceChip.Ioapic]: 3,
};
const MSI_CODE = 4;
const CHIP_OF_CODE: readonly (IrqSourceChip | undefined)[] = [undefined, IrqSourceChip.PicPrimary, IrqSourceChip.PicSecondary, IrqSourceChip.Ioapic];

export interface SharedRoutingTableDescriptor {
  readonly kind: 'shared-routing-table';
  readonly buffer: SharedArrayBuffer;
  readonly ioapicPins: number;
}

export class SharedRoutingTable {
  private readonly words: Int32Array;
  private readonly local: GsiRoutingTable;
  /** The generation `local` reflects; -1 forces the first read. */
  private seenGeneration = -1;

  private constructor(
    words: Int32Array,
    readonly ioapicPins: number,
  ) {
    this.words = words;
    this.local = new GsiRoutingTable(ioapicPins, []);
  }

  /** A shared table holding `routes`. */
  static create(ioapicPins: number, routes: readonly IrqRoute[]): SharedRoutingTable {
    const table = new SharedRoutingTable(allocateStateWords(2 + MAX_ROUTES * WORDS_PER_ROUTE), ioapicPins);
    table.setRoutes(routes);
    return table;
  }

  static fromDescriptor(descriptor: SharedRoutingTableDescriptor): SharedRoutingTable {
    // Descriptors arrive through postMessage: the type is a claim to check.
    const kind: unknown = descriptor.kind;
    if (kind !== 'shared-routing-table' || !(descriptor.buffer instanceof SharedArrayBuffer)) {
      throw new IrqChipError(ErrorCode.EINVAL, 'not a shared routing table descriptor');
    }
    return new SharedRoutingTable(new Int32Array(descriptor.buffer), descriptor.ioapicPins);
  }

  descriptor(): SharedRoutingTableDescriptor {
    return { kind: 'shared-routing-table', buffer: this.words.buffer as SharedArrayBuffer, ioapicPins: this.ioapicPins };
  }

  /** This thread's up-to-date table, for reads. Do not change it directly: use `addRoute`/`setRoutes`. */
  current(): GsiRoutingTable {
    if (Atomics.load(this.words, GENERATION) !== this.seenGeneration) this.update(() => undefined);
    return this.local;
  }

  /** The generation of the table: it changes after every route change, from any thread. */
  generation(): number {
    return Atomics.load(this.words, GENERATION);
  }

  /** Adds a route (GsiRoutingTable rules); EINVAL with nothing changed anywhere. */
  addRoute(route: IrqRoute): void {
    this.update((table) => {
      table.add(route);
      return true;
    });
  }

  /** Replaces every route, all or nothing. */
  setRoutes(routes: readonly IrqRoute[]): void {
    this.update((table) => {
      table.replaceAll(routes);
      return true;
    });
  }

  /**
   * Under the lock: catches up with the shared list, lets `change` modify the local table (it
   * returns true when it did), and publishes the result.
   */
  private update(change: (table: GsiRoutingTable) => boolean | undefined): void {
    acquireLock(this.words);
    try {
      const generation = this.words[GENERATION] ?? 0;
      if (generation !== this.seenGeneration) {
        this.local.replaceAll(this.decode());
        this.seenGeneration = generation;
      }
      // GsiRoutingTable validates before it installs, so a throwing change leaves `local` intact.
      if (change(this.local) !== true) return;
      this.encode(this.local.routes());
      this.seenGeneration = generation + 1;
      Atomics.store(this.words, GENERATION, this.seenGeneration);
    } finally {
      releaseLock(this.words);
    }
  }

  private encode(routes: readonly IrqRoute[]): void {
    this.words[ROUTE_COUNT] = routes.length;
    routes.forEach((route, index) => {
      const at = FIRST_ROUTE + index * WORDS_PER_ROUTE;
      const { source } = route;
      this.words[at] = route.gsi;
      if (source.kind === 'msi') {
        this.words[at + 1] = MSI_CODE;
        this.words[at + 2] = Number(source.address & 0xffffffffn) | 0;
        this.words[at + 3] = Number(source.address >> 32n) | 0;
        this.words[at + 4] = source.data | 0;
      } else {
        this.words[at + 1] = SOURCE_CODE[source.chip];
        this.words[at + 2] = source.pin;
        this.words[at + 3] = 0;
        this.words[at + 4] = 0;
      }
    });
  }

  private decode(): IrqRoute[] {
    const routes: IrqRoute[] = [];
    const count = this.words[ROUTE_COUNT] ?? 0;
    for (let index = 0; index < count; index++) {
      const at = FIRST_ROUTE + index * WORDS_PER_ROUTE;
      const word = (offset: number) => this.words[at + offset] ?? 0;
      const code = word(1);
      const chip = CHIP_OF_CODE[code];
      const source: IrqSource =
        code === MSI_CODE
          ? { kind: 'msi', address: (BigInt(word(3) >>> 0) << 32n) | BigInt(word(2) >>> 0), data: word(4) >>> 0 }
          : { kind: 'irqchip', chip: chip ?? IrqSourceChip.Ioapic, pin: word(2) };
      routes.push({ gsi: word(0), source });
    }
    return routes;
  }
}
