/**
 * The userspace chip's local APIC pages follow each APIC's IA32_APIC_BASE (SDM vol. 3 §11.4.4,
 * §11.4.5, §11.12.1.2), on SimVcpus: a vCPU's MMIO goes through `readVcpuMmio`/`writeVcpuMmio`
 * (its own APIC's page first, then the bus) as a VMM's vCPU loop sends it; accesses made on the
 * bus alone reach the window at the default base, which answers only for an APIC that decodes there.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MSR_IA32_APIC_BASE } from '../x86/lapic/apic-registers.ts';
import { makeMachine, vcpuOf, type TestMachine } from './chip-test-support.ts';
import { LOCAL_APIC_WINDOW_BASE, readVcpuMmio, writeVcpuMmio } from './chip-bus-devices.ts';

const MOVED_BASE = 0xfed00000;
const IOAPIC_BASE = 0xfec00000;
const ALL_ONES = 0xffffffff;
/** xAPIC register offsets (SDM Table 11-1). */
const Offset = { Id: 0x20, Version: 0x30, TaskPriority: 0x80, Eoi: 0xb0, SpuriousVector: 0xf0, IcrLow: 0x300, IcrHigh: 0x310 } as const;
/** IA32_APIC_BASE bits (SDM Figure 11-5). */
const BSP = 0x100n;
const ENABLE = 0x800n;
const EXTD = 0x400n;
/** ICR low: fixed delivery, edge, physical destination; shorthand "self" is bits 19:18 = 1 (SDM §11.6.1). */
const ICR_SELF = 1 << 18;
const VECTOR = 0x51;
/** The IOAPIC's IOREGSEL / IOWIN and its version register (82093AA §3.1, §3.2.2). */
const IOREGSEL = 0x00;
const IOWIN = 0x10;
const IOAPIC_VERSION_REGISTER = 1;

/** vCPU `id`'s 32-bit MMIO as a VMM's vCPU loop routes it (chip-bus-devices.ts). */
function vcpuMmio(machine: TestMachine, id: number): { read(address: number): number; write(address: number, value: number): void } {
  const apic = machine.chip.localApic(id);
  const accessor = { vcpuIndex: id };
  return {
    read: (address) => readVcpuMmio(apic, machine.mmioBus, address, 4, accessor),
    write: (address, value) => {
      writeVcpuMmio(apic, machine.mmioBus, address, 4, value, accessor);
    },
  };
}

/** vCPU `id`'s guest executes WRMSR IA32_APIC_BASE (the vCPU loop hands it to its APIC); the result must be no #GP. */
function writeApicBase(machine: TestMachine, id: number, value: bigint): void {
  assert.equal(machine.chip.localApic(id).writeMsr(MSR_IA32_APIC_BASE, value), true, `WRMSR 0x${value.toString(16)}`);
}

function unclaimed(machine: TestMachine): { readonly unclaimedReads: number; readonly unclaimedWrites: number } {
  return machine.mmioBus.counters();
}

test('vCPU 0 moves its page: its registers answer at the new base through its vCPU path; the default window still serves vCPU 1 but not vCPU 0', () => {
  const machine = makeMachine();
  const [cpu0, cpu1] = [vcpuMmio(machine, 0), vcpuMmio(machine, 1)];
  const version = cpu0.read(LOCAL_APIC_WINDOW_BASE + Offset.Version);
  writeApicBase(machine, 0, BigInt(MOVED_BASE) | ENABLE | BSP);
  assert.equal(cpu0.read(MOVED_BASE + Offset.Version), version);
  assert.equal(cpu0.read(MOVED_BASE + Offset.SpuriousVector), 0x1ff, 'the enabled SVR moved with the page');
  assert.equal(cpu0.read(LOCAL_APIC_WINDOW_BASE + Offset.Version), ALL_ONES);
  cpu0.write(LOCAL_APIC_WINDOW_BASE + Offset.TaskPriority, 0x30);
  assert.equal(cpu0.read(MOVED_BASE + Offset.TaskPriority), 0, 'the write at the old page went nowhere');
  assert.equal(cpu1.read(LOCAL_APIC_WINDOW_BASE + Offset.Id), 0x01000000, "vCPU 1's page is where it was");
  assert.equal(cpu1.read(MOVED_BASE + Offset.Version), ALL_ONES, "vCPU 1 has nothing at vCPU 0's new base");
  // Where each access that reached no APIC was counted: the two at the default window by vCPU 0's
  // APIC (the window defers to it), the one at 0xFED00000 from vCPU 1 by the bus.
  assert.equal(machine.chip.localApic(0).counters().ignoredAccesses, 2);
  assert.deepEqual(unclaimed(machine), { unclaimedReads: 1, unclaimedWrites: 0 });
});

test('the bus alone (SimVcpu.bus) reaches the default window, which answers only for an APIC that decodes there', () => {
  const machine = makeMachine();
  writeApicBase(machine, 0, BigInt(MOVED_BASE) | ENABLE | BSP);
  assert.equal(vcpuOf(machine, 0).bus.readMmio32(LOCAL_APIC_WINDOW_BASE + Offset.Version), ALL_ONES);
  assert.notEqual(vcpuOf(machine, 1).bus.readMmio32(LOCAL_APIC_WINDOW_BASE + Offset.Version), ALL_ONES);
  assert.equal(vcpuOf(machine, 0).bus.readMmio32(MOVED_BASE + Offset.Version), ALL_ONES, 'the bus has no per-vCPU page');
});

