//go:build amd64 && !purego

#include "textflag.h"

// AES-256-XTS (IEEE 1619, dm-crypt aes-xts-plain64) with AES-NI.
//
// Register use in both functions:
//   AX  data-key schedule (K1 enc for encryption, K1 dec for decryption)
//   BX  tweak-key schedule (K2 enc)
//   DI  dst, SI src
//   CX  sectors left, R8 blocks per sector, R9 number of the next sector batch
//   R10 scratch, R11 sectors left in this batch, R12 &sector tweak on stack
//   DX  blocks left in the current sector
//   X0-X7 eight blocks in flight, X8 round key, X9 running tweak,
//   X10 GF(2^128) reduction mask, X11/X12 scratch.
//
// Stack frame (256 bytes):
//   0(SP)..127(SP)    encrypted tweaks of up to 8 consecutive sectors
//   128(SP)..255(SP)  tweaks of the 8 blocks in flight
//
// Everything that held key material, tweaks or data is zeroed before RET.

// Mask for T·α: dword 0 gets 0x87 when bit 127 was set, dword 2 gets 1 when
// bit 63 was set (the carry between the two 64-bit halves).
DATA gfmask<>+0x00(SB)/4, $0x00000087
DATA gfmask<>+0x04(SB)/4, $0x00000000
DATA gfmask<>+0x08(SB)/4, $0x00000001
DATA gfmask<>+0x0c(SB)/4, $0x00000000
GLOBL gfmask<>(SB), RODATA|NOPTR, $16

// T = T·α in GF(2^128) (little-endian convention, poly x^128+x^7+x^2+x+1).
// PSHUFD $0x13 puts dword 3 (holding bit 127) into lane 0 and dword 1
// (holding bit 63) into lane 2; PSRAL $31 smears their sign bits over the
// lanes; the mask keeps 0x87 and 1 respectively; PADDQ shifts both 64-bit
// halves left by one and the XOR injects the carries.
#define MUL_ALPHA(T) \
	PSHUFD $0x13, T, X11; \
	PADDQ  T, T; \
	PSRAL  $31, X11; \
	PAND   X10, X11; \
	PXOR   X11, T

// One AES round (OP) with the round key at off(K) on all eight blocks.
#define ROUND8(OP, K, off) \
	MOVOU off(K), X8; \
	OP X8, X0; OP X8, X1; OP X8, X2; OP X8, X3; \
	OP X8, X4; OP X8, X5; OP X8, X6; OP X8, X7

// Rounds 1..13 of AES-256 on eight blocks.
#define MIDDLE8(OP, K) \
	ROUND8(OP, K, 16); ROUND8(OP, K, 32); ROUND8(OP, K, 48); ROUND8(OP, K, 64); \
	ROUND8(OP, K, 80); ROUND8(OP, K, 96); ROUND8(OP, K, 112); ROUND8(OP, K, 128); \
	ROUND8(OP, K, 144); ROUND8(OP, K, 160); ROUND8(OP, K, 176); ROUND8(OP, K, 192); \
	ROUND8(OP, K, 208)

// Save the running tweak as the tweak of block i, load block i, XOR the
// tweak in, and advance the tweak.
#define LOAD_BLOCK(i, Xi) \
	MOVOU X9, (128+16*i)(SP); \
	MOVOU (16*i)(SI), Xi; \
	PXOR  X9, Xi; \
	MUL_ALPHA(X9)

// Last round of block i with the output tweak folded into the round key
// (X8 holds round key 14), then store it.
#define LAST_BLOCK(OPLAST, i, Xi) \
	MOVOU (128+16*i)(SP), X12; \
	PXOR  X8, X12; \
	OPLAST X12, Xi; \
	MOVOU Xi, (16*i)(DI)

// Eight blocks of one sector: X9 is the tweak of the first and is left as
// the tweak of the block after the eighth.
#define BODY8(OP, OPLAST) \
	LOAD_BLOCK(0, X0); LOAD_BLOCK(1, X1); LOAD_BLOCK(2, X2); LOAD_BLOCK(3, X3); \
	LOAD_BLOCK(4, X4); LOAD_BLOCK(5, X5); LOAD_BLOCK(6, X6); LOAD_BLOCK(7, X7); \
	MOVOU (AX), X8; \
	PXOR X8, X0; PXOR X8, X1; PXOR X8, X2; PXOR X8, X3; \
	PXOR X8, X4; PXOR X8, X5; PXOR X8, X6; PXOR X8, X7; \
	MIDDLE8(OP, AX); \
	MOVOU 224(AX), X8; \
	LAST_BLOCK(OPLAST, 0, X0); LAST_BLOCK(OPLAST, 1, X1); \
	LAST_BLOCK(OPLAST, 2, X2); LAST_BLOCK(OPLAST, 3, X3); \
	LAST_BLOCK(OPLAST, 4, X4); LAST_BLOCK(OPLAST, 5, X5); \
	LAST_BLOCK(OPLAST, 6, X6); LAST_BLOCK(OPLAST, 7, X7)

// A single block (sector tails shorter than eight blocks).
#define ONE_ROUND(OP, off) \
	MOVOU off(AX), X8; \
	OP X8, X0

