/**
 * Every C test guest (guests/*.c, built into guests/build/ by `npm run build:guests`) on the
 * machine `irqchip run` builds, in every chip mode: each guest checks the controllers itself and
 * reports on its serial port, and ends through isa-debug-exit with 0 when every check passed (exit
 * code 1) or with the number of the check that failed. The tests hold each run to that ending and
 * to the output lines that say what was proved; the guest that misbehaves must end with its own
 * code and leave the controllers' counters saying what it did; the guest that never ends must be
 * ended by the time limit.
 *
 * Where KVM's local APIC on this host is not the SDM's (docs/architecture.md decision 32), the
 * guests detect it and print which behaviour they saw; `eoisAtDelivery(mode)` says which line each
 * mode must print, so a chip mode that behaved like the other would fail here.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { CHIP_MODES, type ChipMode } from '../kvm/chip-mode.ts';
import { kvmSkipReason } from '../kvm/kvm-test-support.ts';
import { eoisAtDelivery } from '../kvm/probe-machine.ts';
import { DEFAULT_MEMORY_MIB } from './machine-layout.ts';
import { Machine, MachineExitCode, type MachineReport } from './machine.ts';
import { formatMachineReport } from './machine-report.ts';

const skip = kvmSkipReason('the C test guests boot on KVM');

/** Far above what a passing guest needs (a few seconds): a guest that hangs is a failure, not a wait. */
const GUEST_TIME_LIMIT_MS = 30_000;
/** How long the guest that never ends is given. */
const HANG_TIME_LIMIT_MS = 2_000;
/** misbehave's exit value when it survived everything (guests/misbehave.c MISBEHAVE_SURVIVED). */
const MISBEHAVE_SURVIVED = 0x33;
/** The exit code a guest's debug_exit(0) gives: (0 << 1) | 1. */
const PASSED_EXIT_CODE = 1;
/** A level line held high and re-delivered at every EOI for two seconds is far more than this. */
const STORM_MIN_DELIVERIES = 100;

interface GuestRun {
  readonly serial: string;
  readonly report: MachineReport;
}

function guestImagePath(name: string): string {
  return new URL(`../../guests/build/${name}.elf`, import.meta.url).pathname;
}

function readGuestElf(name: string): Uint8Array {
  const path = guestImagePath(name);
  try {
    return readFileSync(path);
  } catch {
    throw new Error(`guest image ${path} is missing: run 'npm run build:guests'`);
  }
}

async function runGuest(name: string, chip: ChipMode, cpus: number, timeoutMs = GUEST_TIME_LIMIT_MS): Promise<GuestRun> {
  let serial = '';
  const machine = await Machine.boot({
    chip,
    cpus,
    memoryMib: DEFAULT_MEMORY_MIB,
    image: readGuestElf(name),
    imageName: guestImagePath(name),
    serialOutput: (byte) => {
      serial += String.fromCharCode(byte);
    },
  });
  const report = await machine.run({ timeoutMs });
  return { serial, report };
}

/** What a failed assertion shows: the guest's own account and the machine's. */
function transcript(run: GuestRun): string {
  return `guest serial output:\n${run.serial}\n${formatMachineReport(run.report)}`;
}

function assertPassed(run: GuestRun, guest: string): void {
  assert.deepEqual(run.report.end, { kind: 'guest-exit', value: 0 }, transcript(run));
  assert.equal(run.report.exitCode, PASSED_EXIT_CODE);
  assert.match(run.serial, new RegExp(`^${guest}: all checks passed$`, 'm'), transcript(run));
  assert.doesNotMatch(run.serial, /^FAIL/m, transcript(run));
}

/** Each text must appear in a passed check's line ("  ok <n>: <text>..."). */
function assertChecked(run: GuestRun, texts: readonly string[]): void {
  const passed = run.serial.split('\n').filter((line) => /^ {2}ok \d+: /.test(line));
  for (const text of texts) assert.ok(passed.some((line) => line.includes(text)), `no passed check says '${text}'\n${transcript(run)}`);
}

