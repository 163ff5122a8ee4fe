import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { rejectsWith } from '../../testing/irq-chip-error.ts';
import { encodeSnapshot } from '../../base/shared-state.ts';
import {
  DeliveryMode,
  DestinationMode,
  DestinationShorthand,
  interruptMessage,
  TriggerMode,
  X2APIC_BROADCAST,
  XAPIC_BROADCAST,
  type InterruptMessage,
} from '../interrupt-message.ts';
import { encodeMsi } from '../msi/msi-codec.ts';
import type { ApicBusMember } from './apic-bus-member.ts';
import { ApicBus, MAX_BUS_INDEX, type ApicBusOptions } from './apic-bus.ts';

/** DFR values: model in bits 31:28, bits 27:0 read as ones (SDM §11.6.2.2). */
const DFR_FLAT = 0xffffffff;
const DFR_CLUSTER = 0x0fffffff;

/**
 * A local APIC reduced to what the bus reads, with a pending-vector set so coalescing and the
 * software-disable drop (x86-controllers.md §3.5) give the answers a real LAPIC gives.
 */
class FakeApic implements ApicBusMember {
  hardwareEnabled = true;
  softwareEnabled = true;
  x2apicMode = false;
  /** xAPIC ID (8 bits) in xAPIC mode; in x2APIC mode `apicId()` answers the x2APIC ID. */
  xapicId: number;
  x2apicIdentity: number;
  ldr = 0;
  dfr = DFR_FLAT;
  ppr = 0;
  readonly received: InterruptMessage[] = [];
  readonly pendingVectors = new Set<number>();
  /** Runs inside `accept`, to model a member that reacts by sending something itself. */
  onAccept: ((message: InterruptMessage) => void) | undefined;

  constructor(readonly busIndex: number) {
    this.xapicId = busIndex;
    this.x2apicIdentity = busIndex;
  }

  isHardwareEnabled(): boolean {
    return this.hardwareEnabled;
  }
  isSoftwareEnabled(): boolean {
    return this.softwareEnabled;
  }
  isX2apicMode(): boolean {
    return this.x2apicMode;
  }
  apicId(): number {
    return this.x2apicMode ? this.x2apicIdentity : this.xapicId;
  }
  x2apicId(): number {
    return this.x2apicIdentity;
  }
  logicalDestination(): number {
    return this.ldr;
  }
  destinationFormat(): number {
    return this.dfr;
  }
  processorPriority(): number {
    return this.ppr;
  }

  /** Switches to x2APIC mode with the LDR derived from the ID (SDM §11.12.10.2). */
  enterX2apicMode(): this {
    this.x2apicMode = true;
    this.ldr = ((this.x2apicIdentity >>> 4) << 16) | (1 << (this.x2apicIdentity & 0xf));
    return this;
  }

  accept(message: InterruptMessage): number {
    this.received.push({ ...message });
    this.onAccept?.(message);
    const interrupt = message.deliveryMode === DeliveryMode.Fixed || message.deliveryMode === DeliveryMode.LowestPriority;
    if (!interrupt) return 1;
    if (!this.softwareEnabled) return -1;
    if (this.pendingVectors.has(message.vector)) return 0;
    this.pendingVectors.add(message.vector);
    return 1;
  }

  receivedVectors(): number[] {
    return this.received.map((message) => message.vector);
  }
}

function busWith(count: number, options: ApicBusOptions = {}): { bus: ApicBus; apics: FakeApic[] } {
  const bus = ApicBus.create(options);
  const apics = Array.from({ length: count }, (_, index) => new FakeApic(index));
  for (const apic of apics) bus.addMember(apic);
  return { bus, apics };
}

/** `interruptMessage` with vector 0x31 unless `fields` names another. */
function message(fields: Partial<InterruptMessage> = {}): InterruptMessage {
  return interruptMessage({ vector: 0x31, ...fields });
}

/** Indexes of the fakes that received anything. */
function receivers(apics: readonly FakeApic[]): number[] {
  return apics.filter((apic) => apic.received.length > 0).map((apic) => apic.busIndex);
}

/** Element `index`, which the test knows exists. */
function nth<T>(items: readonly T[], index: number): T {
  const item = items[index];
  assert.ok(item !== undefined, `no element ${index}`);
  return item;
}

