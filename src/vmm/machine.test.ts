/**
 * The machine on real KVM, in every chip mode, with guests of a few hand-assembled 64-bit
 * instructions: the guest's exit status through isa-debug-exit, serial output, a vCPU that triple
 * faults, a guest that never ends (the time limit), an access the device thread answers before
 * the guest goes on, and the caller's mistakes refused before anything is created.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IrqChipError } from '../base/errors.ts';
import { CHIP_MODES } from '../kvm/chip-mode.ts';
import { kvmSkipReason } from '../kvm/kvm-test-support.ts';
import { Machine, MachineExitCode, checkMachineOptions, exitCodeOf, type MachineOptions, type MachineReport } from './machine.ts';
import { formatMachineReport } from './machine-report.ts';

const skip = kvmSkipReason('the machine boots guests on KVM');

/** Long-mode code: `mov eax, value; out 0xf4, eax; hlt`. */
function debugExit(value: number): number[] {
  return [0xb8, value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, value >>> 24, 0xe7, 0xf4, 0xf4];
}
/** `mov dx, 0x3f8; mov al, byte; out dx, al` for each byte. */
function serialWrite(text: string): number[] {
  return Array.from({ length: text.length }, (_, index) => [0x66, 0xba, 0xf8, 0x03, 0xb0, text.charCodeAt(index), 0xee]).flat();
}
/** `cli; hlt; jmp $-2`: asleep with interrupts off, for ever. */
const SLEEP_FOR_EVER = [0xfa, 0xf4, 0xeb, 0xfd];
/** `ud2` with no IDT: #UD, then #GP for the missing gate, then a double fault, then a triple fault. */
const TRIPLE_FAULT = [0x0f, 0x0b];

async function runCode(code: readonly number[], options: Partial<MachineOptions> & { readonly timeoutMs?: number } = {}): Promise<{ readonly report: MachineReport; readonly serial: string }> {
  let serial = '';
  const machine = await Machine.boot({
    chip: 'userspace',
    cpus: 1,
    memoryMib: 16,
    serialOutput: (byte) => {
      serial += String.fromCharCode(byte);
    },
    image: Uint8Array.from(code),
    imageName: 'test.bin',
    ...options,
  });
  const report = await machine.run({ timeoutMs: options.timeoutMs ?? 20_000 });
  return { report, serial };
}

describe('Machine on KVM', { skip }, () => {
  for (const chip of CHIP_MODES) {
    test(`${chip} chip: the guest's serial output reaches the VMM and its isa-debug-exit write ends the run with (value << 1) | 1`, async () => {
      const { report, serial } = await runCode([...serialWrite('ok\n'), ...debugExit(0x21)], { chip });
      assert.equal(serial, 'ok\n');
      assert.deepEqual(report.end, { kind: 'guest-exit', value: 0x21 });
      assert.equal(report.exitCode, 0x43);
      // Three serial writes and the exit: each forwarded to the device thread once.
      assert.equal(report.forwardedAccesses, 4);
      assert.equal(report.vcpus[0]?.exits.io, 4);
    });

    test(`${chip} chip: a triple fault stops the run with exit code ${MachineExitCode.VcpuStopped} and names the exit`, async () => {
      const { report } = await runCode(TRIPLE_FAULT, { chip });
      assert.deepEqual(report.end, { kind: 'vcpu-stopped', vcpuId: 0, exit: 'shutdown' });
      assert.equal(report.exitCode, MachineExitCode.VcpuStopped);
      assert.match(formatMachineReport(report), /vCPU 0 stopped: KVM exit 'shutdown' \(a triple fault\)/);
    });
  }

  test('a guest asleep for ever with interrupts off is ended by the time limit, with its own exit code and message', async () => {
    const { report } = await runCode(SLEEP_FOR_EVER, { timeoutMs: 300 });
    assert.deepEqual(report.end, { kind: 'timeout', afterMs: 300 });
    assert.equal(report.exitCode, MachineExitCode.Timeout);
    assert.match(formatMachineReport(report), /timed out: the guest had not ended after 0.3 s/);
    assert.ok((report.vcpus[0]?.exits.hlt ?? 0) >= 1, 'the vCPU halted');
  });

  test('four vCPUs: the application processors wait for INIT/SIPI while the bootstrap processor ends the run', async () => {
    const { report } = await runCode(debugExit(1), { cpus: 4 });
    assert.deepEqual(report.end, { kind: 'guest-exit', value: 1 });
    assert.equal(report.vcpus.length, 4);
    for (const vcpu of report.vcpus.slice(1)) assert.deepEqual(vcpu.exits, {}, `vCPU ${vcpu.vcpuId} never entered the guest`);
  });

  test('a machine runs once', async () => {
    const machine = await Machine.boot({ chip: 'userspace', cpus: 1, memoryMib: 4, image: Uint8Array.from(debugExit(0)), imageName: 'exit.bin' });
    await machine.run();
    await assert.rejects(machine.run(), (error: unknown) => error instanceof IrqChipError && error.code === 'EINVAL');
  });
});

describe('Machine options (no KVM needed)', () => {
  test('vCPU counts and memory sizes out of range are refused with ERANGE-style errors naming the option', () => {
    for (const [options, option] of [
      [{ cpus: 0, memoryMib: 128 }, '--cpus'],
      [{ cpus: 17, memoryMib: 128 }, '--cpus'],
      [{ cpus: 1.5, memoryMib: 128 }, '--cpus'],
      [{ cpus: 1, memoryMib: 1 }, '--memory'],
      [{ cpus: 1, memoryMib: 3073 }, '--memory'],
    ] as const) {
      assert.throws(
        () => {
          checkMachineOptions(options);
        },
        (error: unknown) => error instanceof IrqChipError && error.message.includes(option),
      );
    }
    checkMachineOptions({ cpus: 16, memoryMib: 3072 });
  });

  test('exit codes: the guest keeps the low 8 bits of (value << 1) | 1; the machine has its own for the other endings', () => {
    assert.equal(exitCodeOf({ kind: 'guest-exit', value: 0 }), 1);
    assert.equal(exitCodeOf({ kind: 'guest-exit', value: 0x80 }), 1);
    assert.equal(exitCodeOf({ kind: 'guest-exit', value: 0x7f }), 0xff);
    assert.equal(exitCodeOf({ kind: 'timeout', afterMs: 1 }), 124);
    assert.equal(exitCodeOf({ kind: 'vcpu-stopped', vcpuId: 0, exit: 'shutdown' }), 2);
    assert.equal(exitCodeOf({ kind: 'stopped' }), 130);
  });
});
