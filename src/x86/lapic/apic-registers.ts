/**
 * The local APIC's register file as the guest sees it: register numbers, field positions, write
 * masks and which registers each mode decodes (Intel SDM vol. 3 §11.4–§11.6, §11.12;
 * x86-controllers.md §3.2–§3.4). Pure facts and tiny pure functions; the semantics live in
 * `local-apic.ts` and `apic-timer.ts`.
 *
 * A register number is the xAPIC MMIO offset divided by 16, which is also the x2APIC MSR index
 * minus 0x800 (SDM Table 11-6), so one number names a register in both modes.
 */

/** Register numbers (xAPIC offset >> 4 = x2APIC MSR − 0x800). */
export const ApicRegister = {
  Id: 0x02,
  Version: 0x03,
  TaskPriority: 0x08,
  ArbitrationPriority: 0x09,
  ProcessorPriority: 0x0a,
  EndOfInterrupt: 0x0b,
  RemoteRead: 0x0c,
  LogicalDestination: 0x0d,
  DestinationFormat: 0x0e,
  SpuriousVector: 0x0f,
  /** ISR[0..7] are 0x10–0x17, TMR[0..7] 0x18–0x1F, IRR[0..7] 0x20–0x27: 32 vectors each. */
  InServiceFirst: 0x10,
  TriggerModeFirst: 0x18,
  InterruptRequestFirst: 0x20,
  InterruptRequestLast: 0x27,
  ErrorStatus: 0x28,
  InterruptCommand: 0x30,
  InterruptCommandHigh: 0x31,
  /** The six LVT entries, contiguous: timer, thermal, performance counter, LINT0, LINT1, error. */
  LvtTimer: 0x32,
  LvtThermal: 0x33,
  LvtPerformanceCounter: 0x34,
  LvtLint0: 0x35,
  LvtLint1: 0x36,
  LvtError: 0x37,
  TimerInitialCount: 0x38,
  TimerCurrentCount: 0x39,
  TimerDivideConfiguration: 0x3e,
  SelfIpi: 0x3f,
} as const;

/** The LVT entries in register order. */
export const LVT_REGISTERS: readonly number[] = [
  ApicRegister.LvtTimer,
  ApicRegister.LvtThermal,
  ApicRegister.LvtPerformanceCounter,
  ApicRegister.LvtLint0,
  ApicRegister.LvtLint1,
  ApicRegister.LvtError,
];

/** Registers per page: 4 KiB / 16 bytes, and the 256 MSRs 0x800–0x8FF. */
const REGISTER_COUNT = 0x100;
/** Size of the xAPIC MMIO page. */
export const XAPIC_PAGE_BYTES = 0x1000;
/** xAPIC registers are 32 bits wide and 16-byte aligned (SDM §11.4.1). */
export const XAPIC_REGISTER_STRIDE = 16;
export const XAPIC_ACCESS_BYTES = 4;

/** MSRs the local APIC owns besides the x2APIC block. */
export const MSR_IA32_APIC_BASE = 0x1b;
export const MSR_IA32_TSC_DEADLINE = 0x6e0;
export const MSR_X2APIC_FIRST = 0x800;
export const MSR_X2APIC_LAST = 0x8ff;

/** How a mode decodes one register. */
export const RegisterAccess = { None: 0, Read: 1, Write: 2, ReadWrite: 3 } as const;
export type RegisterAccess = (typeof RegisterAccess)[keyof typeof RegisterAccess];