#define BODY1(OP, OPLAST) \
	MOVOU (SI), X0; \
	PXOR  X9, X0; \
	MOVOU (AX), X8; \
	PXOR  X8, X0; \
	ONE_ROUND(OP, 16); ONE_ROUND(OP, 32); ONE_ROUND(OP, 48); ONE_ROUND(OP, 64); \
	ONE_ROUND(OP, 80); ONE_ROUND(OP, 96); ONE_ROUND(OP, 112); ONE_ROUND(OP, 128); \
	ONE_ROUND(OP, 144); ONE_ROUND(OP, 160); ONE_ROUND(OP, 176); ONE_ROUND(OP, 192); \
	ONE_ROUND(OP, 208); \
	ONE_ROUND(OPLAST, 224); \
	PXOR  X9, X0; \
	MOVOU X0, (DI); \
	MUL_ALPHA(X9)

// Encrypt, with K2 (BX), the plain64 tweaks of sectors R9..R9+7 (64-bit
// little-endian sector number, zero-padded) and store them at 0(SP)..127(SP).
#define SECTOR_TWEAKS \
	MOVQ R9, X0; \
	LEAQ 1(R9), R10; MOVQ R10, X1; \
	LEAQ 2(R9), R10; MOVQ R10, X2; \
	LEAQ 3(R9), R10; MOVQ R10, X3; \
	LEAQ 4(R9), R10; MOVQ R10, X4; \
	LEAQ 5(R9), R10; MOVQ R10, X5; \
	LEAQ 6(R9), R10; MOVQ R10, X6; \
	LEAQ 7(R9), R10; MOVQ R10, X7; \
	MOVOU (BX), X8; \
	PXOR X8, X0; PXOR X8, X1; PXOR X8, X2; PXOR X8, X3; \
	PXOR X8, X4; PXOR X8, X5; PXOR X8, X6; PXOR X8, X7; \
	MIDDLE8(AESENC, BX); \
	ROUND8(AESENCLAST, BX, 224); \
	MOVOU X0, 0(SP); MOVOU X1, 16(SP); MOVOU X2, 32(SP); MOVOU X3, 48(SP); \
	MOVOU X4, 64(SP); MOVOU X5, 80(SP); MOVOU X6, 96(SP); MOVOU X7, 112(SP)

// Zero every vector register used and the stack frame.
#define SCRUB \
	PXOR X0, X0; PXOR X1, X1; PXOR X2, X2; PXOR X3, X3; \
	PXOR X4, X4; PXOR X5, X5; PXOR X6, X6; PXOR X7, X7; \
	PXOR X8, X8; PXOR X9, X9; PXOR X11, X11; PXOR X12, X12; \
	MOVOU X0, 0(SP); MOVOU X0, 16(SP); MOVOU X0, 32(SP); MOVOU X0, 48(SP); \
	MOVOU X0, 64(SP); MOVOU X0, 80(SP); MOVOU X0, 96(SP); MOVOU X0, 112(SP); \
	MOVOU X0, 128(SP); MOVOU X0, 144(SP); MOVOU X0, 160(SP); MOVOU X0, 176(SP); \
	MOVOU X0, 192(SP); MOVOU X0, 208(SP); MOVOU X0, 224(SP); MOVOU X0, 240(SP)

// The whole function for one direction. Requires nsectors >= 1, blocks >= 1.
#define XTS_SECTORS(OP, OPLAST) \
	MOVQ  nsectors+32(FP), CX; \
	MOVQ  blocks+40(FP), R8; \
	MOVQ  sector+48(FP), R9; \
	MOVQ  dst+16(FP), DI; \
	MOVQ  src+24(FP), SI; \
	MOVOU gfmask<>(SB), X10; \
batch: \
	SECTOR_TWEAKS; \
	MOVQ    $8, R11; \
	CMPQ    CX, $8; \
	CMOVQLT CX, R11; \
	LEAQ    0(SP), R12; \
sector: \
	MOVOU (R12), X9; \
	MOVQ  R8, DX; \
	CMPQ  DX, $8; \
	JB    tail; \
loop8: \
	BODY8(OP, OPLAST); \
	ADDQ $128, SI; \
	ADDQ $128, DI; \
	SUBQ $8, DX; \
	CMPQ DX, $8; \
	JAE  loop8; \
tail: \
	TESTQ DX, DX; \
	JZ    sectordone; \
loop1: \
	BODY1(OP, OPLAST); \
	ADDQ $16, SI; \
	ADDQ $16, DI; \
	DECQ DX; \
	JNZ  loop1; \
sectordone: \
	ADDQ $16, R12; \
	DECQ R11; \
	JNZ  sector; \
	ADDQ $8, R9; \
	SUBQ $8, CX; \
	JG   batch; \
	SCRUB; \
	RET

// func encryptSectorsAsm(ek1, ek2 *schedule, dst, src *byte, nsectors, blocks int, sector uint64)
TEXT ·encryptSectorsAsm(SB), NOSPLIT, $256-56
	MOVQ ek1+0(FP), AX
	MOVQ ek2+8(FP), BX
	XTS_SECTORS(AESENC, AESENCLAST)

// func decryptSectorsAsm(dk1, ek2 *schedule, dst, src *byte, nsectors, blocks int, sector uint64)
TEXT ·decryptSectorsAsm(SB), NOSPLIT, $256-56
	MOVQ dk1+0(FP), AX
	MOVQ ek2+8(FP), BX
	XTS_SECTORS(AESDEC, AESDECLAST)
