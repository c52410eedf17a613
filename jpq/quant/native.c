/* The fused search step on the CPU: PACT, its precision mixture and the weight side of a layer, each as
 * one pass over its tensor (docs/architecture.md, "Fused search step"; the arithmetic is docs/method.md
 * §2.1-§2.3 and §4). jpq compiles this file with the system C compiler at first use and calls it through
 * ctypes on contiguous float32/float64 tensors.
 *
 * The forward values repeat the eager PyTorch operations one by one (clamp, multiply, floor, divide; round
 * half to even; a multiply-add fused where PyTorch's vectorised kernels fuse it, flag `fma_`), compiled
 * without contraction, so that they are the same bits. The gradients' sums over an activation tensor run
 * in float over tiles of TILE elements and in double across tiles (over a weight row in double), so they
 * differ from the eager ones by summation order only. Every kernel takes the thread count `nt` of
 * PyTorch's intra-op pool and shares its OpenMP runtime. A mixture is worked through in tiles that stay
 * in the L1 cache, one precision after the other, so that every inner loop is a simple vector loop. */
#include <math.h>
#include <stdint.h>

#define PAR_MIN 32768 /* below this many elements a kernel runs on one thread (a team of one: an `if`
                         clause would run GCC's serial copy of the loop, which is not vectorised) */
#define TILE 1024     /* elements per tile of a mixture */
#define PACT_EPS 1e-3 /* PACT's scale denominator guard (jpq.quant.activations.PACT_EPS) */
#define NET_FWD 16    /* entries per layer in the table of net_params_fwd */
#define NET_BWD 17    /* ... of net_params_bwd */

#define CLAMP(v, lo, hi) ((v) < (lo) ? (lo) : ((v) > (hi) ? (hi) : (v))) /* NaN stays NaN, as torch.clamp */
#define MIN(a, b) ((a) > (b) ? (b) : (a))                                  /* NaN stays NaN, as torch.minimum */

/* one element of a mixture's backward at precision j: the three sums, and m = g where lo_j < x < hi_j */
#define MIXED_SUMS(T, FLOOR)                                                                             \
    T xi = x[i], gi = g[i];                                                                             \
    int a = xi >= h, d = xi <= l;                                                                       \
    up += a ? gi : (T)0;                                                                                \
    down += d ? gi : (T)0;                                                                              \
    dot += gi * FLOOR(CLAMP(xi, l, h) * sj);                                                            \
    T m = (a || d) ? (T)0 : gi;

#define DEFINE(T, SFX, FLOOR, RINT, FMA)                                                                  \
/* y = floor(clamp(x, lo, hi) * s) / s with s = level / (hi - lo + PACT_EPS); lo NULL: 0 (unsigned) */   \
void pact_fwd_##SFX(const T *x, T *y, int64_t n, const T *lo_, const T *hi_, const T *level, int nt) {   \
    T lo = lo_ ? lo_[0] : (T)0, hi = hi_[0];                                                            \
    T s = level[0] / ((lo_ ? hi - lo : hi) + (T)PACT_EPS);                                              \
    _Pragma("omp parallel for simd num_threads((n >= PAR_MIN) ? nt : 1) schedule(static)")                  \
    for (int64_t i = 0; i < n; i++) y[i] = FLOOR(CLAMP(x[i], lo, hi) * s) / s;                          \
}                                                                                                       \
                                                                                                        \
/* gx = g where lo < x < hi, else 0 (gx may be NULL); sums = {sum of g where x >= hi, where x <= lo}.     \
 * Sums run in float over a tile (a vector loop), in double across tiles. */                            \
void pact_bwd_##SFX(const T *g, const T *x, T *gx, int64_t n, const T *lo_, const T *hi_, T *sums,    \
                    int nt) {                                                                           \
    T lo = lo_ ? lo_[0] : (T)0, hi = hi_[0];                                                            \
    double above = 0.0, below = 0.0;                                                                    \
    _Pragma("omp parallel for num_threads((n >= PAR_MIN) ? nt : 1) schedule(static) reduction(+ : above, below)") \
    for (int64_t t0 = 0; t0 < n; t0 += TILE) {                                                          \
        int64_t t1 = t0 + TILE < n ? t0 + TILE : n;                                                     \
        T up = 0, down = 0;                                                                             \
        if (gx) {                                                                                       \
            _Pragma("omp simd reduction(+ : up, down)")                                                 \
            for (int64_t i = t0; i < t1; i++) {                                                         \
                T xi = x[i], gi = g[i];                                                                 \
                gx[i] = (xi >= hi || xi <= lo) ? (T)0 : gi;                                             \
                up += xi >= hi ? gi : (T)0;                                                             \
                down += xi <= lo ? gi : (T)0;                                                           \
            }                                                                                           \
        } else {                                                                                        \
            _Pragma("omp simd reduction(+ : up, down)")                                                 \
            for (int64_t i = t0; i < t1; i++) {                                                         \
                up += x[i] >= hi ? g[i] : (T)0;                                                         \
                down += x[i] <= lo ? g[i] : (T)0;                                                       \
            }                                                                                           \
        }                                                                                               \
        above += up;                                                                                    \
        below += down;                                                                                  \
    }                                                                                                   \
    sums[0] = (T)above;                                                                                 \
    sums[1] = (T)below;                                                                                 \
}                                                                                                       \
                                                                                                        \
