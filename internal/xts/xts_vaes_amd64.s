//go:build amd64 && !purego

#include "textflag.h"

// AES-256-XTS with VAES on 256-bit registers: each YMM holds two consecutive
// blocks, eight YMM registers keep sixteen blocks in flight. The tweaks live
// in Y16-Y31, which need EVEX encoding (AVX-512F/VL), as do VPTERNLOGQ and
// VPXORQ; no 512-bit register is used.
//
// Register use (both directions):
//   AX  data-key schedule, BX tweak-key schedule (K2 enc), DI dst, SI src
//   CX  sectors left, R8 blocks per sector, R9 number of the next sector batch
//   R10 scratch, R11 sectors left in this batch, R12 &sector tweak on stack
//   DX  blocks left in the sector, R13 tail tweak pointer
//   Y0-Y7 sixteen blocks in flight, Y8 round key (same in both lanes),
//   Y9 scratch, Y11-Y13 scratch,
//   Y16-Y23 tweaks of the sixteen blocks (pair i in Y16+i),
//   Y24-Y31 the same tweaks times α^16 (for the next sixteen blocks).
//
// Stack frame (384 bytes):
//   0(SP)..127(SP)    encrypted tweaks of up to 8 consecutive sectors
//   128(SP)..383(SP)  Y16-Y23 spilled for a sector tail (< 16 blocks): the
//                     tweak of tail block j at 128+16j
//
// Tweaks advance by α^16 per group of 16 blocks: T·x^k mod P is
// (T << k over 128 bits) ^ clmul(top k bits, 0x87), computed per lane with
// 64-bit shifts, byte shifts for the carries and shifts for the carry-less
// product (see FOLD). VPCLMULQDQ would do the product in one instruction but
// competes with VAESENC for the same execution ports and was measurably
// slower.
// Everything that held key material, tweaks or data is zeroed before RET.

// Per-pair shift counts for the first 16 tweaks of a sector: pair i holds
// T·α^(2i) in its low lane and T·α^(2i+1) in its high lane.
DATA vshl<>+0x00(SB)/8, $0
DATA vshl<>+0x08(SB)/8, $0
DATA vshl<>+0x10(SB)/8, $1
DATA vshl<>+0x18(SB)/8, $1
DATA vshl<>+0x20(SB)/8, $2
DATA vshl<>+0x28(SB)/8, $2
DATA vshl<>+0x30(SB)/8, $3
DATA vshl<>+0x38(SB)/8, $3
DATA vshl<>+0x40(SB)/8, $4
DATA vshl<>+0x48(SB)/8, $4
DATA vshl<>+0x50(SB)/8, $5
DATA vshl<>+0x58(SB)/8, $5
DATA vshl<>+0x60(SB)/8, $6
DATA vshl<>+0x68(SB)/8, $6
DATA vshl<>+0x70(SB)/8, $7
DATA vshl<>+0x78(SB)/8, $7
DATA vshl<>+0x80(SB)/8, $8
DATA vshl<>+0x88(SB)/8, $8
DATA vshl<>+0x90(SB)/8, $9
DATA vshl<>+0x98(SB)/8, $9
DATA vshl<>+0xa0(SB)/8, $10
DATA vshl<>+0xa8(SB)/8, $10
DATA vshl<>+0xb0(SB)/8, $11
DATA vshl<>+0xb8(SB)/8, $11
DATA vshl<>+0xc0(SB)/8, $12
DATA vshl<>+0xc8(SB)/8, $12
DATA vshl<>+0xd0(SB)/8, $13
DATA vshl<>+0xd8(SB)/8, $13
DATA vshl<>+0xe0(SB)/8, $14
DATA vshl<>+0xe8(SB)/8, $14
DATA vshl<>+0xf0(SB)/8, $15
DATA vshl<>+0xf8(SB)/8, $15
GLOBL vshl<>(SB), RODATA|NOPTR, $256

