/* Multiresolution hash-grid encoding on the CPU: forward (features, optionally their derivative in
 * the points) and backward into the table, for headveil.neural_fields.encodings (backend "native").
 *
 * Plain C99 + POSIX threads, no Python or torch headers: it is compiled on first use by
 * headveil.neural_fields.native and called through ctypes on contiguous float32 buffers.
 *
 * Layout (the torch backend's, so tables and checkpoints are shared):
 *   x        (N, 3) points in the box frame, row-major; u = clamp((x − lo) / ext, 0, 1) per axis
 *            (lo, ext: 3 floats each) is the point in [0, 1]^3 the grid reads.
 *   table    flat; level l is an (F, size_l) block starting at F * off_l.
 *   out      (L * F, N) features, feature-major (row l * F + f).
 *   g_x      (N, 3) point gradient, in x (zero along an axis where x lies outside the box, as for
 *            a clamp).
 *   grad_out (L * F, N) upstream gradient of `out`; g_table like `table`, accumulated into.
 * Corner c = 4 b_x + 2 b_y + b_z; dense levels index x + y (res+1) + z (res+1)^2, hashed levels
 * (x * 1 ^ y * 2654435761 ^ z * 805459861) mod size. Arithmetic is float32 in the torch kernel's order.
 *
 * Threads split the work by level: every level costs the same per point, each level's block of the
 * table is written by one thread only (the backward needs no atomics and sums in point order, so
 * its result does not depend on the thread count), and one level's block (≤ 1 MiB at the default
 * 2^17 rows × 2 features) stays in that core's cache while all points stream past it.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#define P1 2654435761ULL
#define P2 805459861ULL

enum pass { FORWARD, TABLE_GRAD, POINT_GRAD };

typedef struct {
    enum pass pass;
    const float *u; /* (N, 3) points in [0, 1]^3 */
    int64_t n;
    const float *table;
    const float *grad_out;
    float *g_table;
    int32_t n_levels, n_features;
    const int64_t *res, *size, *dense, *off;
    float *out;
    float *g_u; /* (N, 3) point gradient this thread accumulates into */
    int32_t first, step; /* levels first, first + step, ... */
} job_t;

#define BLOCK 128

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(HV_NO_CLONES)
/* One build for every x86-64 machine: the loader picks the AVX2 version where the CPU has it. */
#define HV_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define HV_CLONES
#endif

/* Corners of points i0 .. i0 + m - 1 (m ≤ BLOCK) at one level: table rows idx[c][b], trilinear
 * weights w[c][b] and per-axis weights aw[k][0|1][b] = (1 − frac, frac). Hashed levels have a
 * power-of-two table (the encoding guarantees it), so the hash is taken mod 2^32 and masked: the
 * low bits of a product do not depend on the high ones. */
static inline void corners(const float *u, int64_t i0, int m, float r, uint32_t res, uint32_t size, int dense,
                           uint32_t idx[8][BLOCK], float w[8][BLOCK], float aw[3][2][BLOCK]) {
    uint32_t lo[3][BLOCK];
    for (int k = 0; k < 3; ++k)
        for (int b = 0; b < m; ++b) {
            float p = u[3 * (i0 + b) + k] * r;
            int32_t ip = (int32_t)p;          /* truncation; floor for p ≥ 0 */
            if ((float)ip > p) ip -= 1;       /* floor below 0 */
            if (ip < 0) ip = 0;
            if (ip > (int32_t)res - 1) ip = (int32_t)res - 1;
            float fr = p - (float)ip;
            aw[k][0][b] = 1.0f - fr;
            aw[k][1][b] = fr;
            lo[k][b] = (uint32_t)ip;
        }
    if (dense) {
        const uint32_t s1 = res + 1, s2 = (res + 1) * (res + 1);
        for (int c = 0; c < 8; ++c) {
            const uint32_t bx = c >> 2, by = (c >> 1) & 1, bz = c & 1;
            for (int b = 0; b < m; ++b) idx[c][b] = (lo[0][b] + bx) + (lo[1][b] + by) * s1 + (lo[2][b] + bz) * s2;
        }
    } else {
        const uint32_t mask = size - 1, p1 = (uint32_t)P1, p2 = (uint32_t)P2;
        for (int c = 0; c < 8; ++c) {
            const uint32_t bx = c >> 2, by = (c >> 1) & 1, bz = c & 1;
            for (int b = 0; b < m; ++b)
                idx[c][b] = ((lo[0][b] + bx) ^ ((lo[1][b] + by) * p1) ^ ((lo[2][b] + bz) * p2)) & mask;
        }
    }
    for (int c = 0; c < 8; ++c) {
        const int bx = c >> 2, by = (c >> 1) & 1, bz = c & 1;
        for (int b = 0; b < m; ++b) w[c][b] = (aw[0][bx][b] * aw[1][by][b]) * aw[2][bz][b];
    }
}

