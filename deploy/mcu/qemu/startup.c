/* Bare-metal start-up for the QEMU Arm boards edgekd runs its MCU application on (mps2-an386
 * Cortex-M4, mps2-an500 Cortex-M7, mps2-an505 Cortex-M33, mps3-an547 Cortex-M55): vector table,
 * reset (FPU on, .data copied, .bss zeroed, newlib's semihosting stdio, C++ constructors), a fault
 * handler that names the fault, an exit that hands main()'s return code to QEMU, and an
 * instruction clock from SysTick (see edgekd_instructions()). Written for edgekd; no vendor code. */
#include <stdint.h>

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __zero_end__, __stack_top__;
extern int main(void);
extern void __libc_init_array(void);
extern void initialise_monitor_handles(void);

void Reset_Handler(void);
void Fault_Handler(void);
void SysTick_Handler(void);

/* Arm semihosting: BKPT 0xAB with the operation in r0 and its argument in r1. */
static inline uint32_t semihost(uint32_t op, const void* arg) {
  register uint32_t r0 __asm__("r0") = op;
  register const void* r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

/* SYS_EXIT_EXTENDED with ADP_Stopped_ApplicationExit: QEMU exits with `code` as its own status
 * (plain SYS_EXIT on 32-bit Arm only tells success from failure). */
__attribute__((noreturn)) void edgekd_exit(int code) {
  const uint32_t block[2] = {0x20026u, (uint32_t)code};
  semihost(0x20u, block);
  for (;;) {
  }
}

void _exit(int code) { edgekd_exit(code); }

/* newlib's __libc_init_array calls these, and C++ static destructors register against
 * __dso_handle: crti/crtn/crtbegin are not linked, this file is the start-up */
void _init(void) {}
void _fini(void) {}
void* __dso_handle = &__dso_handle;

__attribute__((section(".vectors"), used)) const void* const edgekd_vectors[16] = {
    &__stack_top__, Reset_Handler,
    Fault_Handler,  /* NMI */
    Fault_Handler,  /* HardFault */
    Fault_Handler,  /* MemManage */
    Fault_Handler,  /* BusFault */
    Fault_Handler,  /* UsageFault */
    Fault_Handler,  /* SecureFault (v8-M) */
    0, 0, 0,
    Fault_Handler,  /* SVCall */
    Fault_Handler,  /* DebugMonitor */
    0,
    Fault_Handler,  /* PendSV */
    SysTick_Handler,
};

#define SCB_CPACR (*(volatile uint32_t*)0xE000ED88u)
#define SCB_ICSR (*(volatile uint32_t*)0xE000ED04u)
#define SCB_CFSR (*(volatile uint32_t*)0xE000ED28u)
#define SYST_CSR (*(volatile uint32_t*)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t*)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t*)0xE000E018u)
#define SYST_RELOAD 0x00FFFFFFu /* the 24-bit maximum: fewest wrap interrupts */

void Fault_Handler(void) {
  /* no stdio here: the fault may have come from inside it */
  static const char text[] = "edgekd: fault (exception ";
  char line[64];
  uint32_t n = 0, exc = SCB_ICSR & 0x1FFu, cfsr = SCB_CFSR;
  for (const char* s = text; *s; ++s) line[n++] = *s;
  line[n++] = (char)('0' + exc / 10 % 10);
  line[n++] = (char)('0' + exc % 10);
  line[n++] = ','; line[n++] = ' '; line[n++] = 'C'; line[n++] = 'F'; line[n++] = 'S'; line[n++] = 'R'; line[n++] = ' ';
  for (int shift = 28; shift >= 0; shift -= 4) line[n++] = "0123456789abcdef"[(cfsr >> shift) & 0xFu];
  line[n++] = ')'; line[n++] = '\n'; line[n] = 0;
  semihost(0x04u, line); /* SYS_WRITE0 */
  edgekd_exit(70);
}

/* The instruction clock. QEMU run with `-icount shift=0` advances its virtual clock by exactly one
 * nanosecond per executed instruction, and SysTick counts that virtual clock at the board's CPU
 * clock; edgekd_calibrate() measures how many instructions one SysTick tick stands for by timing a
 * loop of a known number of instructions, so no board clock frequency is assumed. */
static volatile uint32_t systick_wraps;
static uint32_t instructions_per_kilotick;

void SysTick_Handler(void) { systick_wraps = systick_wraps + 1u; }

static uint64_t systick_ticks(void) {
  uint32_t wraps, value;
  do {
    wraps = systick_wraps;
    value = SYST_CVR;
  } while (wraps != systick_wraps);
  return (uint64_t)wraps * (SYST_RELOAD + 1u) + (SYST_RELOAD - value);
}

static void edgekd_calibrate(void) {
  const uint32_t loops = 1u << 20; /* 2 instructions each: subs + bne */
  uint32_t n = loops;
  uint64_t t0 = systick_ticks();
  __asm__ volatile("1: subs %0, %0, #1\n bne 1b" : "+r"(n) : : "cc");
  uint64_t t1 = systick_ticks();
  uint64_t ticks = t1 > t0 ? t1 - t0 : 1u;
  instructions_per_kilotick = (uint32_t)((2ull * loops * 1000u + ticks / 2u) / ticks);
}

/* Instructions executed since reset (32 bits: wraps after 4.3 G; one inference stays far below). */
uint32_t edgekd_instructions(void) { return (uint32_t)(systick_ticks() * instructions_per_kilotick / 1000u); }
uint32_t edgekd_instructions_per_kilotick(void) { return instructions_per_kilotick; }

void Reset_Handler(void) {
  SCB_CPACR |= 0xFu << 20; /* CP10/CP11 full access: the FPU (and MVE on the M55) */
  __asm__ volatile("dsb\n isb" ::: "memory");
  for (uint32_t *src = &__data_load__, *dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
  for (uint32_t* dst = &__bss_start__; dst < &__zero_end__;) *dst++ = 0u;
  SYST_RVR = SYST_RELOAD;
  SYST_CVR = 0u;
  SYST_CSR = 0x7u; /* enable, interrupt on wrap, processor clock */
  while (SYST_CVR == 0u) {
  } /* the first tick loads RELOAD into the counter: from here on, it counts down from the top */
  edgekd_calibrate();
  initialise_monitor_handles();
  __libc_init_array();
  edgekd_exit(main());
}
