/**
 * Loaded images started on KVM: a bare VM and one vCPU (no irqchip), run in a plain loop that
 * serves the ports the guests use: COM1 output (with LSR saying the transmitter is empty), a
 * report port, and isa-debug-exit, which ends the run. The vCPU gets KVM's supported CPUID, as
 * the machine gives it: a multiboot stub that enables long mode needs CPUID's LM bit, without which
 * KVM refuses EFER.LME and the WRMSR faults (arch/x86/kvm/x86.c, __kvm_valid_efer).
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { KvmExit } from '../../kvm/kvm-abi.ts';
import { setVcpuCpuid, supportedCpuid, vcpuCpuidTable } from '../../kvm/kvm-cpuid.ts';
import { kvmSkipReason } from '../../kvm/kvm-test-support.ts';
import { KvmVcpu } from '../../kvm/kvm-vcpu.ts';
import { KvmVm } from '../../kvm/kvm-vm.ts';
import { Port } from '../machine-layout.ts';
import { startBootProcessor } from './boot-processor.ts';
import { loadImage, type LoadImageOptions } from './load-image.ts';
import { AOUT_KLUDGE_FLAGS, HANDSHAKE_REPORTER, PROTECTED_MODE_REPORTER, REPORT_PORT, buildElf, documentedQemuOutput, multibootHeader } from './loader-test-support.ts';
import { MULTIBOOT_BOOTLOADER_MAGIC } from './multiboot-header.ts';

const skip = kvmSkipReason('images started on KVM by the loaders');

const MIB = 1 << 20;
const UART_LINE_CONTROL = 3;
const UART_LINE_STATUS = 5;
const LCR_DLAB = 0x80;
/** LSR: transmitter holding register and transmitter empty. */
const LSR_TRANSMITTER_EMPTY = 0x60;
/** Far more exits than any of these guests makes (one per serial byte, a few hundred in all). */
const EXIT_LIMIT = 100_000;

interface Run {
  readonly serial: string;
  readonly reports: readonly number[];
  /** The value written to isa-debug-exit, or how the run stopped otherwise. */
  readonly end: number | string;
}

function bootOnKvm(image: Uint8Array, options: LoadImageOptions): Run {
  const vm = KvmVm.create({ memoryBytes: 128 * MIB });
  try {
    const loaded = loadImage(vm.memory, image, options);
    const vcpu = KvmVcpu.create(vm, 0);
    try {
      setVcpuCpuid(vcpu, vcpuCpuidTable(supportedCpuid(), { vcpuId: 0, vcpuCount: 1, userspaceLocalApic: true }));
      startBootProcessor(vcpu, loaded.boot);
      return runUntilDebugExit(vcpu);
    } finally {
      vcpu.close();
    }
  } finally {
    vm.close();
  }
}

function runUntilDebugExit(vcpu: KvmVcpu): Run {
  let serial = '';
  const reports: number[] = [];
  let divisorLatch = false;
  for (let exits = 0; exits < EXIT_LIMIT; exits++) {
    const exit = vcpu.run();
    if (exit === KvmExit.INTR) continue;
    if (exit !== KvmExit.IO) return { serial, reports, end: `exit ${exit} at rip 0x${vcpu.getRegs().get('rip').toString(16)}` };
    const port = vcpu.ioPort();
    if (!vcpu.ioIsOut()) {
      vcpu.setIoValue(port === Port.Com1 + UART_LINE_STATUS ? LSR_TRANSMITTER_EMPTY : 0);
      continue;
    }
    if (port === Port.DebugExit) return { serial, reports, end: vcpu.ioValue() };
    if (port === REPORT_PORT) reports.push(vcpu.ioValue());
    else if (port === Port.Com1 + UART_LINE_CONTROL) divisorLatch = (vcpu.ioValue() & LCR_DLAB) !== 0;
    else if (port === Port.Com1 && !divisorLatch) serial += String.fromCharCode(vcpu.ioValue());
  }
  return { serial, reports, end: 'exit limit' };
}

/** The first four bytes of `text` as a little-endian dword: what the guests read at the command line. */
function firstDword(text: string): number {
  return new DataView(new TextEncoder().encode(text).buffer).getUint32(0, true);
}

describe('images started on KVM', { skip }, () => {
  test('multiboot-hello.elf32 prints exactly what its header says qemu-system-x86_64 -kernel -m 128 prints, and passes', () => {
    const fileName = 'guests/build/multiboot-hello.elf32';
    const image = readFileSync(new URL(`../../../${fileName}`, import.meta.url));
    const run = bootOnKvm(image, { fileName, commandLine: 'hello multiboot' });
    const expected = documentedQemuOutput();
    assert.match(expected, /^multiboot-hello\n[^]*result: pass\n$/);
    assert.equal(run.serial, expected);
    assert.equal(run.end, 0);
  });

  test('a multiboot kernel starts as QEMU starts it: EAX magic, EBX 0x9500, CR0 PE|ET, CS 0x08, DS and SS 0x10, EFLAGS 0x2, a stack below 0x7000', () => {
    const addresses = { headerAddress: 0x100000, loadAddress: 0x100000, loadEndAddress: 0, bssEndAddress: 0x101000, entryAddress: 0x100020 };
    const image = Uint8Array.from([...multibootHeader(AOUT_KLUDGE_FLAGS, addresses), ...PROTECTED_MODE_REPORTER]);
    const run = bootOnKvm(image, { fileName: 'kernel.bin', commandLine: 'x' });
    assert.equal(run.end, 0);
    assert.deepEqual(run.reports, [MULTIBOOT_BOOTLOADER_MAGIC, 0x9500, 0x11, 0x08, 0x10, 0x10, 0x2, 0x7000, firstDword('kernel.bin x')]);
  });

  for (const format of ['elf64', 'flat'] as const) {
    test(`a 64-bit guest (${format}) starts in long mode with RAX the multiboot magic and RBX its information`, () => {
      const image = format === 'flat' ? Uint8Array.from(HANDSHAKE_REPORTER) : buildElf({ elfClass: 64, entry: 0x200000, segments: [{ physical: 0x200000, bytes: HANDSHAKE_REPORTER }] });
      const run = bootOnKvm(image, { fileName: 'guest', commandLine: 'x' });
      assert.equal(run.end, 0);
      assert.deepEqual(run.reports, [MULTIBOOT_BOOTLOADER_MAGIC, 0x7000, firstDword('guest x')]);
    });
  }
});
