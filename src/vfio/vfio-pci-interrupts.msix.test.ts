/**
 * MSI-X end to end: the guest programs, masks and unmasks the table of a passed-through function
 * (MsixCapability on the MMIO bus), the device (VfioIrqs) fires, the vectors reach the SimVcpus
 * through IrqFdRoutes on the userspace chip, and exactly the expected SET_IRQS calls are made
 * (recorded as `index action data @start [fds]`, `#` an event, `-` fd -1).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { VFIO_PCI_MSIX_IRQ_INDEX as MSIX } from './vfio-uapi.ts';
import { deliverAll, makePassthroughRig, msixGuestVector, PASSTHROUGH_FUNCTION, type PassthroughRig } from './vfio-pci-test-support.ts';

const TABLE_SIZE = 16;
const ALL_VECTORS = Array.from({ length: TABLE_SIZE }, (_, vector) => vector);
const INTX_ON = ['intx trigger eventfd @0 [#]', 'intx unmask eventfd @0 [#]'];

/** Runs `step` and returns the SET_IRQS calls it made. */
function callsOf(rig: PassthroughRig, step: () => void): string[] {
  const from = rig.device.calls.length;
  step();
  return rig.device.since(from);
}

/** The device raises each of `vectors`. */
function raise(rig: PassthroughRig, vectors: readonly number[]): void {
  for (const vector of vectors) rig.kernel.raise(MSIX, vector);
}

function guestVectors(vectors: readonly number[]): number[] {
  return vectors.map(msixGuestVector).sort((a, b) => a - b);
}

/** The guest enables MSI-X with every vector masked and programs every entry (vector v → 0x50 + v, vCPU v % 2). */
function enableMasked(rig: PassthroughRig): string[] {
  return callsOf(rig, () => {
    rig.guest.setControl(true, false);
    for (const vector of ALL_VECTORS) rig.guest.program(vector, vector % 2, msixGuestVector(vector));
  });
}

