/**
 * KVM's binary interface on x86-64: ioctl numbers, capabilities, exit reasons and struct layouts
 * (shared/spec/kvm-from-node.md §1; linux/kvm.h). The numbers are the C header's: in C++ the
 * header gives wrong ones for structs with flexible arrays (KVM_SET_GSI_ROUTING among them), so
 * they are written out here rather than taken from a compiler.
 */

/** KVM_GET_API_VERSION's answer for the stable API. */
export const KVM_API_VERSION = 12;

/** ioctl request numbers. */
export const KvmIoctl = {
  // On /dev/kvm
  GET_API_VERSION: 0xae00,
  CREATE_VM: 0xae01,
  CHECK_EXTENSION: 0xae03,
  GET_VCPU_MMAP_SIZE: 0xae04,
  // On a VM
  CREATE_VCPU: 0xae41,
  SET_USER_MEMORY_REGION: 0x4020ae46,
  SET_TSS_ADDR: 0xae47,
  CREATE_IRQCHIP: 0xae60,
  GET_IRQCHIP: 0xc208ae62,
  SET_IRQCHIP: 0x8208ae63,
  IRQ_LINE: 0x4008ae61,
  IRQ_LINE_STATUS: 0xc008ae67,
  SET_GSI_ROUTING: 0x4008ae6a,
  IRQFD: 0x4020ae76,
  CREATE_PIT2: 0x4040ae77,
  SIGNAL_MSI: 0x4020aea5,
  ENABLE_CAP: 0x4068aea3,
  X86_SET_MSR_FILTER: 0x4188aec6,
  // On /dev/kvm (also answered on a VM fd)
  GET_SUPPORTED_CPUID: 0xc008ae05,
  // On a vCPU
  RUN: 0xae80,
  GET_REGS: 0x8090ae81,
  SET_REGS: 0x4090ae82,
  GET_SREGS: 0x8138ae83,
  SET_SREGS: 0x4138ae84,
  INTERRUPT: 0x4004ae86,
  GET_MP_STATE: 0x8004ae98,
  SET_MP_STATE: 0x4004ae99,
  NMI: 0xae9a,
  GET_LAPIC: 0x8400ae8e,
  SET_LAPIC: 0x4400ae8f,
  SET_CPUID2: 0x4008ae90,
  GET_MSRS: 0xc008ae88,
  SET_MSRS: 0x4008ae89,
  GET_CPUID2: 0xc008ae91,
  /** On a vCPU; also on a VM (its default, what every new vCPU gets) since Linux 6.0. */
  GET_TSC_KHZ: 0xaea3,
  // On a VM with KVM's PIT: _IO(KVMIO, 0x71), although it takes a struct kvm_reinject_control pointer.
  REINJECT_CONTROL: 0xae71,
} as const;

/** KVM_CHECK_EXTENSION capability numbers. */
export const KvmCap = {
  IRQCHIP: 0,
  IRQ_INJECT_STATUS: 26,
  IRQFD: 32,
  PIT2: 33,
  MAX_VCPUS: 66,
  TSC_DEADLINE_TIMER: 72,
  SIGNAL_MSI: 77,
  IRQFD_RESAMPLE: 82,
  SPLIT_IRQCHIP: 121,
  X2APIC_API: 129,
  IMMEDIATE_EXIT: 136,
  X86_USER_SPACE_MSR: 188,
  X86_MSR_FILTER: 189,
  REINJECT_CONTROL: 24,
} as const;

/** kvm_run.exit_reason values (x86), the vocabulary of a run loop and of its reports. */
export const KvmExit = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HLT: 5,
  MMIO: 6,
  IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  /** Also what `KvmVcpu.run()` returns when KVM_RUN was interrupted (-EINTR: a kick). */
  INTR: 10,
  INTERNAL_ERROR: 17,
  SYSTEM_EVENT: 24,
  IOAPIC_EOI: 26,
  X86_RDMSR: 29,
  X86_WRMSR: 30,
} as const;

/** kvm_run.io.direction. */
export const KVM_EXIT_IO_OUT = 1;

/** kvm_mp_state values, in the order of `MPState` (KVM_MP_STATE_RUNNABLE = 0 ... STOPPED = 5). */
export const KVM_MP_STATES = ['runnable', 'uninitialized', 'init-received', 'halted', 'sipi-received', 'stopped'] as const;

