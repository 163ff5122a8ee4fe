/**
 * MSI costs: decoding an MSI write and routing it over the APIC bus into a real `LocalApic`
 * (x86-controllers.md §4.4). Four vCPUs' local APICs sit on the bus, as in a small guest.
 *
 * A delivery that sets a new IRR bit must be taken and EOIed before the same vector can be set
 * again, so the steady-state "deliver" figure below is the coalescing path (vector already in IRR:
 * decode, match, lock, TMR update, IRR test). The full cycle adds the IRR set, the doorbell, the
 * acknowledge and the EOI; the difference between the two is that part.
 */
import { VirtualClock } from '../src/base/clock.ts';
import { decodeMsi, encodeMsi } from '../src/x86/msi/msi-codec.ts';
import { DeliveryMode, DestinationMode, interruptMessage } from '../src/x86/interrupt-message.ts';
import { ApicBus } from '../src/x86/lapic/apic-bus.ts';
import { LocalApic } from '../src/x86/lapic/local-apic.ts';
import { timeOperation, type Benchmark, type BenchResult } from './harness.ts';

const APIC_COUNT = 4;
const TARGET = 1;
const VECTOR = 0x41;
/** xAPIC register offsets used here (SDM Table 11-1). */
const MMIO_EOI = 0x0b0;
const MMIO_LOGICAL_DESTINATION = 0x0d0;
const MMIO_SPURIOUS_VECTOR = 0x0f0;
/** SVR with the APIC software-enabled. */
const SVR_ENABLED = 0x1ff;

interface Rig {
  readonly bus: ApicBus;
  readonly apics: readonly LocalApic[];
}

/** Four software-enabled xAPICs on one bus, flat logical IDs 1, 2, 4, 8. */
function rig(): Rig {
  const clock = new VirtualClock();
  const bus = ApicBus.create();
  const apics = Array.from({ length: APIC_COUNT }, (_, busIndex) => {
    const apic = LocalApic.create({ busIndex, bsp: busIndex === 0, clock, ipiSink: bus });
    apic.mmioWrite(MMIO_SPURIOUS_VECTOR, 4, SVR_ENABLED);
    apic.mmioWrite(MMIO_LOGICAL_DESTINATION, 4, (1 << (24 + busIndex)) >>> 0);
    bus.addMember(apic);
    return apic;
  });
  return { bus, apics };
}

function msiTo(destination: number, destinationMode: DestinationMode, deliveryMode: DeliveryMode): { addressLow: number; data: number } {
  const { addressLow, data } = encodeMsi(interruptMessage({ destination, destinationMode, deliveryMode, vector: VECTOR }));
  return { addressLow, data };
}

/** Fails the benchmark loudly if the routing it measures does not do what it claims. */
function expectResult(actual: number, expected: number, what: string): void {
  if (actual !== expected) throw new Error(`${what}: delivery returned ${actual}, expected ${expected}`);
}

function decodeOnly(): BenchResult {
  const { addressLow, data } = msiTo(TARGET, DestinationMode.Physical, DeliveryMode.Fixed);
  return timeOperation('msi: decode only (allocating decodeMsi)', () => {
    decodeMsi(addressLow, 0, data);
  });
}

function decodeAndDeliver(): BenchResult {
  const { bus } = rig();
  const { addressLow, data } = msiTo(TARGET, DestinationMode.Physical, DeliveryMode.Fixed);
  expectResult(bus.deliverMsi(addressLow, 0, data), 1, 'first delivery');
  const result = timeOperation('msi: decode + deliver to a LAPIC', () => {
    bus.deliverMsi(addressLow, 0, data);
  });
  expectResult(bus.deliverMsi(addressLow, 0, data), 0, 'steady state (coalesced)');
  return { ...result, detail: { apics: APIC_COUNT, destination: 'physical, one APIC', path: 'vector already in IRR (coalesced)' } };
}

function fullCycle(): BenchResult {
  const { bus, apics } = rig();
  const target = apics[TARGET];
  if (target === undefined) throw new Error('no target APIC');
  const { addressLow, data } = msiTo(TARGET, DestinationMode.Physical, DeliveryMode.Fixed);
  const result = timeOperation('msi: decode + deliver + acknowledge + EOI', () => {
    bus.deliverMsi(addressLow, 0, data);
    target.acknowledgeInterrupt();
    target.mmioWrite(MMIO_EOI, 4, 0);
  });
  expectResult(bus.deliverMsi(addressLow, 0, data), 1, 'fresh delivery after the cycle');
  return { ...result, detail: { apics: APIC_COUNT, destination: 'physical, one APIC', path: 'IRR set, INTA, EOI' } };
}

function lowestPriority(): BenchResult {
  const { bus } = rig();
  const allFour = (1 << APIC_COUNT) - 1;
  const { addressLow, data } = msiTo(allFour, DestinationMode.Logical, DeliveryMode.LowestPriority);
  expectResult(bus.deliverMsi(addressLow, 0, data), 1, 'first delivery');
  const result = timeOperation('msi: decode + lowest-priority arbitration over 4 LAPICs', () => {
    bus.deliverMsi(addressLow, 0, data);
  });
  return { ...result, detail: { apics: APIC_COUNT, destination: 'logical, all four', path: 'winner already has the vector (coalesced)' } };
}

export const benchmarks: Benchmark[] = [
  { name: 'msi: decode only (allocating decodeMsi)', run: decodeOnly },
  { name: 'msi: decode + deliver to a LAPIC', run: decodeAndDeliver },
  { name: 'msi: decode + deliver + acknowledge + EOI', run: fullCycle },
  { name: 'msi: decode + lowest-priority arbitration over 4 LAPICs', run: lowestPriority },
];
