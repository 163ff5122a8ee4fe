/**
 * MSI end to end through MsiCapability: enable/disable cycles, per-vector masking, Multiple
 * Message Enable, and the switch to MSI-X; the SET_IRQS calls are recorded as in the MSI-X tests.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { msiTo } from '../device/device-test-support.ts';
import { MSI_ENABLE } from '../device/msi-capability.ts';
import { VFIO_PCI_MSI_IRQ_INDEX as MSI } from './vfio-uapi.ts';
import { deliverAll, makePassthroughRig, type PassthroughRig } from './vfio-pci-test-support.ts';

const INTX_ON = ['intx trigger eventfd @0 [#]', 'intx unmask eventfd @0 [#]'];
/** Guest vectors 0x60..0x63: the Data's low MME bits carry the vector number. */
const MSI_BASE_VECTOR = 0x60;
const MME_SHIFT = 4;

function callsOf(rig: PassthroughRig, step: () => void): string[] {
  const from = rig.device.calls.length;
  step();
  return rig.device.since(from);
}

/** The guest programs the message (vCPU 0, vector 0x60) and the mask bits, then enables 2^mme vectors. */
function enableMsi(rig: PassthroughRig, mme: number, maskBits = 0): void {
  const message = msiTo(0, MSI_BASE_VECTOR);
  rig.msi.writeConfig(4, 4, message.addressLow);
  rig.msi.writeConfig(8, 4, message.addressHigh);
  rig.msi.writeConfig(12, 2, message.data);
  rig.msi.writeConfig(16, 4, maskBits);
  rig.msi.writeConfig(2, 2, MSI_ENABLE | (mme << MME_SHIFT));
}

function disableMsi(rig: PassthroughRig): void {
  rig.msi.writeConfig(2, 2, 0);
}

function raise(rig: PassthroughRig, vectors: readonly number[]): void {
  for (const vector of vectors) rig.kernel.raise(MSI, vector);
}

describe('VfioPciInterrupts: MSI end to end', () => {
  test('30 enable/disable cycles: 2 calls to enable 4 vectors, 3 to go back to INTx; every interrupt once; GSIs returned', () => {
    const rig = makePassthroughRig();
    for (let cycle = 0; cycle < 30; cycle++) {
      assert.deepEqual(callsOf(rig, () => { enableMsi(rig, 2); }), ['intx trigger none @0+0', 'msi trigger eventfd @0 [#,#,#,#]'], `cycle ${cycle}`);
      raise(rig, [3, 0, 2, 1]);
      assert.deepEqual(deliverAll(rig), [0x60, 0x61, 0x62, 0x63]);
      assert.equal(rig.machine.allocator.allocatedCount, 4);
      assert.deepEqual(callsOf(rig, () => { disableMsi(rig); }), ['msi trigger none @0+0', ...INTX_ON]);
      assert.equal(rig.machine.allocator.allocatedCount, 0);
    }
    assert.equal(rig.vfio.setIrqsCalls(), 2 + 30 * 5);
    assert.equal(rig.kernel.counters().undeliverableRaises, 0);
  });

  test('per-vector masking: a vector enabled masked is bound at its first unmask; later masking makes no call', () => {
    const rig = makePassthroughRig();
    assert.deepEqual(callsOf(rig, () => { enableMsi(rig, 2, 0b0100); }), ['intx trigger none @0+0', 'msi trigger eventfd @0 [#,#,-,#]']);
    raise(rig, [2]);
    assert.deepEqual(deliverAll(rig), [], 'held by the device: vector 2 has no trigger yet');
    assert.deepEqual(callsOf(rig, () => { rig.msi.writeConfig(16, 4, 0); }), ['msi trigger eventfd @2 [#]']);
    assert.deepEqual(deliverAll(rig), [0x62]);
    assert.deepEqual(callsOf(rig, () => { rig.msi.writeConfig(16, 4, 0b0100); }), []);
    raise(rig, [2, 2]);
    assert.deepEqual(deliverAll(rig), []);
    assert.equal(rig.msi.readConfig(20, 4), 0b0100, 'Pending Bits');
    assert.deepEqual(callsOf(rig, () => { rig.msi.writeConfig(16, 1, 0); }), []);
    assert.deepEqual(deliverAll(rig), [0x62]);
    assert.equal(rig.msi.readConfig(20, 4), 0);
  });

  test('Multiple Message Enable: 2 of 4 vectors enabled; the Data\'s low bit carries the vector', () => {
    const rig = makePassthroughRig();
    assert.deepEqual(callsOf(rig, () => { enableMsi(rig, 1); }), ['intx trigger none @0+0', 'msi trigger eventfd @0 [#,#]']);
    raise(rig, [1, 0]);
    assert.deepEqual(deliverAll(rig), [0x60, 0x61]);
    raise(rig, [3]);
    assert.equal(rig.kernel.counters().undeliverableRaises, 1, 'the function may not use a vector past MME');
  });

  test('reprogramming the message while enabled moves every vector, with no call', () => {
    const rig = makePassthroughRig();
    enableMsi(rig, 2);
    const message = msiTo(1, 0x70);
    assert.deepEqual(callsOf(rig, () => { rig.msi.writeConfig(4, 4, message.addressLow); rig.msi.writeConfig(12, 2, message.data); }), []);
    raise(rig, [0, 3]);
    assert.deepEqual(deliverAll(rig), [0x70, 0x73]);
    assert.deepEqual(rig.machine.vcpus[1]?.taken.slice(-2).sort(), [0x70, 0x73]);
  });

  test('from MSI to MSI-X: MSI off (INTx back), then MSI-X on with nothing in use', () => {
    const rig = makePassthroughRig();
    enableMsi(rig, 2);
    assert.deepEqual(callsOf(rig, () => { disableMsi(rig); }), ['msi trigger none @0+0', ...INTX_ON]);
    assert.deepEqual(callsOf(rig, () => { rig.guest.setControl(true, false); }), ['intx trigger none @0+0', 'msix trigger eventfd @0 [-]']);
  });

  test('a guest that enables MSI and MSI-X at once gets MSI-X (undefined by PCI; MSI waits)', () => {
    const rig = makePassthroughRig();
    rig.guest.setControl(true, false);
    assert.deepEqual(callsOf(rig, () => { enableMsi(rig, 2); }), []);
    assert.deepEqual(callsOf(rig, () => { rig.guest.setControl(false, false); }), ['msix trigger none @0+0', 'msi trigger eventfd @0 [#,#,#,#]']);
  });
});
