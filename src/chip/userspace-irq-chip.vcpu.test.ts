/**
 * The chip's vCPU side: the LAPIC timer with a VirtualClock, INIT and SIPI through
 * `injectInterrupts`, IPIs and lowest-priority arbitration between two vCPUs through the MMIO
 * bus, the MP states, and the wake-up of a halted BSP by the PIC across views.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Bus, IO_ADDRESS_LIMIT, MMIO_ADDRESS_LIMIT } from './bus.ts';
import {
  LocalApicOffset,
  ScriptedVcpu,
  makeMachine,
  sendIpi,
  unmaskPicIrqs,
  vcpuOf,
  writeLocalApic,
  type TestMachine,
} from './chip-test-support.ts';
import { IrqAllocator } from './irq-allocator.ts';
import { SimVcpu } from './sim-vcpu.ts';
import { UserspaceIrqChip } from './userspace-irq-chip.ts';

/** TDCR 1011b: divide by 1, so a count lasts as many ns (SDM vol. 3 Figure 11-10). */
const DIVIDE_BY_ONE = 0xb;
const TIMER_VECTOR = 0x40;
/** ICR low words (SDM vol. 3 Figure 11-12): delivery mode in bits 10:8, level assert bit 14. */
const ICR_ASSERT = 1 << 14;
const ICR_INIT = (5 << 8) | ICR_ASSERT;
const ICR_STARTUP = (6 << 8) | ICR_ASSERT;
const ICR_LOWEST_PRIORITY = 1 << 8;
const ICR_LOGICAL = 1 << 11;
const ICR_SELF = 1 << 18;

/** vCPU 0's one-shot LAPIC timer: `TIMER_VECTOR` after `ns` nanoseconds. */
function armOneShotTimer(machine: TestMachine, ns: number): void {
  writeLocalApic(machine, 0, LocalApicOffset.TimerDivide, DIVIDE_BY_ONE);
  writeLocalApic(machine, 0, LocalApicOffset.LvtTimer, TIMER_VECTOR);
  writeLocalApic(machine, 0, LocalApicOffset.TimerInitialCount, ns);
}

describe('the LAPIC timer through the chip, on a VirtualClock', () => {
  test('processTimers delivers an expiry once it is due, not before; nextTimerDeadlineNs tells when', () => {
    const machine = makeMachine();
    const { chip, clock } = machine;
    armOneShotTimer(machine, 1000);
    assert.equal(chip.nextTimerDeadlineNs(), clock.nowNs() + 1000);
    clock.advance(999);
    chip.processTimers();
    assert.equal(chip.localApic(0).irr(TIMER_VECTOR), false);
    clock.advance(1);
    chip.processTimers();
    assert.equal(chip.localApic(0).irr(TIMER_VECTOR), true);
    assert.equal(chip.nextTimerDeadlineNs(), undefined, 'a one-shot timer stops');
  });

  test('injectInterrupts fires its own vCPU timer when due, with no processTimers call', () => {
    const machine = makeMachine();
    armOneShotTimer(machine, 500);
    machine.clock.advance(500);
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(machine.chip), [TIMER_VECTOR]);
  });

  test('a halted vCPU waiting for its timer wakes when processTimers delivers the expiry', async () => {
    const machine = makeMachine();
    const { chip, clock } = machine;
    armOneShotTimer(machine, 5_000_000);
    const cpu0 = vcpuOf(machine, 0);
    cpu0.halt(chip);
    const woken = chip.waitUntilRunnableAsync(cpu0);
    clock.advance(5_000_000);
    chip.processTimers();
    assert.equal(await woken, 'runnable');
    assert.equal(cpu0.step(chip), TIMER_VECTOR);
  });
});

describe('INIT and SIPI through injectInterrupts', () => {
  test('INIT then SIPI from vCPU 0: injectInterrupts applies INIT, then starts vCPU 1 at the SIPI page; a second SIPI is ignored', () => {
    const machine = makeMachine();
    const { chip } = machine;
    const ap = new ScriptedVcpu(1);
    sendIpi(machine, 0, ICR_INIT, 1);
    chip.injectInterrupts(ap);
    assert.deepEqual([ap.inits, chip.getMpState(1)], [1, 'init-received']);
    sendIpi(machine, 0, ICR_STARTUP | 0x9a, 1);
    chip.injectInterrupts(ap);
    assert.deepEqual(ap.sipis, [{ vector: 0x9a, csSelector: 0x9a00, csBase: 0x9a000, ip: 0 }]);
    assert.equal(chip.getMpState(1), 'runnable');
    sendIpi(machine, 0, ICR_STARTUP | 0x9a, 1);
    chip.injectInterrupts(ap);
    assert.equal(ap.sipis.length, 1);
  });

  test('an AP waiting for its SIPI sleeps in waitUntilRunnable and wakes runnable when the SIPI arrives', async () => {
    const machine = makeMachine();
    const { chip } = machine;
    const ap = new ScriptedVcpu(1);
    sendIpi(machine, 0, ICR_INIT, 1);
    chip.injectInterrupts(ap);
    const started = chip.waitUntilRunnableAsync(ap);
    sendIpi(machine, 0, ICR_STARTUP | 0x10, 1);
    assert.equal(await started, 'runnable');
    assert.equal(ap.sipis[0]?.vector, 0x10);
  });

  test('a vCPU that is not running code (waiting for INIT or SIPI) is given no external interrupt; once runnable it is', () => {
    const machine = makeMachine();
    const { chip } = machine;
    const ap = new ScriptedVcpu(1);
    sendIpi(machine, 0, 0x51, 1);
    chip.setMpState(1, 'init-received');
    chip.injectInterrupts(ap);
    assert.deepEqual(ap.injected, []);
    chip.setMpState(1, 'runnable');
    chip.injectInterrupts(ap);
    assert.deepEqual(ap.injected, [0x51]);
  });
});

