/* Which instruction sets this CPU and OS can run (isa.h's codes). */
#include "isa.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
/* Read from CPUID and XCR0 directly rather than with __builtin_cpu_supports,
 * which needs the compiler's runtime library to have filled in its CPU
 * model (not every clang toolchain does). */
static int fl_x86_supports(int isa)
{
    unsigned a, b, c, d, xcr0, xcr0_hi;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    /* FMA, OSXSAVE (the OS manages XCR0) and AVX */
    if (!(c & (1u << 12)) || !(c & (1u << 27)) || !(c & (1u << 28)))
        return 0;
    __asm__ volatile("xgetbv" : "=a"(xcr0), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0 & 0x6) != 0x6)           /* the OS saves XMM and YMM state */
        return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & (1u << 5)))   /* AVX2 */
        return 0;
    if (isa == FL_ISA_AVX2)
        return 1;
    /* AVX-512 F, DQ and VL, and the OS saves opmask and all of ZMM */
    return (b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 31))
        && (xcr0 & 0xe0) == 0xe0;
}

int fl_isa_supported(int isa)
{
    if (isa == FL_ISA_AVX512 || isa == FL_ISA_AVX2)
        return fl_x86_supports(isa);
    if (isa == FL_ISA_SSE2) {
#if defined(__x86_64__)
        return 1;                       /* part of x86-64 */
#else
        unsigned a, b, c, d;
        return __get_cpuid(1, &a, &b, &c, &d) && (d & (1u << 26));
#endif
    }
    return isa == FL_ISA_PORTABLE;
}

/* AMX-TILE and AMX-INT8 (CPUID.(7,0):EDX[24], [25]), the OS enabling the
 * tile state in XCR0 (XTILECFG, XTILEDATA: bits 17, 18), and on Linux the
 * process's permission to use it: asked of the kernel once (arch_prctl
 * ARCH_REQ_XCOMP_PERM; without it the first tile instruction raises
 * SIGILL).  The permission holds for every thread of the process, the
 * pool's workers too; each thread still loads its own tile configuration
 * (tiles_int8_amx.h). */
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#define FL_ARCH_GET_XCOMP_PERM 0x1022
#define FL_ARCH_REQ_XCOMP_PERM 0x1023
#define FL_XFEATURE_XTILEDATA 18
static int fl_amx_permitted(void)
{
    static int permitted = -1;      /* asked once: the answer does not change */
    if (permitted < 0) {
        unsigned long features = 0;
        permitted = syscall(SYS_arch_prctl, FL_ARCH_REQ_XCOMP_PERM, FL_XFEATURE_XTILEDATA) == 0
            && syscall(SYS_arch_prctl, FL_ARCH_GET_XCOMP_PERM, &features) == 0
            && (features & (1ul << FL_XFEATURE_XTILEDATA));
    }
    return permitted;
}
#else   /* other systems enable the state for every process when XCR0 has it */
static int fl_amx_permitted(void)
{
    return 1;
}
#endif

static int fl_amx_supported(void)
{
    unsigned a, b, c, d, xcr0, xcr0_hi;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25)))
        return 0;
    __asm__ volatile("xgetbv" : "=a"(xcr0), "=d"(xcr0_hi) : "c"(0));
    return (xcr0 & (3u << 17)) == (3u << 17) && fl_amx_permitted();
}

int fl_i8_supported(int kernel)
{
    unsigned a, b, c, d;
    switch (kernel) {
    case FL_I8_AMX:             /* on AVX-512 VNNI's vectors and quantizer */
        return fl_i8_supported(FL_I8_AVX512_VNNI) && fl_amx_supported();
    case FL_I8_AVX2:
        return fl_x86_supports(FL_ISA_AVX2);
    case FL_I8_AVX2_VNNI:       /* AVX-VNNI: CPUID.(7,1):EAX[4] */
        return fl_x86_supports(FL_ISA_AVX2) && __get_cpuid_count(7, 1, &a, &b, &c, &d)
            && (a & (1u << 4));
    case FL_I8_AVX512:          /* AVX512BW: CPUID.(7,0):EBX[30] */
    case FL_I8_AVX512_VNNI:     /* and AVX512_VNNI: CPUID.(7,0):ECX[11] */
        return fl_x86_supports(FL_ISA_AVX512) && __get_cpuid_count(7, 0, &a, &b, &c, &d)
            && (b & (1u << 30)) && (kernel == FL_I8_AVX512 || (c & (1u << 11)));
    }
    return kernel == FL_I8_PORTABLE;
}
#elif defined(__GNUC__) && defined(__aarch64__)
/* NEON (Advanced SIMD) is part of the aarch64 base architecture: nothing to
 * detect. */
int fl_isa_supported(int isa)
{
    return isa == FL_ISA_PORTABLE || isa == FL_ISA_NEON;
}

/* The int8 kernels are x86's: aarch64 computes the same integers in C. */
int fl_i8_supported(int kernel)
{
    return kernel == FL_I8_PORTABLE;
}
#else
/* Other compilers and CPUs: isa.c builds the portable tiles only. */
int fl_isa_supported(int isa)
{
    return isa == FL_ISA_PORTABLE;
}

int fl_i8_supported(int kernel)
{
    return kernel == FL_I8_PORTABLE;
}
#endif
