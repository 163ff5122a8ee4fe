/**
 * KVM's side of a split irqchip (`KvmSplitIrqChip`): the GSI routing table KVM holds, and the
 * IOAPIC's way into KVM's local APICs.
 *
 * KVM's table has two parts:
 * - GSIs 0–23 mirror our IOAPIC's redirection table: pin p is an MSI route on GSI p carrying the
 *   entry's destination, vector and delivery mode, with data bit 15 (level) set for a level entry.
 *   Nothing is ever injected through these routes. They exist because a split irqchip raises
 *   KVM_EXIT_IOAPIC_EOI only for the vectors of level-triggered MSI routes on the GSIs below the
 *   reserved IOAPIC pin count (arch/x86/kvm/irq_comm.c `kvm_scan_ioapic_routes`, which fills the
 *   vCPU's `ioapic_handled_vectors`; lapic.c `kvm_ioapic_send_eoi` turns an EOI of such a vector
 *   into the exit; measured in kvm-from-node.md §8). Without the mirror our IOAPIC would never hear
 *   the EOI of a level interrupt and its remote IRR would stay set.
 * - GSIs 24 and up carry the chip's MSI routes, so that an edge event registered there is a plain
 *   KVM irqfd (injected inline by the kernel: the fast path).
 *
 * Deliveries. The IOAPIC's sink sends each message with KVM_SIGNAL_MSI, encoded by msi-codec.ts,
 * rather than KVM_IRQ_LINE on the pin's mirror route: the message is exactly what our IOAPIC
 * decided under its lock, even while a mirror update is still to be pushed (KVM_IRQ_LINE would
 * deliver whatever vector KVM's route holds at that moment). The mirror then only decides which
 * EOIs come back. Before a level message is sent, the sink checks that KVM holds a level route for
 * it (a cached answer per message, re-checked after every push) and pushes the mirror first when
 * it does not: the route must be in KVM before the vCPU takes the interrupt, since KVM scans the
 * routes at the vCPU's next entry (KVM_REQ_SCAN_IOAPIC, made by KVM_SET_GSI_ROUTING) and, on this
 * host, the in-kernel LAPIC ends the interrupt at delivery (§8).
 *
 * Pushes. KVM_SET_GSI_ROUTING replaces the whole table and may wait for SRCU readers, so the
 * mirror is pushed only when it is wrong for an entry that can deliver: a guest write leaves KVM's
 * table alone while the entry stays masked (Linux programs entries masked and unmasks them later:
 * one push at the unmask), and the mask bit itself is not part of a route (a level entry masked
 * while its interrupt is in service still needs the EOI exit to clear remote IRR). Every push
 * carries the current value of all 24 entries, so the changes made meanwhile go in one batch.
 *
 * Shared words (Int32Array over a SharedArrayBuffer; words 0–1 are the lock, held across a push
 * so that pushes from different threads are applied in the order they are recorded):
 *   2                  pushes so far (the generation of the table)
 *   3 + 3p ... 5 + 3p  pin p's mirror route as KVM has it: address low, address high, data
 *   75 ...             the MSI routes on GSIs >= 24, as `encodeRouteWords` writes them
 * Lock order: IOAPIC → these words → the routing table's words (the sink pushes with the IOAPIC
 * held; nothing here takes the IOAPIC lock).
 */

import { ErrorCode, IrqChipError } from '../base/errors.ts';
import { joinHalves } from '../base/integers.ts';
import { LOCK_WORDS, acquireLock, allocateStateWords, releaseLock } from '../base/shared-state.ts';
import type { LegacyIrqCore } from '../chip/legacy-irq-core.ts';
import { GsiRoutingTable } from '../routing/gsi-routing-table.ts';
import { msiIrqRoute, type IrqRoute } from '../routing/irq-route.ts';
import { decodeRouteWords, encodeRouteWords, routeWordCount } from '../routing/shared-routing-table.ts';
import { TriggerMode, type InterruptMessage, type InterruptMessageSink } from '../x86/interrupt-message.ts';
import { IOAPIC_PIN_COUNT } from '../x86/ioapic/ioapic.ts';
import { rteIsMasked, rteMessage } from '../x86/ioapic/redirection-entry.ts';
import { encodeMsi } from '../x86/msi/msi-codec.ts';
import { KVM_MAX_IRQ_ROUTES, KvmIoctl } from './kvm-abi.ts';
import { encodeKvmRouting } from './kvm-gsi-routing.ts';
import type { KvmMsiSender } from './kvm-msi-sender.ts';
import type { KvmVm } from './kvm-vm.ts';