/** xAPIC MMIO decoding (SDM Table 11-1; the CMCI LVT at 0x2F0 is absent: we model 6 LVTs). */
export const XAPIC_ACCESS: Uint8Array = buildAccessTable([
  [ApicRegister.Id, RegisterAccess.ReadWrite],
  [ApicRegister.Version, RegisterAccess.Read],
  [ApicRegister.TaskPriority, RegisterAccess.ReadWrite],
  [ApicRegister.ArbitrationPriority, RegisterAccess.Read],
  [ApicRegister.ProcessorPriority, RegisterAccess.Read],
  [ApicRegister.EndOfInterrupt, RegisterAccess.Write],
  [ApicRegister.RemoteRead, RegisterAccess.Read],
  [ApicRegister.LogicalDestination, RegisterAccess.ReadWrite],
  [ApicRegister.DestinationFormat, RegisterAccess.ReadWrite],
  [ApicRegister.SpuriousVector, RegisterAccess.ReadWrite],
  ...vectorRegisterBanks(),
  [ApicRegister.ErrorStatus, RegisterAccess.ReadWrite],
  [ApicRegister.InterruptCommand, RegisterAccess.ReadWrite],
  [ApicRegister.InterruptCommandHigh, RegisterAccess.ReadWrite],
  ...lvtRegisters(),
  [ApicRegister.TimerInitialCount, RegisterAccess.ReadWrite],
  [ApicRegister.TimerCurrentCount, RegisterAccess.Read],
  [ApicRegister.TimerDivideConfiguration, RegisterAccess.ReadWrite],
]);

/**
 * x2APIC MSR decoding (SDM Table 11-6): no APR, RRD, DFR or ICR-high (0x809/0x80C/0x80E/0x831
 * #GP); ID and LDR become read-only; SELF IPI appears. Anything else in 0x800–0x8FF #GPs.
 */
export const X2APIC_ACCESS: Uint8Array = buildAccessTable([
  [ApicRegister.Id, RegisterAccess.Read],
  [ApicRegister.Version, RegisterAccess.Read],
  [ApicRegister.TaskPriority, RegisterAccess.ReadWrite],
  [ApicRegister.ProcessorPriority, RegisterAccess.Read],
  [ApicRegister.EndOfInterrupt, RegisterAccess.Write],
  [ApicRegister.LogicalDestination, RegisterAccess.Read],
  [ApicRegister.SpuriousVector, RegisterAccess.ReadWrite],
  ...vectorRegisterBanks(),
  [ApicRegister.ErrorStatus, RegisterAccess.ReadWrite],
  [ApicRegister.InterruptCommand, RegisterAccess.ReadWrite],
  ...lvtRegisters(),
  [ApicRegister.TimerInitialCount, RegisterAccess.ReadWrite],
  [ApicRegister.TimerCurrentCount, RegisterAccess.Read],
  [ApicRegister.TimerDivideConfiguration, RegisterAccess.ReadWrite],
  [ApicRegister.SelfIpi, RegisterAccess.Write],
]);

function vectorRegisterBanks(): [number, RegisterAccess][] {
  const banks: [number, RegisterAccess][] = [];
  for (let register: number = ApicRegister.InServiceFirst; register <= ApicRegister.InterruptRequestLast; register++) {
    banks.push([register, RegisterAccess.Read]);
  }
  return banks;
}

function lvtRegisters(): [number, RegisterAccess][] {
  return LVT_REGISTERS.map((register) => [register, RegisterAccess.ReadWrite]);
}

function buildAccessTable(entries: readonly (readonly [number, RegisterAccess])[]): Uint8Array {
  const table = new Uint8Array(REGISTER_COUNT);
  for (const [register, access] of entries) table[register] = access;
  return table;
}

// ---------------------------------------------------------------------------------------------
// IA32_APIC_BASE (SDM §11.4.4, §11.12.1; x86-controllers.md §3.1)
// ---------------------------------------------------------------------------------------------

export const APIC_BASE_BSP = 1 << 8;
const APIC_BASE_EXTD = 1 << 10;
export const APIC_BASE_ENABLE = 1 << 11;
/** Bits 7:0 and 9 are reserved (#GP if set). */
const APIC_BASE_RESERVED_LOW = 0x2ff;
/** The base address's bits 31:12 in the MSR's low word: the xAPIC page is 4 KiB aligned (SDM Figure 11-5). */
const APIC_BASE_ADDRESS_LOW = 0xfffff000 | 0;
export const APIC_BASE_DEFAULT_ADDRESS = 0xfee00000 | 0;
/**
 * MAXPHYADDR, the width of a physical address (CPUID.80000008H:EAX[7:0]): at most 52; 32 or 36
 * when the CPU has no leaf 80000008H (SDM vol. 3 §4.1.4). The base address has bits
 * MAXPHYADDR−1:12; bits from MAXPHYADDR up are reserved (SDM Figure 11-5).
 */