/* y = sum_j coef_j * floor(clamp(x, lo_j, hi_j) * s_j), summed in the order j = 0..P-1, with          \
 * s_j = level_j / (hi_j - lo_j + PACT_EPS) (written to s) and coef_j = theta_j / s_j; lo NULL: 0 */     \
void mixed_fwd_##SFX(const T *x, T *y, int64_t n, int p, const T *lo_, const T *hi, const T *level,    \
                     const T *theta, T *s, int fma_, int nt) {                                          \
    T lo[8], coef[8];                                                                                   \
    for (int j = 0; j < p; j++) {                                                                       \
        lo[j] = lo_ ? lo_[j] : (T)0;                                                                    \
        s[j] = level[j] / ((lo_ ? hi[j] - lo[j] : hi[j]) + (T)PACT_EPS);                                \
        coef[j] = theta[j] / s[j];                                                                      \
    }                                                                                                   \
    _Pragma("omp parallel for num_threads((n >= PAR_MIN) ? nt : 1) schedule(static)")                       \
    for (int64_t t0 = 0; t0 < n; t0 += TILE) {                                                          \
        int64_t t1 = t0 + TILE < n ? t0 + TILE : n;                                                     \
        T l0 = lo[0], h0 = hi[0], s0 = s[0], c0 = coef[0];                                              \
        _Pragma("omp simd")                                                                             \
        for (int64_t i = t0; i < t1; i++) y[i] = FLOOR(CLAMP(x[i], l0, h0) * s0) * c0;                  \
        for (int j = 1; j < p; j++) {                                                                   \
            T l = lo[j], h = hi[j], sj = s[j], cj = coef[j];                                            \
            if (fma_) {                                                                                 \
                _Pragma("omp simd")                                                                     \
                for (int64_t i = t0; i < t1; i++) y[i] = FMA(FLOOR(CLAMP(x[i], l, h) * sj), cj, y[i]);  \
            } else {                                                                                    \
                _Pragma("omp simd")                                                                     \
                for (int64_t i = t0; i < t1; i++) y[i] = y[i] + FLOOR(CLAMP(x[i], l, h) * sj) * cj;     \
            }                                                                                           \
        }                                                                                               \
    }                                                                                                   \
}                                                                                                       \
                                                                                                        \
/* gx = sum_j theta_j * (g where lo_j < x < hi_j), in the order j = 0..P-1 (gx may be NULL); and per     \
 * precision j: ghi_j = theta_j * (sum of g where x >= hi_j), glo_j = theta_j * (sum of g where          \
 * x <= lo_j), gth_j = <g, floor(S_j * clamp(x, lo_j, hi_j))> / S_j */                                   \