const PUSHES = LOCK_WORDS;
const MIRROR = PUSHES + 1;
const WORDS_PER_MIRROR_ROUTE = 3;
const MSI_ROUTES = MIRROR + IOAPIC_PIN_COUNT * WORDS_PER_MIRROR_ROUTE;
/** KVM's table holds at most KVM_MAX_IRQ_ROUTES entries; the mirror takes 24 of them. */
export const MAX_SPLIT_MSI_ROUTES = KVM_MAX_IRQ_ROUTES - IOAPIC_PIN_COUNT;
const TOTAL_WORDS = MSI_ROUTES + routeWordCount(MAX_SPLIT_MSI_ROUTES);

/** An IOAPIC message as KVM takes it, and the push generation at which KVM was last seen to hold its level route. */
interface EncodedMessage {
  readonly addressLow: number;
  readonly addressHigh: number;
  readonly data: number;
  readonly level: boolean;
  verifiedAtPush: number;
}

/** Never a push count: a message not yet checked against KVM's table. */
const NOT_VERIFIED = -1;

export class SplitChipKvmRoutes implements InterruptMessageSink {
  /** This thread's encodings of the IOAPIC's messages (the IOAPIC reuses one object per entry value). */
  private readonly encodings = new WeakMap<InterruptMessage, EncodedMessage>();
  private attachedCore: LegacyIrqCore | undefined;

  constructor(
    private readonly vm: KvmVm,
    private readonly words: Int32Array,
    private readonly sender: KvmMsiSender,
  ) {}

  /** Shared words for a new chip's table (nothing pushed yet). */
  static allocateWords(): Int32Array {
    return allocateStateWords(TOTAL_WORDS - LOCK_WORDS);
  }

  /** Binds this view to the core whose IOAPIC it mirrors (the core is built with this object as its sink). */
  attach(core: LegacyIrqCore): void {
    this.attachedCore = core;
    core.ioapic.setRedirectionEntryListener((pin) => {
      this.entryWritten(pin);
    });
  }

  // -------------------------------------------------------------------------------------------
  // The IOAPIC's sink
  // -------------------------------------------------------------------------------------------

  /**
   * Sends an IOAPIC message with KVM_SIGNAL_MSI (called with the IOAPIC lock held). KVM answers 1
   * per local APIC that took it, 0 when none did (no APIC has the destination, or it is
   * software-disabled: then the IOAPIC sets no remote IRR, which no EOI would ever clear), or -1.
   * KVM's local APICs drop an ExtINT message (lapic.c `__apic_accept_irq`), as with KVM's own IOAPIC.
   * The message's encoding is cached and sent as its 32-bit halves: nothing is allocated per interrupt.
   */
  deliver(message: InterruptMessage): number {
    let encoded = this.encodings.get(message);
    if (encoded === undefined) {
      encoded = encodeMessage(message);
      this.encodings.set(message, encoded);
    }
    if (encoded.level && encoded.verifiedAtPush !== Atomics.load(this.words, PUSHES)) this.ensureLevelRoute(encoded);
    return this.sender.sendHalves(encoded.addressLow, encoded.addressHigh, encoded.data);
  }

  // -------------------------------------------------------------------------------------------
  // Route changes
  // -------------------------------------------------------------------------------------------

