/**
 * QEMU's firmware configuration device, its traditional I/O interface only (QEMU
 * docs/specs/fw_cfg.rst; hw/nvram/fw_cfg.c): how a guest written for QEMU learns the number of
 * CPUs, the RAM size and the kernel command line.
 *
 * Ports (QEMU's x86 `fw_cfg_io`, one two-port region at 0x510 with `fw_cfg_comb_mem_ops`):
 * - a 16-bit write selects an item by its key and rewinds it: the selector register (0x510);
 * - an 8-bit read returns the item's next byte, and 0 past its end or for a key with no item:
 *   the data register (0x511). QEMU's combined region does not look at the port, so a byte read
 *   of 0x510 reads data too;
 * - 8-bit writes are ignored, as in QEMU since 2.4 (write support was removed): `dataWrites`;
 * - a 16-bit read is not an access the region accepts (`fw_cfg_comb_valid`): it reads 0, as QEMU
 *   answers an access a region refuses (`unassigned_mem_read`): `invalidAccesses`. A dword OUT to
 *   0x510 is cut at the region's end (port-device.ts), so its low word selects, as under QEMU.
 * Until the first selection the signature is selected (QEMU `fw_cfg_reset`).
 *
 * Keys: bit 15 selects the architecture's own items (none here: they read 0, among them
 * FW_CFG_IRQ0_OVERRIDE, 0x8002, whose 0 says the PIT is not on IOAPIC pin 2: it is on GSI 0 in
 * this machine, machine-layout.ts); bit 14 is the legacy write channel and is ignored for
 * reading; bits 13:0 name the item. The items, each as QEMU's PC sets it:
 *
 *   0x0000  signature         "QEMU"
 *   0x0001  ID                u32 LE, 1: the traditional interface (bit 1, DMA at port 0x514, is
 *                             not offered: there is no DMA interface)
 *   0x0003  RAM size          u64 LE, bytes
 *   0x0005  number of CPUs    u16 LE, the CPUs that boot (QEMU `boot_cpus`)
 *   0x000f  maximum CPUs      u16 LE (QEMU: the APIC ID limit)
 *   0x0014  command line size u32 LE, bytes including the NUL
 *   0x0015  command line      the command line, UTF-8, NUL-terminated
 *   0x0019  file directory    u32 BE count of files, then the entries: empty (count 0)
 *
 * As QEMU sets the command line for a `-kernel` boot that takes no setup header (PVH), there is
 * no command line address (0x0013): our loaders boot 64-bit images directly, and a multiboot
 * image takes its command line from the multiboot information. Keys QEMU fills that no guest of
 * ours reads (UUID, NOGRAPHIC, BOOT_MENU, NUMA, ...) have no item and read 0.
 *
 * "Maximum RAM": QEMU has no such key (the nearest is the file "etc/reserved-memory-end", present
 * only with memory hotplug). kvm-unit-tests defined its own FW_CFG_MAX_RAM (0x11, later 0x10) for
 * bare metal, set from its MEMLIMIT environment variable and read by `find_highmem` with
 * `fwcfg_get_u64`, where 0 means "no limit". Under QEMU key 0x10 is FW_CFG_KERNEL_ENTRY, which a
 * direct boot without QEMU's option ROMs does not set: it reads 0 here too, which is right for
 * this machine (all RAM below 4 GiB, so there is no high memory to limit).
 *
 * Guest mistakes are counted: `dataWrites`, `invalidAccesses`, `unknownKeys` (selections of a key
 * with no item), `readsPastEnd` (data reads past the selected item's end), and `accessesPastEnd`
 * (accesses reaching past port 0x511).
 */

import { ErrorCode, IrqChipError, checkRange } from '../../base/errors.ts';
import { PortDevice } from './port-device.ts';

/** The keys of the items (QEMU include/standard-headers/linux/qemu_fw_cfg.h). */
export const FwCfgKey = {
  Signature: 0x0000,
  Id: 0x0001,
  RamSize: 0x0003,
  CpuCount: 0x0005,
  MaxCpus: 0x000f,
  CommandLineSize: 0x0014,
  CommandLineData: 0x0015,
  FileDirectory: 0x0019,
} as const;

/** Key bits: the architecture's items, the legacy write channel, the item number. */
const KEY_ARCH_LOCAL = 0x8000;
const KEY_ITEM_MASK = 0x3fff;
/** The signature item's bytes. */
export const FW_CFG_SIGNATURE = 'QEMU';
/** FW_CFG_ID bit 0: the traditional I/O interface. */
const ID_TRADITIONAL_INTERFACE = 1;

/** Offsets in the two-port region, and its access sizes. */
const SELECTOR_OFFSET = 0;
const FW_CFG_PORTS = 2;
const SELECTOR_BYTES = 2;
/** The combined region takes what reaches it whole: a piece is cut only at the region's end. */
const WIDEST_PIECE_BYTES = 4;

const U16_MAX = 0xffff;
const U16_BYTES = 2;
const U32_BYTES = 4;
const U64_BYTES = 8;

