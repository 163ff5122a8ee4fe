/* apic-base: the local APIC's page follows IA32_APIC_BASE, and a disabled APIC stops decoding it
 * (SDM vol. 3 §11.4.4, §11.4.5, §11.12.1.2). One CPU:
 *
 *   1. IA32_APIC_BASE reads as RESET left it: the default base 0xFEE00000, EN and BSP set.
 *   2. The APIC is software-enabled at the default page; its ID and version are read there.
 *   3. WRMSR moves the base to MOVED_BASE (EN and BSP kept); RDMSR reads the new base back.
 *   4. At the new page the same ID, version and SVR read back (the registers moved with the page).
 *   5. The old page is gone: two reads there see all ones, a write there (SVR = 0) changes nothing.
 *   6. A self-IPI sent through the new page's ICR arrives, and its handler's EOI at the new page
 *      ends it (ISR clear).
 *   7. EN = 0: RDMSR keeps the base with EN clear; the page reads all ones at the moved base and at
 *      the default one, and a write at the moved base goes nowhere.
 *   8. EN = 1 again at the default base: the page answers there again (same version).
 *   9. Only where CPUID.1:ECX[21] offers x2APIC: EXTD = 1; the page reads all ones (in x2APIC mode
 *      the MMIO interface is gone, §11.12.1.2) while the version reads through MSR 0x803.
 *
 * The values seen go to a results block at RESULTS_ADDRESS (src/kvm/apic-base-guest.ts reads it),
 * the outcome to COM1 and to isa-debug-exit: 0 when every check passed, else the number of the
 * first check that failed. The accesses that go nowhere are fixed in number, so the VMM can count where
 * each one ended (src/kvm/apic-base.test.ts): 3 at the old page while moved (2 reads, 1 write),
 * 2 at the moved page while disabled (1 read, 1 write), 1 read at the default page while
 * disabled, and 1 read at the default page in x2APIC mode. */
#include "lib/machine.h"
#include "lib/runtime.h"

#define RESULTS_ADDRESS 0x8000
#define MSR_APIC_BASE 0x1b
#define APIC_BASE_BSP (1ul << 8)
#define APIC_BASE_EXTD (1ul << 10)
#define APIC_BASE_EN (1ul << 11)
#define APIC_BASE_ADDRESS_MASK 0x000ffffffffff000ul
#define DEFAULT_BASE 0xfee00000ul
/* Free in our machine (src/vmm/machine-layout.ts: above the IOAPIC at 0xfec00000, below the
 * default APIC page) and inside the identity-mapped low 4 GiB. */
#define MOVED_BASE 0xfed00000ul
#define X2APIC_MSR_BASE 0x800
#define CPUID_1_ECX_X2APIC (1u << 21)

/* xAPIC register offsets (SDM Table 11-1). */
#define REG_ID 0x020
#define REG_VERSION 0x030
#define REG_EOI 0x0b0
#define REG_SVR 0x0f0
#define REG_ISR 0x100
#define REG_IRR 0x200
#define REG_ICR_LOW 0x300
#define VERSION_REGISTER 0x03 /* register number: x2APIC MSR 0x803 */
#define SVR_ENABLED 0x1ff     /* APIC software-enabled, spurious vector 0xff */
/* ICR low (SDM §11.6.1): shorthand "self" (bits 19:18 = 1), fixed delivery, edge, the vector. */
#define ICR_SELF (1u << 18)
#define SELF_IPI_VECTOR 0x40
/* The ISR/IRR word and bit of a vector: 32 vectors per 16-byte-spaced register. */
#define VECTOR_REGISTER(vector) (((vector) / 32) * 0x10)
#define VECTOR_BIT(vector) (1u << ((vector) % 32))
#define ALL_ONES 0xffffffffu
#define FIRST_EXTERNAL_VECTOR 0x20
#define SPURIOUS_VECTOR 0xff

