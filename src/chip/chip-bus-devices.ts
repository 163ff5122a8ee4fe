/**
 * The chip's controllers as bus devices (crosvm `finalize_devices`; seed-apis.md §2.7): the 8259A
 * pair's ports, the IOAPIC's MMIO window, and the local APIC window at the default base, which
 * reaches the APIC of the vCPU that made the access.
 *
 * Each local APIC decodes its own xAPIC page wherever its IA32_APIC_BASE puts it, and only while
 * it is enabled in xAPIC mode (`LocalApic.decodesMmio`, SDM vol. 3 §11.4.4, §11.12.1.2). One bus
 * serves every vCPU, so it cannot hold a page that moves per vCPU: a vCPU's MMIO goes through
 * `readVcpuMmio`/`writeVcpuMmio`, which ask its APIC first (as a CPU's APIC answers its own core
 * before the system bus sees the access; KVM's vcpu_mmio_read/write likewise try the vCPU's local
 * APIC before the MMIO bus) and give the bus the rest. The window stays on the bus at the default
 * base for callers that only have the bus; it answers only for an APIC that decodes there, and an
 * access the APIC does not decode reads all ones and is dropped (counted by that APIC as
 * `ignoredAccesses`), as if nothing were there.
 */

import { allOnes } from '../base/integers.ts';
import { IOAPIC_WINDOW_BYTES, type Ioapic } from '../x86/ioapic/ioapic.ts';
import { APIC_BASE_DEFAULT_ADDRESS, XAPIC_PAGE_BYTES, XAPIC_REGISTER_STRIDE } from '../x86/lapic/apic-registers.ts';
import type { LocalApic } from '../x86/lapic/local-apic.ts';
import { PicPort, type PicPair } from '../x86/pic/pic.ts';
import type { Bus, BusAccessor, BusDevice } from './bus.ts';

/** Each PIC port range is a pair: a chip's command and data ports, or the two ELCRs. */
const PIC_PORTS_PER_RANGE = 2;
/** I/O ports of the 8259A pair and the ELCR (x86-controllers.md §1.1). */
export const PIC_PORT_RANGES: readonly (readonly [base: number, length: number])[] = [
  [PicPort.MasterCommand, PIC_PORTS_PER_RANGE],
  [PicPort.SlaveCommand, PIC_PORTS_PER_RANGE],
  [PicPort.MasterElcr, PIC_PORTS_PER_RANGE],
];
/** The local APIC window at IA32_APIC_BASE's default (SDM vol. 3 §11.4.1). */
export const LOCAL_APIC_WINDOW_BASE = APIC_BASE_DEFAULT_ADDRESS >>> 0;
export const LOCAL_APIC_WINDOW_BYTES = XAPIC_PAGE_BYTES;

/** The address of xAPIC register `register` (an `ApicRegister`) in the window: 16 bytes apart (SDM §11.4.1). */
export function localApicRegisterAddress(register: number): number {
  return LOCAL_APIC_WINDOW_BASE + register * XAPIC_REGISTER_STRIDE;
}

class PicPortDevice implements BusDevice {
  readonly busName = 'pic';
  constructor(
    private readonly pic: PicPair,
    private readonly base: number,
  ) {}
  read(offset: number, size: number): number {
    return this.pic.readPort(this.base + offset, size);
  }
  write(offset: number, size: number, value: number): void {
    this.pic.writePort(this.base + offset, size, value);
  }
}

class IoapicDevice implements BusDevice {
  readonly busName = 'ioapic';
  constructor(private readonly ioapic: Ioapic) {}
  read(offset: number, size: number): number {
    return this.ioapic.mmioRead(offset, size);
  }
  write(offset: number, size: number, value: number): void {
    this.ioapic.mmioWrite(offset, size, value);
  }
}

class LocalApicWindowDevice implements BusDevice {
  readonly busName = 'local-apic';
  constructor(private readonly apics: readonly LocalApic[]) {}
  read(offset: number, size: number, accessor: BusAccessor): number {
    // An access from an unknown vCPU cannot happen on a VMM's bus; reading the floating bus is the safe answer.
    return this.apics[accessor.vcpuIndex]?.mmioReadAt(LOCAL_APIC_WINDOW_BASE + offset, size) ?? allOnes(size);
  }
  write(offset: number, size: number, value: number, accessor: BusAccessor): void {
    this.apics[accessor.vcpuIndex]?.mmioWriteAt(LOCAL_APIC_WINDOW_BASE + offset, size, value);
  }
}

/**
 * A guest MMIO read by the vCPU `accessor` names: its local APIC's register where that APIC decodes
 * `address` (`LocalApic.decodesMmio`), the bus everywhere else. `apic` is undefined where the
 * local APICs are not ours (KVM's decode their pages in the kernel).
 */
export function readVcpuMmio(apic: LocalApic | undefined, bus: Bus, address: number, size: number, accessor: BusAccessor): number {
  if (apic?.decodesMmio(address) === true) return apic.mmioReadAt(address, size);
  return bus.read(address, size, accessor);
}

/** A guest MMIO write by the vCPU `accessor` names: as `readVcpuMmio`. */
export function writeVcpuMmio(apic: LocalApic | undefined, bus: Bus, address: number, size: number, value: number, accessor: BusAccessor): void {
  if (apic?.decodesMmio(address) === true) apic.mmioWriteAt(address, size, value);
  else bus.write(address, size, value, accessor);
}

/** Places the 8259A pair and the IOAPIC on the buses. EEXIST if something already occupies their ranges. */
export function placeLegacyControllersOnBuses(pic: PicPair, ioapic: Ioapic, ioBus: Bus, mmioBus: Bus): void {
  for (const [base, length] of PIC_PORT_RANGES) ioBus.insert(new PicPortDevice(pic, base), base, length);
  mmioBus.insert(new IoapicDevice(ioapic), ioapic.baseAddress, IOAPIC_WINDOW_BYTES);
}

/** Places the three controllers on the buses. EEXIST if something already occupies their ranges. */
export function placeControllersOnBuses(pic: PicPair, ioapic: Ioapic, apics: readonly LocalApic[], ioBus: Bus, mmioBus: Bus): void {
  placeLegacyControllersOnBuses(pic, ioapic, ioBus, mmioBus);
  mmioBus.insert(new LocalApicWindowDevice(apics), LOCAL_APIC_WINDOW_BASE, LOCAL_APIC_WINDOW_BYTES);
}