export const FW_CFG_COUNTER_NAMES = [
  /** Byte writes (to either port): ignored, as in QEMU since 2.4. */
  'dataWrites',
  /** Accesses the region refuses (16-bit reads): they read 0. */
  'invalidAccesses',
  /** Selections of a key with no item (its data reads 0). */
  'unknownKeys',
  /** Data reads past the end of the selected item (they read 0). */
  'readsPastEnd',
  /** Accesses reaching past port 0x511. */
  'accessesPastEnd',
] as const;
export type FwCfgCounterName = (typeof FW_CFG_COUNTER_NAMES)[number];

export interface FwCfgOptions {
  /** CPUs that boot (FW_CFG_NB_CPUS): 1 to 65535. */
  readonly cpuCount: number;
  /** The most CPUs the machine could have (FW_CFG_MAX_CPUS): cpuCount to 65535. */
  readonly maxCpus: number;
  /** RAM in bytes (FW_CFG_RAM_SIZE): a non-negative safe integer. */
  readonly ramBytes: number;
  /** The kernel command line (no NUL inside it). */
  readonly commandLine: string;
}

export class FwCfg extends PortDevice {
  readonly busName = 'fw_cfg';
  private readonly items: ReadonlyMap<number, Uint8Array>;
  /** The selected item (undefined: a key with no item), and the next byte's offset in it. */
  private selected: Uint8Array | undefined;
  private dataOffset = 0;
  private dataWrites = 0;
  private invalidAccesses = 0;
  private unknownKeys = 0;
  private readsPastEnd = 0;

  constructor(options: FwCfgOptions) {
    super(FW_CFG_PORTS, WIDEST_PIECE_BYTES);
    this.items = fwCfgItems(options);
    this.selected = this.items.get(FwCfgKey.Signature);
  }

  counters(): Readonly<Record<FwCfgCounterName, number>> {
    return {
      dataWrites: this.dataWrites,
      invalidAccesses: this.invalidAccesses,
      unknownKeys: this.unknownKeys,
      readsPastEnd: this.readsPastEnd,
      accessesPastEnd: this.accessesPastEnd,
    };
  }

  protected readPiece(_offset: number, size: number): number {
    if (size !== 1) {
      this.invalidAccesses++;
      return 0;
    }
    const item = this.selected;
    if (item === undefined) return 0;
    if (this.dataOffset >= item.length) {
      this.readsPastEnd++;
      return 0;
    }
    return item[this.dataOffset++] ?? 0;
  }

  protected writePiece(offset: number, size: number, value: number): void {
    if (offset === SELECTOR_OFFSET && size === SELECTOR_BYTES) this.select(value);
    else this.dataWrites++;
  }

  private select(key: number): void {
    this.dataOffset = 0;
    this.selected = (key & KEY_ARCH_LOCAL) !== 0 ? undefined : this.items.get(key & KEY_ITEM_MASK);
    if (this.selected === undefined) this.unknownKeys++;
  }
}

/** The items of a machine with `options`; EINVAL for options out of range. */
function fwCfgItems(options: FwCfgOptions): ReadonlyMap<number, Uint8Array> {
  const { cpuCount, maxCpus, ramBytes, commandLine } = options;
  checkRange(cpuCount, 1, U16_MAX, 'fw_cfg CPU count');
  checkRange(maxCpus, cpuCount, U16_MAX, 'fw_cfg maximum CPUs');
  checkRange(ramBytes, 0, Number.MAX_SAFE_INTEGER, 'fw_cfg RAM bytes');
  if (typeof commandLine !== 'string' || commandLine.includes('\0')) {
    throw new IrqChipError(ErrorCode.EINVAL, 'the fw_cfg command line must be a string without NUL characters');
  }
  const encoder = new TextEncoder();
  const commandLineText = encoder.encode(commandLine);
  // The C string: the text and its NUL (a new array's last byte is already 0).
  const commandLineData = new Uint8Array(commandLineText.length + 1);
  commandLineData.set(commandLineText);
  return new Map([
    [FwCfgKey.Signature, encoder.encode(FW_CFG_SIGNATURE)],
    [FwCfgKey.Id, littleEndian(ID_TRADITIONAL_INTERFACE, U32_BYTES)],
    [FwCfgKey.RamSize, littleEndian(ramBytes, U64_BYTES)],
    [FwCfgKey.CpuCount, littleEndian(cpuCount, U16_BYTES)],
    [FwCfgKey.MaxCpus, littleEndian(maxCpus, U16_BYTES)],
    [FwCfgKey.CommandLineSize, littleEndian(commandLineData.length, U32_BYTES)],
    [FwCfgKey.CommandLineData, commandLineData],
    // The directory's count is big-endian (fw_cfg.rst, "FW_CFG_FILE_DIR"); no files follow it.
    [FwCfgKey.FileDirectory, new Uint8Array(U32_BYTES)],
  ]);
}

/** The low `bytes` bytes of `value` (a non-negative safe integer), little-endian. */
function littleEndian(value: number, bytes: number): Uint8Array {
  const data = new Uint8Array(U64_BYTES);
  new DataView(data.buffer).setBigUint64(0, BigInt(value), true);
  return data.slice(0, bytes);
}