/** The line the guests print once they know how this mode's local APIC ends interrupts. */
function eoiTimingLine(mode: ChipMode): string {
  return eoisAtDelivery(mode) ? 'local APIC: EOI at delivery' : 'local APIC: EOI by the handler';
}

/** The APIC IDs the guest listed for its APs ("AP <n>: APIC ID <id>" / "x2APIC ID <id>"), sorted. */
function apApicIds(run: GuestRun): number[] {
  return [...run.serial.matchAll(/AP \d+[: ].*?APIC ID (\d+)/g)].map((match) => Number(match[1])).sort((a, b) => a - b);
}

/** 1 .. cpus - 1: the VMM gives vCPU n the APIC ID n. */
function apIds(cpus: number): number[] {
  return Array.from({ length: cpus - 1 }, (_, index) => index + 1);
}

function counter(run: GuestRun, section: string, name: string): number {
  return run.report.counters[section]?.[name] ?? 0;
}

describe('the C test guests, in every chip mode', { skip }, () => {
  for (const mode of CHIP_MODES) {
    describe(`${mode} chip`, () => {
      test('pic-legacy: the 8259A pair through the LINT0 virtual wire, pc-testdev lines, the UART interrupt', async () => {
        const run = await runGuest('pic-legacy', mode, 1);
        assertPassed(run, 'pic-legacy');
        assertChecked(run, [
          'four edges, four deliveries',
          'an edge on masked IRQ 5 is held in IRR',
          'arrives from the slave through the cascade',
          'a non-specific EOI ends the highest-priority one',
          'a specific EOI ends IRQ 5, and the waiting IRQ 6 is delivered',
          'with ICW4 auto-EOI',
          'level IRQ 12, still high at its EOI, is delivered again',
          'a spurious IRQ 15',
          'IIR says THR empty',
          'unmasking LINT0 (ExtINT) delivers it',
        ]);
      });

      test('ioapic-lines: edge and level lines, remote IRR, masking while asserted, and interrupts taken before the next instruction', async () => {
        const run = await runGuest('ioapic-lines', mode, 1);
        assertPassed(run, 'ioapic-lines');
        assert.ok(run.serial.includes(eoiTimingLine(mode)), transcript(run));
        assertChecked(run, [
          '5 edges on pin 16, 5 deliveries',
          'an edge on masked pin 22 is dropped',
          'still high at the first EOI, is delivered again',
          'asserted while masked is held',
          'unmasking it, still high, delivers it',
          'an IOAPIC edge raised by `out` is taken before the next instruction (0 of',
          'an IOAPIC level line raised by `out` is taken before the next instruction (0 of',
          'an 8259A edge raised by `out` is taken before the next instruction (0 of',
          'an 8259A level line raised by `out` is taken before the next instruction (0 of',
        ]);
        // Our IOAPIC (split and userspace chips) is version 0x20; its EOI register can be seen only
        // where the local APIC leaves the EOI to the handler: our userspace chip.
        if (mode === 'userspace') assertChecked(run, ['writing the vector to the EOI register clears remote IRR', 'the EOI register\'s write ends it']);
      });

      test('lapic-timer: one-shot, periodic, TSC-deadline, the divider and the mask', async () => {
        const run = await runGuest('lapic-timer', mode, 1);
        assertPassed(run, 'lapic-timer');
        assert.ok(run.serial.includes(eoiTimingLine(mode)), transcript(run));
        assertChecked(run, [
          'one-shot: once, and then the current count reads 0',
          '/16 counts 16 times slower than /1',
          'periodic: it fires again and again',
          'periodic: never faster than its period',
          'TSC-deadline: not before the TSC reached the deadline',
          'TSC-deadline: a zeroed deadline disarms it',
          'masked: it counts down to 0 and delivers nothing',
        ]);
        if (eoisAtDelivery(mode)) {
          // This host's KVM local APIC checks the LVT mask when it injects a pending expiry, which
          // comes after the guest's unmask (lapic-timer.c): proved here, mode by mode.
          assert.ok(run.serial.includes('masked: the expiry was delivered at unmask'), transcript(run));
        } else {
          assertChecked(run, ['masked: unmasking after the expiry delivers nothing either']);
        }
      });

      for (const cpus of [2, 4]) {
        test(`ipi, ${cpus} vCPUs: INIT/SIPI bring-up of every AP, fixed, logical, shorthand, broadcast and lowest-priority IPIs, replies`, async () => {
          const run = await runGuest('ipi', mode, cpus);
          assertPassed(run, 'ipi');
          assert.deepEqual(apApicIds(run), apIds(cpus), transcript(run));
          assertChecked(run, [
            `each AP started exactly once: ${cpus - 1} arrivals`,
            "a fixed IPI to each AP's physical APIC ID reaches that AP alone",
            "a fixed IPI to each AP's flat logical ID reaches that AP alone",
            'shorthand self: the BSP alone',
            'shorthand all-including-self: every CPU once',
            'shorthand all-excluding-self: every AP once, not the BSP',
            'physical destination 0xff (broadcast): every CPU once',
            'each taken by exactly one AP of the set',
            `each AP answers an IPI with an IPI to the BSP (${cpus - 1} replies)`,
          ]);
        });
      }

      test('x2apic, 2 vCPUs: x2APIC mode through MSRs, SELF IPI, the timer, 32-bit destinations', async () => {
        const run = await runGuest('x2apic', mode, 2);
        assertPassed(run, 'x2apic');
        assert.deepEqual(apApicIds(run), apIds(2), transcript(run));
        assertChecked(run, [
          'is the xAPIC ID 0 and CPUID.1',
          'is derived from the ID',
          'a SELF IPI (MSR 0x83f) arrives once',
          'its EOI through MSR 0x80b ended it',
          'it fires once, and then reads 0',
          "a fixed IPI to each AP's 32-bit x2APIC ID reaches that AP alone",
          "a fixed IPI to each AP's logical ID (cluster and bit) reaches that AP alone",
          'the physical broadcast 0xffffffff reaches every CPU once',
          'which no APIC has, reaches nobody',
        ]);
      });

      test('pit: the 8254 on GSI 0 (ours, or KVM\'s for the kernel chip): rate generator through the 8259A, calibration, status, missed ticks', async () => {
        const run = await runGuest('pit', mode, 1);
        assert.equal(run.report.exitCode, PASSED_EXIT_CODE, transcript(run));
        assert.match(run.serial, /^pit: all checks passed$/m, transcript(run));
        // Ours serves the split and userspace chips; KVM's serves the kernel chip, and ours is not there.
        assert.equal('pit-8254' in run.report.counters, mode !== 'kernel');
      });

      test('apic-base: the local APIC page follows IA32_APIC_BASE, and a disabled or x2APIC-mode APIC decodes no page', async () => {
        const run = await runGuest('apic-base', mode, 1);
        assert.equal(run.report.exitCode, PASSED_EXIT_CODE, transcript(run));
        assert.match(run.serial, /^apic-base: PASS \(x2APIC part run\)$/m, transcript(run));
      });

      test('pci-msi: bus 0 through 0xcf8/0xcfc, MSI and MSI-X (masking, Pending Bits and PBA, function mask, reprogramming), INTx, level work with resample', async () => {
        const run = await runGuest('pci-msi', mode, 1);
        assertPassed(run, 'pci-msi');
        assert.ok(run.serial.includes(eoiTimingLine(mode)), transcript(run));
        assertChecked(run, [
          'device 0 is the i440FX host bridge',
          'the test device (1af4:10f0) is on bus 0, at device 3',
          'BAR 0 sizes as 0xfffff000',
          'the list: MSI at 0x40, MSI-X at 0x60',
          'MSI: unmasked, it is sent exactly once and its Pending Bit clears',
          'MSI-X: unmasked, it is sent exactly once and its PBA bit clears',
          'MSI-X: clearing it sends each once',
          'MSI-X: entry 5 moved to logical destination',
          'INTx: with Interrupt Disable set nothing arrives, Status bit 3 still set',
          'INTx: a function with MSI enabled does not use INTA#',
          'level work: 16 units, 16 handler runs that completed one',
        ]);
        // The device thread re-triggers INTA# at each resample while work remains. Where the local
        // APIC ends an interrupt at delivery (decision 32) the resample comes before the handler has
        // completed its unit, so the device triggers once more and one handler run finds nothing:
        // at most once per burst, and only there.
        const idle = Number(/level work: (\d+) runs found nothing to do/.exec(run.serial)?.[1]);
        const triggers = Number(/the device thread triggered the line (\d+) times/.exec(run.serial)?.[1]);
        assert.ok(eoisAtDelivery(mode) ? idle <= 1 : idle === 0, transcript(run));
        assert.equal(triggers, 16 + idle, transcript(run));
        assert.equal(counter(run, 'pci-test-device', 'levelUnitsCompleted'), 20, transcript(run));
        assert.equal(counter(run, 'pci-test-device', 'raisesOutOfRange'), 1, transcript(run));
      });

      test('misbehave: garbage in every controller, IPIs to nobody, a level storm and no EOIs end with the guest\'s own code, and the counters say so', async () => {
        const run = await runGuest('misbehave', mode, 1);
        assert.deepEqual(run.report.end, { kind: 'guest-exit', value: MISBEHAVE_SURVIVED }, transcript(run));
        assert.equal(run.report.exitCode, ((MISBEHAVE_SURVIVED << 1) | 1) & 0xff);
        assert.match(run.serial, /^misbehave: survived/m, transcript(run));
        assert.doesNotMatch(run.serial, /^FAIL/m, transcript(run));
        assert.ok(run.serial.includes(eoiTimingLine(mode)), transcript(run));
        assert.ok(counter(run, 'pc-testdev', 'accessesPastEnd') >= 1, transcript(run));
        if (mode === 'kernel') return; // KVM keeps no counters it shows for its own controllers.
        for (const [section, name] of [
          ['pic', 'reservedBitWrites'],
          ['ioapic', 'reservedRegisterAccesses'],
          ['ioapic', 'readOnlyWrites'],
        ] as const) {
          assert.ok(counter(run, section, name) > 0, `${section}.${name} counted nothing\n${transcript(run)}`);
        }
        if (mode !== 'userspace') return; // the split chip's local APICs are KVM's
        const sent = Number(/illegal vectors 0-15: (\d+) self-IPIs sent/.exec(run.serial)?.[1]);
        assert.equal(counter(run, 'lapic0', 'illegalVectors'), sent, transcript(run));
        const absentIds = Number(/IPIs to (\d+) absent APIC IDs reach nobody/.exec(run.serial)?.[1]);
        assert.ok(counter(run, 'apicBus', 'noDestination') >= absentIds, `the APIC bus counted no IPI to the ${absentIds} absent APIC IDs\n${transcript(run)}`);
        for (const name of ['reservedRegisterAccesses', 'ignoredAccesses', 'ignoredEois']) {
          assert.ok(counter(run, 'lapic0', name) > 0, `lapic0.${name} counted nothing\n${transcript(run)}`);
        }
      });

      test('hang: a guest in an interrupt storm that never ends is ended by the time limit', async () => {
        const run = await runGuest('hang', mode, 1, HANG_TIME_LIMIT_MS);
        assert.deepEqual(run.report.end, { kind: 'timeout', afterMs: HANG_TIME_LIMIT_MS }, transcript(run));
        assert.equal(run.report.exitCode, MachineExitCode.Timeout);
        assert.match(run.serial, /^hang: /m, transcript(run));
        assert.match(formatMachineReport(run.report), /timed out: the guest had not ended after 2 s/);
        // Our IOAPIC (split and userspace chips) counts the storm's deliveries; KVM's shows none.
        if (mode !== 'kernel') assert.ok(counter(run, 'ioapic', 'messagesAccepted') >= STORM_MIN_DELIVERIES, transcript(run));
      });
    });
  }
});
