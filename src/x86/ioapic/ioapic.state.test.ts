/**
 * IOAPIC state: views over shared memory (fromState, worker threads), snapshots and their
 * validation (§6.34), checked against the word layout documented at the top of ioapic.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startTypeScriptWorker } from '../../node/worker.ts';
import { VirtualClock } from '../../base/clock.ts';
import { encodeSnapshot, releaseLock, tryAcquireLock } from '../../base/shared-state.ts';
import type { InterruptMessageSink } from '../interrupt-message.ts';
import { Ioapic, IOAPIC_STORM_DELAY_NS, IOAPIC_STORM_EOI_THRESHOLD, type IoapicDescriptor } from './ioapic.ts';
import { assertRejectedUnchanged, RecordingSink } from '../controller-test-support.ts';
import { entryLow, makeIoapic, writeEntry } from './test-support.ts';

/** Word indexes from the layout table in ioapic.ts. */
const Layout = {
  totalWords: 145,
  lockState: 0,
  ioregsel: 6,
  ioapicId: 7,
  lineLevels: 8,
  rtcEoiPending: 9,
  deferredPins: 10,
  rteLow: (pin: number) => 24 + 2 * pin,
  stormCount: (pin: number) => 72 + pin,
  deadlineHigh: (pin: number) => 97 + 2 * pin,
  resampledPins: 144,
  snapshotVersion: 2,
} as const;

function stateWords(ioapic: Ioapic): Int32Array {
  return new Int32Array(ioapic.descriptor().buffer);
}

/** A snapshot of `ioapic`'s state with `edit` applied to a copy of its words. */
function editedSnapshot(ioapic: Ioapic, edit: (words: Int32Array) => void, kind = 'IOAP', version: number = Layout.snapshotVersion): Uint8Array {
  const copy = Int32Array.from(stateWords(ioapic));
  edit(copy);
  return encodeSnapshot(kind, version, copy);
}

function busyIoapic() {
  const rig = makeIoapic();
  writeEntry(rig.ioapic, 3, entryLow({ vector: 0x31, level: true }), 0x01000000);
  writeEntry(rig.ioapic, 4, entryLow({ vector: 0x32 }));
  rig.ioapic.setIrq(3, true);
  rig.ioapic.setIrq(4, true);
  return rig;
}

test('the state buffer has the documented size and words', () => {
  const { ioapic } = busyIoapic();
  const words = stateWords(ioapic);
  assert.equal(words.length, Layout.totalWords);
  assert.equal(words[Layout.lineLevels], (1 << 3) | (1 << 4));
  assert.equal(words[Layout.rteLow(3)], entryLow({ vector: 0x31, level: true }) | (1 << 14));
});

test('a view built from the descriptor shares the state: an EOI through it clears remote IRR', () => {
  const { ioapic, sink, clock } = busyIoapic();
  const otherSink = new RecordingSink();
  const view = Ioapic.fromState(structuredClone(ioapic.descriptor()), { sink: otherSink, clock });
  assert.equal(view.remoteIrr(3), true);
  assert.equal(view.baseAddress, ioapic.baseAddress);
  view.endOfInterrupt(0x31);
  assert.equal(ioapic.remoteIrr(3), true, 're-delivered through the view, whose sink took it');
  assert.deepEqual(otherSink.vectors(), [0x31]);
  assert.equal(sink.messages.length, 2);
});

test('fromState rejects a foreign descriptor, a wrong-sized buffer and a missing sink with EINVAL', () => {
  const { ioapic, clock } = busyIoapic();
  const sink = new RecordingSink();
  const bad: unknown[] = [
    { kind: 'pic', buffer: ioapic.descriptor().buffer },
    { kind: 'ioapic', buffer: new SharedArrayBuffer(16) },
    { kind: 'ioapic', buffer: new ArrayBuffer(Layout.totalWords * 4) },
    { kind: 'ioapic', buffer: new SharedArrayBuffer(Layout.totalWords * 4) },
    undefined,
  ];
  for (const descriptor of bad) {
    assert.throws(() => Ioapic.fromState(descriptor as IoapicDescriptor, { sink, clock }), {
      name: 'IrqChipError',
      code: 'EINVAL',
    });
  }
  const notASink: unknown = {};
  assert.throws(() => Ioapic.fromState(ioapic.descriptor(), { sink: notASink as InterruptMessageSink, clock }), {
    code: 'EINVAL',
  });
});