describe('IPIs between two vCPUs through the MMIO bus', () => {
  test('a fixed IPI from vCPU 0 to vCPU 1 reaches vCPU 1 only; a self IPI stays home', () => {
    const machine = makeMachine();
    const { chip } = machine;
    sendIpi(machine, 0, 0x41, 1);
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), []);
    assert.deepEqual(vcpuOf(machine, 1).runUntilIdle(chip), [0x41]);
    sendIpi(machine, 1, ICR_SELF | 0x42, 0);
    assert.deepEqual(vcpuOf(machine, 1).runUntilIdle(chip), [0x42]);
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), []);
  });

  test('a lowest-priority logical IPI to both goes to the vCPU whose TPR is lower', () => {
    const machine = makeMachine();
    const { chip } = machine;
    writeLocalApic(machine, 0, LocalApicOffset.LogicalDestination, 0x01 << 24);
    writeLocalApic(machine, 1, LocalApicOffset.LogicalDestination, 0x02 << 24);
    writeLocalApic(machine, 1, LocalApicOffset.TaskPriority, 0x40);
    sendIpi(machine, 1, ICR_LOWEST_PRIORITY | ICR_LOGICAL | 0x63, 0x03);
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [0x63]);
    assert.deepEqual(vcpuOf(machine, 1).runUntilIdle(chip), []);
  });
});

describe('MP states and halting', () => {
  test('halted sets the MP state; an accepted interrupt with IF=1 makes the wait runnable', async () => {
    const machine = makeMachine();
    const { chip } = machine;
    const cpu1 = vcpuOf(machine, 1);
    cpu1.halt(chip);
    assert.equal(chip.getMpState(1), 'halted');
    sendIpi(machine, 0, 0x45, 1);
    assert.equal(await chip.waitUntilRunnableAsync(cpu1), 'runnable');
    assert.equal(cpu1.step(chip), 0x45);
  });

  test('getMpState and setMpState round-trip every x86 state', () => {
    const { chip } = makeMachine();
    for (const state of ['halted', 'init-received', 'uninitialized', 'runnable'] as const) {
      chip.setMpState(1, state);
      assert.equal(chip.getMpState(1), state);
    }
    chip.setMpState(1, 'sipi-received');
    assert.equal(chip.getMpState(1), 'init-received', 'KVM keeps SIPI_RECEIVED as INIT_RECEIVED with the SIPI latched');
  });

  test('checkCapability: x2APIC and MP state get/set; TSC deadline only with a TSC frequency', () => {
    const plain = UserspaceIrqChip.create({ vcpuCount: 1 });
    const withTsc = UserspaceIrqChip.create({ vcpuCount: 1, tscHz: 1_000_000_000 });
    assert.deepEqual(
      [plain.checkCapability('x2apic'), plain.checkCapability('mp-state-get-set'), plain.checkCapability('tsc-deadline-timer')],
      [true, true, false],
    );
    assert.equal(withTsc.checkCapability('tsc-deadline-timer'), true);
  });
});

describe('the PIC wakes a halted BSP whichever view raised or lowered its output', () => {
  test('raised on the owner, acknowledged and EOIed on a vCPU view, raised again on the owner: the BSP doorbell rings again', () => {
    const machine = makeMachine();
    const { chip } = machine;
    unmaskPicIrqs(machine, 1 << 3);
    const view = UserspaceIrqChip.fromDescriptor(chip.createView(), { clock: machine.clock });
    const ioBus = new Bus('io', IO_ADDRESS_LIMIT);
    const mmioBus = new Bus('mmio', MMIO_ADDRESS_LIMIT);
    view.finalizeDevices(new IrqAllocator(), ioBus, mmioBus);
    const bsp = new SimVcpu(0, { ioBus, mmioBus, picVectorBases: { master: 0x20, slave: 0x28 } });
    chip.serviceIrq(3, true);
    chip.serviceIrq(3, false);
    assert.deepEqual(bsp.runUntilIdle(view), [0x23]);
    const doorbell = chip.localApic(0).doorbellGeneration();
    chip.serviceIrq(3, true);
    assert.notEqual(chip.localApic(0).doorbellGeneration(), doorbell);
    assert.deepEqual(bsp.runUntilIdle(view), [0x23]);
  });
});