describe('VfioPciInterrupts: MSI-X end to end', () => {
  test('enable masked, unmask a few, fire everything, grow, mask, function mask, reprogram, disable: exact calls, every interrupt once', () => {
    const rig = makePassthroughRig();
    const { guest, kernel, vfio, machine } = rig;

    // §6.13: enabled with nothing in use → INTx off, vector 0 bound to -1; programming the table costs nothing.
    assert.deepEqual(enableMasked(rig), ['intx trigger none @0+0', 'msix trigger eventfd @0 [-]']);
    assert.deepEqual([kernel.state().activeIndex, kernel.state().allocatedVectors, kernel.state().vectorTriggers.size], [MSIX, [0], 0]);
    assert.equal(machine.allocator.allocatedCount, 0, 'no GSI for a vector never unmasked');

    // First use of vector 0 fits the host's one vector: one bind. Vector 1 needs a NORESIZE growth.
    assert.deepEqual(callsOf(rig, () => { guest.setVectorMask(0, false); }), ['msix trigger eventfd @0 [#]']);
    assert.deepEqual(callsOf(rig, () => { guest.setVectorMask(1, false); }), ['msix trigger none @0+0', 'msix trigger eventfd @0 [#,#]']);

    // The device fires on every vector: the two in use are delivered; the others are held by the device.
    raise(rig, ALL_VECTORS);
    assert.deepEqual(deliverAll(rig), guestVectors([0, 1]));
    assert.deepEqual(kernel.state().pendingVectors.msix, ALL_VECTORS.slice(2));

    // Unmasking vector 5 grows the host to 6 vectors; what the device held for 5 arrives, once.
    assert.deepEqual(callsOf(rig, () => { guest.setVectorMask(5, false); }), ['msix trigger none @0+0', 'msix trigger eventfd @0 [#,#,-,-,-,#]']);
    assert.deepEqual(deliverAll(rig), guestVectors([5]));
    assert.deepEqual(callsOf(rig, () => { guest.setVectorMask(3, false); }), ['msix trigger eventfd @3 [#]'], 'within the host\'s vectors: one bind');
    assert.deepEqual(deliverAll(rig), guestVectors([3]));

    // Masking is ours: no call; three fires while masked are held, shown in the PBA, delivered once at unmask.
    assert.deepEqual(callsOf(rig, () => { guest.setVectorMask(0, true); }), []);
    raise(rig, [0, 0, 0]);
    assert.deepEqual(deliverAll(rig), []);
    assert.equal(guest.readPba(), 0b1);
    assert.deepEqual(callsOf(rig, () => { guest.setVectorMask(0, false); }), []);
    assert.deepEqual(deliverAll(rig), guestVectors([0]));
    assert.equal(guest.readPba(), 0);

    // The Function Mask: no calls; every vector in use holds, then delivers once.
    assert.deepEqual(callsOf(rig, () => { guest.setControl(true, true); }), []);
    raise(rig, [0, 1, 3, 5]);
    assert.deepEqual(deliverAll(rig), []);
    assert.equal(guest.readPba(), 0b101011);
    assert.deepEqual(callsOf(rig, () => { guest.setControl(true, false); }), []);
    assert.deepEqual(deliverAll(rig), guestVectors([0, 1, 3, 5]));

    // Reprogramming while the device fires: the fire not yet injected goes to the new message; no call.
    const reprogrammed = callsOf(rig, () => {
      raise(rig, [1]);
      guest.program(1, 1, 0x71);
    });
    assert.deepEqual(reprogrammed, []);
    assert.deepEqual(deliverAll(rig), [0x71]);
    raise(rig, [1]);
    assert.deepEqual(deliverAll(rig), [0x71]);
    guest.program(1, 1, msixGuestVector(1));

    // The driver brings the rest up under the Function Mask: one growth for all of them; each held fire once.
    const rest = ALL_VECTORS.filter((vector) => ![0, 1, 3, 5].includes(vector));
    const broughtUp = callsOf(rig, () => {
      guest.setControl(true, true);
      for (const vector of rest) guest.setVectorMask(vector, false);
      guest.setControl(true, false);
    });
    assert.deepEqual(broughtUp, ['msix trigger none @0+0', `msix trigger eventfd @0 [${Array<string>(TABLE_SIZE).fill('#').join(',')}]`]);
    assert.deepEqual(deliverAll(rig), guestVectors(rest));
    raise(rig, ALL_VECTORS);
    assert.deepEqual(deliverAll(rig), guestVectors(ALL_VECTORS));
    assert.equal(machine.allocator.allocatedCount, TABLE_SIZE);

    // Disable: one call, then INTx again; every route and GSI freed.
    assert.deepEqual(callsOf(rig, () => { guest.setControl(false, false); }), ['msix trigger none @0+0', ...INTX_ON]);
    assert.equal(machine.allocator.allocatedCount, 0);
    assert.equal(machine.chip.irqEventTokens().length, 1, 'only the INTx level event is left');

    assert.deepEqual(vfio.counters(), {
      setIrqsIntxTrigger: 2,
      setIrqsIntxUnmask: 2,
      setIrqsEnable: 4,
      setIrqsBind: 2,
      setIrqsDisable: 5,
      setIrqsFailed: 0,
      stateResends: 0,
      resizes: 3,
      vectorsRefused: 0,
      gsiExhausted: 0,
    });
    assert.equal(kernel.counters().undeliverableRaises, 0, 'the device lost nothing');
  });

  test('a function-mask clear that brings up many vectors costs one call with dynamic MSI-X (NORESIZE clear)', () => {
    const rig = makePassthroughRig({ config: { ...PASSTHROUGH_FUNCTION, dynamicMsix: true } });
    enableMasked(rig);
    const calls = callsOf(rig, () => {
      rig.guest.setControl(true, true);
      for (const vector of [2, 3, 9]) rig.guest.setVectorMask(vector, false);
      rig.guest.setControl(true, false);
    });
    assert.deepEqual(calls, ['msix trigger eventfd @2 [#,#,-,-,-,-,-,#]']);
    raise(rig, [2, 3, 9]);
    assert.deepEqual(deliverAll(rig), guestVectors([2, 3, 9]));
    assert.equal(rig.vfio.counters().resizes, 0);
  });

  test('interrupts held across a NORESIZE growth: a masked vector\'s fires stay in its route, delivered once at unmask', () => {
    const rig = makePassthroughRig();
    enableMasked(rig);
    rig.guest.setVectorMask(0, false);
    rig.guest.setVectorMask(0, true);
    raise(rig, [0, 0]);
    rig.guest.setVectorMask(7, false); // growth: disable and re-enable the host index
    assert.equal(rig.vfio.counters().resizes, 1);
    assert.deepEqual(deliverAll(rig), []);
    rig.guest.setVectorMask(0, false);
    assert.deepEqual(deliverAll(rig), guestVectors([0]));
  });

  test('a live vector fired just before a growth is delivered once (held, then replayed)', () => {
    const rig = makePassthroughRig();
    enableMasked(rig);
    rig.guest.setVectorMask(0, false);
    raise(rig, [0]); // not yet injected: the owner loop has not run
    rig.guest.setVectorMask(9, false);
    assert.deepEqual(deliverAll(rig), guestVectors([0]));
    raise(rig, [0, 9]);
    assert.deepEqual(deliverAll(rig), guestVectors([0, 9]));
  });

  test('disable and re-enable by the guest: what a vector held is delivered once when it is next in use', () => {
    const rig = makePassthroughRig();
    enableMasked(rig);
    rig.guest.setVectorMask(4, false);
    rig.guest.setControl(true, true);
    raise(rig, [4]);
    rig.guest.setControl(false, false);
    assert.equal(rig.machine.allocator.allocatedCount, 0, 'the route went with the disable');
    assert.equal(rig.vfio.msix?.getPendingState(4), true, 'held');
    assert.deepEqual(callsOf(rig, () => { rig.guest.setControl(true, false); }), ['intx trigger none @0+0', 'msix trigger eventfd @0 [-,-,-,-,#]']);
    assert.deepEqual(deliverAll(rig), guestVectors([4]));
  });
});

