/*
 * examples/xgboost/credit_data.h -- the data set of the XGBoost example,
 * generated deterministically (splitmix64): loan applicants with eight
 * features and whether they defaulted, drawn from a known risk function
 * with noise. Shared by the trainer and nothing else: the plugin only
 * reads model files.
 */
#ifndef CREDIT_DATA_H
#define CREDIT_DATA_H

#include <math.h>
#include <stdint.h>

#define CREDIT_NFEAT 8

/* Feature order of every row (and of the plugin's "features" input). */
static const char *const credit_features[CREDIT_NFEAT] = {
    "age",         "income_k",      "debt_ratio",  "credit_lines",
    "late_payments", "years_employed", "loan_k",   "has_mortgage",
};

static inline uint64_t credit_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static inline double credit_uniform(uint64_t *s)
{
    return (double)(credit_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* One applicant into `x` (CREDIT_NFEAT floats), and whether they
 * defaulted (the label, drawn from the risk). */
static inline int credit_row(uint64_t *s, float *x)
{
    const double age = 21 + 50 * credit_uniform(s);
    const double income = 18 + 160 * credit_uniform(s) * credit_uniform(s); /* k$ a year */
    const double debt = 0.8 * credit_uniform(s);
    const double lines = floor(12 * credit_uniform(s));
    const double late = floor(6 * credit_uniform(s) * credit_uniform(s));
    const double employed = floor((age - 20) * credit_uniform(s));
    const double loan = 5 + 95 * credit_uniform(s); /* k$ */
    const double mortgage = credit_uniform(s) < 0.4 ? 1 : 0;
    const double z = -1.2 + 3.2 * debt + 0.55 * late + 1.6 * (loan / income) - 0.025 * employed -
                     0.012 * (age - 40) - 0.3 * mortgage + 0.04 * fabs(lines - 5);
    const double risk = 1 / (1 + exp(-z));
    const float row[CREDIT_NFEAT] = {(float)age,  (float)income, (float)debt,     (float)lines,
                                     (float)late, (float)employed, (float)loan,   (float)mortgage};
    for (int i = 0; i < CREDIT_NFEAT; i++)
        x[i] = row[i];
    return credit_uniform(s) < risk;
}

#endif /* CREDIT_DATA_H */