void mixed_bwd_##SFX(const T *g, const T *x, T *gx, int64_t n, int p, const T *lo_, const T *hi,       \
                     const T *s, const T *theta, T *ghi, T *glo, T *gth, int fma_, int nt) {            \
    double acc[3][8] = {{0}};                                                                           \
    T lo[8];                                                                                            \
    for (int j = 0; j < p; j++) lo[j] = lo_ ? lo_[j] : (T)0;                                            \
    _Pragma("omp parallel num_threads((n >= PAR_MIN) ? nt : 1)")                                            \
    {                                                                                                   \
        double part[3][8] = {{0}};                                                                      \
        _Pragma("omp for schedule(static) nowait")                                                      \
        for (int64_t t0 = 0; t0 < n; t0 += TILE) {                                                      \
            int64_t t1 = t0 + TILE < n ? t0 + TILE : n;                                                 \
            for (int j = 0; j < p; j++) {                                                               \
                T l = lo[j], h = hi[j], sj = s[j], th = theta[j];                                       \
                T up = 0, down = 0, dot = 0; /* float in a tile, double across tiles */                 \
                if (!gx) {                                                                              \
                    _Pragma("omp simd reduction(+ : up, down, dot)")                                    \
                    for (int64_t i = t0; i < t1; i++) { MIXED_SUMS(T, FLOOR) }                          \
                } else if (j == 0) {                                                                    \
                    _Pragma("omp simd reduction(+ : up, down, dot)")                                    \
                    for (int64_t i = t0; i < t1; i++) { MIXED_SUMS(T, FLOOR) gx[i] = m * th; }          \
                } else if (fma_) {                                                                      \
                    _Pragma("omp simd reduction(+ : up, down, dot)")                                    \
                    for (int64_t i = t0; i < t1; i++) { MIXED_SUMS(T, FLOOR) gx[i] = FMA(m, th, gx[i]); } \
                } else {                                                                                \
                    _Pragma("omp simd reduction(+ : up, down, dot)")                                    \
                    for (int64_t i = t0; i < t1; i++) { MIXED_SUMS(T, FLOOR) gx[i] = gx[i] + m * th; }  \
                }                                                                                       \
                part[0][j] += up;                                                                       \
                part[1][j] += down;                                                                     \
                part[2][j] += dot;                                                                      \
            }                                                                                           \
        }                                                                                               \
        _Pragma("omp critical")                                                                         \
        for (int j = 0; j < p; j++) {                                                                   \
            acc[0][j] += part[0][j];                                                                    \
            acc[1][j] += part[1][j];                                                                    \
            acc[2][j] += part[2][j];                                                                    \
        }                                                                                               \
    }                                                                                                   \
    for (int j = 0; j < p; j++) {                                                                       \
        ghi[j] = (T)(theta[j] * acc[0][j]);                                                             \
        glo[j] = (T)(theta[j] * acc[1][j]);                                                             \
        gth[j] = (T)(acc[2][j] / s[j]);                                                                 \
    }                                                                                                   \
}                                                                                                       \
                                                                                                        \
/* The weight side of a layer: w (C, K), b (C), theta (P, C), the input's scale s_a; per precision       \
 * levels 2^p - 1, upper 2^(p-1) - 1 and nonzero (0 for p = 0); the first `skip` precisions are 0-bit.   \
 * Out: w_eff (C, K) = sum_i theta_i Q_i(W), b_eff (C), and for the backward s (P, C), s_w (C), qb (C). */\
void params_fwd_##SFX(const T *w, const T *b, const T *theta, T s_a, const T *levels, const T *upper,  \
                      const T *nonzero, int64_t c_out, int64_t k, int p, int skip, T atol, T *w_eff,     \
                      T *b_eff, T *s, T *s_w, T *qb, int nt) {                                          \
    _Pragma("omp parallel for num_threads((c_out * k * (p - skip) >= PAR_MIN) ? nt : 1) schedule(static)")  \
    for (int64_t c = 0; c < c_out; c++) {                                                               \
        const T *wc = w + c * k;                                                                        \
        T *out = w_eff + c * k;                                                                         \
        T m = 0;                                                                                        \
        _Pragma("omp simd reduction(max : m)")                                                          \
        for (int64_t i = 0; i < k; i++) m = fabs(wc[i]) > m ? fabs(wc[i]) : m;                          \
        T rng = (T)2 * m, sw = 0;                                                                       \
        if (rng == 0) rng = 1;                                                                          \
        for (int j = 0; j < p; j++) {                                                                   \
            s[j * c_out + c] = rng / levels[j] * nonzero[j];                                            \
            sw = sw + theta[j * c_out + c] * s[j * c_out + c];                                          \
        }                                                                                               \
        for (int64_t i = 0; i < k; i++) out[i] = 0;                                                     \
        for (int j = skip; j < p; j++) {                                                                \
            T sj = s[j * c_out + c], tj = theta[j * c_out + c], uj = upper[j];                          \
            _Pragma("omp simd")                                                                         \
            for (int64_t i = 0; i < k; i++) out[i] = out[i] + tj * (MIN(RINT(wc[i] / sj), uj) * sj);    \
        }                                                                                               \
        T sb = s_a * sw;                                                                                \
        T qc = fabs(sb) > atol ? RINT(b[c] / sb) : (T)0;                                                \
        s_w[c] = sw;                                                                                    \
        qb[c] = qc;                                                                                     \
        b_eff[c] = qc * sb;                                                                             \
    }                                                                                                   \
}                                                                                                       \
                                                                                                        \
