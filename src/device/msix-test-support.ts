/**
 * Test support for the MSI-X capability: a device with an MSI-X table on the test machine, and the
 * guest's accesses to it as a driver makes them (aligned DWORDs, QWORDs). Not part of the API.
 */
import type { ChipInterruptGroup } from './chip-interrupt-group.ts';
import { makeDeviceMachine, msiTo, type DeviceMachine, type DeviceMachineOptions } from './device-test-support.ts';
import { MSIX_ENABLE, MSIX_FUNCTION_MASK, MSIX_TABLE_ENTRY_BYTES, MsixCapability, MsixEntryField } from './msix-capability.ts';

export interface MsixRig {
  readonly machine: DeviceMachine;
  readonly group: ChipInterruptGroup;
  readonly msix: MsixCapability;
  readonly guest: MsixGuest;
}

/** A machine with one device whose `count` MSI-X vectors are table BAR 0 offset 0, PBA BAR 0 offset 0x800. */
export function makeMsixRig(count: number, options: DeviceMachineOptions = {}): MsixRig {
  const machine = makeDeviceMachine(options);
  const group = machine.manager.createGroup('msi', 0, count);
  const msix = new MsixCapability({ group, table: { bar: 0, offset: 0 }, pba: { bar: 0, offset: 0x800 } });
  return { machine, group, msix, guest: new MsixGuest(msix) };
}

/** The guest's side: a driver's accesses to the capability. */
export class MsixGuest {
  constructor(private readonly msix: MsixCapability) {}

  readTable(offset: number, size = 4): bigint {
    const data = new Uint8Array(size);
    this.msix.tableRead(offset, data);
    return littleEndian(data);
  }

  writeTable(offset: number, value: bigint | number, size = 4): void {
    this.msix.tableWrite(offset, bytesOf(BigInt(value), size));
  }

  readPba(offset = 0, size = 8): bigint {
    const data = new Uint8Array(size);
    this.msix.pbaRead(offset, data);
    return littleEndian(data);
  }

  /** Programs entry `vector` to send `vector` to `cpu` (address and data, DWORD writes). */
  program(vector: number, cpu: number, guestVector: number): void {
    const config = msiTo(cpu, guestVector);
    const base = vector * MSIX_TABLE_ENTRY_BYTES;
    this.writeTable(base + MsixEntryField.AddressLow * 4, config.addressLow);
    this.writeTable(base + MsixEntryField.AddressHigh * 4, config.addressHigh);
    this.writeTable(base + MsixEntryField.Data * 4, config.data);
  }

  /** Programs entry `vector` with two QWORD writes; the second also writes Vector Control, with `masked`. */
  programByQwords(vector: number, cpu: number, guestVector: number, masked: boolean): void {
    const config = msiTo(cpu, guestVector);
    const base = vector * MSIX_TABLE_ENTRY_BYTES;
    this.writeTable(base, (BigInt(config.addressHigh) << 32n) | BigInt(config.addressLow), 8);
    this.writeTable(base + MsixEntryField.Data * 4, (BigInt(masked ? 1 : 0) << 32n) | BigInt(config.data), 8);
  }

  setVectorMask(vector: number, masked: boolean): void {
    this.writeTable(vector * MSIX_TABLE_ENTRY_BYTES + MsixEntryField.VectorControl * 4, masked ? 1 : 0);
  }

  /** Writes Message Control's enable and function mask (a 16-bit write at capability offset 2). */
  setControl(enabled: boolean, functionMasked: boolean): void {
    this.msix.writeConfig(2, 2, (enabled ? MSIX_ENABLE : 0) | (functionMasked ? MSIX_FUNCTION_MASK : 0));
  }

  /** What Linux does: enable with the function masked, program and unmask each vector, then clear the function mask. */
  bringUp(targets: readonly (readonly [cpu: number, guestVector: number])[]): void {
    this.setControl(true, true);
    targets.forEach(([cpu, guestVector], vector) => {
      this.program(vector, cpu, guestVector);
      this.setVectorMask(vector, false);
    });
    this.setControl(true, false);
  }
}

function littleEndian(data: Uint8Array): bigint {
  let value = 0n;
  for (let index = data.length - 1; index >= 0; index--) value = (value << 8n) | BigInt(data[index] ?? 0);
  return value;
}

function bytesOf(value: bigint, size: number): Uint8Array {
  const data = new Uint8Array(size);
  for (let index = 0; index < size; index++) data[index] = Number((value >> BigInt(8 * index)) & 0xffn);
  return data;
}
