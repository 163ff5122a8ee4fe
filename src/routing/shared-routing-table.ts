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
import { highHalf, joinHalves, lowHalf } from '../base/integers.ts';
import { LOCK_WORDS, acquireLock, allocateStateWords, releaseLock } from '../base/shared-state.ts';
import { GsiRoutingTable } from './gsi-routing-table.ts';
import { IrqSourceChip, MAX_GSI_COUNT, type IrqRoute, type IrqSource } from './irq-route.ts';

const GENERATION = LOCK_WORDS;
const ROUTE_COUNT = LOCK_WORDS + 1;
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
    encodeRouteWords(routes, this.words, ROUTE_COUNT);
  }

  private decode(): IrqRoute[] {
    return decodeRouteWords(this.words, ROUTE_COUNT);
  }
}

/** Words `encodeRouteWords` needs for `routeCount` routes. */
export function routeWordCount(routeCount: number): number {
  return 1 + routeCount * WORDS_PER_ROUTE;
}

/**
 * Writes `routes` into `words` from index `at`: the count, then five words per route (the layout
 * at the top of this file). Also the routes section of a chip snapshot.
 */
export function encodeRouteWords(routes: readonly IrqRoute[], words: Int32Array, at: number): void {
  words[at] = routes.length;
  routes.forEach((route, index) => {
    const first = at + 1 + index * WORDS_PER_ROUTE;
    const { source } = route;
    words[first] = route.gsi;
    if (source.kind === 'msi') {
      words[first + 1] = MSI_CODE;
      words[first + 2] = lowHalf(source.address);
      words[first + 3] = highHalf(source.address);
      words[first + 4] = source.data | 0;
    } else {
      words[first + 1] = SOURCE_CODE[source.chip];
      words[first + 2] = source.pin;
      words[first + 3] = 0;
      words[first + 4] = 0;
    }
  });
}

/**
 * Reads what `encodeRouteWords` wrote at `at`. A count that runs past the words or an unknown
 * source code throws EINVAL (bytes from a snapshot are a claim to check); the routes themselves
 * are validated by the `GsiRoutingTable` they are installed in.
 */
export function decodeRouteWords(words: Int32Array, at: number): IrqRoute[] {
  const count = words[at] ?? 0;
  if (count < 0 || count > MAX_ROUTES || at + routeWordCount(count) > words.length) {
    throw new IrqChipError(ErrorCode.EINVAL, `route list of ${count} routes does not fit its ${words.length - at - 1} words`);
  }
  const routes: IrqRoute[] = [];
  for (let index = 0; index < count; index++) {
    const first = at + 1 + index * WORDS_PER_ROUTE;
    const word = (offset: number) => words[first + offset] ?? 0;
    routes.push({ gsi: word(0), source: decodeSource(word(1), word(2), word(3), word(4)) });
  }
  return routes;
}

function decodeSource(code: number, first: number, second: number, third: number): IrqSource {
  if (code === MSI_CODE) return { kind: 'msi', address: joinHalves(first, second), data: third >>> 0 };
  const chip = CHIP_OF_CODE[code];
  if (chip === undefined) throw new IrqChipError(ErrorCode.EINVAL, `unknown route source code ${code}`);
  return { kind: 'irqchip', chip, pin: first };
}
