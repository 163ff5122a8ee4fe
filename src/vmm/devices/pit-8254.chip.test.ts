/**
 * The PIT on our userspace chip, as the split and userspace machines wire it: channel 0's pulses
 * on GSI 0 reach the 8259A (IRQ 0, through LINT0 in virtual-wire mode) and the IOAPIC (pin 0,
 * edge), and each controller delivers exactly one interrupt per period, over many periods and
 * random owners (fast-check). A guest (SimVcpu) programs everything through the buses.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { makeMachine, programIoapicPin, unmaskPicIrqs, vcpuOf, type TestMachine } from '../../chip/chip-test-support.ts';
import { Gsi, Port } from '../machine-layout.ts';
import { PIT_INPUT_HZ, Pit8254 } from './pit-8254.ts';
import { controlWord } from './pit-test-support.ts';

const PIC_VECTORS = { master: 0x20, slave: 0x28 };
const PIT_IOAPIC_VECTOR = 0x30;

type Route = 'pic' | 'ioapic';

function pitMachine(route: Route): { readonly machine: TestMachine; readonly pit: Pit8254 } {
  const machine = makeMachine({}, { picVectorBases: PIC_VECTORS });
  const pit = new Pit8254({ clock: machine.clock, irqLine: { setLevel: (level) => machine.chip.serviceIrq(Gsi.Pit, level) } });
  machine.ioBus.insert(pit, Port.Pit, pit.portBytes);
  machine.ioBus.insert(pit.systemControlPort, Port.SystemControlB, pit.systemControlPort.portBytes);
  if (route === 'pic') unmaskPicIrqs(machine, 1 << 0);
  else programIoapicPin(machine, Gsi.Pit, { vector: PIT_IOAPIC_VECTOR });
  return { machine, pit };
}

/** The guest programs channel 0 (LSB then MSB) through the I/O bus. */
function programPit(machine: TestMachine, mode: number, count: number): void {
  const guest = vcpuOf(machine, 0).bus;
  guest.outb(Port.Pit + 3, controlWord(0, mode));
  guest.outb(Port.Pit, count & 0xff);
  guest.outb(Port.Pit, count >> 8);
}

const expectedVector = (route: Route): number => (route === 'pic' ? PIC_VECTORS.master : PIT_IOAPIC_VECTOR);

for (const route of ['pic', 'ioapic'] as const) {
  test(`${route}: one interrupt per period in modes 2 and 3, many periods, random owner lateness (within a period)`, () => {
    fc.assert(
      fc.property(fc.constantFrom(2, 3), fc.integer({ min: 2, max: 0xffff }), fc.integer({ min: 1, max: 60 }), fc.double({ min: 0, max: 0.99, noNaN: true }), (mode, count, periods, lateness) => {
        const { machine, pit } = pitMachine(route);
        programPit(machine, mode, count);
        const cpu = vcpuOf(machine, 0);
        const periodNs = (count * 1e9) / PIT_INPUT_HZ;
        for (let period = 1; period <= periods; period++) {
          const due = pit.nextEventNs() ?? assert.fail('a periodic mode always has an event due');
          machine.clock.advance(due + Math.floor(lateness * (periodNs - 1000)) - machine.clock.nowNs());
          pit.advance();
          assert.deepEqual(cpu.runUntilIdle(machine.chip), [expectedVector(route)], `period ${period}`);
        }
        assert.equal(pit.counters().coalescedTicks, 0);
      }),
      { numRuns: 60 },
    );
  });

  test(`${route}: periods missed while the owner was late reach the guest as one interrupt`, () => {
    const { machine, pit } = pitMachine(route);
    programPit(machine, 2, 1193);
    const cpu = vcpuOf(machine, 0);
    machine.clock.advance(5_500_000);
    pit.advance();
    assert.deepEqual(cpu.runUntilIdle(machine.chip), [expectedVector(route)]);
    assert.equal(pit.counters().coalescedTicks, 4);
  });
}

test('pic: a tick while IRQ 0 is masked is held in IRR and delivered at unmask; later ones coalesce with it', () => {
  const { machine, pit } = pitMachine('pic');
  programPit(machine, 2, 1193);
  const cpu = vcpuOf(machine, 0);
  unmaskPicIrqs(machine, 0);
  for (let period = 0; period < 3; period++) {
    machine.clock.advance(1_100_000);
    pit.advance();
  }
  assert.deepEqual(cpu.runUntilIdle(machine.chip), []);
  assert.equal(pit.counters().ticks, 3, 'three edges reached the 8259A');
  unmaskPicIrqs(machine, 1 << 0);
  assert.deepEqual(cpu.runUntilIdle(machine.chip), [PIC_VECTORS.master], 'IRR holds one');
});