/** kvm_irqfd.flags. */
export const KVM_IRQFD_FLAG_DEASSIGN = 1;
export const KVM_IRQFD_FLAG_RESAMPLE = 2;

/** kvm_irq_routing_entry.type. */
export const KVM_IRQ_ROUTING_IRQCHIP = 1;
export const KVM_IRQ_ROUTING_MSI = 2;
/** KVM_MAX_IRQ_ROUTES: entries in one KVM_SET_GSI_ROUTING, and one past the largest GSI. */
export const KVM_MAX_IRQ_ROUTES = 4096;

/** kvm_pit_config.flags: port 0x61 (the speaker) is emulated in the kernel too. */
export const KVM_PIT_SPEAKER_DUMMY = 1;

/** The in-kernel IOAPIC's pin count (KVM_IOAPIC_NUM_PINS). */
export const KVM_IOAPIC_NUM_PINS = 24;

// ---------------------------------------------------------------------------------------------
// Struct layouts: sizes and byte offsets.
// ---------------------------------------------------------------------------------------------

/** struct kvm_run: the fields read or written here. The exit union starts at 32. */
export const KvmRunLayout = {
  REQUEST_INTERRUPT_WINDOW: 0, // u8
  IMMEDIATE_EXIT: 1, // u8
  EXIT_REASON: 8, // u32
  READY_FOR_INTERRUPT_INJECTION: 12, // u8
  IF_FLAG: 13, // u8
  IO_DIRECTION: 32, // u8, 1 = out
  IO_SIZE: 33, // u8: 1, 2 or 4
  IO_PORT: 34, // u16
  IO_DATA_OFFSET: 40, // u64: the data is at run + data_offset
  MMIO_PHYS_ADDR: 32, // u64
  MMIO_DATA: 40, // u8[8]
  MMIO_LEN: 48, // u32
  MMIO_IS_WRITE: 52, // u8
  EOI_VECTOR: 32, // u8: KVM_EXIT_IOAPIC_EOI
  MSR_ERROR: 32, // u8: set by userspace to make the guest's RDMSR/WRMSR take #GP
  MSR_REASON: 40, // u32: KVM_MSR_EXIT_REASON_*
  MSR_INDEX: 44, // u32
  MSR_DATA: 48, // u64: written by the guest (WRMSR), or by userspace for RDMSR
} as const;

/** kvm_run.msr.reason, and the KVM_CAP_X86_USER_SPACE_MSR argument: which failed MSR accesses exit to userspace. */
export const KvmMsrExitReason = { INVAL: 1, UNKNOWN: 2, FILTER: 4 } as const;

/** struct kvm_enable_cap (104 bytes): cap u32 @0, flags u32 @4, args u64[4] @8, pad. */
export const KVM_ENABLE_CAP_BYTES = 104;
/** struct kvm_msi (32 bytes): address_lo u32 @0, address_hi u32 @4, data u32 @8, flags u32 @12, devid u32 @16, pad. */
export const KVM_MSI_BYTES = 32;
export const KvmMsiLayout = { ADDRESS_LO: 0, ADDRESS_HI: 4, DATA: 8 } as const;
/** struct kvm_lapic_state: the 1 KiB xAPIC register page, registers 16 bytes apart (SDM vol. 3 §11.4.1). */
export const KVM_LAPIC_STATE_BYTES = 1024;
/**
 * struct kvm_msr_filter (392 bytes): flags u32 @0 (KVM_MSR_FILTER_DEFAULT_DENY = 1), then 16
 * ranges of 24 bytes from @8: flags u32 (KVM_MSR_FILTER_READ = 1, _WRITE = 2), nmsrs u32, base
 * u32, bitmap pointer u64 @16 (a set bit allows the access, a clear bit makes it exit).
 */
export const KVM_MSR_FILTER_BYTES = 392;
export const KVM_MSR_FILTER_RANGES = 16;
export const KVM_MSR_FILTER_RANGE_BYTES = 24;
export const KVM_MSR_FILTER_RANGES_AT = 8;
export const KvmMsrFilterFlag = { READ: 1, WRITE: 2 } as const;
/** struct kvm_ioapic_state (216 bytes, chip 2 of kvm_irqchip): base_address u64 @0, ioregsel u32 @8, id u32 @12, irr u32 @16, pad, redirtbl u64[24] @24. */
export const KvmIoapicStateLayout = { BASE_ADDRESS: 0, IOREGSEL: 8, ID: 12, IRR: 16, REDIRECTION_TABLE: 24 } as const;

