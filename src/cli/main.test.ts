/**
 * The `irqchip` command as a person runs it, in a child process: `run` of the multiboot image
 * built the way QEMU test images are built prints what `qemu-system-x86_64 -kernel` prints and
 * exits with the guest's status; `info` lists the chip modes; and a caller's mistakes (a missing
 * image, a file we do not load, an option out of range) print one line and exit 1, never a stack.
 */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { kvmSkipReason } from '../kvm/kvm-test-support.ts';
import { documentedQemuOutput } from '../vmm/loader/loader-test-support.ts';

const REPOSITORY = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));
const skip = kvmSkipReason('irqchip run and info use KVM');

function irqchip(...args: string[]): { readonly status: number | null; readonly stdout: string; readonly stderr: string } {
  const result = spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: REPOSITORY, encoding: 'utf8', timeout: 60_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const scratch = mkdtempSync(join(tmpdir(), 'irqchip-cli-'));
after(() => {
  rmSync(scratch, { recursive: true, force: true });
});

describe('irqchip run and info', { skip }, () => {
  for (const chip of ['userspace', 'split', 'kernel']) {
    test(`${chip} chip: the multiboot image prints what qemu -kernel prints and exits with (0 << 1) | 1`, () => {
      const result = irqchip('run', 'guests/build/multiboot-hello.elf32', '--append', 'hello multiboot', '--chip', chip, '--timeout', '30');
      assert.equal(result.stdout, documentedQemuOutput());
      assert.equal(result.status, 1, result.stderr);
      assert.equal(result.stderr, '', 'a run the guest ended itself prints no report without --stats');
    });
  }

  test('--stats prints the counters: every vCPU exit by reason and the devices that counted', () => {
    const result = irqchip('run', 'guests/build/multiboot-hello.elf32', '--stats', '--timeout', '30');
    assert.equal(result.status, 1);
    assert.match(result.stderr, /^irqchip run: the guest wrote 0x0 to isa-debug-exit; exit code 1$/m);
    assert.match(result.stderr, /^ {2}vcpu0 exits: io=\d+/m);
  });

  test('info lists the capabilities and the chip modes usable here', () => {
    const result = irqchip('info');
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^Chip modes \(irqchip run --chip\):$/m);
    for (const mode of ['kernel', 'split', 'userspace']) assert.match(result.stdout, new RegExp(`^ {2}${mode} +usable$`, 'm'));
  });

  test('a missing image: one line naming it, exit 1', () => {
    const result = irqchip('run', join(scratch, 'missing.elf'));
    assert.equal(result.status, 1);
    assert.match(result.stderr, /^irqchip run: ENOENT: cannot read the image '.*missing\.elf': no such file\n$/);
  });

  test('a file we do not load (a PE image): one line saying what it looks like, exit 1', () => {
    const pe = join(scratch, 'image.exe');
    writeFileSync(pe, Uint8Array.from([0x4d, 0x5a, ...new Array<number>(510).fill(0)]));
    const result = irqchip('run', pe);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /^irqchip run: ENOEXEC: .*\n$/);
    assert.doesNotMatch(result.stderr, /\n {4}at /, 'no stack trace');
  });

  test('options out of range: one line naming the option, exit 1', () => {
    const tooMany = irqchip('run', 'guests/build/multiboot-hello.elf32', '--cpus', '99');
    assert.equal(tooMany.status, 1);
    assert.match(tooMany.stderr, /^irqchip run: .*--cpus.*\n$/);
    const notANumber = irqchip('run', 'guests/build/multiboot-hello.elf32', '--memory', 'lots');
    assert.equal(notANumber.status, 1);
    assert.match(notANumber.stderr, /option '--memory <MiB>' argument 'lots' is invalid/);
    const badChip = irqchip('run', 'guests/build/multiboot-hello.elf32', '--chip', 'qemu');
    assert.equal(badChip.status, 1);
    assert.match(badChip.stderr, /Allowed choices are kernel, split, userspace/);
  });
});
