/**
 * The machine `irqchip run` builds: where each device sits and which interrupt line it drives.
 * Every choice follows QEMU's PC (`-machine pc`) so that guests written for QEMU run unchanged;
 * guests/lib/machine.h holds the same numbers for the C guests.
 *
 * Guest-physical memory:
 *   0 .. ram                   RAM (default 128 MiB, as QEMU), so a real-mode AP trampoline below
 *                              1 MiB is ordinary RAM
 *   PCI_MMIO_WINDOW            where PCI BARs live (the VMM assigns them at reset, as firmware would)
 *   0xfec00000                 the IOAPIC (82093AA §3.0), placed by the chip
 *   0xfee00000                 the local APIC (SDM vol. 3 §11.4.1), per vCPU, movable by IA32_APIC_BASE
 */

/** Default RAM, as QEMU's: 128 MiB. */
export const DEFAULT_MEMORY_MIB = 128;
/** The least RAM a guest gets: our guests and their tables live in the first 2 MiB. */
export const MIN_MEMORY_MIB = 2;
/** The most: RAM must end below the PCI window (no RAM above 4 GiB in this machine). */
export const MAX_MEMORY_MIB = 3072;
/** vCPUs: at least 1; at most the xAPIC's 8-bit physical ID space we route (and the chip's limit). */
export const MIN_VCPUS = 1;
export const MAX_VCPUS = 16;

/** Where PCI BARs may live: above RAM, below the IOAPIC (QEMU's PC hole ends at 0xfec00000). */
export const PCI_MMIO_WINDOW = { base: 0xe0000000, bytes: 0x1ec00000 } as const;

/** I/O ports, QEMU PC's. */
export const Port = {
  /** 8254 PIT: counters 0-2 at 0x40-0x42, control word at 0x43. */
  Pit: 0x40,
  PitBytes: 4,
  /** NMI status and control (system control port B): PIT counter 2's gate and output. */
  SystemControlB: 0x61,
  /** isa-debug-exit (QEMU `-device isa-debug-exit,iobase=0xf4,iosize=4`). */
  DebugExit: 0xf4,
  DebugExitBytes: 4,
  /** COM1: a 16550A UART. */
  Com1: 0x3f8,
  Com1Bytes: 8,
  /** fw_cfg: selector (16-bit) at 0x510, data (8-bit) at 0x511. */
  FwCfg: 0x510,
  FwCfgBytes: 2,
  /** PCI configuration mechanism #1: CONFIG_ADDRESS 0xcf8, CONFIG_DATA 0xcfc-0xcff. */
  PciConfig: 0xcf8,
  PciConfigBytes: 8,
  /** pc-testdev's IRQ lines: a byte written to 0x2000 + n sets the level of IRQ line n. */
  TestdevIrq: 0x2000,
} as const;

/** GSIs (IOAPIC pins; ISA IRQs 0-15 also reach the 8259A pair), QEMU PC's. */
export const Gsi = {
  /** The PIT's counter 0 (crosvm's chips: GSI 0; the IOAPIC's pin 2 override is the guest's ACPI business). */
  Pit: 0,
  /** COM1. */
  Com1: 4,
  /** INTA# of the PCI test device (slot 3): QEMU PC's PIRQ routing puts slot 3 INTA# on IRQ 11. */
  PciTestDeviceIntx: 11,
} as const;

/** pc-testdev IRQ lines: 0..23, the IOAPIC's pins. */
export const TESTDEV_IRQ_LINES = 24;