  /**
   * Changes the chip's routing table: `change` edits a copy (GsiRoutingTable rules; it throws
   * EINVAL for a bad route), the split chip's own rules are checked, KVM takes its part, and only
   * then is the table committed. Any refusal throws and changes nothing.
   */
  changeRoutes(change: (table: GsiRoutingTable) => void): void {
    const core = this.core();
    acquireLock(this.words);
    try {
      const table = new GsiRoutingTable(IOAPIC_PIN_COUNT, core.routes());
      change(table);
      const routes = table.routes();
      this.push(kvmMsiRoutes(routes));
      core.routeTable.setRoutes(routes);
    } finally {
      releaseLock(this.words);
    }
    core.rewireLevelPins();
  }

  /** Pushes the mirror of the current redirection table and the chip's MSI routes (after a restore). */
  resync(): void {
    const core = this.core();
    acquireLock(this.words);
    try {
      this.push(kvmMsiRoutes(core.routes()));
    } finally {
      releaseLock(this.words);
    }
  }

  /** The table KVM holds: the mirror on GSIs 0–23, then the MSI routes (as last pushed). */
  routes(): IrqRoute[] {
    acquireLock(this.words);
    try {
      return [...this.mirrorRoutes(), ...decodeRouteWords(this.words, MSI_ROUTES)];
    } finally {
      releaseLock(this.words);
    }
  }

  /** The shared words, for a view's descriptor. */
  sharedWords(): SharedArrayBuffer {
    return this.words.buffer as SharedArrayBuffer;
  }

  /** How many times KVM_SET_GSI_ROUTING was issued for this chip. */
  pushCount(): number {
    return Atomics.load(this.words, PUSHES);
  }

  // -------------------------------------------------------------------------------------------
  // Internals
  // -------------------------------------------------------------------------------------------

  private core(): LegacyIrqCore {
    const core = this.attachedCore;
    if (core === undefined) throw new IrqChipError(ErrorCode.EINVAL, 'split chip routes used before their core was attached');
    return core;
  }

  /**
   * After a guest write of pin `pin`'s entry: push when KVM's route for it is wrong and the entry
   * can deliver (unmasked). A masked entry waits for the next push (see the file comment).
   */
  private entryWritten(pin: number): void {
    const { low, high } = this.core().ioapic.redirectionEntry(pin);
    if (rteIsMasked(low)) return;
    const wanted = mirrorEncoding(low, high);
    if (this.mirrorHoldsAt(pin, wanted)) return;
    acquireLock(this.words);
    try {
      if (!this.mirrorHoldsAt(pin, wanted)) this.push(this.pushedMsiRoutes());
    } finally {
      releaseLock(this.words);
    }
  }

  /** Makes sure KVM holds a level route for `encoded` before it is sent (rare: a push under the IOAPIC lock). */
  private ensureLevelRoute(encoded: EncodedMessage): void {
    acquireLock(this.words);
    try {
      if (!this.mirrorHolds(encoded)) this.push(this.pushedMsiRoutes());
      encoded.verifiedAtPush = this.words[PUSHES] ?? NOT_VERIFIED;
    } finally {
      releaseLock(this.words);
    }
  }

  /**
   * KVM_SET_GSI_ROUTING with the mirror of every entry as it is now and `msiRoutes`; records them
   * once KVM took them. Call with the lock held.
   */
  private push(msiRoutes: readonly IrqRoute[]): void {
    const { ioapic } = this.core();
    const mirror = Array.from({ length: IOAPIC_PIN_COUNT }, (_, pin) => {
      const { low, high } = ioapic.redirectionEntry(pin);
      return mirrorEncoding(low, high);
    });
    const routes = [...mirror.map((encoded, pin) => msiIrqRoute(pin, joinHalves(encoded.addressLow, encoded.addressHigh), encoded.data)), ...msiRoutes];
    this.vm.ioctl(KvmIoctl.SET_GSI_ROUTING, encodeKvmRouting(routes), 'KVM_SET_GSI_ROUTING (split irqchip)');
    const { words } = this;
    mirror.forEach((encoded, pin) => {
      const at = MIRROR + pin * WORDS_PER_MIRROR_ROUTE;
      words[at] = encoded.addressLow;
      words[at + 1] = encoded.addressHigh;
      words[at + 2] = encoded.data;
    });
    encodeRouteWords(msiRoutes, words, MSI_ROUTES);
    Atomics.add(words, PUSHES, 1);
  }