test('a self-IPI sent through the moved page arrives; its EOI there ends it, an EOI at the old page goes nowhere', () => {
  // Each guest's handler EOIs at the page its guest believes its APIC is at, through its vCPU path.
  const believedPage = [LOCAL_APIC_WINDOW_BASE, LOCAL_APIC_WINDOW_BASE];
  const machine: TestMachine = makeMachine(
    {},
    {
      handler: (_vector, guest) => {
        const id = guest.vcpu.id;
        vcpuMmio(machine, id).write((believedPage[id] ?? 0) + Offset.Eoi, 0);
      },
    },
  );
  const cpu0 = vcpuMmio(machine, 0);
  const apic0 = machine.chip.localApic(0);
  writeApicBase(machine, 0, BigInt(MOVED_BASE) | ENABLE | BSP);
  believedPage[0] = MOVED_BASE;
  cpu0.write(MOVED_BASE + Offset.IcrLow, ICR_SELF | VECTOR);
  assert.equal(apic0.irr(VECTOR), true);
  assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(machine.chip), [VECTOR]);
  assert.equal(apic0.isr(VECTOR), false, 'the EOI at the moved page ended it');

  believedPage[0] = LOCAL_APIC_WINDOW_BASE;
  cpu0.write(MOVED_BASE + Offset.IcrLow, ICR_SELF | VECTOR);
  assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(machine.chip), [VECTOR]);
  assert.equal(apic0.isr(VECTOR), true, 'the EOI at the old page went nowhere: the vector is still in service');
  assert.equal(apic0.counters().ignoredAccesses, 1);
});

test('an IPI sent through the moved ICR reaches vCPU 1, which ends it at its own default page', () => {
  const machine = makeMachine();
  const cpu0 = vcpuMmio(machine, 0);
  writeApicBase(machine, 0, BigInt(MOVED_BASE) | ENABLE | BSP);
  cpu0.write(MOVED_BASE + Offset.IcrHigh, 1 << 24);
  cpu0.write(MOVED_BASE + Offset.IcrLow, VECTOR);
  assert.deepEqual(vcpuOf(machine, 1).runUntilIdle(machine.chip), [VECTOR]);
  assert.equal(machine.chip.localApic(1).isr(VECTOR), false);
});

test('EN = 0: the page is decoded nowhere; at the former base the bus finds nothing, at the default window vCPU 0’s APIC counts it', () => {
  const machine = makeMachine();
  const cpu0 = vcpuMmio(machine, 0);
  writeApicBase(machine, 0, BigInt(MOVED_BASE) | BSP);
  assert.equal(cpu0.read(MOVED_BASE + Offset.Version), ALL_ONES);
  cpu0.write(MOVED_BASE + Offset.SpuriousVector, 0x1ff);
  assert.equal(cpu0.read(LOCAL_APIC_WINDOW_BASE + Offset.Version), ALL_ONES);
  assert.deepEqual(unclaimed(machine), { unclaimedReads: 1, unclaimedWrites: 1 });
  assert.equal(machine.chip.localApic(0).counters().ignoredAccesses, 1);
  writeApicBase(machine, 0, BigInt(MOVED_BASE) | ENABLE | BSP);
  assert.equal(cpu0.read(MOVED_BASE + Offset.SpuriousVector), 0xff, 're-enabled at the same base, with the write made while disabled lost');
});

test('x2APIC mode: the page answers neither on the vCPU path nor on the bus (SDM §11.12.1.2)', () => {
  const machine = makeMachine();
  writeApicBase(machine, 0, BigInt(LOCAL_APIC_WINDOW_BASE) | ENABLE | EXTD | BSP);
  assert.equal(vcpuMmio(machine, 0).read(LOCAL_APIC_WINDOW_BASE + Offset.Version), ALL_ONES);
  assert.equal(vcpuOf(machine, 0).bus.readMmio32(LOCAL_APIC_WINDOW_BASE + Offset.Version), ALL_ONES);
  assert.equal(machine.chip.localApic(0).counters().ignoredAccesses, 2);
});

test('a page moved over the IOAPIC window takes its vCPU’s accesses there; the other vCPU still reaches the IOAPIC', () => {
  const machine = makeMachine();
  const [cpu0, cpu1] = [vcpuMmio(machine, 0), vcpuMmio(machine, 1)];
  const apicVersion = cpu0.read(LOCAL_APIC_WINDOW_BASE + Offset.Version);
  writeApicBase(machine, 0, BigInt(IOAPIC_BASE) | ENABLE | BSP);
  assert.equal(cpu0.read(IOAPIC_BASE + Offset.Version), apicVersion);
  cpu1.write(IOAPIC_BASE + IOREGSEL, IOAPIC_VERSION_REGISTER);
  assert.equal(cpu1.read(IOAPIC_BASE + IOWIN) & 0xff, 0x20, "the IOAPIC's version register (v0x20)");
});