DATA vshr<>+0x00(SB)/8, $64
DATA vshr<>+0x08(SB)/8, $64
DATA vshr<>+0x10(SB)/8, $63
DATA vshr<>+0x18(SB)/8, $63
DATA vshr<>+0x20(SB)/8, $62
DATA vshr<>+0x28(SB)/8, $62
DATA vshr<>+0x30(SB)/8, $61
DATA vshr<>+0x38(SB)/8, $61
DATA vshr<>+0x40(SB)/8, $60
DATA vshr<>+0x48(SB)/8, $60
DATA vshr<>+0x50(SB)/8, $59
DATA vshr<>+0x58(SB)/8, $59
DATA vshr<>+0x60(SB)/8, $58
DATA vshr<>+0x68(SB)/8, $58
DATA vshr<>+0x70(SB)/8, $57
DATA vshr<>+0x78(SB)/8, $57
DATA vshr<>+0x80(SB)/8, $56
DATA vshr<>+0x88(SB)/8, $56
DATA vshr<>+0x90(SB)/8, $55
DATA vshr<>+0x98(SB)/8, $55
DATA vshr<>+0xa0(SB)/8, $54
DATA vshr<>+0xa8(SB)/8, $54
DATA vshr<>+0xb0(SB)/8, $53
DATA vshr<>+0xb8(SB)/8, $53
DATA vshr<>+0xc0(SB)/8, $52
DATA vshr<>+0xc8(SB)/8, $52
DATA vshr<>+0xd0(SB)/8, $51
DATA vshr<>+0xd8(SB)/8, $51
DATA vshr<>+0xe0(SB)/8, $50
DATA vshr<>+0xe8(SB)/8, $50
DATA vshr<>+0xf0(SB)/8, $49
DATA vshr<>+0xf8(SB)/8, $49
GLOBL vshr<>(SB), RODATA|NOPTR, $256

// One round with the round key at off(AX) on all sixteen blocks.
#define VROUND8(OP, off) \
	VBROADCASTI128 off(AX), Y8; \
	OP Y8, Y0, Y0; OP Y8, Y1, Y1; OP Y8, Y2, Y2; OP Y8, Y3, Y3; \
	OP Y8, Y4, Y4; OP Y8, Y5, Y5; OP Y8, Y6, Y6; OP Y8, Y7, Y7

// Load blocks 2i and 2i+1 and XOR their tweaks (T) in.
#define VLOAD(i, Yi, T) \
	VMOVDQU (32*i)(SI), Yi; \
	VPXORQ  T, Yi, Yi

// Last round of blocks 2i, 2i+1 with the output tweaks T folded into round
// key 14 (in Y8), then store.
#define VLAST(OPLAST, i, Yi, T) \
	VPXORQ  T, Y8, Y9; \
	OPLAST  Y9, Yi, Yi; \
	VMOVDQU Yi, (32*i)(DI)

// Finish a multiplication by x^k (k ≤ 16) whose per-qword shifts are done:
// N holds both 64-bit halves shifted left by k, C the k bits shifted out of
// each half. The low half's carry moves into the high half; the high half's
// carry c (k bits) is reduced by x^128 = x^7+x^2+x+1, i.e. c·0x87 carry-less,
// which for c < 2^57 is c ^ c<<1 ^ c<<2 ^ c<<7. Clobbers C, Y12, Y13.
#define FOLD(C, N) \
	VPSLLDQ    $8, C, Y12; \
	VPSRLDQ    $8, C, C; \
	VPTERNLOGQ $0x96, C, Y12, N; \
	VPSLLQ     $1, C, Y12; \
	VPSLLQ     $2, C, Y13; \
	VPTERNLOGQ $0x96, Y12, Y13, N; \
	VPSLLQ     $7, C, C; \
	VPXORQ     C, N, N

