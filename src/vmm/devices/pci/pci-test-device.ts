/**
 * `PciTestDevice`: the machine's PCI test function. The guest makes it raise any of its message
 * vectors, assert its INTx pin, or queue work for a level-triggered interrupt with resample, and
 * watches what it receives.
 *
 * Identity: 1af4:10f0, class ff0000 (a device that fits no defined class), revision 1. QEMU's
 * PCI ID list (docs/specs/pci-ids.rst) sets 1af4:10f0–10ff aside "for experimental usage without
 * registration": no QEMU device or Linux driver claims it (virtio-pci takes 1af4:1000–107f).
 *
 * Configuration space (PciConfigHeader): Command implements Memory Space, Bus Master and Interrupt
 * Disable; Interrupt Pin INTA#, which the board wires to GSI `intxGsi` (slot 3 on QEMU PC's PIRQ
 * routing is IRQ 11: machine-layout.ts `Gsi.PciTestDeviceIntx`); the capability list is MSI at
 * 0x40 (4 vectors, 64-bit, per-vector masking: `MsiCapability`) → MSI-X at 0x60 (8 vectors:
 * `MsixCapability`, table at BAR 1 + 0, PBA at BAR 1 + 0x800).
 *
 * BAR 0, 4 KiB of DWORD registers (other sizes and offsets read all ones and drop writes, counted):
 *   0x00 ID      RO  0x7e570001: "7e57" (test), register layout version 1
 *   0x04 RAISE   WO  v: raise vector v through MSI-X if MSI-X is enabled, else through MSI if MSI is
 *                    enabled (v below the vectors MME enables); a masked vector holds it pending.
 *                    Dropped and counted: with Bus Master off (an MSI is a memory write the
 *                    function may not make, PCI 3.0 §6.2.2; QEMU drops it too), with neither
 *                    enabled, or v out of range.
 *   0x08 INTX    RW  bit 0: the device asserts INTA# (1) or deasserts it (0): a plain level, the
 *                    VMM's own line source (`serviceIrq`)
 *   0x0c LEVEL_WORK  write n: queue n units of work (at most 65535 outstanding); read: units queued
 *                    since reset
 *   0x10 LEVEL_ACK   read: units outstanding; write: complete one (none outstanding: counted)
 *   0x14 + 4i        RO: counter i of PCI_TEST_DEVICE_COUNTER_NAMES
 *
 * INTA# is asserted while the INTX bit is set or work is outstanding (Status bit 3 shows that),
 * and reaches the chip only while Interrupt Disable is clear and neither MSI nor MSI-X is enabled
 * (a function that has them enabled may not use INTx#: PCI 3.0 §6.8.1.3, PCIe §7.7.2). The INTX
 * bit drives the line directly: setting Interrupt Disable or clearing the bit lowers it at once.
 * The level work drives it through a `ResampledLevelLine` (an `IrqLevelEvent` with resample): held
 * from the trigger until the guest's EOI, re-triggered at each resample while work remains, so
 * that each unit of work is one interrupt when the guest's handler completes one unit per
 * interrupt. The two are separate sources of the same pin, ORed by the chip (as KVM keeps one bit
 * per source).
 *
 * Guest accesses never throw. Used on the device thread, which is the chip owner's (the
 * interrupt groups register events with the chip).
 */

import type { BusDevice } from '../../../chip/bus.ts';
import type { IrqEventSource } from '../../../chip/types.ts';
import type { ChipInterruptGroup } from '../../../device/chip-interrupt-group.ts';
import type { GsiSource } from '../../../device/gsi-budget.ts';
import { InterruptManager } from '../../../device/interrupt-manager.ts';
import { InterruptSourceType } from '../../../device/interrupt-source.ts';
import { MSI_CAPABILITY_BYTES, MsiCapability } from '../../../device/msi-capability.ts';
import { MSIX_CAPABILITY_BYTES, MSIX_ENABLE, MsixCapability } from '../../../device/msix-capability.ts';
import { allOnes } from '../../../base/integers.ts';
import { PciConfigHeader, type PciIdentity } from './pci-config-header.ts';
import { PciCommand, PciInterruptPin, type PciFunction, type PciMemoryBar } from './pci-function.ts';
import { ResampledLevelLine, type LevelEventChip } from './resampled-level-line.ts';

export const PCI_TEST_DEVICE_IDENTITY: PciIdentity = {
  vendorId: 0x1af4,
  deviceId: 0x10f0,
  revisionId: 0x01,
  classCode: 0xff0000,
};