/* Gradients of params_fwd: from g_w (C, K) and g_b (C) to grad_w (C, K), grad_b (C), grad_theta (P, C)  \
 * (each may be NULL) and grad_sa (one value). */                                                        \
void params_bwd_##SFX(const T *g_w, const T *g_b, const T *w, const T *theta, T s_a, const T *upper,   \
                      const T *s, const T *s_w, const T *qb, int64_t c_out, int64_t k, int p, int skip,  \
                      T atol, T *grad_w, T *grad_b, T *grad_theta, T *grad_sa, int nt) {                \
    double sa = 0.0;                                                                                    \
    _Pragma("omp parallel for num_threads((c_out * k * p >= PAR_MIN) ? nt : 1) schedule(static) reduction(+ : sa)") \
    for (int64_t c = 0; c < c_out; c++) {                                                               \
        const T *gc = g_w + c * k, *wc = w + c * k;                                                     \
        T g_sb = g_b[c] * qb[c];                                                                        \
        if (grad_w) {                                                                                   \
            T tsum = 0;                                                                                 \
            for (int j = 0; j < p; j++) tsum = tsum + theta[j * c_out + c];                             \
            _Pragma("omp simd")                                                                         \
            for (int64_t i = 0; i < k; i++) grad_w[c * k + i] = gc[i] * tsum;                           \
        }                                                                                               \
        if (grad_b) grad_b[c] = fabs(s_a * s_w[c]) > atol ? g_b[c] : (T)0;                              \
        /* the 0-bit rows apart: a condition around the dot loop keeps GCC from vectorising it */         \
        for (int j = 0; grad_theta && j < skip; j++)                                                    \
            grad_theta[j * c_out + c] = (T)((double)(g_sb * s_a * s[j * c_out + c]) + 0.0);             \
        for (int j = skip; grad_theta && j < p; j++) {                                                  \
            T sj = s[j * c_out + c], uj = upper[j];                                                     \
            double dot = 0.0;                                                                           \
            _Pragma("omp simd reduction(+ : dot)")                                                      \
            for (int64_t i = 0; i < k; i++) dot += (double)gc[i] * (MIN(RINT(wc[i] / sj), uj) * sj);    \
            grad_theta[j * c_out + c] = (T)((double)(g_sb * s_a * sj) + dot);                          \
        }                                                                                               \
        sa += (double)g_sb * s_w[c];                                                                    \
    }                                                                                                   \
    *grad_sa = (T)sa;                                                                                   \
}                                                                                                       \
                                                                                                        \
/* Every layer of a network in one call: row l of `tab` holds layer l's arguments of params_fwd (NET_FWD \
 * entries: pointers and integers as int64; s_a by pointer, one value), of params_bwd (NET_BWD entries). */\
void net_params_fwd_##SFX(int n, const int64_t *tab, T atol, int nt) {                                 \
    for (int l = 0; l < n; l++) {                                                                       \
        const int64_t *a = tab + l * NET_FWD;                                                           \
        params_fwd_##SFX((const T *)a[0], (const T *)a[1], (const T *)a[2], *(const T *)a[3],          \
                         (const T *)a[4], (const T *)a[5], (const T *)a[6], a[7], a[8], (int)a[9],       \
                         (int)a[10], atol, (T *)a[11], (T *)a[12], (T *)a[13], (T *)a[14], (T *)a[15], nt); \
    }                                                                                                   \
}                                                                                                       \
                                                                                                        \
void net_params_bwd_##SFX(int n, const int64_t *tab, T atol, int nt) {                                 \
    for (int l = 0; l < n; l++) {                                                                       \
        const int64_t *a = tab + l * NET_BWD;                                                           \
        params_bwd_##SFX((const T *)a[0], (const T *)a[1], (const T *)a[2], (const T *)a[3],           \
                         *(const T *)a[4], (const T *)a[5], (const T *)a[6], (const T *)a[7],           \
                         (const T *)a[8], a[9], a[10], (int)a[11], (int)a[12], atol, (T *)a[13],         \
                         (T *)a[14], (T *)a[15], (T *)a[16], nt);                                       \
    }                                                                                                   \
}

/* one precision per library (-DJPQ_F32 or -DJPQ_F64): each compiles in half the time of both */
#ifdef JPQ_F32
DEFINE(float, f32, floorf, rintf, fmaf)
#endif
#ifdef JPQ_F64
DEFINE(double, f64, floor, rint, fma)
#endif
