/**
 * The irq-probe guest (guests/irq-probe.c), the guest code every chip mode's delivery tests and
 * round-trip benchmarks run: its ports, and the configuration block the VMM writes for it.
 *
 * The guest enables its local APIC (xAPIC, or x2APIC), programs the 8259A pair (vectors
 * 0x20–0x2f, `picUnmasked` IRQs unmasked, `picLevel` in the ELCR) and the IOAPIC entries listed,
 * OUTs to Ready, and sleeps with interrupts on. Each handler OUTs its vector to Report, then EOIs
 * (the 8259A for its vectors, the local APIC otherwise).
 */

import { GUEST_IMAGE_ADDRESS, enterLongMode, loadGuestImage, readGuestImage, writeLongModeTables } from './long-mode.ts';
import type { KvmVcpu } from './kvm-vcpu.ts';

/** The guest's ports (guests/lib/runtime.h). */
export const ProbePort = {
  /** 32-bit OUT: a handler ran for this vector. */
  Report: 0x10,
  /** OUT: the guest finished its set-up. */
  Ready: 0x11,
  /** 32-bit OUT: an exception's vector; the guest stops. */
  Fatal: 0x12,
  /** OUT: an application processor started (from AP_START_PAGE). */
  ApStarted: 0x13,
} as const;

/**
 * Where the application processors start (the SIPI's page: vector 0x09). Real-mode code the VMM
 * writes: `mov al, 1; out ApStarted, al; cli; hlt; jmp $-2` — each AP reports once and halts.
 */
const AP_START_PAGE = 0x9000;
const AP_START_CODE = [0xb0, 0x01, 0xe6, ProbePort.ApStarted, 0xfa, 0xf4, 0xeb, 0xfd];

/** The 8259A vector bases the guest programs: IRQ n is vector 0x20 + n. */
export const PROBE_PIC_VECTOR_BASE = 0x20;

export interface ProbeIoapicEntry {
  readonly pin: number;
  readonly vector: number;
  readonly levelTriggered: boolean;
  /** Physical destination APIC ID (default 0). */
  readonly destination?: number;
}

export interface IrqProbeConfig {
  /** Use the x2APIC (MSRs) instead of the xAPIC page. */
  readonly x2apic?: boolean;
  /** Program LINT0 as ExtINT (virtual wire), so the 8259A's interrupts reach this CPU; else LINT0 is masked. */
  readonly picVirtualWire?: boolean;
  /** IRQs left unmasked on the 8259A pair (bit n = IRQ n). */
  readonly picUnmasked?: number;
  /** IRQs made level-triggered in the ELCR. */
  readonly picLevel?: number;
  readonly ioapic?: readonly ProbeIoapicEntry[];
  /** A vector whose handler reports but never EOIs: to observe when the host's EOI happens. */
  readonly noEoiVector?: number;
  /** After Ready, the BSP starts every other CPU with INIT, SIPI, SIPI (SDM vol. 3 §9.4.4.1). */
  readonly startAps?: boolean;
}

/**
 * struct probe_config at CONFIG_ADDRESS: magic u32 @0, flags u32 @4, pic_unmasked u16 @8,
 * pic_level u16 @10, ioapic_entry_count u32 @12, then the entries @16 (pin, vector,
 * level_triggered, destination: a byte each; room for 24), then no_eoi_vector u32 @112.
 */
const CONFIG_ADDRESS = 0x8000;
const CONFIG_MAGIC = 0x50515249;
const FLAG_X2APIC = 1;
const FLAG_PIC_VIRTUAL_WIRE = 2;
const FLAG_START_APS = 4;
const IOAPIC_ENTRIES_AT = 16;
const IOAPIC_ENTRY_BYTES = 4;
const MAX_IOAPIC_ENTRIES = 24;
const NO_EOI_VECTOR_AT = IOAPIC_ENTRIES_AT + MAX_IOAPIC_ENTRIES * IOAPIC_ENTRY_BYTES;
const CONFIG_BYTES = NO_EOI_VECTOR_AT + 4;

/** Loads the guest image, its long-mode tables and its configuration into guest RAM. */
export function loadIrqProbe(memory: Uint8Array, config: IrqProbeConfig): void {
  const entries = config.ioapic ?? [];
  if (entries.length > MAX_IOAPIC_ENTRIES) throw new RangeError(`irq-probe takes at most ${MAX_IOAPIC_ENTRIES} IOAPIC entries`);
  writeLongModeTables(memory);
  loadGuestImage(memory, readGuestImage('irq-probe'));
  const view = new DataView(memory.buffer, memory.byteOffset + CONFIG_ADDRESS, CONFIG_BYTES);
  view.setUint32(0, CONFIG_MAGIC, true);
  const flags = (config.x2apic === true ? FLAG_X2APIC : 0) | (config.picVirtualWire === true ? FLAG_PIC_VIRTUAL_WIRE : 0) | (config.startAps === true ? FLAG_START_APS : 0);
  view.setUint32(4, flags, true);
  memory.set(AP_START_CODE, AP_START_PAGE);
  view.setUint16(8, config.picUnmasked ?? 0, true);
  view.setUint16(10, config.picLevel ?? 0, true);
  view.setUint32(12, entries.length, true);
  entries.forEach((entry, index) => {
    const at = IOAPIC_ENTRIES_AT + index * IOAPIC_ENTRY_BYTES;
    view.setUint8(at, entry.pin);
    view.setUint8(at + 1, entry.vector);
    view.setUint8(at + 2, entry.levelTriggered ? 1 : 0);
    view.setUint8(at + 3, entry.destination ?? 0);
  });
  view.setUint32(NO_EOI_VECTOR_AT, config.noEoiVector ?? 0, true);
}

/** Points a vCPU at the guest's entry, in long mode. */
export function enterIrqProbe(vcpu: KvmVcpu): void {
  enterLongMode(vcpu, GUEST_IMAGE_ADDRESS);
}
