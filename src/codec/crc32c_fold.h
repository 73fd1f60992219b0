/*
 * Folding constants for the carry-less-multiplication CRC-32C paths in
 * crc32c.c. Each pair folds a 128-bit lane X forward by D bits of
 * message: X = H x^64 + L, where H is the lane's low quadword (the earlier
 * bytes: reflected order puts bit 0 of byte 0 at the highest degree) and
 * L the high one, and X x^D = H x^(D+64) + L x^D (mod P). pclmulqdq on two
 * bit-reflected operands yields their product times x (the 127-bit product
 * sits one bit low in the 128-bit reflected frame), and a constant kept in
 * the low 32 bits of its quadword stands for K x^32; so the constants are
 *     lo = x^(D+31) mod P, hi = x^(D-33) mod P,
 * as 32-bit reflected values (bit i is the coefficient of x^(31-i)), and
 * the fold is clmul(X.lo, lo) ^ clmul(X.hi, hi): a value of degree < 128
 * congruent to X x^D. P is the CRC-32C polynomial (reflected 0x82F63B78).
 * Derived with this Python (x^n mod P by square-and-multiply, then
 * bit-reversed to 32 bits):
 *
 *     PN = (1 << 32) | int(f"{0x82F63B78:032b}"[::-1], 2)
 *     def mul(a, b):
 *         r = 0
 *         while b:
 *             r, a, b = (r ^ a if b & 1 else r), a << 1, b >> 1
 *         while r.bit_length() > 32:
 *             r ^= PN << (r.bit_length() - 33)
 *         return r
 *     def k(n):
 *         r, b = 1, 2
 *         while n:
 *             r, b, n = (mul(r, b) if n & 1 else r), mul(b, b), n >> 1
 *         return int(f"{r:032b}"[::-1], 2)
 *     print(hex(k(D + 31)), hex(k(D - 33)))
 *
 * tests/test_codec.c checks the paths using them against a bitwise CRC.
 */
#ifndef PSPACE_SRC_CODEC_CRC32C_FOLD_H
#define PSPACE_SRC_CODEC_CRC32C_FOLD_H

/* D = 128 bits: 16 bytes */
#define CRC32C_FOLD16_LO 0xf20c0dfeu
#define CRC32C_FOLD16_HI 0x493c7d27u
/* D = 256 bits: 32 bytes */
#define CRC32C_FOLD32_LO 0x3da6d0cbu
#define CRC32C_FOLD32_HI 0xba4fc28eu
/* D = 384 bits: 48 bytes */
#define CRC32C_FOLD48_LO 0x1c291d04u
#define CRC32C_FOLD48_HI 0xddc0152bu
/* D = 512 bits: 64 bytes */
#define CRC32C_FOLD64_LO 0x740eef02u
#define CRC32C_FOLD64_HI 0x9e4addf8u
/* D = 1024 bits: 128 bytes */
#define CRC32C_FOLD128_LO 0x6992cea2u
#define CRC32C_FOLD128_HI 0x0d3b6092u
/* D = 1536 bits: 192 bytes */
#define CRC32C_FOLD192_LO 0xa87ab8a8u
#define CRC32C_FOLD192_HI 0xab7aff2au
/* D = 2048 bits: 256 bytes */
#define CRC32C_FOLD256_LO 0xdcb17aa4u
#define CRC32C_FOLD256_HI 0xb9e02b86u

#endif