/* The results block, u32 slots (src/kvm/apic-base-guest.ts ApicBaseResult has the same order). */
enum result {
  R_FAILED_CHECK,
  R_INITIAL_BASE_LOW,
  R_INITIAL_BASE_HIGH,
  R_DEFAULT_ID,
  R_DEFAULT_VERSION,
  R_MOVED_BASE_LOW,
  R_MOVED_BASE_HIGH,
  R_MOVED_ID,
  R_MOVED_VERSION,
  R_MOVED_SVR,
  R_OLD_PAGE_ID,
  R_OLD_PAGE_VERSION,
  R_MOVED_SVR_AFTER_OLD_WRITE,
  R_SELF_IPIS_TAKEN,
  R_ISR_AFTER_EOI,
  R_IRR_AFTER_EOI,
  R_DISABLED_BASE_LOW,
  R_DISABLED_BASE_HIGH,
  R_DISABLED_MOVED_PAGE,
  R_DISABLED_DEFAULT_PAGE,
  R_REENABLED_VERSION,
  R_X2APIC_TESTED,
  R_X2APIC_PAGE,
  R_X2APIC_MSR_VERSION,
  R_COUNT
};

static volatile u32 *const results = (volatile u32 *)RESULTS_ADDRESS;
static volatile u32 self_ipis_taken;
static u64 page; /* where the handler finds the APIC's page */

static u32 page_read(u64 base, u32 offset) { return mmio_read(base + offset); }
static void page_write(u64 base, u32 offset, u32 value) { mmio_write(base + offset, value); }

static void record(enum result slot, u32 value) { results[slot] = value; }
static void record_base(enum result low_slot, u64 base) {
  record(low_slot, (u32)base);
  record(low_slot + 1, (u32)(base >> 32));
}

/* Ends the test: isa-debug-exit gets 0 (passed) or the failed check's number. */
static void finish(u32 failed_check) {
  record(R_FAILED_CHECK, failed_check);
  if (failed_check == 0) printf("apic-base: PASS (x2APIC part %s)\n", results[R_X2APIC_TESTED] ? "run" : "skipped: no x2APIC in CPUID");
  else printf("apic-base: FAIL at check %u\n", failed_check);
  debug_exit(failed_check);
}

static void expect(int condition, u32 check) {
  if (!condition) finish(check);
}

static u32 cpuid_1_ecx(void) {
  u32 eax = 1, ebx, ecx = 0, edx;
  __asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
  return ecx;
}

void guest_interrupt(u64 vector, u64 error_code) {
  (void)error_code;
  if (vector < FIRST_EXTERNAL_VECTOR) fatal(vector);
  if (vector == SPURIOUS_VECTOR) return; /* a spurious interrupt takes no EOI (SDM §11.9) */
  report_interrupt(vector);
  if (vector == SELF_IPI_VECTOR) self_ipis_taken++;
  page_write(page, REG_EOI, 0);
}

