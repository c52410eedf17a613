/* Integer-only kernels of a jpq export (see jpq_kernels.h). */
#include "jpq_kernels.h"
#include <stddef.h>

/* floor(v / 2^s) without relying on the implementation-defined right shift of negative values */
static int64_t floor_shift(int64_t v, int32_t s) {
    return v >= 0 ? (v >> s) : -((-v - 1) >> s) - 1;
}

/* integer i of a packed block of bits-wide two's-complement fields */
static int32_t unpack(const uint8_t *w, int32_t i, int32_t bits) {
    int32_t v;
    if (bits == 8) {
        v = w[i];
    } else if (bits == 4) {
        v = (w[i >> 1] >> ((i & 1) * 4)) & 0xF;
    } else if (bits == 2) {
        v = (w[i >> 2] >> ((i & 3) * 2)) & 0x3;
    } else {
        int32_t j;
        v = 0;
        for (j = 0; j < bits; j++) {
            int32_t b = i * bits + j;
            v |= ((w[b >> 3] >> (b & 7)) & 1) << j;
        }
    }
    return v - ((v & (1 << (bits - 1))) << 1);
}

static void unpack_row(const jpq_block_t *b, int32_t row, int32_t len, int8_t *wrow) {
    int32_t k, base = (row - b->row0) * len;
    for (k = 0; k < len; k++) {
        wrow[k] = (int8_t)unpack(b->w, base + k, b->bits);
    }
}

static void store(const jpq_layer_t *l, int32_t oc, int32_t idx, int32_t acc, uint8_t *out_u8,
                  int32_t *out_i32) {
    int32_t t = l->bias_shift[oc];
    int64_t v = floor_shift(floor_shift((int64_t)acc * l->mult[oc], l->shift[oc] - t) + l->bias[oc], t);
    if (l->qmax < 0) {
        if (v > INT32_MAX) {
            v = INT32_MAX;
        } else if (v < INT32_MIN) {
            v = INT32_MIN;
        }
        out_i32[idx] = (int32_t)v;
    } else {
        out_u8[idx] = (uint8_t)(v < 0 ? 0 : (v > l->qmax ? l->qmax : v));
    }
}

/* one output position's sum over the kernel window of one input channel map x (zero padding skipped) */
static int32_t window_dot(const jpq_layer_t *l, const uint8_t *x, const int8_t *wk, int32_t oy, int32_t ox) {
    int32_t ky, kx, acc = 0;
    for (ky = 0; ky < l->kh; ky++) {
        int32_t iy = oy * l->sh - l->ph + ky * l->dh;
        if (iy < 0 || iy >= l->in_h) {
            continue;
        }
        for (kx = 0; kx < l->kw; kx++) {
            int32_t ix = ox * l->sw - l->pw + kx * l->dw;
            if (ix < 0 || ix >= l->in_w) {
                continue;
            }
            acc += wk[ky * l->kw + kx] * ((int32_t)x[iy * l->in_w + ix] + l->in_offset);
        }
    }
    return acc;
}

void jpq_conv(const jpq_layer_t *l, const uint8_t *in, uint8_t *out_u8, int32_t *out_i32, int8_t *wrow) {
    int32_t bi, oc, oy, ox, ic;
    int32_t len = l->in_c * l->kh * l->kw;
    for (bi = 0; bi < l->n_blocks; bi++) {
        const jpq_block_t *b = &l->blocks[bi];
        for (oc = b->row0; oc < b->row1; oc++) {
            unpack_row(b, oc, len, wrow);
            for (oy = 0; oy < l->out_h; oy++) {
                for (ox = 0; ox < l->out_w; ox++) {
                    int32_t acc = 0;
                    for (ic = 0; ic < l->in_c; ic++) {
                        acc += window_dot(l, in + ic * l->in_h * l->in_w, wrow + ic * l->kh * l->kw, oy, ox);
                    }
                    store(l, oc, (oc * l->out_h + oy) * l->out_w + ox, acc, out_u8, out_i32);
                }
            }
        }
    }
}

void jpq_dwconv(const jpq_layer_t *l, const uint8_t *in, uint8_t *out_u8, int32_t *out_i32, int8_t *wrow) {
    int32_t bi, oc, oy, ox;
    int32_t len = l->kh * l->kw;
    for (bi = 0; bi < l->n_blocks; bi++) {
        const jpq_block_t *b = &l->blocks[bi];
        for (oc = b->row0; oc < b->row1; oc++) {
            const uint8_t *x = in + oc * l->in_h * l->in_w;
            unpack_row(b, oc, len, wrow);
            for (oy = 0; oy < l->out_h; oy++) {
                for (ox = 0; ox < l->out_w; ox++) {
                    store(l, oc, (oc * l->out_h + oy) * l->out_w + ox, window_dot(l, x, wrow, oy, ox), out_u8,
                          out_i32);
                }
            }
        }
    }
}

/* One linear layer over a u8 input (in_u8) or an int32 input (in_i32, the other one NULL). */
static void linear(const jpq_layer_t *l, const uint8_t *in_u8, const int32_t *in_i32, uint8_t *out_u8,
                   int32_t *out_i32) {
    int32_t bi, oc, i;
    for (bi = 0; bi < l->n_blocks; bi++) {
        const jpq_block_t *b = &l->blocks[bi];
        for (oc = b->row0; oc < b->row1; oc++) {
            int32_t acc = 0;
            int32_t base = (oc - b->row0) * l->in_c;
            if (in_u8 != NULL) { /* two loops, not a branch per element: the inner loop stays tight */
                for (i = 0; i < l->in_c; i++) {
                    acc += unpack(b->w, base + i, b->bits) * ((int32_t)in_u8[i] + l->in_offset);
                }
            } else {
                for (i = 0; i < l->in_c; i++) {
                    acc += unpack(b->w, base + i, b->bits) * (in_i32[i] + l->in_offset);
                }
            }
            store(l, oc, oc, acc, out_u8, out_i32);
        }
    }
}