// N = T·α^16: the tweak pair of the same blocks in the next group. It is
// issued early in the group, between rounds, so that the next group's tweaks
// are ready when its loads are.
#define VSTEP(T, N) \
	VPSRLQ $48, T, Y11; \
	VPSLLQ $16, T, N; \
	FOLD(Y11, N)

// Tweak pair i of a sector from T0 (in both lanes of Y9) into T:
// T0·α^(2i) in the low lane, T0·α^(2i+1) in the high lane.
#define VINIT(i, T) \
	VPSLLVQ vshl<>+(32*i)(SB), Y9, T; \
	VPSRLVQ vshr<>+(32*i)(SB), Y9, Y11; \
	FOLD(Y11, T)

// Sixteen blocks with the tweaks in Y16-Y23; leaves there the tweaks of the
// next sixteen (computed into Y24-Y31 on the way).
#define VBODY16(OP, OPLAST) \
	PREFETCHT0 1024(SI); PREFETCHT0 1088(SI); PREFETCHT0 1152(SI); PREFETCHT0 1216(SI); \
	VLOAD(0, Y0, Y16); VLOAD(1, Y1, Y17); VLOAD(2, Y2, Y18); VLOAD(3, Y3, Y19); \
	VLOAD(4, Y4, Y20); VLOAD(5, Y5, Y21); VLOAD(6, Y6, Y22); VLOAD(7, Y7, Y23); \
	VBROADCASTI128 (AX), Y8; \
	VPXOR Y8, Y0, Y0; VPXOR Y8, Y1, Y1; VPXOR Y8, Y2, Y2; VPXOR Y8, Y3, Y3; \
	VPXOR Y8, Y4, Y4; VPXOR Y8, Y5, Y5; VPXOR Y8, Y6, Y6; VPXOR Y8, Y7, Y7; \
	VROUND8(OP, 16); VSTEP(Y16, Y24); \
	VROUND8(OP, 32); VSTEP(Y17, Y25); \
	VROUND8(OP, 48); VSTEP(Y18, Y26); \
	VROUND8(OP, 64); VSTEP(Y19, Y27); \
	VROUND8(OP, 80); VSTEP(Y20, Y28); \
	VROUND8(OP, 96); VSTEP(Y21, Y29); \
	VROUND8(OP, 112); VSTEP(Y22, Y30); \
	VROUND8(OP, 128); VSTEP(Y23, Y31); \
	VROUND8(OP, 144); VROUND8(OP, 160); VROUND8(OP, 176); VROUND8(OP, 192); \
	VROUND8(OP, 208); \
	VBROADCASTI128 224(AX), Y8; \
	VLAST(OPLAST, 0, Y0, Y16); VLAST(OPLAST, 1, Y1, Y17); \
	VLAST(OPLAST, 2, Y2, Y18); VLAST(OPLAST, 3, Y3, Y19); \
	VLAST(OPLAST, 4, Y4, Y20); VLAST(OPLAST, 5, Y5, Y21); \
	VLAST(OPLAST, 6, Y6, Y22); VLAST(OPLAST, 7, Y7, Y23); \
	VMOVDQU64 Y24, Y16; VMOVDQU64 Y25, Y17; VMOVDQU64 Y26, Y18; VMOVDQU64 Y27, Y19; \
	VMOVDQU64 Y28, Y20; VMOVDQU64 Y29, Y21; VMOVDQU64 Y30, Y22; VMOVDQU64 Y31, Y23

// One block of a sector tail; R13 points at its tweak.
#define VBODY1(OP, OPLAST) \
	VMOVDQU (SI), X0; \
	VMOVDQU (R13), X9; \
	VPXOR   X9, X0, X0; \
	VPXOR   (AX), X0, X0; \
	OP 16(AX), X0, X0; OP 32(AX), X0, X0; OP 48(AX), X0, X0; OP 64(AX), X0, X0; \
	OP 80(AX), X0, X0; OP 96(AX), X0, X0; OP 112(AX), X0, X0; OP 128(AX), X0, X0; \
	OP 144(AX), X0, X0; OP 160(AX), X0, X0; OP 176(AX), X0, X0; OP 192(AX), X0, X0; \
	OP 208(AX), X0, X0; \
	OPLAST 224(AX), X0, X0; \
	VPXOR   X9, X0, X0; \
	VMOVDQU X0, (DI)

