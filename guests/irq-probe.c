/* irq-probe: the guest of the per-chip-mode delivery tests and benchmarks (src/kvm/irq-probe.ts
 * writes its configuration and reads its results). It enables its local APIC, records what its
 * CPUID and IA32_APIC_BASE say, programs the 8259A pair and the IOAPIC as configured, optionally
 * arms its TSC-deadline timer, reports ready, and then sleeps with interrupts on. Each
 * interrupt's handler reports its vector on PORT_REPORT (the VMM's device treats that as the
 * device being serviced), then EOIs: the 8259A for its vectors, the local APIC for every other.
 * An exception is fatal. */
#include "lib/runtime.h"
#include "lib/timing.h"

#define CONFIG_ADDRESS 0x8000
#define CONFIG_MAGIC 0x50515249 /* "IRQP" */
#define FLAG_X2APIC 1u
#define FLAG_PIC_VIRTUAL_WIRE 2u /* LINT0 in ExtINT mode: the 8259A's INT reaches this CPU */
#define FLAG_START_APS 4u        /* after Ready: INIT, SIPI, SIPI to every other CPU */
#define AP_START_PAGE 0x9000     /* the VMM writes the APs' real-mode code here (irq-probe.ts) */
#define PORT_STARTUP_SENT 0x14   /* OUT: the BSP sent the whole INIT, SIPI, SIPI sequence */
/* ICR low (SDM §11.6.1): destination shorthand "all excluding self" (bits 19:18 = 3), level
 * assert (bit 14), and the delivery mode: INIT (5) or Start-up (6) with the page number. */
#define ICR_ALL_EXCLUDING_SELF (3u << 18)
#define ICR_ASSERT (1u << 14)
#define ICR_INIT (5u << 8)
#define ICR_STARTUP (6u << 8)
#define STARTUP_SPIN 100000 /* a pause between the IPIs, as the MP start-up sequence asks */
#define PIC_MASTER_BASE 0x20
#define PIC_SLAVE_BASE 0x28
#define PIC_VECTORS_END 0x30
#define FIRST_EXTERNAL_VECTOR 0x20
#define SPURIOUS_VECTOR 0xff
#define LVT_MASKED 0x10000u
#define LVT_EXTINT 0x700u
#define LVT_TIMER_TSC_DEADLINE (2u << 17) /* LVT timer mode bits 18:17 = 10b (SDM §11.5.4) */
#define LAPIC_REG_LVT_TIMER 0x32
#define MSR_APIC_BASE 0x1b
#define MSR_TSC_DEADLINE 0x6e0
#define CPUID_FEATURES 0x1
#define CPUID_EXTENDED_TOPOLOGY 0xb
#define TOPOLOGY_SMT_LEVEL 0
#define TOPOLOGY_CORE_LEVEL 1
#define IOAPIC_PINS 24
#define RESULTS_ADDRESS 0x8100 /* struct probe_results: written by the guest, read by the VMM */

struct ioapic_entry_config {
  u8 pin;
  u8 vector;
  u8 level_triggered;
  u8 destination;
};

struct probe_config {
  u32 magic;
  u32 flags;
  u16 pic_unmasked;
  u16 pic_level;
  u32 ioapic_entry_count;
  struct ioapic_entry_config ioapic[IOAPIC_PINS];
  u32 no_eoi_vector; /* a vector whose handler never EOIs (0: none), to observe when EOIs happen */
  u32 tsc_deadline_vector; /* the TSC-deadline timer's vector (0: the timer is not used) */
  u32 tsc_deadline_ticks;  /* each deadline is this many TSC ticks after the RDTSC that arms it */
  u32 tsc_deadline_rounds; /* deadlines to arm, one after each expiry */
};

struct probe_results {
  u64 apic_base;    /* IA32_APIC_BASE once the local APIC is enabled */
  u32 cpuid_1_ebx;  /* initial APIC ID in [31:24] */
  u32 cpuid_1_ecx;  /* x2APIC [21], TSC-deadline [24], hypervisor [31] */
  u32 cpuid_1_edx;  /* APIC [9], HTT [28] */
  u32 x2apic_id;    /* CPUID.0BH:EDX */
  u32 core_count;   /* CPUID.0BH, core level: EBX[15:0] logical processors */
  u32 tsc_deadline_early; /* TSC-deadline interrupts taken while RDTSC still read below the deadline */
};

static const volatile struct probe_config *config = (const volatile struct probe_config *)CONFIG_ADDRESS;
static volatile struct probe_results *results = (volatile struct probe_results *)RESULTS_ADDRESS;
static volatile u64 tsc_deadline;
static volatile u32 tsc_deadline_rounds_armed;

