/**
 * Kicking a vCPU thread out of KVM_RUN from any thread (kvm-from-node.md §4, gotchas 3–5).
 *
 * A kick is KICK_SIGNAL sent with tgkill to the vCPU's thread. Its native handler sets that
 * vCPU's kvm_run.immediate_exit (registered by `KvmVcpu.create` with `addon.setKickTarget`), so a
 * kick that lands while the thread runs JavaScript still makes its next KVM_RUN return EINTR at
 * once. The kicker needs only the vCPU's control block (kvm-vcpu.ts), which any thread can hold:
 * a device thread raising an interrupt, a chip view waking vCPU 0 for the PIC, the supervisor.
 * Whoever kicks must first publish what it wants the vCPU to see (a pending interrupt, a stop
 * request): the vCPU looks at its state after every KVM_RUN.
 */

import { constants } from 'node:os';
import { registerThreadWaker } from '../base/thread-waker.ts';
import { addon } from './addon.ts';
import { VcpuControlWord } from './kvm-vcpu.ts';
import { KICK_SIGNAL, check } from './linux.ts';

const { ESRCH } = constants.errno;

/** Kicks the vCPU whose control block this is; nothing when it has not started or has exited. */
export function kickVcpuThread(control: Int32Array): void {
  if (Atomics.load(control, VcpuControlWord.Exited) !== 0) return;
  kickThread(Atomics.load(control, VcpuControlWord.ThreadId));
}

/** Sends the kick signal to a vCPU thread by its kernel thread id (0: none yet). */
export function kickThread(threadId: number): void {
  if (threadId === 0) return;
  const result = addon.kick(threadId, KICK_SIGNAL);
  // ESRCH: the thread ended meanwhile; nothing is left to kick.
  if (result !== -ESRCH) check(result, 'tgkill (vCPU kick)');
}

// Our local APICs wake a vCPU thread that runs guest code this way (base/thread-waker.ts), on
// every thread that loads irqchip/kvm.
registerThreadWaker(kickThread);