/** BAR 0's registers (byte offsets). */
export const PciTestRegister = {
  Id: 0x00,
  Raise: 0x04,
  Intx: 0x08,
  LevelWork: 0x0c,
  LevelAck: 0x10,
  FirstCounter: 0x14,
} as const;
export const PCI_TEST_DEVICE_ID_VALUE = 0x7e570001;

export const PCI_TEST_REGISTERS_BAR = 0;
export const PCI_TEST_MSIX_BAR = 1;
export const PCI_TEST_BAR_BYTES = 0x1000;
export const PCI_TEST_MSI_VECTORS = 4;
export const PCI_TEST_MSIX_VECTORS = 8;
export const PCI_TEST_MSI_OFFSET = 0x40;
export const PCI_TEST_MSIX_OFFSET = 0x60;
export const PCI_TEST_MSIX_TABLE_OFFSET = 0;
export const PCI_TEST_MSIX_PBA_OFFSET = 0x800;
/** The most units of level work outstanding at once. */
export const PCI_TEST_MAX_LEVEL_WORK = 0xffff;

/** Bit 0 of INTX. */
const INTX_ASSERTED = 1;

export const PCI_TEST_DEVICE_COUNTER_NAMES = [
  /** RAISE writes passed to the MSI-X vectors (delivered, or held by a masked vector). */
  'msixRaises',
  /** RAISE writes passed to the MSI vectors. */
  'msiRaises',
  /** RAISE with Bus Master off: dropped. */
  'raisesWithoutBusMaster',
  /** RAISE with neither MSI nor MSI-X enabled: dropped. */
  'raisesWithoutMessages',
  /** RAISE of a vector the enabled mechanism does not have: dropped. */
  'raisesOutOfRange',
  /** Units of level work queued. */
  'levelUnitsQueued',
  /** Units refused: past PCI_TEST_MAX_LEVEL_WORK outstanding. */
  'levelUnitsRefused',
  /** Units completed by LEVEL_ACK writes. */
  'levelUnitsCompleted',
  /** LEVEL_ACK writes with nothing outstanding. */
  'levelAcksWithoutWork',
  /** The level line's triggers: its first assertion and each re-assertion after a resample. */
  'levelTriggers',
  /** The level line's resamples (the guest's EOIs of it). */
  'levelResamples',
  /** BAR 0 accesses that are not an aligned DWORD to a register: reads all ones, writes dropped. */
  'unknownRegisterAccesses',
  /** Writes to ID or the counters. */
  'readOnlyWrites',
] as const;
export type PciTestDeviceCounterName = (typeof PCI_TEST_DEVICE_COUNTER_NAMES)[number];

/** The chip as the device uses it: interrupt groups, its own line (`serviceIrq`), and a level event. */
export type PciTestDeviceChip = LevelEventChip;

export interface PciTestDeviceOptions {
  /** The chip, used on its owner's thread. */
  readonly chip: PciTestDeviceChip;
  /** The VM's GSIs (the chip's `IrqAllocator` after `finalizeDevices`), for the message vectors. */
  readonly gsis: GsiSource;
  /** The GSI INTA# is wired to. */
  readonly intxGsi: number;
  /** The device, as the chip's event tokens name it (default id 3, 'pci-test-device'). */
  readonly device?: { readonly id: number; readonly name: string };
}

const DWORD_BYTES = 4;
const DEFAULT_DEVICE = { id: 3, name: 'pci-test-device' } as const;

export class PciTestDevice implements PciFunction {
  readonly name: string;
  readonly intxGsi: number;
  readonly memoryBars: readonly PciMemoryBar[];
  readonly msi: MsiCapability;
  readonly msix: MsixCapability;
  private readonly header: PciConfigHeader;
  private readonly chip: PciTestDeviceChip;
  private readonly interrupts: InterruptManager;
  private readonly msiGroup: ChipInterruptGroup;
  private readonly msixGroup: ChipInterruptGroup;
  private readonly levelLine: ResampledLevelLine;
  /** The INTX register's bit, and the level the device last gave the chip for it. */
  private intxAsserted = false;
  private intxLineLevel = false;
  private levelOutstanding = 0;
  private levelQueuedTotal = 0;
  private closed = false;
  private readonly counts = new Uint32Array(PCI_TEST_DEVICE_COUNTER_NAMES.length);