describe('ApicBus physical destinations (§3.8)', () => {
  test('unicast reaches only the APIC with that ID and returns 1', () => {
    const { bus, apics } = busWith(3);
    assert.equal(bus.deliver(message({ destination: 1 })), 1);
    assert.deepEqual(receivers(apics), [1]);
  });

  test('an ID nobody has returns -1 and counts noDestination', () => {
    const { bus, apics } = busWith(3);
    assert.equal(bus.deliver(message({ destination: 7 })), -1);
    assert.deepEqual(receivers(apics), []);
    assert.equal(bus.counters().noDestination, 1);
  });

  test('broadcast 0xFF reaches every xAPIC and returns how many accepted', () => {
    const { bus, apics } = busWith(3);
    assert.equal(bus.deliver(message({ destination: XAPIC_BROADCAST })), 3);
    assert.deepEqual(receivers(apics), [0, 1, 2]);
  });

  test('a hardware-disabled APIC is off the bus: neither its ID nor broadcast reaches it', () => {
    const { bus, apics } = busWith(3);
    nth(apics, 1).hardwareEnabled = false;
    assert.equal(bus.deliver(message({ destination: 1 })), -1);
    assert.equal(bus.deliver(message({ destination: XAPIC_BROADCAST })), 2);
    assert.deepEqual(receivers(apics), [0, 2]);
  });

  test('a software-disabled target matches but drops a fixed interrupt: result 0, not -1', () => {
    const { bus, apics } = busWith(2);
    nth(apics, 1).softwareEnabled = false;
    assert.equal(bus.deliver(message({ destination: 1 })), 0);
    assert.equal(nth(apics, 1).received.length, 1);
  });

  test('a vector already pending coalesces: result 0', () => {
    const { bus } = busWith(2);
    assert.equal(bus.deliver(message({ destination: 1 })), 1);
    assert.equal(bus.deliver(message({ destination: 1 })), 0);
  });

  test('two APICs that share an xAPIC ID both receive the message', () => {
    const { bus, apics } = busWith(3);
    nth(apics, 2).xapicId = 1;
    assert.equal(bus.deliver(message({ destination: 1 })), 2);
    assert.deepEqual(receivers(apics), [1, 2]);
  });

  test('x2APIC targets match their 32-bit ID and the 0xFFFFFFFF broadcast', () => {
    const { bus, apics } = busWith(3);
    for (const apic of apics) apic.enterX2apicMode();
    assert.equal(bus.deliver(message({ destination: 2, sourceApic: 0 })), 1);
    assert.deepEqual(receivers(apics), [2]);
    assert.equal(bus.deliver(message({ destination: X2APIC_BROADCAST, sourceApic: 0, vector: 0x40 })), 3);
  });

  test('a destination read from an Int32Array (signed) is treated as its unsigned value', () => {
    const { bus, apics } = busWith(2);
    for (const apic of apics) apic.enterX2apicMode();
    assert.equal(bus.deliver(message({ destination: -1, sourceApic: 0 })), 2);
  });

  test('hotplug rule: an xAPIC-mode APIC whose x2APIC ID exceeds 0xFF also answers to that ID', () => {
    const { bus, apics } = busWith(2);
    nth(apics, 1).x2apicIdentity = 0x102;
    nth(apics, 1).xapicId = 0x02;
    assert.equal(bus.deliver(message({ destination: 0x102 })), 1);
    assert.equal(bus.deliver(message({ destination: 0x02, vector: 0x40 })), 1);
    assert.deepEqual(receivers(apics), [1]);
  });

  test('hotplug rule does not apply to an x2APIC ID that fits in 8 bits (a rewritten xAPIC ID wins)', () => {
    const { bus, apics } = busWith(2);
    nth(apics, 1).xapicId = 0x07;
    assert.equal(bus.deliver(message({ destination: 1 })), -1);
    assert.equal(bus.deliver(message({ destination: 7 })), 1);
  });
});

