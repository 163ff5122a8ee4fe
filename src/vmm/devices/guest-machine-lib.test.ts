/**
 * guests/lib/machine.c against the device models, on KVM: a guest built from
 * guest-machine-lib.fixture.c with the guests' own compiler flags runs on a vCPU of this thread,
 * its port exits served by a bus holding the four devices at the machine's ports. What it prints
 * through the UART, the lines it sets through pc-testdev and the value it gives isa-debug-exit are
 * compared with what the C code asks for; and the devices' guest-error counters stay 0, which says
 * the library drives each device as the device expects.
 */

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { Bus, IO_ADDRESS_LIMIT } from '../../chip/bus.ts';
import { addon } from '../../kvm/addon.ts';
import { KvmExit } from '../../kvm/kvm-abi.ts';
import { kvmSkipReason } from '../../kvm/kvm-test-support.ts';
import { KvmVcpu } from '../../kvm/kvm-vcpu.ts';
import { KvmVm } from '../../kvm/kvm-vm.ts';
import { KICK_SIGNAL } from '../../kvm/linux.ts';
import { GUEST_IMAGE_ADDRESS, enterLongMode, loadGuestImage, writeLongModeTables } from '../../kvm/long-mode.ts';
import { Port, TESTDEV_IRQ_LINES } from '../machine-layout.ts';
import { FwCfg } from './fw-cfg.ts';
import { IsaDebugExit } from './isa-debug-exit.ts';
import { PcTestdev } from './pc-testdev.ts';
import { Serial16550 } from './serial-16550.ts';

const GUESTS_DIRECTORY = fileURLToPath(new URL('../../../guests/', import.meta.url));
const FIXTURE = fileURLToPath(new URL('./guest-machine-lib.fixture.c', import.meta.url));
const GUEST_MEMORY_BYTES = 4 << 20;
/** runtime.h's PORT_FATAL: the guest took an exception (fatal()). */
const PORT_FATAL = 0x12;
/** The guest runs in well under a second; this only keeps a broken one from hanging the test. */
const WATCHDOG_NS = 30e9;
const COMMAND_LINE = 'console=ttyS0 answer=42';

function toolchainSkipReason(): string | undefined {
  for (const tool of ['gcc', 'objcopy', 'make']) {
    if (spawnSync(tool, ['--version']).status !== 0) {
      const reason = `${tool} is not installed`;
      console.log(`# the guests' machine library on KVM: skipped: ${reason}`);
      return reason;
    }
  }
  return undefined;
}

const skip = kvmSkipReason("the guests' machine library on KVM") ?? toolchainSkipReason();