export const MIN_PHYSICAL_ADDRESS_BITS = 32;
export const MAX_PHYSICAL_ADDRESS_BITS = 52;
const HIGH_WORD_FIRST_BIT = 32;

/** The reserved bits of IA32_APIC_BASE's high word (MSR bits 63:32) for a CPU of `physicalAddressBits`. */
function apicBaseReservedHigh(physicalAddressBits: number): number {
  return ~((2 ** (physicalAddressBits - HIGH_WORD_FIRST_BIT) - 1) | 0);
}

/** The guest-physical address of the xAPIC page IA32_APIC_BASE names: bits MAXPHYADDR−1:12 (exact in a number: < 2^52). */
export function apicBaseAddress(apicBaseLow: number, apicBaseHigh: number): number {
  return (apicBaseHigh >>> 0) * 2 ** HIGH_WORD_FIRST_BIT + ((apicBaseLow & APIC_BASE_ADDRESS_LOW) >>> 0);
}

/** The APIC's mode from IA32_APIC_BASE EN/EXTD (SDM §11.12.5). */
export const ApicMode = { Disabled: 0, Xapic: 1, X2apic: 2, Invalid: 3 } as const;
export type ApicMode = (typeof ApicMode)[keyof typeof ApicMode];

export function apicModeOf(apicBaseLow: number): ApicMode {
  const enabled = (apicBaseLow & APIC_BASE_ENABLE) !== 0;
  const extended = (apicBaseLow & APIC_BASE_EXTD) !== 0;
  if (enabled) return extended ? ApicMode.X2apic : ApicMode.Xapic;
  return extended ? ApicMode.Invalid : ApicMode.Disabled;
}

/**
 * Whether IA32_APIC_BASE may hold this value (halves `low`, `high`) on a CPU of
 * `physicalAddressBits`: no reserved bit set (7:0, 9, MAXPHYADDR and up) and not the invalid
 * mode EN = 0, EXTD = 1 (SDM §11.4.4, §11.12.5). A WRMSR of anything else raises #GP.
 */
export function isValidApicBase(low: number, high: number, physicalAddressBits: number): boolean {
  return (low & APIC_BASE_RESERVED_LOW) === 0 && (high & apicBaseReservedHigh(physicalAddressBits)) === 0 && apicModeOf(low) !== ApicMode.Invalid;
}

// ---------------------------------------------------------------------------------------------
// Register fields
// ---------------------------------------------------------------------------------------------

/** Version register: version 0x14 (integrated xAPIC), max LVT entry = 5 (six LVTs), bit 24 = EOI-broadcast suppression. */
export const APIC_VERSION = 0x14;
export const APIC_MAX_LVT_ENTRY = 5;
export const VERSION_DIRECTED_EOI = 1 << 24;

/** xAPIC ID lives in bits 31:24; LDR's logical ID too; ICR high's destination too. */
export const XAPIC_ID_SHIFT = 24;
export const XAPIC_HIGH_BYTE_MASK = 0xff000000 | 0;
/** DFR: model in bits 31:28, bits 27:0 read as ones (SDM §11.6.2.2). */
export const DFR_MODEL_SHIFT = 28;
export const DFR_MODEL_MASK = 0xf0000000 | 0;
export const DFR_RESERVED_ONES = 0x0fffffff;
/** The DFR models (SDM §11.6.2.2): 1111b flat, 0000b cluster. */
export const DfrModel = { Cluster: 0x0, Flat: 0xf } as const;
/** DFR at RESET: flat model. */
export const DFR_RESET = (DfrModel.Flat << DFR_MODEL_SHIFT) | DFR_RESERVED_ONES;
/** What DFR reads as in x2APIC mode, for the bus: the cluster model (SDM §11.12.10). */
export const DFR_CLUSTER_MODEL = (DfrModel.Cluster << DFR_MODEL_SHIFT) | DFR_RESERVED_ONES;
/** xAPIC cluster model: LDR's logical ID is a cluster (bits 7:4) and a one-hot member (bits 3:0). */
export const XAPIC_CLUSTER_SHIFT = 4;
export const XAPIC_CLUSTER_MEMBERS_MASK = 0xf;
/** x2APIC LDR: cluster ID in bits 31:16, one-hot member bit in bits 15:0 (SDM §11.12.10.2). */
export const X2APIC_LDR_CLUSTER_SHIFT = 16;
export const X2APIC_LDR_MEMBERS_MASK = 0xffff;
/** Of an x2APIC ID, bits 31:4 name the cluster and bits 3:0 the member (SDM §11.12.10.2). */
const X2APIC_ID_CLUSTER_SHIFT = 4;
const X2APIC_ID_MEMBER_MASK = 0xf;

