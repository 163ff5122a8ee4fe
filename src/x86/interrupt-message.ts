/**
 * The interrupt message: what travels on the APIC bus.
 *
 * The IOAPIC turns a redirection entry into one (82093AA datasheet §3.2.4), an MSI's address and
 * data decode into one (Intel SDM vol. 3, §11.11), and a local APIC's ICR write is one (SDM
 * §11.6.1). The `ApicBus` (src/x86/lapic/apic-bus.ts) matches its destination against every local
 * APIC and has each target accept it.
 */

/** Delivery mode, bits 10:8 of an RTE, an ICR low word or MSI data (SDM vol. 3 §11.6.1). */
export const DeliveryMode = {
  Fixed: 0,
  LowestPriority: 1,
  Smi: 2,
  RemoteRead: 3,
  Nmi: 4,
  Init: 5,
  StartUp: 6,
  ExtInt: 7,
} as const;
export type DeliveryMode = (typeof DeliveryMode)[keyof typeof DeliveryMode];

/** Destination mode, bit 11: physical APIC ID or logical (LDR/DFR) destination. */
export const DestinationMode = { Physical: 0, Logical: 1 } as const;
export type DestinationMode = (typeof DestinationMode)[keyof typeof DestinationMode];

/** Trigger mode, bit 15. */
export const TriggerMode = { Edge: 0, Level: 1 } as const;
export type TriggerMode = (typeof TriggerMode)[keyof typeof TriggerMode];

/** Destination shorthand, ICR bits 19:18. Messages from the IOAPIC and MSIs always use `None`. */
export const DestinationShorthand = { None: 0, Self: 1, AllIncludingSelf: 2, AllExcludingSelf: 3 } as const;
export type DestinationShorthand = (typeof DestinationShorthand)[keyof typeof DestinationShorthand];

/** xAPIC broadcast destination (8-bit), and x2APIC's (32-bit). */
export const XAPIC_BROADCAST = 0xff;
export const X2APIC_BROADCAST = 0xffffffff;

export interface InterruptMessage {
  /** Destination: 8 bits for xAPIC, up to 32 bits for x2APIC or extended-destination MSIs. */
  readonly destination: number;
  readonly destinationMode: DestinationMode;
  readonly deliveryMode: DeliveryMode;
  /** Vector 0–255 (ignored for NMI, INIT, SMI; the SIPI page for StartUp). */
  readonly vector: number;
  readonly triggerMode: TriggerMode;
  /** Level: `true` = assert. Only the INIT level-de-assert form and level-triggered de-asserts carry `false`. */
  readonly level: boolean;
  readonly shorthand: DestinationShorthand;
  /** MSI redirection hint (address bit 3): lowest-priority arbitration among the destinations. */
  readonly redirectionHint: boolean;
  /**
   * Index on the bus of the local APIC that sent it (an IPI), or `undefined` for messages from
   * the IOAPIC or an MSI. The x2APIC broadcast quirk applies only to the latter (x86-controllers.md §3.8).
   */
  readonly sourceApic?: number | undefined;
}

/**
 * An interrupt message with `fields` over the defaults: destination 0, physical, fixed, vector 0,
 * edge, assert, no shorthand, no redirection hint, no source APIC (i.e. from an IOAPIC or MSI).
 *
 * Every message is built here, so every one has all nine fields in this one order: the bus and
 * the local APICs then see a single object shape (one V8 hidden class, monomorphic field loads).
 * The result is a fresh object, so a hot path may also keep it as a mutable message and overwrite
 * its fields (the `ApicBus` does, for MSIs).
 */
export function interruptMessage(fields: Partial<InterruptMessage> = {}): InterruptMessage {
  return {
    destination: fields.destination ?? 0,
    destinationMode: fields.destinationMode ?? DestinationMode.Physical,
    deliveryMode: fields.deliveryMode ?? DeliveryMode.Fixed,
    vector: fields.vector ?? 0,
    triggerMode: fields.triggerMode ?? TriggerMode.Edge,
    level: fields.level ?? true,
    shorthand: fields.shorthand ?? DestinationShorthand.None,
    redirectionHint: fields.redirectionHint ?? false,
    sourceApic: fields.sourceApic,
  };
}

/**
 * Where an interrupt message goes: the APIC bus. The result follows KVM's convention
 * (x86-controllers.md §0): negative = ignored (masked, no destination), 0 = coalesced (already
 * pending everywhere), positive = how many local APICs accepted it.
 */
export interface InterruptMessageSink {
  deliver(message: InterruptMessage): number;
}

/**
 * Receives an EOI broadcast from a local APIC, i.e. the IOAPIC. `triggerMode` is the EOIed
 * vector's TMR bit (KVM passes it the same way); a local APIC broadcasts level EOIs, so it defaults
 * to `Level`.
 */
export interface EoiBroadcastListener {
  endOfInterrupt(vector: number, triggerMode?: TriggerMode): void;
}

/**
 * The 8259A pair as the local APIC sees it through LINT0 / an ExtINT message: the level of its INT
 * output, and the interrupt-acknowledge cycle that returns the vector (8259A datasheet, "Interrupt
 * sequence"; x86-controllers.md §1.9 and §3.14).
 */
export interface ExtIntController {
  /** Whether the PIC's INT output is high (an unmasked request outranks what is in service). */
  outputLevel(): boolean;
  /** The INTA cycle: moves the winning request to ISR and returns its vector (or the spurious one). */
  acknowledge(): number;
}
