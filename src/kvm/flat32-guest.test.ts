import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, test } from 'node:test';
import { CODE_SELECTOR, FLAT32_GUEST_MEMORY_BYTES, FLAT32_PROGRAM_AT, enterFlat32Guest, farReturnDroppingFlags, loadFlat32Guest, outAl, pushImmediate } from './flat32-guest.ts';
import { KvmExit } from './kvm-abi.ts';
import { kvmSkipReason } from './kvm-test-support.ts';
import { OraclePort, withOracleMachine } from './oracle-guest.ts';

const skip = kvmSkipReason('flat 32-bit protected-mode guests on KVM');

/** The module that serves /dev/kvm on the PVM hosts this project runs on (kvm-from-node.md). */
const PVM_MODULE = '/sys/module/kvm_pvm';
const IRETD = [0xcf];
/** EFLAGS with only the always-one bit 1: IF clear. */
const EFLAGS_IMAGE = 0x2;
const PUSH_IMMEDIATE_BYTES = 5;

/**
 * Builds an interrupt frame by hand (EFLAGS, CS, EIP of the next instruction, SDM vol. 3
 * §6.12.1), returns through it with `returnCode`, and reports where KVM_RUN stopped: 'sync' when
 * the return reached the next instruction, else the exit reason.
 */
function returnThroughFrame(returnCode: readonly number[]): string {
  const next = FLAT32_PROGRAM_AT + 3 * PUSH_IMMEDIATE_BYTES + returnCode.length;
  const program = [...pushImmediate(EFLAGS_IMAGE), ...pushImmediate(CODE_SELECTOR), ...pushImmediate(next), ...returnCode, ...outAl(OraclePort.Sync)];
  const machine = { memoryBytes: FLAT32_GUEST_MEMORY_BYTES, routes: [], load: (memory: Uint8Array) => loadFlat32Guest(memory, program), enter: enterFlat32Guest };
  return withOracleMachine(machine, ({ vcpu }) => {
    const exit = vcpu.run();
    return exit === KvmExit.IO && vcpu.ioPort() === OraclePort.Sync ? 'sync' : `exit ${exit}`;
  });
}

describe('flat 32-bit guests on KVM', { skip }, () => {
  test("the handlers' far return goes back through an interrupt frame", () => {
    assert.equal(returnThroughFrame(farReturnDroppingFlags()), 'sync');
  });

  test("on this PVM host IRETD in a guest without paging stops KVM_RUN: KVM's instruction emulator runs such a guest, and its IRET handles real mode only", () => {
    const expected = existsSync(PVM_MODULE) ? `exit ${KvmExit.INTERNAL_ERROR}` : 'sync';
    assert.equal(returnThroughFrame(IRETD), expected, 'arch/x86/kvm/emulate.c em_iret: "iret from protected mode unimplemented yet" (KVM_INTERNAL_ERROR_EMULATION)');
  });
});