/* One level of one pass, point block by point block:
 *   FORWARD     out[l F + f] = Σ_c w_c t_f[idx_c]
 *   TABLE_GRAD  t_f[idx_c] += w_c grad_out[l F + f]            (g_table)
 *   POINT_GRAD  g_u += grad_out[l F + f] · ∂feature/∂u          (the analytic trilinear derivative) */
HV_CLONES static void level_pass(const job_t *j, int lvl, enum pass pass) {
    const int64_t n = j->n;
    const uint32_t res = (uint32_t)j->res[lvl], size = (uint32_t)j->size[lvl];
    const int F = j->n_features, dense = (int)j->dense[lvl];
    const float r = (float)res;
    const int64_t off = F * j->off[lvl];
    uint32_t idx[8][BLOCK];
    float w[8][BLOCK], aw[3][2][BLOCK], v[8][BLOCK];
    for (int64_t i0 = 0; i0 < n; i0 += BLOCK) {
        const int m = n - i0 < BLOCK ? (int)(n - i0) : BLOCK;
        corners(j->u, i0, m, r, res, size, dense, idx, w, aw);
        for (int f = 0; f < F; ++f) {
            const int64_t row = (int64_t)lvl * F + f;
            if (pass == TABLE_GRAD) {
                const float *g = j->grad_out + row * n + i0;
                float *t = j->g_table + off + (int64_t)f * size;
                for (int b = 0; b < m; ++b)
                    for (int c = 0; c < 8; ++c) t[idx[c][b]] += w[c][b] * g[b];
                continue;
            }
            const float *t = j->table + off + (int64_t)f * size;
            for (int c = 0; c < 8; ++c)
                for (int b = 0; b < m; ++b) v[c][b] = t[idx[c][b]];
            if (pass == FORWARD) {
                float *o = j->out + row * n + i0;
                for (int b = 0; b < m; ++b) {
                    float acc = 0.0f;
                    for (int c = 0; c < 8; ++c) acc += v[c][b] * w[c][b];
                    o[b] = acc;
                }
                continue;
            }
            const float *g = j->grad_out + row * n + i0;
            float *gu = j->g_u + 3 * i0;
            for (int b = 0; b < m; ++b) {
                float gx = 0.0f, gy = 0.0f, gz = 0.0f;
                for (int a = 0; a < 2; ++a)
                    for (int e = 0; e < 2; ++e) {
                        gx += (v[4 + 2 * a + e][b] - v[2 * a + e][b]) * ((aw[1][a][b] * aw[2][e][b]) * r);
                        gy += (v[4 * a + 2 + e][b] - v[4 * a + e][b]) * ((aw[0][a][b] * aw[2][e][b]) * r);
                        gz += (v[4 * a + 2 * e + 1][b] - v[4 * a + 2 * e][b]) * ((aw[0][a][b] * aw[1][e][b]) * r);
                    }
                gu[3 * b] += g[b] * gx;
                gu[3 * b + 1] += g[b] * gy;
                gu[3 * b + 2] += g[b] * gz;
            }
        }
    }
}

/* A thread's share of a pass: levels first, first + step, ... */
static void *run_levels(void *arg) {
    const job_t *j = (const job_t *)arg;
    for (int l = j->first; l < j->n_levels; l += j->step) level_pass(j, l, j->pass);
    return NULL;
}

/* Runs the job's pass over the levels on up to n_threads threads (the calling thread is one of them).
 * Returns 0, or -1 when a thread could not be started (the work is then done on this thread). */
static int parallel(job_t base, int32_t n_threads) {
    int nt = n_threads < 1 ? 1 : n_threads;
    if (nt > base.n_levels) nt = base.n_levels;
    if (nt > 64) nt = 64;
    job_t jobs[64];
    pthread_t tid[64];
    int started[64] = {0};
    int failed = 0;
    for (int t = 0; t < nt; ++t) {
        jobs[t] = base;
        jobs[t].first = t;
        jobs[t].step = nt;
    }
    /* The point gradient sums over levels: thread t > 0 fills its own zeroed (N, 3) buffer, and
     * the buffers are added in thread order, so a given thread count always gives the same sums. */
    float *partial = NULL;
    if (base.g_u && nt > 1) {
        partial = (float *)calloc((size_t)(nt - 1) * 3 * (size_t)(base.n > 0 ? base.n : 1), sizeof(float));
        if (!partial) nt = 1;
        for (int t = 0; t < nt; ++t) jobs[t].step = nt;
        for (int t = 1; t < nt; ++t) jobs[t].g_u = partial + (size_t)(t - 1) * 3 * (size_t)base.n;
    }
    for (int t = 1; t < nt; ++t) started[t] = pthread_create(&tid[t], NULL, run_levels, &jobs[t]) == 0;
    run_levels(&jobs[0]);
    for (int t = 1; t < nt; ++t) {
        if (started[t]) pthread_join(tid[t], NULL);
        else { run_levels(&jobs[t]); failed = 1; }
    }
    if (partial) {
        for (int t = 1; t < nt; ++t) {
            const float *src = jobs[t].g_u;
            for (int64_t i = 0; i < 3 * base.n; ++i) base.g_u[i] += src[i];
        }
        free(partial);
    }
    return failed ? -1 : 0;
}