test('a worker thread asserting a pin through its own view is seen by this thread', async () => {
  const { ioapic } = makeIoapic();
  writeEntry(ioapic, 6, entryLow({ vector: 0x46, level: true }));
  const worker = startTypeScriptWorker(new URL('./ioapic.worker-fixture.ts', import.meta.url), { workerData: ioapic.descriptor() });
  const reply = await new Promise<unknown>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await worker.terminate();
  assert.deepEqual(reply, { result: 1, vectors: [0x46] });
  assert.equal(ioapic.remoteIrr(6), true);
  assert.equal(ioapic.lineLevel(6), true);
});

// ---------------------------------------------------------------------------------------------
// Resampling is shared state; listeners are per view
// ---------------------------------------------------------------------------------------------

test('setPinResampled is stored in the documented word and seen by every view', () => {
  const { ioapic, sink, clock } = makeIoapic();
  const view = Ioapic.fromState(ioapic.descriptor(), { sink, clock });
  ioapic.setPinResampled(5, true);
  ioapic.setPinResampled(23, true);
  assert.equal(stateWords(ioapic)[Layout.resampledPins], (1 << 5) | (1 << 23));
  assert.equal(view.isPinResampled(5), true);
  assert.equal(view.isPinResampled(23), true);
  assert.equal(view.isPinResampled(4), false);
  view.setPinResampled(5, false);
  assert.equal(ioapic.isPinResampled(5), false);
  assert.equal(stateWords(ioapic)[Layout.resampledPins], 1 << 23);
});

test('a view without a listener still resamples: EOI lowers the line, counts it, re-delivers nothing', () => {
  const { ioapic, sink, clock } = busyIoapic();
  const signalled: number[] = [];
  ioapic.setPinResampled(3, true);
  ioapic.setResampleListener((pin) => signalled.push(pin));
  const workerSink = new RecordingSink();
  const workerView = Ioapic.fromState(ioapic.descriptor(), { sink: workerSink, clock });
  workerView.endOfInterrupt(0x31);
  assert.equal(ioapic.lineLevel(3), false, 'lowered although the view has no listener');
  assert.equal(ioapic.remoteIrr(3), false);
  assert.equal(ioapic.counters().resampleSignals, 1);
  assert.deepEqual(workerSink.messages, [], 'not re-delivered');
  assert.equal(sink.messages.length, 2, 'the two deliveries of busyIoapic only');
  assert.deepEqual(signalled, [], "the other view's listener belongs to that view");
});

test('the view that performs the EOI calls its own listener, with the pin', () => {
  const { ioapic, clock } = busyIoapic();
  ioapic.setPinResampled(3, true);
  const mainSignalled: number[] = [];
  ioapic.setResampleListener((pin) => mainSignalled.push(pin));
  const viewSignalled: number[] = [];
  const view = Ioapic.fromState(ioapic.descriptor(), { sink: new RecordingSink(), clock });
  view.setResampleListener((pin) => viewSignalled.push(pin));
  view.endOfInterrupt(0x31);
  assert.deepEqual(viewSignalled, [3]);
  assert.deepEqual(mainSignalled, []);
});

test('reset keeps the resampled pins (device wiring, not chip state)', () => {
  const { ioapic } = makeIoapic();
  ioapic.setPinResampled(7, true);
  ioapic.reset();
  assert.equal(ioapic.isPinResampled(7), true);
});

test('the resampled pins are saved in snapshots and restored', () => {
  const { ioapic } = busyIoapic();
  ioapic.setPinResampled(4, true);
  const copy = makeIoapic().ioapic;
  copy.setPinResampled(9, true);
  copy.restore(ioapic.snapshot());
  assert.equal(copy.isPinResampled(4), true);
  assert.equal(copy.isPinResampled(9), false);
});

// ---------------------------------------------------------------------------------------------
// trySetIrq: the pin input that never waits for the lock
// ---------------------------------------------------------------------------------------------