describe('ApicBus x2APIC broadcast quirk (§3.8, §6 item 12, M7)', () => {
  function x2apicBus(options: ApicBusOptions = {}): { bus: ApicBus; apics: FakeApic[] } {
    const { bus, apics } = busWith(3, options);
    nth(apics, 2).x2apicIdentity = XAPIC_BROADCAST;
    for (const apic of apics) apic.enterX2apicMode();
    return { bus, apics };
  }

  test('0xFF from an IOAPIC or MSI (no source APIC) reaches every x2APIC target', () => {
    const { bus, apics } = x2apicBus();
    assert.equal(bus.deliver(message({ destination: XAPIC_BROADCAST })), 3);
    assert.deepEqual(receivers(apics), [0, 1, 2]);
  });

  test('the quirk also applies in logical mode', () => {
    const { bus, apics } = x2apicBus();
    assert.equal(bus.deliver(message({ destination: XAPIC_BROADCAST, destinationMode: DestinationMode.Logical })), 3);
    assert.deepEqual(receivers(apics), [0, 1, 2]);
  });

  test('0xFF from a LAPIC is a plain ID to x2APIC targets', () => {
    const { bus, apics } = x2apicBus();
    assert.equal(bus.deliver(message({ destination: XAPIC_BROADCAST, sourceApic: 0 })), 1);
    assert.deepEqual(receivers(apics), [2]);
  });

  test('with the quirk disabled, 0xFF from an IOAPIC reaches only x2APIC ID 0xFF', () => {
    const { bus, apics } = x2apicBus({ x2apicBroadcastQuirk: false });
    assert.equal(bus.deliver(message({ destination: XAPIC_BROADCAST })), 1);
    assert.deepEqual(receivers(apics), [2]);
  });
});

describe('ApicBus logical destinations (§3.8)', () => {
  test('L13 flat: LDR 0x01000000 / 0x02000000; destination 0x02 reaches APIC 1 only, 0x03 both', () => {
    const { bus, apics } = busWith(2);
    nth(apics, 0).ldr = 0x01000000;
    nth(apics, 1).ldr = 0x02000000;
    assert.equal(bus.deliver(message({ destination: 0x02, destinationMode: DestinationMode.Logical })), 1);
    assert.deepEqual(receivers(apics), [1]);
    assert.equal(bus.deliver(message({ destination: 0x03, destinationMode: DestinationMode.Logical, vector: 0x40 })), 2);
  });

  test('L14 cluster: LDR 0x12 / 0x21; dest 0x12 and 0x13 reach APIC 0, 0x11 nobody, 0xFF both', () => {
    const { bus, apics } = busWith(2);
    nth(apics, 0).ldr = 0x12000000;
    nth(apics, 1).ldr = 0x21000000;
    for (const apic of apics) apic.dfr = DFR_CLUSTER;
    const logical = (destination: number, vector: number): number =>
      bus.deliver(message({ destination, destinationMode: DestinationMode.Logical, vector }));
    assert.equal(logical(0x12, 0x40), 1);
    assert.equal(logical(0x13, 0x41), 1);
    assert.deepEqual(receivers(apics), [0]);
    assert.equal(logical(0x11, 0x42), -1);
    assert.equal(logical(0xff, 0x43), 2);
  });

  test('logical broadcast 0xFF reaches an xAPIC whose LDR is still 0', () => {
    const { bus } = busWith(2);
    assert.equal(bus.deliver(message({ destination: XAPIC_BROADCAST, destinationMode: DestinationMode.Logical })), 2);
  });

  test('an undefined DFR model (neither flat nor cluster) matches nothing', () => {
    const { bus, apics } = busWith(1);
    nth(apics, 0).ldr = 0x01000000;
    nth(apics, 0).dfr = 0x5fffffff;
    assert.equal(bus.deliver(message({ destination: 0x01, destinationMode: DestinationMode.Logical })), -1);
  });

  test('x2APIC cluster: cluster in bits 31:16 must equal, member bits 15:0 must intersect', () => {
    const { bus, apics } = busWith(20);
    for (const apic of apics) apic.enterX2apicMode();
    const logical = (destination: number, vector: number): number =>
      bus.deliver(message({ destination, destinationMode: DestinationMode.Logical, vector, sourceApic: 0 }));
    assert.equal(logical(0x00010003, 0x40), 2);
    assert.deepEqual(receivers(apics), [16, 17]);
    assert.equal(logical(0x00000003, 0x41), 2);
    assert.deepEqual(receivers(apics), [0, 1, 16, 17]);
    assert.equal(logical(0x00020001, 0x42), -1);
  });
});