describe('VfioPciInterrupts: refused calls (§6.16)', () => {
  test('a block that fails part-way (EBADF at its 4th fd) is re-sent in full: every vector in use bound again', () => {
    const rig = makePassthroughRig();
    enableMasked(rig);
    rig.guest.setVectorMask(7, false); // host vectors 0..7
    rig.device.spoilNextEventfdCall(3);
    const calls = callsOf(rig, () => {
      rig.guest.setControl(true, true);
      for (const vector of [0, 1, 2, 3, 4, 5]) rig.guest.setVectorMask(vector, false);
      rig.guest.setControl(true, false);
    });
    assert.deepEqual(calls, ['msix trigger eventfd @0 [#,#,#,#,#,#]', 'msix trigger eventfd @0 [#,#,#,#,#,#,-,#]']);
    assert.deepEqual([...rig.kernel.state().vectorTriggers.keys()], [0, 1, 2, 3, 4, 5, 7]);
    assert.deepEqual([rig.vfio.counters().setIrqsFailed, rig.vfio.counters().stateResends], [1, 1]);
    raise(rig, [0, 1, 2, 3, 4, 5, 7]);
    assert.deepEqual(deliverAll(rig), guestVectors([0, 1, 2, 3, 4, 5, 7]));
  });

  test('an enable that fails part-way (the kernel disables the index again) is re-sent', () => {
    const rig = makePassthroughRig();
    // A guest that programs and unmasks entries before it sets MSI-X Enable: the enable binds them all.
    for (const vector of [0, 1, 2]) {
      rig.guest.program(vector, 0, msixGuestVector(vector));
      rig.guest.setVectorMask(vector, false);
    }
    rig.device.spoilNextEventfdCall(1);
    const calls = callsOf(rig, () => { rig.guest.setControl(true, false); });
    assert.deepEqual(calls, ['intx trigger none @0+0', 'msix trigger eventfd @0 [#,#,#]', 'msix trigger eventfd @0 [#,#,#]']);
    assert.deepEqual([rig.vfio.counters().setIrqsFailed, rig.vfio.counters().stateResends, rig.vfio.counters().resizes], [1, 1, 0]);
    raise(rig, [0, 1, 2]);
    assert.deepEqual(deliverAll(rig), guestVectors([0, 1, 2]));
  });

  test('a growth whose re-enable fails part-way is re-sent; the held vector is replayed once', () => {
    const rig = makePassthroughRig();
    enableMasked(rig);
    rig.guest.setVectorMask(0, false);
    raise(rig, [0]);
    rig.device.spoilNextEventfdCall(0);
    const calls = callsOf(rig, () => { rig.guest.setVectorMask(2, false); });
    assert.deepEqual(calls, ['msix trigger none @0+0', 'msix trigger eventfd @0 [#,-,#]', 'msix trigger eventfd @0 [#,-,#]']);
    assert.deepEqual(deliverAll(rig), guestVectors([0]));
    raise(rig, [0, 2]);
    assert.deepEqual(deliverAll(rig), guestVectors([0, 2]));
  });

  test('the host cannot grow (4 host vectors): the new vector is refused, the others are re-bound and keep working', () => {
    const rig = makePassthroughRig({ config: { ...PASSTHROUGH_FUNCTION, hostVectors: 4 } });
    enableMasked(rig);
    rig.guest.setVectorMask(0, false);
    rig.guest.setVectorMask(1, false);
    const calls = callsOf(rig, () => { rig.guest.setVectorMask(6, false); });
    assert.deepEqual(calls, [
      'msix trigger none @0+0',
      'msix trigger eventfd @0 [#,#,-,-,-,-,#]', // refused: 7 > 4 host vectors
      'msix trigger eventfd @0 [#,#,-,-,-,-,#]', // the full state again
      'msix trigger eventfd @0 [#,#]', // without the vector that came into use
    ]);
    assert.deepEqual(rig.vfio.counters().vectorsRefused, 1);
    raise(rig, [0, 1, 6]);
    assert.deepEqual(deliverAll(rig), guestVectors([0, 1]), 'vector 6 stays with the device until it can be bound');
    assert.equal(rig.machine.allocator.allocatedCount, 2, 'the refused vector\'s route and GSI are freed');
  });

  test('a vector that finds no GSI stays masked for delivery, makes no call, and is retried at its next unmask', () => {
    const rig = makePassthroughRig({ gsiBudget: 1 });
    enableMasked(rig);
    rig.guest.setVectorMask(0, false);
    assert.deepEqual(callsOf(rig, () => { rig.guest.setVectorMask(1, false); }), []);
    assert.equal(rig.vfio.counters().gsiExhausted, 1);
    raise(rig, [1]);
    rig.guest.setVectorMask(0, true);
    rig.guest.setVectorMask(0, false); // (vector 0 keeps its GSI: masking frees nothing)
    rig.guest.setVectorMask(1, true);
    assert.deepEqual(callsOf(rig, () => { rig.guest.setVectorMask(1, false); }), [], 'still no GSI');
    assert.equal(rig.vfio.counters().gsiExhausted, 2);
  });
});

