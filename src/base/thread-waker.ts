/**
 * Waking a thread that runs guest code. A vCPU thread inside KVM_RUN does not look at shared
 * memory, so whoever makes an interrupt deliverable to it must also interrupt the thread itself.
 * The controller models are platform-free and cannot do that; the platform registers how, per
 * thread (irqchip/kvm registers a signal to the thread, vcpu-kick.ts), and the models call
 * `wakeRunningThread` with the thread id the vCPU published.
 */

export type ThreadWaker = (threadId: number) => void;

let registeredWaker: ThreadWaker | undefined;
let warned = false;

/** Sets how this thread wakes a thread running guest code (the platform's job: irqchip/kvm does it). */
export function registerThreadWaker(waker: ThreadWaker): void {
  registeredWaker = waker;
}

/**
 * Wakes `threadId` out of guest code. Without a registered waker the wake-up cannot be sent: the
 * interrupt stays pending and is taken at the vCPU's next exit, and a warning says why (once).
 */
export function wakeRunningThread(threadId: number): void {
  if (registeredWaker !== undefined) {
    registeredWaker(threadId);
    return;
  }
  if (warned) return;
  warned = true;
  process.emitWarning(`a vCPU thread (${threadId}) runs guest code and this thread has no way to wake it: import 'irqchip/kvm' on every thread that raises interrupts for KVM vCPUs`);
}