describe('ApicBus shorthands (§3.8, §3.10)', () => {
  test('self reaches only the sender, whatever the destination field says', () => {
    const { bus, apics } = busWith(3);
    assert.equal(bus.deliver(message({ shorthand: DestinationShorthand.Self, sourceApic: 1, destination: 2 })), 1);
    assert.deepEqual(receivers(apics), [1]);
  });

  test('all-including-self reaches everyone, all-excluding-self everyone but the sender', () => {
    const { bus, apics } = busWith(3);
    assert.equal(bus.deliver(message({ shorthand: DestinationShorthand.AllIncludingSelf, sourceApic: 1 })), 3);
    assert.equal(bus.deliver(message({ shorthand: DestinationShorthand.AllExcludingSelf, sourceApic: 1, vector: 0x40 })), 2);
    assert.deepEqual(apics.map((apic) => apic.receivedVectors()), [[0x31, 0x40], [0x31], [0x31, 0x40]]);
  });

  test('shorthands skip hardware-disabled APICs', () => {
    const { bus, apics } = busWith(3);
    nth(apics, 2).hardwareEnabled = false;
    assert.equal(bus.deliver(message({ shorthand: DestinationShorthand.AllIncludingSelf, sourceApic: 0 })), 2);
  });

  test('self or all-excluding-self without a sourceApic is EINVAL and delivers nothing', () => {
    const { bus, apics } = busWith(2);
    assert.throws(() => bus.deliver(message({ shorthand: DestinationShorthand.Self })), rejectsWith('EINVAL'));
    assert.throws(() => bus.deliver(message({ shorthand: DestinationShorthand.AllExcludingSelf })), rejectsWith('EINVAL'));
    assert.deepEqual(receivers(apics), []);
  });
});

describe('ApicBus lowest-priority arbitration (§3.9)', () => {
  const lowest = (fields: Partial<InterruptMessage> = {}): InterruptMessage =>
    message({ deliveryMode: DeliveryMode.LowestPriority, destination: XAPIC_BROADCAST, destinationMode: DestinationMode.Logical, ...fields });

  test('the matching APIC with the lowest PPR wins alone', () => {
    const { bus, apics } = busWith(3);
    nth(apics, 0).ppr = 0x20;
    nth(apics, 1).ppr = 0x10;
    nth(apics, 2).ppr = 0x30;
    assert.equal(bus.deliver(lowest()), 1);
    assert.deepEqual(receivers(apics), [1]);
  });

  test('ties go to the (vector mod count)-th tied APIC in bus-index order', () => {
    const { bus, apics } = busWith(4);
    nth(apics, 0).ppr = 0x40;
    // Tied at PPR 0: APICs 1, 2, 3. Vector 0x30 = 48 ≡ 0 (mod 3) → APIC 1; 0x31 ≡ 1 → APIC 2; 0x32 ≡ 2 → APIC 3.
    bus.deliver(lowest({ vector: 0x30 }));
    bus.deliver(lowest({ vector: 0x31 }));
    bus.deliver(lowest({ vector: 0x32 }));
    assert.deepEqual(apics.map((apic) => apic.receivedVectors()), [[], [0x30], [0x31], [0x32]]);
  });

  test('vector hashing counts in bus-index order whatever order the members were added in', () => {
    const bus = ApicBus.create();
    const apics = [new FakeApic(0), new FakeApic(1), new FakeApic(2)];
    for (const index of [2, 0, 1]) bus.addMember(nth(apics, index));
    bus.deliver(lowest({ vector: 0x30 }));
    assert.deepEqual(receivers(apics), [0]);
  });

  test('a software-disabled APIC is never a candidate, even with the lowest PPR', () => {
    const { bus, apics } = busWith(2);
    nth(apics, 0).softwareEnabled = false;
    nth(apics, 1).ppr = 0xf0;
    assert.equal(bus.deliver(lowest()), 1);
    assert.deepEqual(receivers(apics), [1]);
  });

  test('only software-disabled matches: -1 (KVM) and counted as noDestination', () => {
    const { bus, apics } = busWith(2);
    for (const apic of apics) apic.softwareEnabled = false;
    assert.equal(bus.deliver(lowest()), -1);
    assert.deepEqual(receivers(apics), []);
    assert.equal(bus.counters().noDestination, 1);
  });

  test('arbitration is among the destination only', () => {
    const { bus, apics } = busWith(3);
    nth(apics, 0).ldr = 0x01000000;
    nth(apics, 1).ldr = 0x02000000;
    nth(apics, 2).ldr = 0x04000000;
    nth(apics, 1).ppr = 0x50;
    nth(apics, 2).ppr = 0x60;
    bus.deliver(lowest({ destination: 0x06 }));
    assert.deepEqual(receivers(apics), [1]);
  });

  test('the winner coalescing gives 0', () => {
    const { bus } = busWith(2);
    assert.equal(bus.deliver(lowest()), 1);
    assert.equal(bus.deliver(lowest()), 0);
  });

  test('physical broadcast in lowest-priority mode is delivered as fixed to all and counted', () => {
    const { bus, apics } = busWith(3);
    nth(apics, 1).ppr = 0x10;
    assert.equal(bus.deliver(lowest({ destinationMode: DestinationMode.Physical })), 3);
    assert.equal(bus.counters().lowestPriorityBroadcasts, 1);
    for (const apic of apics) apic.enterX2apicMode();
    assert.equal(bus.deliver(lowest({ destinationMode: DestinationMode.Physical, destination: X2APIC_BROADCAST, sourceApic: 0, vector: 0x40 })), 3);
    assert.equal(bus.counters().lowestPriorityBroadcasts, 2);
  });

  test('a fixed message with the MSI redirection hint is arbitrated like lowest priority', () => {
    const { bus, apics } = busWith(2);
    nth(apics, 0).ppr = 0x20;
    assert.equal(bus.deliver(message({ destination: 0xff, destinationMode: DestinationMode.Logical, redirectionHint: true })), 1);
    assert.deepEqual(receivers(apics), [1]);
  });

  test('lowest priority with a shorthand arbitrates among the shorthand matches', () => {
    const { bus, apics } = busWith(3);
    nth(apics, 1).ppr = 0x10;
    nth(apics, 2).ppr = 0x20;
    bus.deliver(lowest({ shorthand: DestinationShorthand.AllExcludingSelf, sourceApic: 0 }));
    assert.deepEqual(receivers(apics), [1]);
  });
});

