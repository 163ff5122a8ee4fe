/**
 * `VfioFdTable`: the file-descriptor numbers a `vfio_irq_set` carries, resolved to our `Event`s.
 *
 * A real SET_IRQS payload names eventfds by number in the caller's process; the kernel looks each
 * one up (`eventfd_ctx_fdget`) and keeps a reference to the eventfd itself, so closing the number
 * afterwards does not undo a binding. The table plays the process's fd table for `VfioIrqs`:
 * `install` gives an event the lowest free non-negative number (as open(2) does), `close` frees
 * the number, and the engine keeps the `Event` it resolved.
 *
 * Negative numbers never name an entry: -1 is the uapi's "de-assign or skip" value and other
 * negative values are treated by each handler as the kernel does (§5.4, §5.5).
 */

import { check, checkRange, ErrorCode, IrqChipError } from '../base/errors.ts';
import type { Event } from '../event/event.ts';

/** The largest fd number a `vfio_irq_set` can carry (the payload entries are s32). */
const MAX_FD = 0x7fffffff;

export class VfioFdTable {
  private readonly events = new Map<number, Event>();

  /** Gives `event` the lowest free fd number and returns it. */
  install(event: Event): number {
    let fd = 0;
    while (this.events.has(fd)) fd++;
    check(fd <= MAX_FD, ErrorCode.ENOSPC, 'the fd table is full');
    this.events.set(fd, event);
    return fd;
  }

  /** Frees `fd`; ENOENT when it is not open. Bindings made through it are not affected. */
  close(fd: number): void {
    check(this.events.delete(fd), ErrorCode.ENOENT, () => `fd ${fd} is not open`);
  }

  /** Whether `fd` names an event. */
  isOpen(fd: number): boolean {
    return this.events.has(fd);
  }

  /**
   * The event `fd` names. EBADF when it names none, as the kernel's `eventfd_ctx_fdget` answers for
   * a number with no open file (an open file that is not an eventfd would be EINVAL; the table
   * holds only events, so that case cannot arise).
   */
  resolve(fd: number): Event {
    checkRange(fd, 0, MAX_FD, 'fd');
    const event = this.events.get(fd);
    if (event === undefined) throw new IrqChipError(ErrorCode.EBADF, `fd ${fd} is not open`);
    return event;
  }
}
