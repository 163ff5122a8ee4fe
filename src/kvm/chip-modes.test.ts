/**
 * Every chip mode delivers to real guest code (issue 7): the irq-probe C guest (irq-probe.ts) runs
 * on KVM with KVM's chip, the split chip or ours, and its handlers report each vector they run
 * for. Each test drives one kind of interrupt and checks the guest saw exactly the vectors and
 * counts expected, and nothing else.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IrqAllocator } from '../chip/irq-allocator.ts';
import { InterruptManager } from '../device/interrupt-manager.ts';
import { InterruptSourceType } from '../device/interrupt-source.ts';
import { MsixCapability } from '../device/msix-capability.ts';
import { MsixGuest } from '../device/msix-test-support.ts';
import { IrqEdgeEvent, IrqLevelEvent } from '../event/irq-event.ts';
import { msiIrqRoute } from '../routing/irq-route.ts';
import { PROBE_PIC_VECTOR_BASE, readIrqProbeResults, type IrqProbeConfig } from './irq-probe.ts';
import { findCpuid, supportedCpuid, vcpuCpuidTable } from './kvm-cpuid.ts';
import { vmTscHz } from './kvm-guest-tsc.ts';
import { kvmSkipReason } from './kvm-test-support.ts';
import { OsEvent } from './os-event.ts';
import { CHIP_MODES, ProbeLog, createProbeMachine, eoisAtDelivery, isPvmHost, vectorCount, waitForLog, waitForVector, withProbe, type ProbeMachine } from './probe-machine.ts';

const skip = kvmSkipReason('chip modes on real KVM with the irq-probe guest');

const SOURCE = { deviceId: 7, queueId: 0, deviceName: 'chip-mode-test' } as const;
/** Interrupts per test: enough to catch a lost or doubled one. */
const ROUNDS = 100;
const EDGE_PIN = 5;
const EDGE_VECTOR = 0x35;
const LEVEL_PIN = 10;
const LEVEL_VECTOR = 0x3a;
const MSI_GSI = 30;
const MSI_VECTOR = 0x41;
const MSI_TO_APIC_0 = 0xfee00000n;
const PIC_IRQ = 4;
const IOAPIC_PINS = 24;
const MSIX_VECTORS = [0x50, 0x51] as const;
const MSIX_REPROGRAMMED_VECTOR = 0x52;
const TSC_DEADLINE_VECTOR = 0x60;
const TSC_DEADLINE_ROUNDS = 20;
/** Each TSC deadline is this far past the RDTSC that arms it: 1 ms of the guest's TSC. */
const TSC_DEADLINE_TICKS_PER_HZ = 1 / 1000;
/** IA32_APIC_BASE: EN (bit 11) and EXTD (bit 10), both set in x2APIC mode (SDM vol. 3 §11.12.1). */
const APIC_BASE_X2APIC_MODE = 0xc00n;
/** CPUID.1 bits the VMM promises (kvm-cpuid.ts): ECX x2APIC, TSC-deadline, hypervisor; EDX APIC, HTT. */
const CPUID_1_ECX_X2APIC = 1 << 21;
const CPUID_1_ECX_TSC_DEADLINE = 1 << 24;
const CPUID_1_ECX_HYPERVISOR = 1 << 31;
const CPUID_1_EDX_APIC = 1 << 9;
const CPUID_1_EDX_HTT = 1 << 28;
const CPUID_1_EBX_APIC_ID_SHIFT = 24;
/** Application processors per start-up test. */
const AP_TEST_VCPU_COUNTS = [2, 4] as const;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` until it holds; fails with `what` after a generous timeout. */
async function waitUntil(condition: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (!condition()) {
    if (performance.now() > deadline) assert.fail(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Every vector the guest ran a handler for, with its count. */
function seenVectors(machine: ProbeMachine): Map<number, number> {
  const seen = new Map<number, number>();
  for (let vector = 0; vector < 256; vector++) {
    const count = vectorCount(machine, vector);
    if (count !== 0) seen.set(vector, count);
  }
  return seen;
}

/** Signals `event` ROUNDS times, each after the previous handler run, and checks the guest saw exactly that. */
async function signalOneByOne(machine: ProbeMachine, event: OsEvent, vector: number): Promise<void> {
  for (let round = 1; round <= ROUNDS; round++) {
    event.signal();
    await waitForVector(machine, vector, round);
  }
  assert.deepEqual(seenVectors(machine), new Map([[vector, ROUNDS]]));
}

for (const mode of CHIP_MODES) {
  describe(`${mode} chip on KVM: the irq-probe guest`, { skip }, () => {
    test(`${mode}: an edge event on IOAPIC pin ${EDGE_PIN} runs the guest's vector 0x${EDGE_VECTOR.toString(16)} handler once per signal, ${ROUNDS} times`, async () => {
      const machine = createProbeMachine(mode);
      using trigger = OsEvent.create();
      machine.chip.registerEdgeIrqEvent(EDGE_PIN, new IrqEdgeEvent(trigger), SOURCE);
      await withProbe(machine, { ioapic: [{ pin: EDGE_PIN, vector: EDGE_VECTOR, levelTriggered: false }] }, async () => {
        await signalOneByOne(machine, trigger, EDGE_VECTOR);
      });
    });

    test(`${mode}: a level event on IOAPIC pin ${LEVEL_PIN} with resample: one resample per EOI, a device with ${ROUNDS} units of work gets exactly ${ROUNDS} handler runs`, async () => {
      // Where the host's local APIC EOIs at delivery, the resample may come before the handler's report.
      const resampleFollowsHandler = !eoisAtDelivery(mode);
      const machine = createProbeMachine(mode);
      using trigger = OsEvent.create();
      using resample = OsEvent.create();
      const level = IrqLevelEvent.fromEventPair(trigger, resample);
      machine.chip.registerLevelIrqEvent(LEVEL_PIN, level, SOURCE);
      await withProbe(machine, { ioapic: [{ pin: LEVEL_PIN, vector: LEVEL_VECTOR, levelTriggered: true }] }, async () => {
        let resamples = 0;
        level.trigger();
        while (resamples < ROUNDS) {
          assert.equal(await resample.waitAsync(20_000), 'signaled', `resample ${resamples + 1} arrived`);
          assert.equal(resample.tryRead(), 1n, 'one resample per EOI');
          resamples += 1;
          // The handler reports before its EOI: its run is counted by the time the resample comes.
          if (resampleFollowsHandler) assert.equal(vectorCount(machine, LEVEL_VECTOR), resamples);
          if (resamples < ROUNDS) level.trigger();
        }
        await waitForVector(machine, LEVEL_VECTOR, ROUNDS);
        // No work left: the line stays low, and no further handler run may come.
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.deepEqual(seenVectors(machine), new Map([[LEVEL_VECTOR, ROUNDS]]));
        assert.equal(resample.tryRead(), 0n, 'no resample without an EOI');
      });
    });

    test(`${mode}: an edge event on GSI ${MSI_GSI} routed to an MSI runs vector 0x${MSI_VECTOR.toString(16)} once per signal, and serviceIrq on that GSI sends one more each`, async () => {
      const machine = createProbeMachine(mode);
      using trigger = OsEvent.create();
      machine.chip.routeIrq(msiIrqRoute(MSI_GSI, MSI_TO_APIC_0, MSI_VECTOR));
      machine.chip.registerEdgeIrqEvent(MSI_GSI, new IrqEdgeEvent(trigger), SOURCE);
      await withProbe(machine, {}, async () => {
        await signalOneByOne(machine, trigger, MSI_VECTOR);
        for (let round = 1; round <= 10; round++) {
          machine.chip.serviceIrq(MSI_GSI, true);
          await waitForVector(machine, MSI_VECTOR, ROUNDS + round);
        }
        assert.deepEqual(seenVectors(machine), new Map([[MSI_VECTOR, ROUNDS + 10]]));
      });
    });

    test(`${mode}: a level interrupt whose handler never EOIs: ${eoisAtDelivery(mode) ? 'on this PVM host the resample still comes (the host LAPIC EOIs at delivery)' : 'no resample, ever (SDM: the EOI ends it)'}`, async () => {
      const machine = createProbeMachine(mode);
      using trigger = OsEvent.create();
      using resample = OsEvent.create();
      machine.chip.registerLevelIrqEvent(LEVEL_PIN, IrqLevelEvent.fromEventPair(trigger, resample), SOURCE);
      const config: IrqProbeConfig = { ioapic: [{ pin: LEVEL_PIN, vector: LEVEL_VECTOR, levelTriggered: true }], noEoiVector: LEVEL_VECTOR };
      await withProbe(machine, config, async () => {
        trigger.signal();
        await waitForVector(machine, LEVEL_VECTOR, 1);
        const outcome = await resample.waitAsync(300);
        assert.equal(outcome, eoisAtDelivery(mode) ? 'signaled' : 'timed-out');
        if (machine.userspaceChip !== undefined) {
          assert.equal(machine.userspaceChip.localApic(0).isr(LEVEL_VECTOR), true, 'still in service: never EOIed');
          assert.equal(machine.userspaceChip.ioapic.remoteIrr(LEVEL_PIN), true, 'remote IRR held until the EOI');
        }
      });
    });

    test(`${mode}: MSI-X through MsixCapability and an InterruptManager group: each vector arrives; a masked vector holds its interrupt in the PBA and delivers it once at unmask; reprogramming takes effect`, async () => {
      const machine = createProbeMachine(mode);
      const gsis = new IrqAllocator();
      gsis.advanceTo(IOAPIC_PINS);
      const manager = new InterruptManager({ chip: machine.deviceChip, gsis, device: { id: 3, name: 'msix-device' } });
      const group = manager.createGroup(InterruptSourceType.Msi, 0, 2);
      const msix = new MsixCapability({ group, table: { bar: 0, offset: 0 }, pba: { bar: 0, offset: 0x800 } });
      const driver = new MsixGuest(msix);
      await withProbe(machine, {}, async () => {
        driver.bringUp([
          [0, MSIX_VECTORS[0]],
          [0, MSIX_VECTORS[1]],
        ]);
        for (let round = 1; round <= 20; round++) {
          group.notifier(0).signal();
          await waitForVector(machine, MSIX_VECTORS[0], round);
        }
        for (let round = 1; round <= 5; round++) {
          group.trigger(1);
          await waitForVector(machine, MSIX_VECTORS[1], round);
        }
        driver.setVectorMask(0, true);
        group.notifier(0).signal();
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.equal(vectorCount(machine, MSIX_VECTORS[0]), 20, 'nothing delivered while masked');
        assert.equal(driver.readPba() & 1n, 1n, 'held in the PBA');
        driver.setVectorMask(0, false);
        await waitForVector(machine, MSIX_VECTORS[0], 21);
        assert.equal(driver.readPba() & 1n, 0n, 'delivered at unmask: the PBA bit clears');
        driver.program(1, 0, MSIX_REPROGRAMMED_VECTOR);
        group.trigger(1);
        await waitForVector(machine, MSIX_REPROGRAMMED_VECTOR, 1);
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.deepEqual(
          seenVectors(machine),
          new Map([
            [MSIX_VECTORS[0], 21],
            [MSIX_VECTORS[1], 5],
            [MSIX_REPROGRAMMED_VECTOR, 1],
          ]),
        );
        // The driver disables MSI-X; the device goes away, closing its events.
        driver.setControl(false, false);
        manager.destroyGroup(group);
      });
    });

    test(`${mode}: the 8259A's IRQ ${PIC_IRQ} reaches the guest through LINT0 (ExtINT, virtual wire) as vector 0x${(PROBE_PIC_VECTOR_BASE + PIC_IRQ).toString(16)}, once per edge`, async () => {
      const machine = createProbeMachine(mode);
      using trigger = OsEvent.create();
      machine.chip.registerEdgeIrqEvent(PIC_IRQ, new IrqEdgeEvent(trigger), SOURCE);
      const config: IrqProbeConfig = { picVirtualWire: true, picUnmasked: 1 << PIC_IRQ };
      await withProbe(machine, config, async () => {
        await signalOneByOne(machine, trigger, PROBE_PIC_VECTOR_BASE + PIC_IRQ);
      });
    });
  });
}