static inline void cpuid(u32 leaf, u32 subleaf, u32 *eax, u32 *ebx, u32 *ecx, u32 *edx) {
  __asm__ volatile("cpuid" : "=a"(*eax), "=b"(*ebx), "=c"(*ecx), "=d"(*edx) : "a"(leaf), "c"(subleaf));
}

static void record_cpu(void) {
  u32 eax, ebx, ecx, edx;
  cpuid(CPUID_FEATURES, 0, &eax, &ebx, &ecx, &edx);
  results->cpuid_1_ebx = ebx;
  results->cpuid_1_ecx = ecx;
  results->cpuid_1_edx = edx;
  cpuid(CPUID_EXTENDED_TOPOLOGY, TOPOLOGY_SMT_LEVEL, &eax, &ebx, &ecx, &edx);
  results->x2apic_id = edx;
  cpuid(CPUID_EXTENDED_TOPOLOGY, TOPOLOGY_CORE_LEVEL, &eax, &ebx, &ecx, &edx);
  results->core_count = ebx & 0xffff;
  results->apic_base = rdmsr(MSR_APIC_BASE);
}

/* Arms the next deadline, if rounds are left. */
static void arm_tsc_deadline(void) {
  if (tsc_deadline_rounds_armed >= config->tsc_deadline_rounds) return;
  tsc_deadline_rounds_armed = tsc_deadline_rounds_armed + 1;
  tsc_deadline = rdtsc() + config->tsc_deadline_ticks;
  wrmsr(MSR_TSC_DEADLINE, tsc_deadline);
}

/* TSC-deadline mode on the LVT timer, then the first deadline. The LVT write must reach the APIC
 * before the deadline's WRMSR, and in x2APIC mode it is not serializing: MFENCE between them
 * (SDM vol. 3 §11.5.4.1). */
static void start_tsc_deadline_timer(void) {
  lapic_write(LAPIC_REG_LVT_TIMER, LVT_TIMER_TSC_DEADLINE | config->tsc_deadline_vector);
  __asm__ volatile("mfence" ::: "memory");
  arm_tsc_deadline();
}

/* The timer fired: the hardware fires once the TSC reaches the deadline, never before. */
static void tsc_deadline_expired(void) {
  if (rdtsc() < tsc_deadline) results->tsc_deadline_early = results->tsc_deadline_early + 1;
  arm_tsc_deadline();
}

void guest_interrupt(u64 vector, u64 error_code) {
  (void)error_code;
  if (vector < FIRST_EXTERNAL_VECTOR) fatal(vector);
  if (vector == SPURIOUS_VECTOR) return; /* a spurious interrupt takes no EOI (SDM §11.9) */
  if (config->tsc_deadline_vector != 0 && vector == config->tsc_deadline_vector) tsc_deadline_expired();
  report_interrupt(vector);
  if (vector == config->no_eoi_vector) return;
  if (vector < PIC_VECTORS_END) pic_eoi((u8)(vector - PIC_MASTER_BASE));
  else lapic_eoi();
}

static void pause_a_while(void) {
  for (volatile int spin = 0; spin < STARTUP_SPIN; spin++) {
  }
}

/* The MP start-up sequence (SDM vol. 3 §9.4.4.1): INIT, then two Start-up IPIs. */
static void start_application_processors(void) {
  lapic_send_ipi(0, ICR_ALL_EXCLUDING_SELF | ICR_ASSERT | ICR_INIT);
  pause_a_while();
  for (int sipi = 0; sipi < 2; sipi++) {
    lapic_send_ipi(0, ICR_ALL_EXCLUDING_SELF | ICR_ASSERT | ICR_STARTUP | (AP_START_PAGE >> 12));
    pause_a_while();
  }
}

int main(void) {
  if (config->magic != CONFIG_MAGIC) fatal(0xffff);
  idt_install();
  lapic_enable((config->flags & FLAG_X2APIC) != 0);
  record_cpu();
  lapic_write(LAPIC_REG_LINT0, (config->flags & FLAG_PIC_VIRTUAL_WIRE) ? LVT_EXTINT : LVT_MASKED);
  pic_init(PIC_MASTER_BASE, PIC_SLAVE_BASE);
  pic_set_elcr(config->pic_level);
  pic_set_mask((u16)~config->pic_unmasked);
  for (u32 index = 0; index < config->ioapic_entry_count && index < IOAPIC_PINS; index++) {
    struct ioapic_entry_config entry = config->ioapic[index];
    ioapic_route(entry.pin, entry.vector, entry.level_triggered, entry.destination, 0);
  }
  if (config->tsc_deadline_vector != 0) start_tsc_deadline_timer();
  outb(PORT_READY, 1);
  if (config->flags & FLAG_START_APS) {
    start_application_processors();
    outb(PORT_STARTUP_SENT, 1);
  }
  for (;;) sti_hlt();
}