export const TPR_MASK = 0xff;
/** Priority class: vector bits 7:4. */
export const PRIORITY_CLASS_MASK = 0xf0;

/** SVR (SDM §11.9): spurious vector 7:0, APIC software enable 8, focus check disable 9, suppress EOI broadcast 12. */
export const SVR_VECTOR_MASK = 0xff;
export const SVR_APIC_ENABLED = 1 << 8;
const SVR_FOCUS_CHECK_DISABLED = 1 << 9;
export const SVR_SUPPRESS_EOI_BROADCAST = 1 << 12;
export const SVR_RESET = 0xff;

/** SVR's writable bits: 9:0, and 12 only when Version bit 24 advertises EOI-broadcast suppression. */
export function svrWritableMask(directedEoi: boolean): number {
  return SVR_VECTOR_MASK | SVR_APIC_ENABLED | SVR_FOCUS_CHECK_DISABLED | (directedEoi ? SVR_SUPPRESS_EOI_BROADCAST : 0);
}

/** ESR bits (SDM §11.5.3). Bits 0–3 are P6/Pentium serial-bus errors and bit 4 concerns unsupported lowest-priority IPIs: not modelled. */
export const ESR_SEND_ILLEGAL_VECTOR = 1 << 5;
export const ESR_RECEIVE_ILLEGAL_VECTOR = 1 << 6;
export const ESR_ILLEGAL_REGISTER_ADDRESS = 1 << 7;
export const ESR_DEFINED_BITS = 0xff;

/** Vectors 0–15 are illegal for fixed and lowest-priority interrupts (SDM §11.5.2, §11.5.3). */
export const FIRST_LEGAL_VECTOR = 16;
export const VECTOR_MASK = 0xff;

/** ICR low (SDM §11.6.1). Bits 13, 17:16 and 31:20 are reserved; bit 12 (delivery status) is read-only. */
export const ICR_DELIVERY_MODE_SHIFT = 8;
export const ICR_DELIVERY_MODE_MASK = 0x7;
export const ICR_DESTINATION_LOGICAL = 1 << 11;
const ICR_DELIVERY_STATUS = 1 << 12;
export const ICR_LEVEL_ASSERT = 1 << 14;
export const ICR_TRIGGER_LEVEL = 1 << 15;
export const ICR_SHORTHAND_SHIFT = 18;
export const ICR_SHORTHAND_MASK = 0x3;
export const ICR_WRITABLE = 0x000ccfff;
/** The bits an x2APIC ICR write must leave clear (#GP otherwise): 31:20, 17:16, 13. */
export const ICR_RESERVED = ~(ICR_WRITABLE | ICR_DELIVERY_STATUS);