test('trySetIrq returns undefined and changes nothing while another holder has the lock', () => {
  const { ioapic, sink } = makeIoapic();
  writeEntry(ioapic, 6, entryLow({ vector: 0x46, level: true }));
  const before = ioapic.snapshot();
  const counters = ioapic.counters();
  const words = stateWords(ioapic);
  assert.equal(tryAcquireLock(words), true, 'the lock was free');
  try {
    assert.equal(tryAcquireLock(words), false, 'a held lock is not taken twice');
    assert.equal(ioapic.trySetIrq(6, true), undefined);
    assert.equal(ioapic.trySetIrq(6, false), undefined);
    assert.equal(words[Layout.lockState], 1, 'still held by its holder');
    assert.equal(ioapic.lineLevel(6), false);
    assert.deepEqual(ioapic.counters(), counters);
  } finally {
    releaseLock(words);
  }
  assert.deepEqual(ioapic.snapshot(), before);
  assert.equal(sink.messages.length, 0);
  assert.equal(ioapic.trySetIrq(6, true), 1, 'the lock is free again: delivered');
  assert.deepEqual(sink.vectors(), [0x46]);
});

test('trySetIrq from a sink (another view holds the lock mid-delivery) defers instead of deadlocking', () => {
  const clock = new VirtualClock();
  const sink = new RecordingSink();
  const results: (number | undefined)[] = [];
  const ioapic = Ioapic.create({ sink, clock });
  const deviceView = Ioapic.fromState(ioapic.descriptor(), { sink: new RecordingSink(), clock });
  sink.result = () => {
    results.push(deviceView.trySetIrq(2, true));
    return 1;
  };
  writeEntry(ioapic, 1, entryLow({ vector: 0x41 }));
  writeEntry(ioapic, 2, entryLow({ vector: 0x42 }));
  assert.equal(ioapic.setIrq(1, true), 1);
  assert.deepEqual(results, [undefined]);
  assert.equal(ioapic.lineLevel(2), false);
  assert.equal(deviceView.trySetIrq(2, true), 1, 'retried once the lock is free');
});

test('trySetIrq with the lock free returns what setIrq returns, for every kind of outcome', () => {
  const outcomes = (drive: (ioapic: Ioapic, pin: number, level: boolean) => number | undefined) => {
    const { ioapic, sink } = makeIoapic();
    writeEntry(ioapic, 1, entryLow({ vector: 0x41 }));
    writeEntry(ioapic, 2, entryLow({ vector: 0x42, level: true }));
    writeEntry(ioapic, 3, entryLow({ vector: 0x43, masked: true }));
    const returned = [
      drive(ioapic, 1, true), // edge delivered: 1
      drive(ioapic, 1, true), // repeated edge assert: 0
      drive(ioapic, 2, true), // level delivered: 1
      drive(ioapic, 2, true), // level with remote IRR: 0
      drive(ioapic, 3, true), // masked edge dropped: -1
      drive(ioapic, 1, false), // deassert: 1
    ];
    return { returned, vectors: sink.vectors(), snapshot: ioapic.snapshot() };
  };
  const locked = outcomes((ioapic, pin, level) => ioapic.setIrq(pin, level));
  const tried = outcomes((ioapic, pin, level) => ioapic.trySetIrq(pin, level));
  assert.deepEqual(locked.returned, [1, 0, 1, 0, -1, 1]);
  assert.deepEqual(tried, locked);
});

test('snapshot and restore into a fresh IOAPIC reproduce registers, lines, remote IRR and counters', () => {
  const { ioapic } = busyIoapic();
  const copy = makeIoapic().ioapic;
  copy.restore(ioapic.snapshot());
  assert.deepEqual(copy.snapshot(), ioapic.snapshot());
  assert.equal(copy.remoteIrr(3), true);
  assert.equal(copy.lineLevel(4), true);
  assert.deepEqual(copy.counters(), ioapic.counters());
});

test('restore keeps this view\'s resample listener (not state) and takes the resampled pins from the snapshot', () => {
  const { ioapic } = busyIoapic();
  ioapic.setPinResampled(3, true);
  const copy = makeIoapic().ioapic;
  const signalled: number[] = [];
  copy.setResampleListener((pin) => signalled.push(pin));
  copy.restore(ioapic.snapshot());
  copy.endOfInterrupt(0x31);
  assert.deepEqual(signalled, [3]);
});