/**
 * What the BSP of a `vcpuCount`-vCPU machine must have read from CPUID (kvm-cpuid.ts); on this
 * PVM host CPUID.1:ECX also has the host's instruction-set features that KVM's supported set
 * leaves out.
 */
function assertBspCpuid(machine: ProbeMachine): void {
  const { cpuid1, x2apicId, coreCount } = readIrqProbeResults(machine.vm.memory);
  const hasBits = (value: number, bits: number): boolean => ((value & bits) >>> 0) === bits >>> 0;
  const table = vcpuCpuidTable(supportedCpuid(), { vcpuId: 0, vcpuCount: machine.vcpuCount, userspaceLocalApic: machine.mode === 'userspace' });
  const tableEcx = findCpuid(table, 1)?.ecx ?? 0;
  assert.ok(hasBits(cpuid1.ecx, tableEcx), 'CPUID.1:ECX has every bit of the table');
  assert.equal((cpuid1.ecx & ~tableEcx) !== 0, isPvmHost(), `CPUID.1:ECX 0x${cpuid1.ecx.toString(16)} beyond the table's 0x${tableEcx.toString(16)}: only on PVM`);
  assert.equal(cpuid1.ebx >>> CPUID_1_EBX_APIC_ID_SHIFT, 0, 'CPUID.1:EBX initial APIC ID');
  assert.ok(hasBits(cpuid1.ecx, CPUID_1_ECX_X2APIC | CPUID_1_ECX_TSC_DEADLINE | CPUID_1_ECX_HYPERVISOR), `CPUID.1:ECX 0x${cpuid1.ecx.toString(16)} has x2APIC, TSC-deadline and hypervisor`);
  assert.ok(hasBits(cpuid1.edx, CPUID_1_EDX_APIC), 'CPUID.1:EDX has the APIC');
  assert.equal((cpuid1.edx & CPUID_1_EDX_HTT) !== 0, machine.vcpuCount > 1, 'HTT: more than one logical processor in the package');
  assert.equal(x2apicId, 0, 'CPUID.0BH:EDX x2APIC ID');
  assert.equal(coreCount, machine.vcpuCount, 'CPUID.0BH core level: one core per vCPU');
}