describe('ApicBus membership', () => {
  test('a bus index already taken is EEXIST; one out of range is EINVAL; the bus is unchanged', () => {
    const { bus } = busWith(2);
    assert.throws(() => { bus.addMember(new FakeApic(1)); }, rejectsWith('EEXIST'));
    assert.throws(() => { bus.addMember(new FakeApic(-1)); }, rejectsWith('EINVAL'));
    assert.throws(() => { bus.addMember(new FakeApic(MAX_BUS_INDEX + 1)); }, rejectsWith('EINVAL'));
    assert.throws(() => { bus.addMember(new FakeApic(0.5)); }, rejectsWith('EINVAL'));
    assert.deepEqual(bus.memberList().map((member) => member.busIndex), [0, 1]);
  });

  test('a removed member no longer receives; removing an unknown index is ENOENT', () => {
    const { bus, apics } = busWith(3);
    bus.removeMember(1);
    assert.equal(bus.member(1), undefined);
    assert.equal(bus.deliver(message({ destination: XAPIC_BROADCAST })), 2);
    assert.deepEqual(receivers(apics), [0, 2]);
    assert.throws(() => { bus.removeMember(1); }, rejectsWith('ENOENT'));
  });

  test('a member may be added back after removal and is arbitrated in index order', () => {
    const { bus, apics } = busWith(3);
    bus.removeMember(0);
    bus.addMember(nth(apics, 0));
    bus.deliver(message({ deliveryMode: DeliveryMode.LowestPriority, destination: 0xff, destinationMode: DestinationMode.Logical, vector: 0x30 }));
    assert.deepEqual(receivers(apics), [0]);
  });
});