  constructor(options: PciTestDeviceOptions) {
    const device = options.device ?? DEFAULT_DEVICE;
    this.name = device.name;
    this.chip = options.chip;
    this.intxGsi = options.intxGsi;
    this.interrupts = new InterruptManager({ chip: options.chip, gsis: options.gsis, device });
    this.msiGroup = this.interrupts.createGroup(InterruptSourceType.Msi, 0, PCI_TEST_MSI_VECTORS);
    this.msixGroup = this.interrupts.createGroup(InterruptSourceType.Msi, PCI_TEST_MSI_VECTORS, PCI_TEST_MSIX_VECTORS);
    this.msi = new MsiCapability({ group: this.msiGroup, nextCapability: PCI_TEST_MSIX_OFFSET });
    this.msix = new MsixCapability({
      group: this.msixGroup,
      table: { bar: PCI_TEST_MSIX_BAR, offset: PCI_TEST_MSIX_TABLE_OFFSET },
      pba: { bar: PCI_TEST_MSIX_BAR, offset: PCI_TEST_MSIX_PBA_OFFSET },
    });
    this.memoryBars = [
      { index: PCI_TEST_REGISTERS_BAR, bytes: PCI_TEST_BAR_BYTES, regions: [{ offset: 0, bytes: PCI_TEST_BAR_BYTES, device: this.registersBusDevice() }] },
      {
        index: PCI_TEST_MSIX_BAR,
        bytes: PCI_TEST_BAR_BYTES,
        regions: [
          { offset: PCI_TEST_MSIX_TABLE_OFFSET, bytes: this.msix.tableBytes, device: this.msix.tableBusDevice() },
          { offset: PCI_TEST_MSIX_PBA_OFFSET, bytes: this.msix.pbaBytes, device: this.msix.pbaBusDevice() },
        ],
      },
    ];
    this.header = new PciConfigHeader({
      identity: PCI_TEST_DEVICE_IDENTITY,
      commandBits: PciCommand.MemorySpace | PciCommand.BusMaster | PciCommand.InterruptDisable,
      memoryBars: this.memoryBars,
      interruptPin: PciInterruptPin.IntA,
      capabilities: [
        { offset: PCI_TEST_MSI_OFFSET, bytes: MSI_CAPABILITY_BYTES, model: this.msi },
        { offset: PCI_TEST_MSIX_OFFSET, bytes: MSIX_CAPABILITY_BYTES, model: this.msix },
      ],
      interruptStatus: () => this.intxAsserted || this.levelOutstanding > 0,
    });
    this.levelLine = new ResampledLevelLine({
      chip: options.chip,
      gsi: options.intxGsi,
      source: { deviceId: device.id, queueId: 0, deviceName: device.name } satisfies IrqEventSource,
      wanted: () => this.levelOutstanding > 0 && this.intxReachesChip(),
    });
  }

  // ---- PciFunction ----------------------------------------------------------------------------

  readConfig(offset: number, size: number): number {
    return this.header.read(offset, size);
  }

  /** A configuration write; Interrupt Disable and the MSI and MSI-X enables decide whether INTx reaches the chip. */
  writeConfig(offset: number, size: number, value: number): void {
    this.header.write(offset, size, value);
    this.syncIntx();
  }

  // ---- Observation ----------------------------------------------------------------------------

  counters(): Readonly<Record<PciTestDeviceCounterName, number>> {
    const result = {} as Record<PciTestDeviceCounterName, number>;
    PCI_TEST_DEVICE_COUNTER_NAMES.forEach((name, index) => {
      result[name] = this.counterValue(index);
    });
    return result;
  }

  /** Units of level work outstanding. */
  get levelWorkOutstanding(): number {
    return this.levelOutstanding;
  }