void jpq_linear_u8(const jpq_layer_t *l, const uint8_t *in, uint8_t *out_u8, int32_t *out_i32) {
    linear(l, in, NULL, out_u8, out_i32);
}

void jpq_linear_i32(const jpq_layer_t *l, const int32_t *in, uint8_t *out_u8, int32_t *out_i32) {
    linear(l, NULL, in, out_u8, out_i32);
}

/* IEEE-754 binary32 arithmetic on the bit patterns of non-negative normal numbers (or zero), rounded to
 * nearest, ties to even, with integers only: value = m * 2^(E - 150) with m = 2^23 | fraction bits. */
#define B32_FRAC 0x7FFFFFu
#define B32_HIDDEN 0x800000u

/* the bits of v * 2^e (v of bit length n >= 24) rounded to 24 significant bits; a carry out of the
 * significand moves into the exponent field, which is the correct result */
static uint32_t b32_pack(uint64_t v, int32_t e, int32_t n) {
    int32_t s = n - 24;
    uint64_t keep = v >> s;
    uint64_t rem = v - (keep << s);
    uint32_t up = 0;
    if (s > 0) {
        uint64_t half = (uint64_t)1 << (s - 1);
        up = (rem > half || (rem == half && (keep & 1))) ? 1u : 0u;
    }
    return (uint32_t)((uint32_t)(e + s + 150) << 23) + (uint32_t)(keep - B32_HIDDEN) + up;
}

static uint32_t b32_add(uint32_t a, uint32_t b) {
    uint32_t hi = a > b ? a : b, lo = a > b ? b : a; /* the bits order non-negative values */
    int32_t d;
    uint64_t v;
    if (lo == 0) {
        return hi;
    }
    d = (int32_t)(hi >> 23) - (int32_t)(lo >> 23);
    if (d > 32) { /* lo is below 2^-8 of an ulp of hi */
        return hi;
    }
    v = ((uint64_t)((hi & B32_FRAC) | B32_HIDDEN) << d) + ((lo & B32_FRAC) | B32_HIDDEN);
    return b32_pack(v, (int32_t)(lo >> 23) - 150, 24 + d + ((v >> (24 + d)) != 0 ? 1 : 0));
}

static uint32_t b32_mul(uint32_t a, uint32_t b) {
    uint64_t p;
    if (a == 0 || b == 0) {
        return 0;
    }
    p = (uint64_t)((a & B32_FRAC) | B32_HIDDEN) * ((b & B32_FRAC) | B32_HIDDEN);
    return b32_pack(p, (int32_t)(a >> 23) + (int32_t)(b >> 23) - 300, 47 + (int32_t)(p >> 47));
}

/* floor of a value below 2^31 */
static int32_t b32_floor(uint32_t f) {
    int32_t e = (int32_t)(f >> 23) - 150;
    uint32_t m = (f & B32_FRAC) | B32_HIDDEN;
    if (f == 0 || e < -24) {
        return 0;
    }
    return e >= 0 ? (int32_t)(m << e) : (int32_t)(m >> -e);
}

void jpq_add(const uint8_t *a, const uint8_t *b, int32_t n, const uint32_t *value_a, const uint32_t *value_b,
             uint32_t scale, uint32_t clip, uint8_t *out) {
    int32_t i;
    for (i = 0; i < n; i++) {
        uint32_t x = b32_add(value_a[a[i]], value_b[b[i]]);
        out[i] = (uint8_t)b32_floor(b32_mul(x > clip ? clip : x, scale));
    }
}

void jpq_maxpool(const uint8_t *in, int32_t c, int32_t h, int32_t w, int32_t kh, int32_t kw, int32_t sh,
                 int32_t sw, int32_t ph, int32_t pw, uint8_t *out, int32_t oh, int32_t ow) {
    int32_t ch, oy, ox, ky, kx;
    for (ch = 0; ch < c; ch++) {
        const uint8_t *x = in + ch * h * w;
        for (oy = 0; oy < oh; oy++) {
            for (ox = 0; ox < ow; ox++) {
                int32_t best = 0, seen = 0;
                for (ky = 0; ky < kh; ky++) {
                    int32_t iy = oy * sh - ph + ky;
                    for (kx = 0; kx < kw; kx++) {
                        int32_t ix = ox * sw - pw + kx;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w) {
                            continue;
                        }
                        if (!seen || x[iy * w + ix] > best) {
                            best = x[iy * w + ix];
                            seen = 1;
                        }
                    }
                }
                out[(ch * oh + oy) * ow + ox] = (uint8_t)best;
            }
        }
    }
}

void jpq_sumpool(const uint8_t *in, int32_t c, int32_t h, int32_t w, int32_t kh, int32_t kw, int32_t sh,
                 int32_t sw, int32_t *out, int32_t oh, int32_t ow) {
    int32_t ch, oy, ox, ky, kx;
    for (ch = 0; ch < c; ch++) {
        const uint8_t *x = in + ch * h * w;
        for (oy = 0; oy < oh; oy++) {
            for (ox = 0; ox < ow; ox++) {
                int32_t s = 0;
                for (ky = 0; ky < kh; ky++) {
                    for (kx = 0; kx < kw; kx++) {
                        s += (int32_t)x[(oy * sh + ky) * w + ox * sw + kx];
                    }
                }
                out[(ch * oh + oy) * ow + ox] = s;
            }
        }
    }
}