describe('MsixCapability over VFIO vectors: the guest\'s registers', () => {
  test('capability header, Message Control and location registers read as programmed', () => {
    const rig = makePassthroughRig();
    assert.equal(rig.msix.readConfig(0, 1), 0x11);
    assert.equal(rig.msix.readConfig(2, 2), TABLE_SIZE - 1);
    assert.equal(rig.msix.readConfig(8, 4), 0x800);
    rig.guest.setControl(true, true);
    assert.equal(rig.msix.readConfig(2, 2), 0xc000 | (TABLE_SIZE - 1));
    assert.equal(rig.msix.readConfig(0, 4) >>> 16, 0xc000 | (TABLE_SIZE - 1));
  });

  test('entries reset masked; a table read returns what was written, reserved bits clear', () => {
    const rig = makePassthroughRig();
    const data = new Uint8Array(4);
    rig.msix.tableRead(12, data);
    assert.deepEqual([...data], [1, 0, 0, 0]);
    rig.guest.writeEntry(0, 0, 0xfee00003);
    rig.msix.tableRead(0, data);
    assert.deepEqual([...data], [0x00, 0x00, 0xe0, 0xfe]);
    assert.equal(rig.msix.counters().reservedBitWrites, 1);
  });

  test('odd accesses never throw: dropped and counted; PBA writes are read-only', () => {
    const rig = makePassthroughRig();
    const before = rig.device.calls.length;
    rig.msix.tableWrite(2, new Uint8Array(4));
    rig.msix.tableWrite(TABLE_SIZE * 16, new Uint8Array(4));
    rig.msix.writeConfig(1, 2, 0xffff);
    assert.equal(rig.msix.readConfig(13, 1), 0xff);
    const read = new Uint8Array(2);
    rig.msix.pbaRead(0, read);
    assert.deepEqual([...read], [0xff, 0xff]);
    rig.msix.pbaWrite(0, new Uint8Array(8));
    assert.deepEqual(rig.msix.counters(), { ignoredAccesses: 5, reservedBitWrites: 0, readOnlyWrites: 1, gsiExhausted: 0 });
    assert.equal(rig.device.calls.length, before);
  });

  test('a QWORD table write is one access: programming and unmasking an entry costs one host call', () => {
    const rig = makePassthroughRig();
    rig.guest.setControl(true, false);
    const calls = callsOf(rig, () => {
      const entry = new Uint8Array(8);
      new DataView(entry.buffer).setUint32(0, 0x56, true); // data
      new DataView(entry.buffer).setUint32(4, 0, true); // vector control: unmasked
      rig.msix.tableWrite(0, new Uint8Array([0x00, 0x00, 0xe0, 0xfe, 0, 0, 0, 0]));
      rig.msix.tableWrite(8, entry);
    });
    assert.deepEqual(calls, ['msix trigger eventfd @0 [#]']);
    raise(rig, [0]);
    assert.deepEqual(deliverAll(rig), [0x56]);
  });
});