/** The AP ID mask of `vcpuCount` vCPUs whose APs all reported once: bits 1 .. vcpuCount − 1. */
function apIdMask(vcpuCount: number): number {
  return ((1 << vcpuCount) - 1) & ~1;
}

for (const mode of CHIP_MODES) {
  describe(`${mode} chip on KVM: the CPU the guest sees, application processors, the local APIC's x2APIC mode and TSC-deadline timer`, { skip }, () => {
    for (const vcpuCount of AP_TEST_VCPU_COUNTS) {
      test(`${mode}, ${vcpuCount} vCPUs: the guest's INIT, SIPI, SIPI starts every AP exactly once at the SIPI page; each AP's CPUID gives its own x2APIC ID, the BSP's its APIC ID 0, x2APIC, TSC-deadline and ${vcpuCount} cores`, async () => {
        const machine = createProbeMachine(mode, vcpuCount);
        await withProbe(machine, { startAps: true }, async () => {
          await waitForLog(machine.log, ProbeLog.StartupSent, 1);
          await waitForLog(machine.log, ProbeLog.ApsStarted, vcpuCount - 1);
          // The second SIPI found each AP running and was ignored (SDM vol. 3 §9.4.4.1): no AP starts twice.
          await sleep(50);
          assert.equal(Atomics.load(machine.log, ProbeLog.ApsStarted), vcpuCount - 1);
          assert.equal(Atomics.load(machine.log, ProbeLog.ApIdsStarted), apIdMask(vcpuCount), 'each AP reported its own x2APIC ID');
          assertBspCpuid(machine);
          const { userspaceChip } = machine;
          for (let vcpuId = 1; vcpuId < vcpuCount && userspaceChip !== undefined; vcpuId++) {
            assert.equal(userspaceChip.getMpState(vcpuId), 'halted', `AP ${vcpuId} ran its start-up code to its HLT`);
          }
        });
      });
    }

    test(`${mode}: the guest enables x2APIC (IA32_APIC_BASE.EXTD, which CPUID's x2APIC bit allows) and EOIs through MSR 0x80b: MSIs keep arriving one per signal`, async () => {
      const machine = createProbeMachine(mode);
      using trigger = OsEvent.create();
      machine.chip.routeIrq(msiIrqRoute(MSI_GSI, MSI_TO_APIC_0, MSI_VECTOR));
      machine.chip.registerEdgeIrqEvent(MSI_GSI, new IrqEdgeEvent(trigger), SOURCE);
      await withProbe(machine, { x2apic: true }, async () => {
        await signalOneByOne(machine, trigger, MSI_VECTOR);
        assert.equal(readIrqProbeResults(machine.vm.memory).apicBase & APIC_BASE_X2APIC_MODE, APIC_BASE_X2APIC_MODE, 'the guest read EN and EXTD back: x2APIC mode');
        const apic = machine.userspaceChip?.localApic(0);
        if (apic !== undefined) {
          // The handler reports before its EOI: give the last EOI its moment.
          await waitUntil(() => !apic.isr(MSI_VECTOR), 'every handler run was EOIed through the x2APIC EOI MSR');
        }
        assert.equal(Atomics.load(machine.log, ProbeLog.GuestException), 0);
      });
    });

    test(`${mode}: the guest arms IA32_TSC_DEADLINE = RDTSC + 1 ms of ticks ${TSC_DEADLINE_ROUNDS} times: each deadline interrupts once, never before the guest's RDTSC reaches it`, async () => {
      // On the userspace chip our local APIC counts the guest TSC on a clock calibrated to it
      // (kvm-guest-tsc.ts): a clock off by the host's uptime would fire every deadline at once
      // (each counted early) or hours late (the wait fails).
      const machine = createProbeMachine(mode);
      const ticks = Math.round(vmTscHz(machine.vm) * TSC_DEADLINE_TICKS_PER_HZ);
      await withProbe(machine, { tscDeadline: { vector: TSC_DEADLINE_VECTOR, ticks, rounds: TSC_DEADLINE_ROUNDS } }, async () => {
        await waitForVector(machine, TSC_DEADLINE_VECTOR, TSC_DEADLINE_ROUNDS);
        // No deadline is left armed: nothing more may come.
        await sleep(50);
        assert.deepEqual(seenVectors(machine), new Map([[TSC_DEADLINE_VECTOR, TSC_DEADLINE_ROUNDS]]));
        assert.equal(readIrqProbeResults(machine.vm.memory).tscDeadlineEarly, 0, 'no deadline fired before the guest TSC reached it');
      });
    });
  });
}