/* u = clamp((x − lo) / ext, 0, 1) into a new (N, 3) buffer (NULL when out of memory); with
 * `scale`, also du/dx per point and axis (1 / ext inside the box, 0 where the clamp holds, as for
 * torch's clamp) into a second one. */
static float *normalise(const float *x, const float *lo, const float *ext, int64_t n, float **scale) {
    const size_t bytes = (size_t)(n > 0 ? n : 1) * 3 * sizeof(float); /* malloc(0) may be NULL */
    float *u = (float *)malloc(bytes);
    float *s = scale ? (float *)malloc(bytes) : NULL;
    if (!u || (scale && !s)) { free(u); free(s); return NULL; }
    for (int64_t i = 0; i < n; ++i)
        for (int k = 0; k < 3; ++k) {
            float q = (x[3 * i + k] - lo[k]) / ext[k];
            if (s) s[3 * i + k] = (q >= 0.0f && q <= 1.0f) ? 1.0f / ext[k] : 0.0f;
            u[3 * i + k] = q < 0.0f ? 0.0f : (q > 1.0f ? 1.0f : q);
        }
    if (scale) *scale = s;
    return u;
}

/* Normalises the points, runs its pass over the levels, and for the point gradient (j.g_u set) turns the
 * gradient in u into one in x. 0 on success, -1 when a thread could not be started (the result is
 * still complete: its share ran on the calling thread), -2 when out of memory (nothing written). */
static int run_pass(job_t j, const float *x, const float *lo, const float *ext, int32_t n_threads) {
    float *scale = NULL;
    float *u = normalise(x, lo, ext, j.n, j.g_u ? &scale : NULL);
    if (!u) return -2;
    j.u = u;
    int rc = parallel(j, n_threads);
    if (scale)
        for (int64_t i = 0; i < 3 * j.n; ++i) j.g_u[i] *= scale[i];
    free(u);
    free(scale);
    return rc;
}

/* Entry points (return codes of run_pass). */
int hv_hash_forward(const float *x, const float *lo, const float *ext, int64_t n, const float *table,
                    int32_t n_levels, int32_t n_features, const int64_t *res, const int64_t *size,
                    const int64_t *dense, const int64_t *off, float *out, int32_t n_threads) {
    job_t j = {FORWARD, NULL, n, table, NULL, NULL, n_levels, n_features, res, size, dense, off, out, NULL, 0, 1};
    return run_pass(j, x, lo, ext, n_threads);
}

/* g_table (like table), zeroed by the caller, receives the table gradient of grad_out. */
int hv_hash_backward(const float *x, const float *lo, const float *ext, int64_t n, const float *grad_out,
                     int32_t n_levels, int32_t n_features, const int64_t *res, const int64_t *size,
                     const int64_t *dense, const int64_t *off, float *g_table, int32_t n_threads) {
    job_t j = {TABLE_GRAD, NULL, n, NULL, grad_out, g_table, n_levels, n_features, res, size, dense, off, NULL, NULL, 0, 1};
    return run_pass(j, x, lo, ext, n_threads);
}

/* g_x (N, 3), zeroed by the caller, receives Σ_k grad_out_k ∂feature_k/∂x. */
int hv_hash_point_backward(const float *x, const float *lo, const float *ext, int64_t n, const float *table,
                           const float *grad_out, int32_t n_levels, int32_t n_features, const int64_t *res,
                           const int64_t *size, const int64_t *dense, const int64_t *off, float *g_x,
                           int32_t n_threads) {
    job_t j = {POINT_GRAD, NULL, n, table, grad_out, NULL, n_levels, n_features, res, size, dense, off, NULL, g_x, 0, 1};
    return run_pass(j, x, lo, ext, n_threads);
}

int hv_abi_version(void) { return 4; }
