/*
 * watch/stats.c -- the statistics behind drift: quantile bin edges, PSI,
 * the two-sample Kolmogorov-Smirnov statistic and its p-value, and the
 * chi-square test of homogeneity of two label distributions.
 */
#include <math.h>
#include <stdlib.h>

#include "watch/watch_internal.h"

/* Share given to an empty bin, so that PSI stays finite (the usual
 * convention). */
#define PSI_EPS 1e-4

size_t deja__stats_edges(const double *sorted, size_t n, size_t bins, double *edges)
{
    size_t ne = 0;

    if (n == 0 || bins < 2)
        return 0;
    for (size_t k = 1; k < bins; k++) {
        const double e = sorted[(size_t)floor((double)k * (double)(n - 1) / (double)bins)];

        /* Equal edges would make empty bins: keep distinct ones only. */
        if (ne == 0 || e > edges[ne - 1])
            edges[ne++] = e;
    }
    /* An edge at the maximum leaves the last bin empty in the baseline. */
    while (ne > 0 && edges[ne - 1] >= sorted[n - 1])
        ne--;
    return ne;
}

size_t deja__stats_bin(const double *edges, size_t nedges, double v)
{
    size_t lo = 0, hi = nedges;

    /* The first edge >= v: bin i holds (edges[i-1], edges[i]]. */
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;

        if (edges[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

double deja__stats_psi(const uint64_t *base, const uint64_t *cur, size_t nbins)
{
    uint64_t nb = 0, nc = 0;
    double psi = 0.0;

    for (size_t i = 0; i < nbins; i++) {
        nb += base[i];
        nc += cur[i];
    }
    if (nb == 0 || nc == 0)
        return NAN;
    for (size_t i = 0; i < nbins; i++) {
        double b = (double)base[i] / (double)nb, c = (double)cur[i] / (double)nc;

        if (b < PSI_EPS)
            b = PSI_EPS;
        if (c < PSI_EPS)
            c = PSI_EPS;
        psi += (c - b) * log(c / b);
    }
    return psi;
}

double deja__stats_ks(const double *a, size_t na, const double *b, size_t nb)
{
    size_t i = 0, j = 0;
    double d = 0.0;

    if (na == 0 || nb == 0)
        return NAN;
    while (i < na && j < nb) {
        /* Step past every copy of the smaller value on both sides. */
        const double x = a[i] <= b[j] ? a[i] : b[j];

        while (i < na && a[i] <= x)
            i++;
        while (j < nb && b[j] <= x)
            j++;
        const double diff = fabs((double)i / (double)na - (double)j / (double)nb);
        if (diff > d)
            d = diff;
    }
    return d;
}

double deja__stats_ks_p(double d, size_t na, size_t nb)
{
    const double en = sqrt((double)na * (double)nb / (double)(na + nb));
    const double lambda = en * d;
    double sum = 0.0, sign = 1.0, prev = 0.0;

    if (na == 0 || nb == 0 || isnan(d))
        return NAN;
    if (lambda < 1e-3)
        return 1.0;
    /* Q_KS(lambda) = 2 sum_{j>=1} (-1)^(j-1) exp(-2 j^2 lambda^2). */
    for (int j = 1; j <= 100; j++) {
        const double term = sign * 2.0 * exp(-2.0 * (double)j * (double)j * lambda * lambda);

        sum += term;
        if (fabs(term) <= 1e-10 * fabs(sum) || fabs(term) <= 1e-12 * prev)
            return sum < 0 ? 0 : sum > 1 ? 1 : sum;
        sign = -sign;
        prev = fabs(term);
    }
    return 1.0; /* no convergence: lambda tiny */
}

/* The upper regularized incomplete gamma function Q(a, x), by its series
 * (x < a + 1) or its continued fraction (Numerical Recipes, 6.2). */
static double gamma_q(double a, double x)
{
    const double gln = lgamma(a);

    if (x <= 0.0)
        return 1.0;
    if (x < a + 1.0) {
        double ap = a, sum = 1.0 / a, del = sum;

        for (int n = 0; n < 1000; n++) {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if (fabs(del) < fabs(sum) * 1e-15)
                break;
        }
        return 1.0 - sum * exp(-x + a * log(x) - gln);
    }
    double b = x + 1.0 - a, c = 1.0 / 1e-300, d = 1.0 / b, h = d;

    for (int i = 1; i < 1000; i++) {
        const double an = -(double)i * ((double)i - a);

        b += 2.0;
        d = an * d + b;
        if (fabs(d) < 1e-300)
            d = 1e-300;
        c = b + an / c;
        if (fabs(c) < 1e-300)
            c = 1e-300;
        d = 1.0 / d;
        const double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < 1e-15)
            break;
    }
    return exp(-x + a * log(x) - gln) * h;
}

double deja__stats_chi2(const uint64_t *base, const uint64_t *cur, size_t k, double *p)
{
    uint64_t nb = 0, nc = 0;
    double chi2 = 0.0;
    size_t used = 0;

    *p = NAN;
    for (size_t i = 0; i < k; i++) {
        nb += base[i];
        nc += cur[i];
    }
    if (nb == 0 || nc == 0)
        return NAN;
    for (size_t i = 0; i < k; i++) {
        const double col = (double)(base[i] + cur[i]);
        const double eb = col * (double)nb / (double)(nb + nc);
        const double ec = col * (double)nc / (double)(nb + nc);

        if (col == 0)
            continue;
        used++;
        chi2 += ((double)base[i] - eb) * ((double)base[i] - eb) / eb;
        chi2 += ((double)cur[i] - ec) * ((double)cur[i] - ec) / ec;
    }
    if (used < 2) {
        *p = 1.0;
        return 0.0;
    }
    *p = gamma_q((double)(used - 1) / 2.0, chi2 / 2.0);
    return chi2;
}