  /** The MSI routes KVM has now. Call with the lock held. */
  private pushedMsiRoutes(): IrqRoute[] {
    return decodeRouteWords(this.words, MSI_ROUTES);
  }

  private mirrorRoutes(): IrqRoute[] {
    return Array.from({ length: IOAPIC_PIN_COUNT }, (_, pin) => {
      const at = MIRROR + pin * WORDS_PER_MIRROR_ROUTE;
      const { words } = this;
      return msiIrqRoute(pin, joinHalves(words[at] ?? 0, words[at + 1] ?? 0), (words[at + 2] ?? 0) >>> 0);
    });
  }

  /** Whether KVM's route on GSI `pin` is `wanted` (single-word reads: a torn look only costs a push). */
  private mirrorHoldsAt(pin: number, wanted: EncodedMessage): boolean {
    const at = MIRROR + pin * WORDS_PER_MIRROR_ROUTE;
    return (
      Atomics.load(this.words, at) === (wanted.addressLow | 0) &&
      Atomics.load(this.words, at + 1) === (wanted.addressHigh | 0) &&
      Atomics.load(this.words, at + 2) === (wanted.data | 0)
    );
  }

  /** Whether some mirror route is exactly `encoded`'s message (then KVM reports its EOI). */
  private mirrorHolds(encoded: EncodedMessage): boolean {
    for (let pin = 0; pin < IOAPIC_PIN_COUNT; pin++) if (this.mirrorHoldsAt(pin, encoded)) return true;
    return false;
  }
}

/**
 * The chip's routes KVM takes: its MSI routes on GSIs 24 and up. A GSI past the IOAPIC's pins is
 * KVM's, so it may carry only an MSI (KVM refuses irqchip routes on a split chip, EINVAL, and our
 * controllers are reached through GSIs 0–23). MSI routes on GSIs 0–23 stay ours: KVM's GSIs 0–23
 * are the mirror, so we send those messages ourselves.
 */
export function kvmMsiRoutes(routes: readonly IrqRoute[]): IrqRoute[] {
  const kvmRoutes: IrqRoute[] = [];
  for (const route of routes) {
    if (route.gsi < IOAPIC_PIN_COUNT) continue;
    if (route.source.kind !== 'msi') {
      throw new IrqChipError(
        ErrorCode.EINVAL,
        `GSI ${route.gsi}: on a split irqchip GSIs from ${IOAPIC_PIN_COUNT} are KVM's and take only MSI routes (KVM refuses irqchip routes there; the PIC and IOAPIC pins are reached through GSIs 0-${IOAPIC_PIN_COUNT - 1})`,
      );
    }
    kvmRoutes.push(route);
  }
  if (kvmRoutes.length > MAX_SPLIT_MSI_ROUTES) {
    throw new IrqChipError(ErrorCode.ENOSPC, `KVM takes ${MAX_SPLIT_MSI_ROUTES} MSI routes beside the IOAPIC's ${IOAPIC_PIN_COUNT}, got ${kvmRoutes.length}`);
  }
  return kvmRoutes;
}

/** The MSI an interrupt message is in KVM's terms (the IOAPIC's destinations are 8-bit: xAPIC format). */
function encodeMessage(message: InterruptMessage): EncodedMessage {
  const { addressLow, addressHigh, data } = encodeMsi(message);
  return { addressLow, addressHigh, data, level: message.triggerMode === TriggerMode.Level, verifiedAtPush: NOT_VERIFIED };
}

/** Pin p's mirror route: the message its entry sends now (bit 15 set for a level entry). */
function mirrorEncoding(low: number, high: number): EncodedMessage {
  return encodeMessage(rteMessage(low, high, false));
}