test('restore caps a deferral deadline from another clock at now + 10 ms', () => {
  const rig = makeIoapic();
  rig.clock.advance(1e12);
  writeEntry(rig.ioapic, 2, entryLow({ vector: 0x60, level: true }));
  rig.ioapic.setIrq(2, true);
  for (let i = 0; i < IOAPIC_STORM_EOI_THRESHOLD; i++) rig.ioapic.endOfInterrupt(0x60);
  assert.equal(rig.ioapic.nextDeadlineNs(), 1e12 + IOAPIC_STORM_DELAY_NS);

  const sink = new RecordingSink();
  const clock = new VirtualClock(500);
  const restored = Ioapic.create({ sink, clock });
  restored.restore(rig.ioapic.snapshot());
  assert.equal(restored.nextDeadlineNs(), 500 + IOAPIC_STORM_DELAY_NS);
  clock.advance(IOAPIC_STORM_DELAY_NS);
  restored.runDelayedWork();
  assert.deepEqual(sink.vectors(), [0x60]);
});

test('a truncated snapshot is rejected and nothing changes', () => {
  const { ioapic } = busyIoapic();
  const bytes = ioapic.snapshot();
  const target = makeIoapic().ioapic;
  for (const length of [0, 8, 16, bytes.length - 4, bytes.length - 1]) {
    assertRejectedUnchanged(target, () => {
      target.restore(bytes.subarray(0, length));
    });
  }
});

test('a snapshot with a flipped bit is rejected and nothing changes', () => {
  const { ioapic } = busyIoapic();
  const target = makeIoapic().ioapic;
  const bytes = ioapic.snapshot();
  for (const bit of [0, 8 * 20 + 3, 8 * (bytes.length - 1)]) {
    const damaged = Uint8Array.from(bytes);
    damaged[bit >> 3] = (damaged[bit >> 3] ?? 0) ^ (1 << (bit & 7));
    assertRejectedUnchanged(target, () => {
      target.restore(damaged);
    });
  }
});

test('a snapshot of another kind or layout version is rejected and nothing changes', () => {
  const { ioapic } = busyIoapic();
  const target = makeIoapic().ioapic;
  for (const [kind, version] of [
    ['PIC2', Layout.snapshotVersion],
    ['IOAP', 1],
    ['IOAP', Layout.snapshotVersion + 1],
  ] as const) {
    const foreign = editedSnapshot(ioapic, () => undefined, kind, version);
    assertRejectedUnchanged(target, () => {
      target.restore(foreign);
    });
  }
});

test('a snapshot of a differently configured IOAPIC (version, base, ID, features) is rejected', () => {
  const { ioapic } = busyIoapic();
  for (const options of [{ version: 0x11 }, { baseAddress: 0xfec01000 }, { id: 1 }, { rtcEoiTracking: true }] as const) {
    const other = makeIoapic(options).ioapic;
    assertRejectedUnchanged(other, () => {
      other.restore(ioapic.snapshot());
    });
  }
});

test('snapshots with impossible states are rejected and nothing changes', () => {
  const { ioapic } = busyIoapic();
  const target = makeIoapic().ioapic;
  const impossible: [string, (words: Int32Array) => void][] = [
    ['IOREGSEL wider than 8 bits', (words) => (words[Layout.ioregsel] = 0x100)],
    ['ID bits outside 27:24', (words) => (words[Layout.ioapicId] = 0x10000000)],
    ['line of pin 24', (words) => (words[Layout.lineLevels] = 1 << 24)],
    ['deferral of pin 30', (words) => (words[Layout.deferredPins] = 1 << 30)],
    ['resampling of pin 24', (words) => (words[Layout.resampledPins] = 1 << 24)],
    ['resampling of pin 31', (words) => (words[Layout.resampledPins] = 1 << 31)],
    ['RTC pending without tracking', (words) => (words[Layout.rtcEoiPending] = 1)],
    ['delivery status set', (words) => (words[Layout.rteLow(5)] = 1 << 12)],
    ['remote IRR on an edge entry', (words) => (words[Layout.rteLow(4)] = entryLow({ vector: 0x32 }) | (1 << 14))],
    ['remote IRR on an NMI entry', (words) => (words[Layout.rteLow(4)] = (4 << 8) | (1 << 15) | (1 << 14))],
    ['storm count at the threshold', (words) => (words[Layout.stormCount(3)] = IOAPIC_STORM_EOI_THRESHOLD)],
    ['negative storm count', (words) => (words[Layout.stormCount(3)] = -1)],
    ['deadline beyond 2^53 ns', (words) => (words[Layout.deadlineHigh(3)] = 2 ** 21)],
  ];
  for (const [why, edit] of impossible) {
    const bytes = editedSnapshot(ioapic, edit);
    assertRejectedUnchanged(
      target,
      () => {
        target.restore(bytes);
      },
      why,
    );
  }
});
