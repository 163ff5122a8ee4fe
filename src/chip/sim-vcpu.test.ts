import assert from 'node:assert/strict';
import { test } from 'node:test';
import { msiIrqRoute } from '../routing/irq-route.ts';
import { makeMachine, sendIpi, unmaskPicIrqs, vcpuOf } from './chip-test-support.ts';

const PIC_VECTORS = { master: 0x20, slave: 0x28 };

test('ready for an interrupt only with IF = 1, outside a handler', () => {
  let readyInHandler: boolean | undefined;
  const machine = makeMachine(
    {},
    {
      handler: (_vector, guest) => {
        readyInHandler = guest.vcpu.readyForInterrupt();
        guest.eoiLocalApic();
      },
    },
  );
  const cpu = vcpuOf(machine, 0);
  assert.equal(cpu.readyForInterrupt(), true);
  cpu.interruptsEnabled = false;
  assert.equal(cpu.readyForInterrupt(), false);
  cpu.interruptsEnabled = true;
  sendIpi(machine, 1, 0x41, 0);
  cpu.step(machine.chip);
  assert.equal(readyInHandler, false);
});

test('step takes one interrupt; one raised inside the handler waits for the next step', () => {
  const machine = makeMachine(
    {},
    {
      handler: (vector, guest) => {
        if (vector === 0x41) machine.chip.serviceIrq(30, true);
        guest.eoiLocalApic();
      },
    },
  );
  const { chip } = machine;
  chip.routeIrq(msiIrqRoute(30, 0xfee00000n, 0x42));
  sendIpi(machine, 1, 0x41, 0);
  const cpu = vcpuOf(machine, 0);
  assert.equal(cpu.step(chip), 0x41);
  assert.equal(cpu.interruptWindowRequested, false, 'the request is made by the next injection');
  assert.equal(cpu.step(chip), 0x42);
  assert.equal(cpu.step(chip), undefined);
  assert.deepEqual(cpu.taken, [0x41, 0x42]);
});

test('with IF = 0 nothing is taken but a window is requested', () => {
  const machine = makeMachine();
  const cpu = vcpuOf(machine, 0);
  cpu.interruptsEnabled = false;
  sendIpi(machine, 1, 0x41, 0);
  assert.equal(cpu.step(machine.chip), undefined);
  assert.equal(cpu.interruptWindowRequested, true);
});

test('the default handler ends a PIC vector at the PIC (slave and master for IRQ 8–15) and any other at the local APIC', () => {
  const machine = makeMachine({}, { picVectorBases: PIC_VECTORS });
  const { chip } = machine;
  unmaskPicIrqs(machine, (1 << 3) | (1 << 12));
  chip.serviceIrq(12, true);
  chip.serviceIrq(3, true);
  sendIpi(machine, 1, 0x41, 0);
  // The PIC comes first (LINT0 ExtINT), and its IR2 (the slave's IRQ 12) outranks IR3.
  assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [0x2c, 0x23, 0x41]);
  assert.deepEqual([chip.pic.registers(0).isr, chip.pic.registers(1).isr], [0, 0]);
  assert.equal(chip.localApic(0).isr(0x41), false);
});

test('runUntilIdle stops after maxSteps', () => {
  const machine = makeMachine();
  const { chip } = machine;
  sendIpi(machine, 1, 0x41, 0);
  sendIpi(machine, 1, 0x51, 0);
  assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip, 1), [0x51]);
  assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [0x41]);
});

test('halt tells the chip; NMIs, INIT and SIPI are recorded', () => {
  const machine = makeMachine();
  const { chip } = machine;
  const cpu = vcpuOf(machine, 1);
  cpu.halt(chip);
  assert.equal(chip.getMpState(1), 'halted');
  sendIpi(machine, 0, 4 << 8, 1);
  cpu.step(chip);
  sendIpi(machine, 0, (5 << 8) | (1 << 14), 1);
  cpu.step(chip);
  sendIpi(machine, 0, (6 << 8) | (1 << 14) | 0x20, 1);
  cpu.step(chip);
  assert.deepEqual([cpu.nmis, cpu.inits, cpu.lastSipi?.vector], [1, 1, 0x20]);
});