describe('ApicBus.deliverMsi (§4.4)', () => {
  test('M1 through the bus: address 0xFEE01000 data 0xF1 reaches APIC 1', () => {
    const { bus, apics } = busWith(2);
    assert.equal(bus.deliverMsi(0xfee01000, 0, 0xf1), 1);
    assert.deepEqual(receivers(apics), [1]);
    assert.equal(nth(nth(apics, 1).received, 0).sourceApic, undefined);
  });

  test('a write outside 0xFEExxxxx is not an interrupt: -1, counted, nobody receives it', () => {
    const { bus, apics } = busWith(2);
    assert.equal(bus.deliverMsi(0xfed01000, 0, 0xf1), -1);
    assert.deepEqual(receivers(apics), []);
    assert.equal(bus.counters().nonInterruptAddresses, 1);
  });

  test('reserved delivery modes 011 and 110 are dropped and counted', () => {
    const { bus, apics } = busWith(2);
    assert.equal(bus.deliverMsi(0xfee01000, 0, 0x3f1), -1);
    assert.equal(bus.deliverMsi(0xfee01000, 0, 0x6f1), -1);
    assert.deepEqual(receivers(apics), []);
    assert.equal(bus.counters().reservedDeliveryModes, 2);
  });

  test('reserved bits are ignored but counted', () => {
    const { bus, apics } = busWith(2);
    assert.equal(bus.deliverMsi(0xfee01010, 0, 0x000108f1), 1);
    assert.deepEqual(receivers(apics), [1]);
    assert.equal(bus.counters().reservedBitMessages, 1);
  });

  test('M5 invalid address_hi with 32-bit IDs, and non-u32 arguments, are EINVAL with nothing counted', () => {
    const { bus, apics } = busWith(2, { x2apicDestinationIds: true });
    assert.throws(() => bus.deliverMsi(0xfee02000, 0x101, 0x31), rejectsWith('EINVAL'));
    assert.throws(() => bus.deliverMsi(-1, 0, 0x31), rejectsWith('EINVAL'));
    assert.deepEqual(receivers(apics), []);
    assert.deepEqual(Object.values(bus.counters()), [0, 0, 0, 0, 0]);
  });

  test('MSIs delivered while another is being accepted do not disturb the first one', () => {
    const { bus, apics } = busWith(3);
    nth(apics, 0).onAccept = (accepted) => {
      if (accepted.vector === 0x40) bus.deliverMsi(0xfee01000, 0, 0x50);
    };
    nth(apics, 1).onAccept = (accepted) => {
      if (accepted.vector === 0x40) bus.deliverMsi(0xfee02000, 0, 0x60);
    };
    assert.equal(bus.deliverMsi(0xfeeff000, 0, 0x40), 3);
    assert.deepEqual(apics.map((apic) => apic.receivedVectors()), [[0x40], [0x50, 0x40], [0x60, 0x40]]);
  });
});

describe('ApicBus state', () => {
  test('options default to the quirk on and 8-bit MSI destinations', () => {
    assert.deepEqual(ApicBus.create().options(), {
      x2apicBroadcastQuirk: true,
      x2apicDestinationIds: false,
      extendedDestinationId: false,
    });
  });

  test('both wide MSI destination formats at once is EINVAL', () => {
    assert.throws(() => ApicBus.create({ x2apicDestinationIds: true, extendedDestinationId: true }), rejectsWith('EINVAL'));
  });

  test('a view built from the descriptor shares options and counters but not members', () => {
    const { bus } = busWith(2, { x2apicBroadcastQuirk: false });
    const view = ApicBus.fromState(bus.descriptor());
    assert.deepEqual(view.options(), bus.options());
    assert.deepEqual(view.memberList(), []);
    assert.equal(view.deliver(message({ destination: 1 })), -1);
    assert.equal(bus.counters().noDestination, 1);
  });

  test('a descriptor of the wrong size is EINVAL', () => {
    assert.throws(() => ApicBus.fromState({ kind: 'apic-bus', buffer: new SharedArrayBuffer(8) }), rejectsWith('EINVAL'));
  });

  test('snapshot and restore carry options and counters', () => {
    const { bus: source } = busWith(1, { extendedDestinationId: true, x2apicBroadcastQuirk: false });
    source.deliverMsi(0xfed00000, 0, 0x31);
    source.deliver(message({ destination: 9 }));
    const target = ApicBus.create();
    target.restore(source.snapshot());
    assert.deepEqual(target.options(), source.options());
    assert.deepEqual(target.counters(), source.counters());
  });

  test('truncated, bit-flipped or foreign snapshots are EINVAL and change nothing', () => {
    const { bus } = busWith(1);
    bus.deliver(message({ destination: 9 }));
    const good = ApicBus.create({ x2apicBroadcastQuirk: false }).snapshot();
    const before = { options: bus.options(), counters: bus.counters() };
    const flipped = good.slice();
    flipped[16] = (flipped[16] ?? 0) ^ 0x04;
    const foreign = encodeSnapshot('LAPC', 1, new Int32Array(2 + 6));
    for (const damaged of [good.subarray(0, good.length - 1), flipped, foreign]) {
      assert.throws(() => { bus.restore(damaged); }, rejectsWith('EINVAL'));
    }
    assert.deepEqual({ options: bus.options(), counters: bus.counters() }, before);
  });

  test('a well-formed snapshot with impossible options is EINVAL and changes nothing', () => {
    const { bus } = busWith(1);
    const unknownBit = new Int32Array(2 + 6);
    unknownBit[2] = 1 << 5;
    const bothFormats = new Int32Array(2 + 6);
    bothFormats[2] = 0b110;
    for (const words of [unknownBit, bothFormats]) {
      assert.throws(() => { bus.restore(encodeSnapshot('ABUS', 1, words)); }, rejectsWith('EINVAL'));
    }
    assert.equal(bus.options().x2apicBroadcastQuirk, true);
  });
});