#define VTWROUND(OP, off) \
	VMOVDQU off(BX), X8; \
	OP X8, X0, X0; OP X8, X1, X1; OP X8, X2, X2; OP X8, X3, X3; \
	OP X8, X4, X4; OP X8, X5, X5; OP X8, X6, X6; OP X8, X7, X7

// Encrypt with K2 the plain64 tweaks of sectors R9..R9+7 into 0(SP)..127(SP).
#define VSECTOR_TWEAKS \
	VMOVQ R9, X0; \
	LEAQ 1(R9), R10; VMOVQ R10, X1; \
	LEAQ 2(R9), R10; VMOVQ R10, X2; \
	LEAQ 3(R9), R10; VMOVQ R10, X3; \
	LEAQ 4(R9), R10; VMOVQ R10, X4; \
	LEAQ 5(R9), R10; VMOVQ R10, X5; \
	LEAQ 6(R9), R10; VMOVQ R10, X6; \
	LEAQ 7(R9), R10; VMOVQ R10, X7; \
	VTWROUND(VPXOR, 0); \
	VTWROUND(VAESENC, 16); VTWROUND(VAESENC, 32); VTWROUND(VAESENC, 48); \
	VTWROUND(VAESENC, 64); VTWROUND(VAESENC, 80); VTWROUND(VAESENC, 96); \
	VTWROUND(VAESENC, 112); VTWROUND(VAESENC, 128); VTWROUND(VAESENC, 144); \
	VTWROUND(VAESENC, 160); VTWROUND(VAESENC, 176); VTWROUND(VAESENC, 192); \
	VTWROUND(VAESENC, 208); VTWROUND(VAESENCLAST, 224); \
	VMOVDQU X0, 0(SP); VMOVDQU X1, 16(SP); VMOVDQU X2, 32(SP); VMOVDQU X3, 48(SP); \
	VMOVDQU X4, 64(SP); VMOVDQU X5, 80(SP); VMOVDQU X6, 96(SP); VMOVDQU X7, 112(SP)

// Zero all vector registers used (VZEROALL covers Y0-Y15 only) and the
// stack frame.
#define VSCRUB \
	VZEROALL; \
	VPXORQ Y16, Y16, Y16; VPXORQ Y17, Y17, Y17; VPXORQ Y18, Y18, Y18; VPXORQ Y19, Y19, Y19; \
	VPXORQ Y20, Y20, Y20; VPXORQ Y21, Y21, Y21; VPXORQ Y22, Y22, Y22; VPXORQ Y23, Y23, Y23; \
	VPXORQ Y24, Y24, Y24; VPXORQ Y25, Y25, Y25; VPXORQ Y26, Y26, Y26; VPXORQ Y27, Y27, Y27; \
	VPXORQ Y28, Y28, Y28; VPXORQ Y29, Y29, Y29; VPXORQ Y30, Y30, Y30; VPXORQ Y31, Y31, Y31; \
	VMOVDQU Y0, 0(SP); VMOVDQU Y0, 32(SP); VMOVDQU Y0, 64(SP); VMOVDQU Y0, 96(SP); \
	VMOVDQU Y0, 128(SP); VMOVDQU Y0, 160(SP); VMOVDQU Y0, 192(SP); VMOVDQU Y0, 224(SP); \
	VMOVDQU Y0, 256(SP); VMOVDQU Y0, 288(SP); VMOVDQU Y0, 320(SP); VMOVDQU Y0, 352(SP)