  /** Lowers INTx, stops the level line, disables and destroys the interrupt groups. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.intxAsserted = false;
    this.syncIntx();
    await this.levelLine.close();
    for (const group of [this.msiGroup, this.msixGroup]) {
      group.disable();
      this.interrupts.destroyGroup(group);
    }
  }

  // ---- BAR 0 ----------------------------------------------------------------------------------

  private registersBusDevice(): BusDevice {
    return {
      busName: `${this.name}-registers`,
      read: (offset, size) => this.readRegister(offset, size),
      write: (offset, size, value) => {
        this.writeRegister(offset, size, value);
      },
    };
  }

  private readRegister(offset: number, size: number): number {
    if (!this.isRegister(offset, size)) return allOnes(size);
    switch (offset) {
      case PciTestRegister.Id:
        return PCI_TEST_DEVICE_ID_VALUE;
      case PciTestRegister.Raise:
        return 0;
      case PciTestRegister.Intx:
        return this.intxAsserted ? INTX_ASSERTED : 0;
      case PciTestRegister.LevelWork:
        return this.levelQueuedTotal;
      case PciTestRegister.LevelAck:
        return this.levelOutstanding;
      default:
        return this.counterValue((offset - PciTestRegister.FirstCounter) / DWORD_BYTES);
    }
  }

  private writeRegister(offset: number, size: number, value: number): void {
    if (!this.isRegister(offset, size)) return;
    switch (offset) {
      case PciTestRegister.Raise:
        this.raise(value >>> 0);
        return;
      case PciTestRegister.Intx:
        this.intxAsserted = (value & INTX_ASSERTED) !== 0;
        this.syncIntx();
        return;
      case PciTestRegister.LevelWork:
        this.queueLevelWork(value >>> 0);
        return;
      case PciTestRegister.LevelAck:
        this.completeLevelWork();
        return;
      default:
        this.count('readOnlyWrites');
    }
  }

  /** An aligned DWORD at a register (ID .. the last counter); anything else is counted. */
  private isRegister(offset: number, size: number): boolean {
    const last = PciTestRegister.FirstCounter + (PCI_TEST_DEVICE_COUNTER_NAMES.length - 1) * DWORD_BYTES;
    if (size === DWORD_BYTES && offset % DWORD_BYTES === 0 && offset <= last) return true;
    this.count('unknownRegisterAccesses');
    return false;
  }

  // ---- Interrupts -----------------------------------------------------------------------------

  private raise(vector: number): void {
    if ((this.header.command & PciCommand.BusMaster) === 0) {
      this.count('raisesWithoutBusMaster');
    } else if ((this.msix.messageControl() & MSIX_ENABLE) !== 0) {
      this.raiseOn(this.msixGroup, vector, PCI_TEST_MSIX_VECTORS, 'msixRaises');
    } else if (this.msi.enabled) {
      this.raiseOn(this.msiGroup, vector, this.msi.enabledVectorCount(), 'msiRaises');
    } else {
      this.count('raisesWithoutMessages');
    }
  }

  private raiseOn(group: ChipInterruptGroup, vector: number, usable: number, counter: PciTestDeviceCounterName): void {
    if (vector >= usable) {
      this.count('raisesOutOfRange');
      return;
    }
    group.trigger(vector);
    this.count(counter);
  }

  private queueLevelWork(units: number): void {
    const accepted = Math.min(units, PCI_TEST_MAX_LEVEL_WORK - this.levelOutstanding);
    this.levelOutstanding += accepted;
    this.levelQueuedTotal = (this.levelQueuedTotal + accepted) >>> 0;
    this.add('levelUnitsQueued', accepted);
    this.add('levelUnitsRefused', units - accepted);
    this.levelLine.update();
  }

  private completeLevelWork(): void {
    if (this.levelOutstanding === 0) {
      this.count('levelAcksWithoutWork');
      return;
    }
    this.levelOutstanding--;
    this.count('levelUnitsCompleted');
  }

  /** INTA# reaches the chip: Interrupt Disable clear, and neither MSI nor MSI-X enabled. */
  private intxReachesChip(): boolean {
    return (this.header.command & PciCommand.InterruptDisable) === 0 && !this.msi.enabled && (this.msix.messageControl() & MSIX_ENABLE) === 0;
  }

  /** Gives the chip the INTX bit's level when it changed, and lets the level line trigger if it now may. */
  private syncIntx(): void {
    const level = this.intxAsserted && this.intxReachesChip();
    if (level !== this.intxLineLevel) {
      this.intxLineLevel = level;
      this.chip.serviceIrq(this.intxGsi, level);
    }
    this.levelLine.update();
  }

  private counterValue(index: number): number {
    switch (PCI_TEST_DEVICE_COUNTER_NAMES[index]) {
      case 'levelTriggers':
        return this.levelLine.counters().triggers;
      case 'levelResamples':
        return this.levelLine.counters().resamples;
      default:
        return this.counts[index] ?? 0;
    }
  }

  private count(name: PciTestDeviceCounterName): void {
    this.add(name, 1);
  }

  private add(name: PciTestDeviceCounterName, amount: number): void {
    const index = PCI_TEST_DEVICE_COUNTER_NAMES.indexOf(name);
    this.counts[index] = (this.counts[index] ?? 0) + amount;
  }
}