/** Compiles the fixture as guests/Makefile compiles a guest (its flags and runtime sources); returns the flat image. */
function buildFixtureGuest(): Uint8Array {
  const build = execFileSync('make', ['-s', '-C', GUESTS_DIRECTORY, '--no-print-directory', '--eval=print-guest-build: ; @echo $(CFLAGS) $(LDFLAGS) lib/start.S $(wildcard lib/*.c)', 'print-guest-build'], {
    encoding: 'utf8',
  });
  const directory = mkdtempSync(join(tmpdir(), 'irqchip-machine-lib-'));
  try {
    const elf = join(directory, 'guest.elf');
    const flat = join(directory, 'guest.bin');
    execFileSync('gcc', [...build.trim().split(/\s+/), '-I', GUESTS_DIRECTORY, '-o', elf, FIXTURE], { cwd: GUESTS_DIRECTORY, stdio: ['ignore', 'pipe', 'pipe'] });
    execFileSync('objcopy', ['-O', 'binary', elf, flat]);
    return readFileSync(flat);
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

interface GuestRun {
  readonly output: string;
  readonly lines: (readonly [number, boolean])[];
  readonly exitValue: number;
  readonly counters: Readonly<Record<string, Readonly<Record<string, number>>>>;
}

/** Runs the image to its isa-debug-exit write, serving every port exit from the devices' bus. */
function runGuest(image: Uint8Array): GuestRun {
  const output: number[] = [];
  const lines: (readonly [number, boolean])[] = [];
  let exitValue: number | undefined;
  const serial = new Serial16550({
    irq: { setLevel: () => assert.fail('the library polls: no UART interrupt is enabled') },
    output: (byte) => {
      output.push(byte);
    },
  });
  const debugExit = new IsaDebugExit({
    onExit: (value) => {
      exitValue = value;
    },
  });
  const testdev = new PcTestdev({
    setLine: (line, level) => {
      lines.push([line, level]);
    },
  });
  const fwCfg = new FwCfg({ cpuCount: 3, maxCpus: 8, ramBytes: GUEST_MEMORY_BYTES, commandLine: COMMAND_LINE });
  const io = new Bus('io', IO_ADDRESS_LIMIT);
  io.insert(serial, Port.Com1, Port.Com1Bytes);
  io.insert(debugExit, Port.DebugExit, Port.DebugExitBytes);
  io.insert(testdev, Port.TestdevIrq, TESTDEV_IRQ_LINES);
  io.insert(fwCfg, Port.FwCfg, Port.FwCfgBytes);

  const vm = KvmVm.create({ memoryBytes: GUEST_MEMORY_BYTES });
  const vcpu = KvmVcpu.create(vm, 0);
  const watchdog = addon.timerCreate(addon.threadId(), KICK_SIGNAL);
  try {
    assert.ok(watchdog >= 0, `timer_create: ${watchdog}`);
    writeLongModeTables(vm.memory);
    loadGuestImage(vm.memory, image);
    enterLongMode(vcpu, GUEST_IMAGE_ADDRESS);
    assert.equal(addon.timerArm(watchdog, WATCHDOG_NS), 0);
    const accessor = { vcpuIndex: 0 };
    while (exitValue === undefined) {
      const exit = vcpu.run();
      assert.equal(exit, KvmExit.IO, `exit ${exit} (${exit === KvmExit.INTR ? 'the watchdog expired' : 'not a port access'}); output so far: ${Buffer.from(output).toString()}`);
      const port = vcpu.ioPort();
      assert.notEqual(port, PORT_FATAL, `the guest took exception ${vcpu.ioValue()}`);
      if (vcpu.ioIsOut()) io.write(port, vcpu.ioSize(), vcpu.ioValue(), accessor);
      else vcpu.setIoValue(io.read(port, vcpu.ioSize(), accessor));
    }
  } finally {
    addon.timerDelete(watchdog);
    vcpu.close();
    vm.close();
  }
  return {
    output: Buffer.from(output).toString('latin1'),
    lines,
    exitValue,
    counters: { serial: serial.counters(), debugExit: debugExit.counters(), testdev: testdev.counters(), fwCfg: fwCfg.counters(), bus: io.counters() },
  };
}

describe('guests/lib/machine.c on KVM, against the device models', { skip }, () => {
  test('serial output and printf formats, fw_cfg items and the command line, pc-testdev lines, isa-debug-exit; no device counts a mistake', () => {
    const run = runGuest(buildFixtureGuest());
    const expected = [
      'machine.h',
      '!',
      'int 0 -1 2147483647 -2147483648',
      'unsigned 4294967295 deadbeef 0',
      'long -9223372036854775808 18446744073709551615 123456789abcdef0',
      'width [   42] [00042] [  -42] [-0042] [0000beef] [  a] [ b] [123]',
      'text [hi] [x] [%] [(null)]',
      `${' '.repeat(299)}7`,
      'written 301',
      `fw_cfg 1 id 1 cpus 3 max 8 ram ${GUEST_MEMORY_BYTES}`,
      `cmdline ${COMMAND_LINE.length} [${COMMAND_LINE}] [${COMMAND_LINE.slice(0, 3)}]`,
      '',
    ].join('\n');
    assert.equal(run.output, expected);
    assert.deepEqual(run.lines, [
      [0, true],
      [0, false],
      [TESTDEV_IRQ_LINES - 1, true],
    ]);
    assert.equal(run.exitValue, 0x2a);
    for (const [device, counters] of Object.entries(run.counters)) {
      for (const [name, count] of Object.entries(counters)) assert.equal(count, 0, `${device}.${name}`);
    }
  });
});