int main(void) {
  for (int slot = 0; slot < R_COUNT; slot++) results[slot] = 0;
  serial_init();
  idt_install();

  /* 1. RESET's IA32_APIC_BASE (SDM §11.4.4, Figure 11-5). */
  u64 base = rdmsr(MSR_APIC_BASE);
  record_base(R_INITIAL_BASE_LOW, base);
  expect((base & APIC_BASE_ADDRESS_MASK) == DEFAULT_BASE, 1);
  expect((base & (APIC_BASE_EN | APIC_BASE_BSP | APIC_BASE_EXTD)) == (APIC_BASE_EN | APIC_BASE_BSP), 2);

  /* 2. The default page. */
  page = DEFAULT_BASE;
  page_write(DEFAULT_BASE, REG_SVR, SVR_ENABLED);
  u32 id = page_read(DEFAULT_BASE, REG_ID);
  u32 version = page_read(DEFAULT_BASE, REG_VERSION);
  record(R_DEFAULT_ID, id);
  record(R_DEFAULT_VERSION, version);
  expect(version != ALL_ONES && (version & 0xf0) == 0x10, 3); /* an integrated APIC: version 1xH (§11.4.8) */

  /* 3. Move the page. */
  u64 moved = MOVED_BASE | (base & ~APIC_BASE_ADDRESS_MASK);
  wrmsr(MSR_APIC_BASE, moved);
  u64 read_back = rdmsr(MSR_APIC_BASE);
  record_base(R_MOVED_BASE_LOW, read_back);
  expect(read_back == moved, 4);

  /* 4. The registers answer at the new page. */
  page = MOVED_BASE;
  record(R_MOVED_ID, page_read(MOVED_BASE, REG_ID));
  record(R_MOVED_VERSION, page_read(MOVED_BASE, REG_VERSION));
  record(R_MOVED_SVR, page_read(MOVED_BASE, REG_SVR));
  expect(results[R_MOVED_ID] == id, 5);
  expect(results[R_MOVED_VERSION] == version, 6);
  expect(results[R_MOVED_SVR] == SVR_ENABLED, 7);

  /* 5. The old page is gone: 2 reads and 1 write go nowhere. */
  record(R_OLD_PAGE_ID, page_read(DEFAULT_BASE, REG_ID));
  record(R_OLD_PAGE_VERSION, page_read(DEFAULT_BASE, REG_VERSION));
  page_write(DEFAULT_BASE, REG_SVR, 0);
  record(R_MOVED_SVR_AFTER_OLD_WRITE, page_read(MOVED_BASE, REG_SVR));
  expect(results[R_OLD_PAGE_ID] == ALL_ONES && results[R_OLD_PAGE_VERSION] == ALL_ONES, 8);
  expect(results[R_MOVED_SVR_AFTER_OLD_WRITE] == SVR_ENABLED, 9);

  /* 6. A self-IPI through the new page; the handler EOIs there. sti; hlt takes it without a race
   * (STI's shadow covers HLT); loop in case something else woke us first. */
  page_write(MOVED_BASE, REG_ICR_LOW, ICR_SELF | SELF_IPI_VECTOR);
  while (self_ipis_taken == 0) sti_hlt();
  cli();
  record(R_SELF_IPIS_TAKEN, self_ipis_taken);
  record(R_ISR_AFTER_EOI, page_read(MOVED_BASE, REG_ISR + VECTOR_REGISTER(SELF_IPI_VECTOR)) & VECTOR_BIT(SELF_IPI_VECTOR));
  record(R_IRR_AFTER_EOI, page_read(MOVED_BASE, REG_IRR + VECTOR_REGISTER(SELF_IPI_VECTOR)) & VECTOR_BIT(SELF_IPI_VECTOR));
  expect(self_ipis_taken == 1, 10);
  expect(results[R_ISR_AFTER_EOI] == 0 && results[R_IRR_AFTER_EOI] == 0, 11);

  /* 7. EN = 0 (§11.4.3): the base stays in the MSR, the page is not decoded anywhere. */
  u64 disabled = moved & ~APIC_BASE_EN;
  wrmsr(MSR_APIC_BASE, disabled);
  read_back = rdmsr(MSR_APIC_BASE);
  record_base(R_DISABLED_BASE_LOW, read_back);
  expect(read_back == disabled, 12);
  record(R_DISABLED_MOVED_PAGE, page_read(MOVED_BASE, REG_VERSION));
  page_write(MOVED_BASE, REG_SVR, SVR_ENABLED);
  record(R_DISABLED_DEFAULT_PAGE, page_read(DEFAULT_BASE, REG_VERSION));
  expect(results[R_DISABLED_MOVED_PAGE] == ALL_ONES, 13);
  expect(results[R_DISABLED_DEFAULT_PAGE] == ALL_ONES, 14);

  /* 8. Disabled → xAPIC is a legal transition (§11.12.5), here at the default base again. */
  u64 reenabled = DEFAULT_BASE | APIC_BASE_EN | (base & APIC_BASE_BSP);
  wrmsr(MSR_APIC_BASE, reenabled);
  page = DEFAULT_BASE;
  record(R_REENABLED_VERSION, page_read(DEFAULT_BASE, REG_VERSION));
  expect(results[R_REENABLED_VERSION] == version, 15);

  /* 9. x2APIC mode, where the CPU offers it: the page is gone, the MSRs answer. */
  if (cpuid_1_ecx() & CPUID_1_ECX_X2APIC) {
    wrmsr(MSR_APIC_BASE, reenabled | APIC_BASE_EXTD);
    record(R_X2APIC_TESTED, 1);
    record(R_X2APIC_PAGE, page_read(DEFAULT_BASE, REG_VERSION));
    record(R_X2APIC_MSR_VERSION, (u32)rdmsr(X2APIC_MSR_BASE + VERSION_REGISTER));
    expect(results[R_X2APIC_PAGE] == ALL_ONES, 16);
    expect(results[R_X2APIC_MSR_VERSION] == version, 17);
  }

  finish(0);
  return 0;
}