/** struct kvm_userspace_memory_region (32 bytes). */
export const KVM_USERSPACE_MEMORY_REGION_BYTES = 32;

/** struct kvm_regs: 18 u64 in this order (144 bytes). */
export const KVM_REGS = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags'] as const;
export type KvmRegName = (typeof KVM_REGS)[number];

/** struct kvm_sregs (312 bytes): eight kvm_segment (24 bytes each), two kvm_dtable, control registers. */
export const KVM_SREGS_BYTES = 312;
export const KVM_SEGMENTS = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
export type KvmSegmentName = (typeof KVM_SEGMENTS)[number];
export const KVM_SEGMENT_BYTES = 24;
export const KvmSregsLayout = {
  GDT: 192, // kvm_dtable: base u64, limit u16
  IDT: 208,
  CR0: 224,
  CR2: 232,
  CR3: 240,
  CR4: 248,
  CR8: 256,
  EFER: 264,
  APIC_BASE: 272,
} as const;
export type KvmControlRegName = 'cr0' | 'cr2' | 'cr3' | 'cr4' | 'cr8' | 'efer' | 'apicBase';

/**
 * struct kvm_segment: base u64 @0, limit u32 @8, selector u16 @12, then one u8 each from @14:
 * type, present, dpl, db, s, l, g, avl, unusable.
 */
export const KvmSegmentLayout = {
  BASE: 0,
  LIMIT: 8,
  SELECTOR: 12,
  BYTE_FIELDS: 14,
} as const;

/** struct kvm_irqfd (32 bytes): fd u32 @0, gsi u32 @4, flags u32 @8, resamplefd u32 @12, pad. */
export const KVM_IRQFD_BYTES = 32;

/** struct kvm_irq_routing: nr u32 @0, flags u32 @4, entries @8; each kvm_irq_routing_entry is 48 bytes. */
export const KVM_IRQ_ROUTING_HEADER_BYTES = 8;
export const KVM_IRQ_ROUTING_ENTRY_BYTES = 48;
/** kvm_irq_routing_entry: gsi u32 @0, type u32 @4, flags @8, pad @12, union @16 (irqchip: irqchip, pin; msi: address_lo, address_hi, data). */
export const KVM_IRQ_ROUTING_ENTRY_UNION = 16;

/**
 * struct kvm_irqchip (520 bytes): chip_id u32 @0, pad u32 @4, a 512-byte union @8 holding
 * kvm_pic_state (chips 0 and 1) or kvm_ioapic_state (chip 2). Layouts in kvm-irqchip-state.ts.
 */
export const KVM_IRQCHIP_BYTES = 520;
export const KVM_IRQCHIP_UNION = 8;
/** kvm_irqchip.chip_id values (KVM_IRQCHIP_PIC_MASTER, _PIC_SLAVE, _IOAPIC). */
export const KvmIrqchipId = { PicMaster: 0, PicSlave: 1, Ioapic: 2 } as const;

/** struct kvm_pit_config: flags u32, pad[15] (64 bytes). */
export const KVM_PIT_CONFIG_BYTES = 64;

/**
 * struct kvm_cpuid2 (KVM_SET_CPUID2, KVM_GET_CPUID2, KVM_GET_SUPPORTED_CPUID): nent u32 @0, pad,
 * then kvm_cpuid_entry2 entries of 40 bytes from @8: function u32 @0, index u32 @4, flags u32 @8,
 * eax @12, ebx @16, ecx @20, edx @24, padding[3].
 */
export const KVM_CPUID2_HEADER_BYTES = 8;
export const KVM_CPUID_ENTRY2_BYTES = 40;
export const KvmCpuidEntryLayout = { FUNCTION: 0, INDEX: 4, FLAGS: 8, EAX: 12, EBX: 16, ECX: 20, EDX: 24 } as const;
/** kvm_cpuid_entry2.flags: the entry is for one subleaf (`index` matters). */
export const KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1;

/** struct kvm_msrs with one kvm_msr_entry (24 bytes): nmsrs u32 @0, pad; index u32 @8, reserved, data u64 @16. */
export const KVM_ONE_MSR_BYTES = 24;
export const KvmOneMsrLayout = { NMSRS: 0, INDEX: 8, DATA: 16 } as const;

/** struct kvm_reinject_control (32 bytes): pit_reinject u8 @0, reserved u8[31]. */
export const KVM_REINJECT_CONTROL_BYTES = 32;
