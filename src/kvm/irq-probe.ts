/**
 * The irq-probe guest (guests/irq-probe.c), the guest code every chip mode's delivery tests and
 * round-trip benchmarks run: its ports, and the configuration block the VMM writes for it.
 *
 * The guest enables its local APIC (xAPIC, or x2APIC), records its CPUID and IA32_APIC_BASE
 * (`readIrqProbeResults`), programs the 8259A pair (vectors 0x20–0x2f, `picUnmasked` IRQs
 * unmasked, `picLevel` in the ELCR) and the IOAPIC entries listed, optionally arms its
 * TSC-deadline timer, OUTs to Ready, and sleeps with interrupts on. Each handler OUTs its vector
 * to Report, then EOIs (the 8259A for its vectors, the local APIC otherwise).
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
  /** OUT: an application processor started (from AP_START_PAGE); the byte is its x2APIC ID from CPUID. */
  ApStarted: 0x13,
  /** OUT: the BSP sent its whole INIT, SIPI, SIPI sequence (`startAps`). */
  StartupSent: 0x14,
} as const;

/**
 * Where the application processors start (the SIPI's page: vector 0x09). Real-mode code the VMM
 * writes: `mov eax, 0xb; xor ecx, ecx; cpuid; mov al, dl; out ApStarted, al; cli; hlt; jmp $-3`
 * — each AP reports its x2APIC ID (CPUID.0BH:EDX, SDM vol. 2A) once and halts.
 */
const AP_START_PAGE = 0x9000;
const CPUID_EXTENDED_TOPOLOGY = 0x0b;
const AP_START_CODE = [
  0x66, 0xb8, CPUID_EXTENDED_TOPOLOGY, 0x00, 0x00, 0x00, // mov eax, 0xb
  0x66, 0x31, 0xc9, // xor ecx, ecx
  0x0f, 0xa2, // cpuid
  0x88, 0xd0, // mov al, dl
  0xe6, ProbePort.ApStarted, // out ApStarted, al
  0xfa, // cli
  0xf4, // hlt
  0xeb, 0xfd, // jmp to the hlt
];

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
  /**
   * The BSP's TSC-deadline timer: `rounds` deadlines, each `ticks` after the RDTSC that arms it
   * (the first before Ready, each next one in the handler), on `vector`. The handler counts
   * expiries that RDTSC says came before their deadline (`IrqProbeResults.tscDeadlineEarly`).
   */
  readonly tscDeadline?: { readonly vector: number; readonly ticks: number; readonly rounds: number };
}

/** What the BSP recorded about itself, from struct probe_results (valid once it reported Ready). */
export interface IrqProbeResults {
  /** IA32_APIC_BASE once its local APIC was enabled. */
  readonly apicBase: bigint;
  readonly cpuid1: { readonly ebx: number; readonly ecx: number; readonly edx: number };
  /** CPUID.0BH:EDX. */
  readonly x2apicId: number;
  /** CPUID.0BH, core level: EBX[15:0]. */
  readonly coreCount: number;
  /** TSC-deadline interrupts taken while RDTSC read below the deadline (0 on hardware). */
  readonly tscDeadlineEarly: number;
}

/**
 * struct probe_config at CONFIG_ADDRESS: magic u32 @0, flags u32 @4, pic_unmasked u16 @8,
 * pic_level u16 @10, ioapic_entry_count u32 @12, then the entries @16 (pin, vector,
 * level_triggered, destination: a byte each; room for 24), then no_eoi_vector u32 @112,
 * tsc_deadline_vector @116, tsc_deadline_ticks @120, tsc_deadline_rounds @124.
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
const TSC_DEADLINE_VECTOR_AT = NO_EOI_VECTOR_AT + 4;
const TSC_DEADLINE_TICKS_AT = TSC_DEADLINE_VECTOR_AT + 4;
const TSC_DEADLINE_ROUNDS_AT = TSC_DEADLINE_TICKS_AT + 4;
const CONFIG_BYTES = TSC_DEADLINE_ROUNDS_AT + 4;
/**
 * struct probe_results at RESULTS_ADDRESS, written by the guest: apic_base u64 @0, cpuid_1_ebx
 * @8, cpuid_1_ecx @12, cpuid_1_edx @16, x2apic_id @20, core_count @24, tsc_deadline_early @28.
 */
const RESULTS_ADDRESS = 0x8100;
const ProbeResult = { ApicBase: 0, Cpuid1Ebx: 8, Cpuid1Ecx: 12, Cpuid1Edx: 16, X2apicId: 20, CoreCount: 24, TscDeadlineEarly: 28 } as const;
const RESULTS_BYTES = ProbeResult.TscDeadlineEarly + 4;

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
  view.setUint32(TSC_DEADLINE_VECTOR_AT, config.tscDeadline?.vector ?? 0, true);
  view.setUint32(TSC_DEADLINE_TICKS_AT, config.tscDeadline?.ticks ?? 0, true);
  view.setUint32(TSC_DEADLINE_ROUNDS_AT, config.tscDeadline?.rounds ?? 0, true);
  memory.fill(0, RESULTS_ADDRESS, RESULTS_ADDRESS + RESULTS_BYTES);
}

/** What the guest recorded (struct probe_results): read it after the guest's Ready. */
export function readIrqProbeResults(memory: Uint8Array): IrqProbeResults {
  const view = new DataView(memory.buffer, memory.byteOffset + RESULTS_ADDRESS, RESULTS_BYTES);
  const word = (at: number): number => view.getUint32(at, true);
  return {
    apicBase: view.getBigUint64(ProbeResult.ApicBase, true),
    cpuid1: { ebx: word(ProbeResult.Cpuid1Ebx), ecx: word(ProbeResult.Cpuid1Ecx), edx: word(ProbeResult.Cpuid1Edx) },
    x2apicId: word(ProbeResult.X2apicId),
    coreCount: word(ProbeResult.CoreCount),
    tscDeadlineEarly: word(ProbeResult.TscDeadlineEarly),
  };
}

/** Points a vCPU at the guest's entry, in long mode. */
export function enterIrqProbe(vcpu: KvmVcpu): void {
  enterLongMode(vcpu, GUEST_IMAGE_ADDRESS);
}