// ---- Properties -------------------------------------------------------------------------------

interface FakeConfig {
  readonly hardwareEnabled: boolean;
  readonly softwareEnabled: boolean;
  readonly x2apicMode: boolean;
  readonly xapicId: number;
  readonly x2apicId: number;
  readonly ldr: number;
  readonly clusterModel: boolean;
  readonly ppr: number;
}

const fakeConfig: fc.Arbitrary<FakeConfig> = fc.record({
  hardwareEnabled: fc.integer({ min: 0, max: 3 }).map((draw) => draw > 0),
  softwareEnabled: fc.boolean(),
  x2apicMode: fc.boolean(),
  xapicId: fc.integer({ min: 0, max: 7 }),
  x2apicId: fc.oneof(fc.integer({ min: 0, max: 7 }), fc.constantFrom(0xff, 0x100, 0x101)),
  ldr: fc.integer({ min: 0, max: 0xff }).map((id) => (id << 24) >>> 0),
  clusterModel: fc.boolean(),
  ppr: fc.constantFrom(0, 0x10, 0x20, 0x25),
});

function buildFakes(configs: readonly FakeConfig[]): FakeApic[] {
  return configs.map((config, index) => {
    const apic = new FakeApic(index);
    apic.hardwareEnabled = config.hardwareEnabled;
    apic.softwareEnabled = config.softwareEnabled;
    apic.xapicId = config.xapicId;
    apic.x2apicIdentity = config.x2apicId;
    apic.ldr = config.ldr;
    apic.dfr = config.clusterModel ? DFR_CLUSTER : DFR_FLAT;
    apic.ppr = config.ppr;
    if (config.x2apicMode) apic.enterX2apicMode();
    return apic;
  });
}

const MAX_PROPERTY_MEMBERS = 6;

/** A message any sender could put on the bus; `sourceApic` is folded onto an existing member by `fromMember`. */
const busMessage: fc.Arbitrary<InterruptMessage> = fc
  .record({
    destination: fc.oneof(fc.integer({ min: 0, max: 0x1ff }), fc.constantFrom(XAPIC_BROADCAST, X2APIC_BROADCAST, 0x00010003)),
    destinationMode: fc.constantFrom(DestinationMode.Physical, DestinationMode.Logical),
    deliveryMode: fc.constantFrom(DeliveryMode.Fixed, DeliveryMode.LowestPriority, DeliveryMode.Nmi),
    vector: fc.integer({ min: 0, max: 255 }),
    triggerMode: fc.constantFrom(TriggerMode.Edge, TriggerMode.Level),
    shorthand: fc.constantFrom(
      DestinationShorthand.None,
      DestinationShorthand.Self,
      DestinationShorthand.AllIncludingSelf,
      DestinationShorthand.AllExcludingSelf,
    ),
    redirectionHint: fc.boolean(),
    sourceApic: fc.option(fc.integer({ min: 0, max: MAX_PROPERTY_MEMBERS - 1 }), { nil: undefined }),
  })
  // Only a LAPIC sends self / all-excluding-self (anything else is a caller error, tested above).
  .filter(
    (candidate) =>
      candidate.sourceApic !== undefined ||
      candidate.shorthand === DestinationShorthand.None ||
      candidate.shorthand === DestinationShorthand.AllIncludingSelf,
  )
  .map((fields) => interruptMessage(fields));

function isLowestPriorityMessage(sent: InterruptMessage): boolean {
  return sent.deliveryMode === DeliveryMode.LowestPriority || sent.redirectionHint;
}

function isPhysicalBroadcast(sent: InterruptMessage): boolean {
  return (
    sent.shorthand === DestinationShorthand.None &&
    sent.destinationMode === DestinationMode.Physical &&
    (sent.destination === XAPIC_BROADCAST || sent.destination === X2APIC_BROADCAST)
  );
}

function fromMember(sent: InterruptMessage, memberCount: number): InterruptMessage {
  return { ...sent, sourceApic: sent.sourceApic === undefined ? undefined : sent.sourceApic % memberCount };
}

function busOver(apics: readonly FakeApic[], options: ApicBusOptions = {}): ApicBus {
  const bus = ApicBus.create(options);
  for (const apic of apics) bus.addMember(apic);
  return bus;
}