/** LVT fields (SDM §11.5.1, Figure 11-8). */
const LVT_VECTOR_MASK = 0xff;
const LVT_DELIVERY_MODE_SHIFT = 8;
const LVT_DELIVERY_MODE_MASK = 0x7;
const LVT_DELIVERY_STATUS = 1 << 12;
export const LVT_REMOTE_IRR = 1 << 14;
export const LVT_TRIGGER_LEVEL = 1 << 15;
export const LVT_MASKED = 1 << 16;
export const LVT_TIMER_MODE_SHIFT = 17;
export const LVT_TIMER_MODE_MASK = 0x3;
/** Reset value of every LVT entry: masked, everything else 0. */
export const LVT_RESET = LVT_MASKED;
/** The BSP's LINT0 at RESET: ExtINT, unmasked (KVM quirk LINT0_REENABLED; x86-controllers.md §3.14, §6.30). */
export const LVT_LINT0_BSP_RESET = 0x700;

/** Bits a guest may write in each kind of LVT entry. */
const LVT_TIMER_WRITABLE_PERIODIC = 0x000300ff;
const LVT_TIMER_WRITABLE_TSC_DEADLINE = 0x000700ff;
const LVT_SOURCE_WRITABLE = 0x000107ff;
const LVT_LINT_WRITABLE = 0x0001a7ff;
const LVT_ERROR_WRITABLE = 0x000100ff;

/** The writable bits of an LVT entry (timer mode bit 18 only when TSC-deadline mode exists). */
export function lvtWritableMask(register: number, tscDeadlineSupported: boolean): number {
  switch (register) {
    case ApicRegister.LvtTimer:
      return tscDeadlineSupported ? LVT_TIMER_WRITABLE_TSC_DEADLINE : LVT_TIMER_WRITABLE_PERIODIC;
    case ApicRegister.LvtLint0:
    case ApicRegister.LvtLint1:
      return LVT_LINT_WRITABLE;
    case ApicRegister.LvtError:
      return LVT_ERROR_WRITABLE;
    default:
      return LVT_SOURCE_WRITABLE;
  }
}

/**
 * Bits of an LVT entry that exist but are read-only: delivery status always, remote IRR on the
 * LINT entries. A read-modify-write that writes them back is not a reserved-bit write.
 */
export function lvtReadOnlyMask(register: number): number {
  return register === ApicRegister.LvtLint0 || register === ApicRegister.LvtLint1
    ? LVT_DELIVERY_STATUS | LVT_REMOTE_IRR
    : LVT_DELIVERY_STATUS;
}

export function lvtVector(lvt: number): number {
  return lvt & LVT_VECTOR_MASK;
}

export function lvtDeliveryMode(lvt: number): number {
  return (lvt >>> LVT_DELIVERY_MODE_SHIFT) & LVT_DELIVERY_MODE_MASK;
}

export function isLvtMasked(lvt: number): boolean {
  return (lvt & LVT_MASKED) !== 0;
}

/** Timer modes, LVT timer bits 18:17 (SDM §11.5.4). */
export const TimerMode = { OneShot: 0, Periodic: 1, TscDeadline: 2, Reserved: 3 } as const;
export type TimerMode = (typeof TimerMode)[keyof typeof TimerMode];

export function lvtTimerMode(lvt: number): TimerMode {
  return ((lvt >>> LVT_TIMER_MODE_SHIFT) & LVT_TIMER_MODE_MASK) as TimerMode;
}

/** Divide configuration: bits 0, 1 and 3 (bit 2 reserved; SDM Figure 11-10). */
export const TDCR_WRITABLE = 0xb;

/**
 * The divisor a divide-configuration value selects: index = bit3:bit1:bit0; 0→2, 1→4, …, 6→128,
 * 7→1 (SDM Figure 11-10).
 */
export function timerDivisor(divideConfiguration: number): number {
  const index = ((divideConfiguration >>> 1) & 0x4) | (divideConfiguration & 0x3);
  return index === 7 ? 1 : 2 << index;
}

/** x2APIC logical ID derived from the x2APIC ID: cluster = ID[19:4] in bits 31:16, one bit for ID[3:0] (SDM §11.12.10.2). */
export function x2apicLogicalId(x2apicId: number): number {
  return (((x2apicId >>> X2APIC_ID_CLUSTER_SHIFT) << X2APIC_LDR_CLUSTER_SHIFT) | (1 << (x2apicId & X2APIC_ID_MEMBER_MASK))) >>> 0;
}