// Start fetching the first 1 KiB of the source; each group of 16 blocks
// then asks for the lines 1 KiB ahead. A source out of the CPU caches (a
// page-cache page the card decrypts into guest memory) then arrives while
// the cipher works instead of stalling it: a random 4 KiB page out of a
// 1 GiB buffer decrypts in 0.92-1.02 µs instead of 1.13-1.21 µs here
// (BenchmarkColdDecrypt4K); more or less lead measured no better.
#define PREFETCH1K \
	PREFETCHT0 0(SI); PREFETCHT0 64(SI); PREFETCHT0 128(SI); PREFETCHT0 192(SI); \
	PREFETCHT0 256(SI); PREFETCHT0 320(SI); PREFETCHT0 384(SI); PREFETCHT0 448(SI); \
	PREFETCHT0 512(SI); PREFETCHT0 576(SI); PREFETCHT0 640(SI); PREFETCHT0 704(SI); \
	PREFETCHT0 768(SI); PREFETCHT0 832(SI); PREFETCHT0 896(SI); PREFETCHT0 960(SI)

// The whole function for one direction. Requires nsectors >= 1, blocks >= 1.
#define VXTS_SECTORS(OP, OPLAST) \
	MOVQ nsectors+32(FP), CX; \
	MOVQ blocks+40(FP), R8; \
	MOVQ sector+48(FP), R9; \
	MOVQ dst+16(FP), DI; \
	MOVQ src+24(FP), SI; \
	PREFETCH1K; \
batch: \
	VSECTOR_TWEAKS; \
	MOVQ    $8, R11; \
	CMPQ    CX, $8; \
	CMOVQLT CX, R11; \
	LEAQ    0(SP), R12; \
sector: \
	VBROADCASTI128 (R12), Y9; \
	VINIT(0, Y16); VINIT(1, Y17); VINIT(2, Y18); VINIT(3, Y19); \
	VINIT(4, Y20); VINIT(5, Y21); VINIT(6, Y22); VINIT(7, Y23); \
	MOVQ R8, DX; \
	CMPQ DX, $16; \
	JB   tail; \
loop16: \
	VBODY16(OP, OPLAST); \
	ADDQ $256, SI; \
	ADDQ $256, DI; \
	SUBQ $16, DX; \
	CMPQ DX, $16; \
	JAE  loop16; \
tail: \
	TESTQ DX, DX; \
	JZ    sectordone; \
	VMOVDQU64 Y16, 128(SP); VMOVDQU64 Y17, 160(SP); VMOVDQU64 Y18, 192(SP); VMOVDQU64 Y19, 224(SP); \
	VMOVDQU64 Y20, 256(SP); VMOVDQU64 Y21, 288(SP); VMOVDQU64 Y22, 320(SP); VMOVDQU64 Y23, 352(SP); \
	LEAQ  128(SP), R13; \
loop1: \
	VBODY1(OP, OPLAST); \
	ADDQ $16, SI; \
	ADDQ $16, DI; \
	ADDQ $16, R13; \
	DECQ DX; \
	JNZ  loop1; \
sectordone: \
	ADDQ $16, R12; \
	DECQ R11; \
	JNZ  sector; \
	ADDQ $8, R9; \
	SUBQ $8, CX; \
	JG   batch; \
	VSCRUB; \
	RET

// func encryptSectorsVAES(ek1, ek2 *schedule, dst, src *byte, nsectors, blocks int, sector uint64)
TEXT ·encryptSectorsVAES(SB), NOSPLIT, $384-56
	MOVQ ek1+0(FP), AX
	MOVQ ek2+8(FP), BX
	VXTS_SECTORS(VAESENC, VAESENCLAST)

// func decryptSectorsVAES(dk1, ek2 *schedule, dst, src *byte, nsectors, blocks int, sector uint64)
TEXT ·decryptSectorsVAES(SB), NOSPLIT, $384-56
	MOVQ dk1+0(FP), AX
	MOVQ ek2+8(FP), BX
	VXTS_SECTORS(VAESDEC, VAESDECLAST)
