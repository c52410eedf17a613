/* Integer-only kernels of a jpq export: portable C99, no dynamic allocation, no floating point.
 *
 * Activations are stored channel-major (C, H, W). A uint8 tensor holds codes q whose real value is
 * (q + offset) / S; a layer accumulates acc = sum w * (q + in_offset) in int32 and requantizes each
 * output channel with a fixed-point multiplier and its int32 bias at 2^-bias_shift output steps:
 * floor((floor(acc * mult / 2^(shift - bias_shift)) + bias) / 2^bias_shift) in 64 bits, clamped to [0, qmax].
 * Weights are bit-packed per precision block: integer i of a block is a bits-wide two's-complement field
 * at bits [i*bits, (i+1)*bits) of the block, least significant bit first (rows in C order).
 */
#ifndef JPQ_KERNELS_H
#define JPQ_KERNELS_H

#include <stdint.h>

/* rows [row0, row1) of a layer whose weights are all bits wide */
typedef struct {
    int32_t bits;
    int32_t row0;
    int32_t row1;
    const uint8_t *w;
} jpq_block_t;

/* a conv 2-D (1-D: in_h = kh = 1), depthwise conv or linear (in_h = in_w = kh = kw = 1) */
typedef struct {
    int32_t in_c, in_h, in_w, out_c, out_h, out_w;
    int32_t kh, kw, sh, sw, ph, pw, dh, dw;
    int32_t in_offset; /* added to every input code (the input's zero point) */
    int32_t qmax;      /* clamp of the uint8 output; -1: int32 output (logits), saturated */
    const int32_t *bias;      /* the bias in units of 2^-bias_shift output steps */
    const int8_t *bias_shift; /* <= shift */
    const int32_t *mult;
    const int8_t *shift;
    int32_t n_blocks;
    const jpq_block_t *blocks;
} jpq_layer_t;

/* in: uint8 codes; out_u8 (qmax >= 0) or out_i32 (qmax < 0); wrow: scratch for one unpacked row */
void jpq_conv(const jpq_layer_t *l, const uint8_t *in, uint8_t *out_u8, int32_t *out_i32, int8_t *wrow);
void jpq_dwconv(const jpq_layer_t *l, const uint8_t *in, uint8_t *out_u8, int32_t *out_i32, int8_t *wrow);
void jpq_linear_u8(const jpq_layer_t *l, const uint8_t *in, uint8_t *out_u8, int32_t *out_i32);
/* a linear on int32 inputs (the sums of an average pool) */
void jpq_linear_i32(const jpq_layer_t *l, const int32_t *in, uint8_t *out_u8, int32_t *out_i32);

/* the fake-quant add of two PACT outputs and its re-quantization, in IEEE-754 binary32 on bit patterns
 * (integer operations only): out = floor(min(value_a[a] + value_b[b], clip) * scale), every operation
 * rounded as in binary32; value_a[q] holds the bits of the real value of code q */
void jpq_add(const uint8_t *a, const uint8_t *b, int32_t n, const uint32_t *value_a, const uint32_t *value_b,
             uint32_t scale, uint32_t clip, uint8_t *out);

/* max pooling of uint8 codes; padded positions are skipped */
void jpq_maxpool(const uint8_t *in, int32_t c, int32_t h, int32_t w, int32_t kh, int32_t kw, int32_t sh,
                 int32_t sw, int32_t ph, int32_t pw, uint8_t *out, int32_t oh, int32_t ow);

/* the int32 sum of every window (an average pool whose division is folded into the next layer; the
 * consumer adds the window's zero point as its in_offset); no padding */
void jpq_sumpool(const uint8_t *in, int32_t c, int32_t h, int32_t w, int32_t kh, int32_t kw, int32_t sh,
                 int32_t sw, int32_t *out, int32_t oh, int32_t ow);

#endif