describe('ApicBus properties', () => {
  test('any message on any topology: no throw; the result is the sum of positive accepts, -1 only when nothing matched', () => {
    fc.assert(
      fc.property(fc.array(fakeConfig, { minLength: 1, maxLength: MAX_PROPERTY_MEMBERS }), fc.boolean(), busMessage, (configs, quirk, sent) => {
        const apics = buildFakes(configs);
        const result = busOver(apics, { x2apicBroadcastQuirk: quirk }).deliver(fromMember(sent, configs.length));
        const reached = apics.filter((apic) => apic.received.length > 0);
        assert.ok(reached.every((apic) => apic.hardwareEnabled), 'a hardware-disabled APIC received a message');
        assert.equal(result === -1, reached.length === 0);
        assert.ok(result >= -1 && result <= reached.length);
        if (isLowestPriorityMessage(sent)) assert.ok(reached.length <= 1 || isPhysicalBroadcast(sent));
      }),
      { numRuns: 1000 },
    );
  });

  test('lowest priority picks one of the fixed-mode matches, software-enabled, with their lowest PPR', () => {
    fc.assert(
      fc.property(fc.array(fakeConfig, { minLength: 1, maxLength: MAX_PROPERTY_MEMBERS }), busMessage, (configs, sent) => {
        const probe = fromMember(sent, configs.length);
        fc.pre(!isPhysicalBroadcast(probe));
        const fixedApics = buildFakes(configs);
        busOver(fixedApics).deliver({ ...probe, deliveryMode: DeliveryMode.Fixed, redirectionHint: false });
        const eligible = fixedApics.filter((apic) => apic.received.length > 0 && apic.softwareEnabled);
        const lowestApics = buildFakes(configs);
        const result = busOver(lowestApics).deliver({ ...probe, deliveryMode: DeliveryMode.LowestPriority });
        const winners = lowestApics.filter((apic) => apic.received.length > 0);
        if (eligible.length === 0) {
          assert.equal(result, -1);
          assert.equal(winners.length, 0);
          return;
        }
        assert.equal(winners.length, 1);
        const winner = nth(winners, 0);
        assert.ok(eligible.some((apic) => apic.busIndex === winner.busIndex));
        assert.equal(winner.ppr, Math.min(...eligible.map((apic) => apic.ppr)));
      }),
      { numRuns: 500 },
    );
  });

  test('snapshot mid-walk, restore into a fresh bus: both continue with identical results and counters', () => {
    const msiWrite = fc.record({
      addressLow: fc.oneof(
        fc.integer({ min: 0, max: 0xfffff }).map((low) => (0xfee00000 | low) >>> 0),
        fc.nat({ max: 0xffffffff }),
      ),
      data: fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.nat({ max: 0xffffffff })),
    });
    fc.assert(
      fc.property(
        fc.array(fakeConfig, { minLength: 1, maxLength: 4 }),
        fc.record({ x2apicBroadcastQuirk: fc.boolean(), extendedDestinationId: fc.boolean() }),
        fc.array(msiWrite, { maxLength: 20 }),
        fc.array(msiWrite, { maxLength: 20 }),
        (configs, options, before, after) => {
          const originalApics = buildFakes(configs);
          const original = busOver(originalApics, options);
          for (const write of before) original.deliverMsi(write.addressLow, 0, write.data);
          const restoredApics = buildFakes(configs);
          const restored = busOver(restoredApics);
          restored.restore(original.snapshot());
          // The fakes' pending vectors are LAPIC state, not bus state: start both sides clean.
          for (const apic of [...originalApics, ...restoredApics]) apic.pendingVectors.clear();
          for (const write of after) {
            assert.equal(restored.deliverMsi(write.addressLow, 0, write.data), original.deliverMsi(write.addressLow, 0, write.data));
          }
          assert.deepEqual(restored.counters(), original.counters());
          assert.deepEqual(restored.options(), original.options());
        },
      ),
      { numRuns: 150 },
    );
  });

  test('encodeMsi output delivered through the bus reaches exactly the physical destination it names', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 255 }), (destination, vector) => {
        const { bus, apics } = busWith(4);
        const msi = encodeMsi(interruptMessage({ destination, vector }));
        const result = bus.deliverMsi(msi.addressLow, msi.addressHigh, msi.data);
        assert.equal(result, destination < 4 ? 1 : -1);
        assert.deepEqual(receivers(apics), destination < 4 ? [destination] : []);
      }),
      { numRuns: 100 },
    );
  });
});
