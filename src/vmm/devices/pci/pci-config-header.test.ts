/**
 * The type 0 header: which registers are writable, the capability list a driver walks, and the
 * caller's mistakes the constructor refuses.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { rejectsWith } from '../../../testing/irq-chip-error.ts';
import { PciConfigHeader, type PciCapabilityModel, type PciConfigHeaderOptions } from './pci-config-header.ts';
import { PciCommand, PciConfigOffset, PciStatus } from './pci-function.ts';
import { PCI_TEST_MSI_OFFSET, PCI_TEST_MSIX_OFFSET } from './pci-test-device.ts';
import { makePciMachine } from './pci-test-support.ts';

const IDENTITY = { vendorId: 0x1af4, deviceId: 0x10f1, revisionId: 3, classCode: 0xff0000 } as const;
const NO_DEVICE = { busName: 'none', read: () => 0, write: () => undefined };

/** A capability model that records what reaches it. */
class RecordingCapability implements PciCapabilityModel {
  readonly accesses: string[] = [];

  readConfig(offset: number, size: number): number {
    this.accesses.push(`read ${offset}/${size}`);
    return 0x1234;
  }

  writeConfig(offset: number, size: number, value: number): void {
    this.accesses.push(`write ${offset}/${size}=${value.toString(16)}`);
  }
}

function header(options: Partial<PciConfigHeaderOptions> = {}): PciConfigHeader {
  return new PciConfigHeader({ identity: IDENTITY, commandBits: PciCommand.MemorySpace | PciCommand.InterruptDisable, ...options });
}

describe('PciConfigHeader: registers', () => {
  test('identity is read-only; Command keeps only the implemented bits; Status is read-only', () => {
    const config = header();
    config.write(PciConfigOffset.VendorId, 4, 0);
    assert.equal(config.read(PciConfigOffset.VendorId, 4), 0x10f11af4);
    assert.equal(config.read(PciConfigOffset.RevisionId, 4), 0xff000003);
    config.write(PciConfigOffset.Command, 4, 0xffffffff);
    assert.equal(config.read(PciConfigOffset.Command, 2), PciCommand.MemorySpace | PciCommand.InterruptDisable);
    assert.equal(config.read(PciConfigOffset.Status, 2), 0, 'no capabilities, no interrupt, no error bits');
  });

  test('Cache Line Size and Interrupt Line are read/write bytes; Interrupt Pin, Latency Timer, Header Type and BIST read as built', () => {
    const config = header({ interruptPin: 1 });
    config.write(PciConfigOffset.CacheLineSize, 4, 0xffffffff);
    assert.equal(config.read(PciConfigOffset.CacheLineSize, 4), 0xff);
    config.write(PciConfigOffset.InterruptLine, 4, 0xffffffff);
    assert.equal(config.read(PciConfigOffset.InterruptLine, 4), 0x01ff);
  });

  test('Status bit 3 follows the function\'s interrupt state', () => {
    let asserted = false;
    const config = header({ interruptStatus: () => asserted });
    assert.equal(config.read(PciConfigOffset.Status, 2) & PciStatus.InterruptStatus, 0);
    asserted = true;
    assert.equal(config.read(PciConfigOffset.Status, 2) & PciStatus.InterruptStatus, PciStatus.InterruptStatus);
  });

  test('accesses inside a capability reach its model with capability-relative offsets; the rest of the device area reads 0', () => {
    const model = new RecordingCapability();
    const config = header({ capabilities: [{ offset: 0x50, bytes: 8, model }] });
    assert.equal(config.read(PciConfigOffset.CapabilitiesPointer, 1), 0x50);
    assert.equal(config.read(PciConfigOffset.Status, 2), PciStatus.CapabilitiesList);
    assert.equal(config.read(0x56, 2), 0x1234);
    config.write(0x54, 1, 0xab);
    config.write(0x58, 4, 0xffffffff);
    assert.equal(config.read(0x58, 4), 0);
    assert.equal(config.read(0x4c, 4), 0);
    assert.deepEqual(model.accesses, ['read 6/2', 'write 4/1=ab']);
  });

  test('an access outside one DWORD, or past 256 bytes, is a caller\'s mistake (EINVAL)', () => {
    const config = header();
    assert.throws(() => config.read(0x3e, 4), rejectsWith('EINVAL'));
    assert.throws(() => config.read(0x03, 2), rejectsWith('EINVAL'));
    assert.throws(() => { config.write(0x100, 1, 0); }, rejectsWith('EINVAL'));
    assert.throws(() => config.read(0, 3), rejectsWith('EINVAL'));
  });
});

describe('PciConfigHeader: construction', () => {
  test('refuses vendor 0xffff, a BAR that is not a power of two of at least 16 bytes, a BAR twice, overlapping or misplaced capabilities', () => {
    const bar = (index: number, bytes: number) => ({ index, bytes, regions: [{ offset: 0, bytes: 16, device: NO_DEVICE }] });
    const model = new RecordingCapability();
    const refusals: [Partial<PciConfigHeaderOptions>, string][] = [
      [{ identity: { ...IDENTITY, vendorId: 0xffff } }, 'EINVAL'],
      [{ memoryBars: [bar(0, 0x1800)] }, 'EINVAL'],
      [{ memoryBars: [bar(0, 8)] }, 'EINVAL'],
      [{ memoryBars: [bar(6, 0x1000)] }, 'EINVAL'],
      [{ memoryBars: [bar(1, 0x1000), bar(1, 0x1000)] }, 'EEXIST'],
      [{ capabilities: [{ offset: 0x40, bytes: 12, model }, { offset: 0x48, bytes: 8, model }] }, 'EINVAL'],
      [{ capabilities: [{ offset: 0x30, bytes: 8, model }] }, 'EINVAL'],
      [{ capabilities: [{ offset: 0x42, bytes: 8, model }] }, 'EINVAL'],
      [{ interruptPin: 5 }, 'EINVAL'],
    ];
    for (const [options, code] of refusals) assert.throws(() => header(options), rejectsWith(code), JSON.stringify(options, (_, value: unknown) => (value === model ? 'model' : value)));
  });
});

describe('the test device\'s capability list, walked as a driver does', () => {
  test('Status bit 4 set; 0x34 → MSI (ID 05) at 0x40 → MSI-X (ID 11) at 0x60 → end', (t) => {
    const { guest } = makePciMachine(t);
    assert.equal(guest.testRead(PciConfigOffset.Status, 2) & PciStatus.CapabilitiesList, PciStatus.CapabilitiesList);
    const chain: string[] = [];
    for (let at = guest.testRead(PciConfigOffset.CapabilitiesPointer, 1); at !== 0; at = guest.testRead(at + 1, 1)) {
      chain.push(`${at.toString(16)}:${guest.testRead(at, 1).toString(16)}`);
      assert.ok(chain.length <= 48, 'the list ends');
    }
    assert.deepEqual(chain, [`${PCI_TEST_MSI_OFFSET.toString(16)}:5`, `${PCI_TEST_MSIX_OFFSET.toString(16)}:11`]);
  });
});
