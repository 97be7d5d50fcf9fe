"""Function tables of PromQL and MetricsQL, from their sources.

PromQL: github.com/prometheus/prometheus, `promql/parser/functions.go` (the `Functions` map), `promql/parser/lex.go`
(aggregation keywords) and `promql/parser/parse.go` (`checkAST`), read at commit
d15adb9ad7e5d9fbde3a9a8f30200593a5a14d86 (main, 2026-08-21; its `Functions` map is the one of tag v3.14.0), with
every tag v2.0.0 ... v3.14.0 compared for names and signatures: only `holt_winters` was ever removed (renamed
`double_exponential_smoothing` in v3.0.0) and no signature ever changed; v2.42.0 is
225c61122d88b01d1f0eaaee0e05b6f3e0567ac0.

MetricsQL: github.com/VictoriaMetrics/metricsql, `rollup.go` (`rollupFuncs`), `transform.go` (`transformFuncs`),
`aggr.go` (`aggrFuncs`), `binary_op.go`, at tag v0.87.0 (commit cc09923df4a1f8048b7ca59d41720e2a855af7dd); the same
lists as the maps in github.com/VictoriaMetrics/VictoriaMetrics `app/vmselect/promql/{rollup,transform,aggr}.go` and
its vendored metricsql v0.87.3, at commit b7ef6cc3ed35c607e053a8b7755fc3b896a10eaa (v1.150.0-25). `METRICSQL_SINCE`
compares those maps with tag v1.79.5 (commit 3282829e30edc843509fbe6c222f556393e48afa) and every later tag.
"""

from __future__ import annotations

# PromQL value types
SCALAR, VECTOR, MATRIX, STRING = "scalar", "instant vector", "range vector", "string"

# name -> (argument types, how many trailing arguments are optional (-1: the last one repeats any number of times),
# return type)
# From Prometheus' Functions map: Variadic 0 -> 0 optional; Variadic 1 -> the last argument is optional;
# Variadic -1 -> the last argument repeats (at least len(types) - 1 arguments, no upper bound).
# Prometheus' own rule (parse.go checkAST) for Variadic n > 0 is: at least len(ArgTypes) - 1 and at most
# len(ArgTypes) - 1 + n arguments, extra ones typed as the last ArgType. For n = 1 that is "the last one is
# optional"; the only n > 1 is histogram_quantiles (ArgTypes of 4, Variadic 9: 3 to 12 arguments), written here with
# its last type repeated so that "the last n are optional" gives the same bounds.
# Experimental functions need --enable-feature=promql-experimental-functions (Prometheus >= 2.49).
PROMQL_FUNCTIONS: dict[str, tuple[tuple[str, ...], int, str]] = {
    "abs": ((VECTOR,), 0, VECTOR),
    "absent": ((VECTOR,), 0, VECTOR),
    "absent_over_time": ((MATRIX,), 0, VECTOR),  # since v2.16
    "acos": ((VECTOR,), 0, VECTOR),  # since v2.31
    "acosh": ((VECTOR,), 0, VECTOR),  # since v2.31
    "asin": ((VECTOR,), 0, VECTOR),  # since v2.31
    "asinh": ((VECTOR,), 0, VECTOR),  # since v2.31
    "atan": ((VECTOR,), 0, VECTOR),  # since v2.31
    "atanh": ((VECTOR,), 0, VECTOR),  # since v2.31
    "avg_over_time": ((MATRIX,), 0, VECTOR),
    "ceil": ((VECTOR,), 0, VECTOR),
    "changes": ((MATRIX,), 0, VECTOR),
    "clamp": ((VECTOR, SCALAR, SCALAR), 0, VECTOR),  # since v2.26
    "clamp_max": ((VECTOR, SCALAR), 0, VECTOR),
    "clamp_min": ((VECTOR, SCALAR), 0, VECTOR),
    "cos": ((VECTOR,), 0, VECTOR),  # since v2.31
    "cosh": ((VECTOR,), 0, VECTOR),  # since v2.31
    "count_over_time": ((MATRIX,), 0, VECTOR),
    "day_of_month": ((VECTOR,), 1, VECTOR),  # v defaults to vector(time())
    "day_of_week": ((VECTOR,), 1, VECTOR),  # v defaults to vector(time())
    "day_of_year": ((VECTOR,), 1, VECTOR),  # since v2.36; v defaults to vector(time())
    "days_in_month": ((VECTOR,), 1, VECTOR),  # v defaults to vector(time())
    "deg": ((VECTOR,), 0, VECTOR),  # since v2.31
    "delta": ((MATRIX,), 0, VECTOR),
    "deriv": ((MATRIX,), 0, VECTOR),
    "double_exponential_smoothing": ((MATRIX, SCALAR, SCALAR), 0, VECTOR),  # experimental; v3.0 name of holt_winters
    "end": ((), 0, SCALAR),  # experimental, since v3.12 (before: only as `@ end()`)
    "exp": ((VECTOR,), 0, VECTOR),
    "first_over_time": ((MATRIX,), 0, VECTOR),  # since v3.7; experimental in v3.7-v3.13
    "floor": ((VECTOR,), 0, VECTOR),
    "histogram_avg": ((VECTOR,), 0, VECTOR),  # since v2.51
    "histogram_count": ((VECTOR,), 0, VECTOR),  # since v2.40
    "histogram_fraction": ((SCALAR, SCALAR, VECTOR), 0, VECTOR),  # since v2.40
    "histogram_quantile": ((SCALAR, VECTOR), 0, VECTOR),
    # experimental, since v3.11; Prometheus: ArgTypes (VECTOR, STRING, SCALAR, SCALAR), Variadic 9 -> 3 to 12 args
    "histogram_quantiles": ((VECTOR, STRING, SCALAR) + (SCALAR,) * 9, 9, VECTOR),
    "histogram_stddev": ((VECTOR,), 0, VECTOR),  # since v2.47
    "histogram_stdvar": ((VECTOR,), 0, VECTOR),  # since v2.47
    "histogram_sum": ((VECTOR,), 0, VECTOR),  # since v2.40
    "holt_winters": ((MATRIX, SCALAR, SCALAR), 0, VECTOR),  # v2.x only (removed in v3.0); not experimental
    "hour": ((VECTOR,), 1, VECTOR),  # v defaults to vector(time())
    "idelta": ((MATRIX,), 0, VECTOR),
    "increase": ((MATRIX,), 0, VECTOR),
    "info": ((VECTOR, VECTOR), 1, VECTOR),  # experimental, since v2.55; 2nd arg: a label-matchers-only selector
    "irate": ((MATRIX,), 0, VECTOR),
    "label_join": ((VECTOR, STRING, STRING, STRING), -1, VECTOR),
    "label_replace": ((VECTOR, STRING, STRING, STRING, STRING), 0, VECTOR),
    "last_over_time": ((MATRIX,), 0, VECTOR),  # since v2.26
    "ln": ((VECTOR,), 0, VECTOR),
    "log10": ((VECTOR,), 0, VECTOR),
    "log2": ((VECTOR,), 0, VECTOR),
    "mad_over_time": ((MATRIX,), 0, VECTOR),  # experimental, since v2.49
    "max_of": ((SCALAR, SCALAR), 0, SCALAR),  # experimental, since v3.13
    "max_over_time": ((MATRIX,), 0, VECTOR),
    "min_of": ((SCALAR, SCALAR), 0, SCALAR),  # experimental, since v3.13
    "min_over_time": ((MATRIX,), 0, VECTOR),
    "minute": ((VECTOR,), 1, VECTOR),  # v defaults to vector(time())
    "month": ((VECTOR,), 1, VECTOR),  # v defaults to vector(time())
    "pi": ((), 0, SCALAR),  # since v2.31
    "predict_linear": ((MATRIX, SCALAR), 0, VECTOR),
    "present_over_time": ((MATRIX,), 0, VECTOR),  # since v2.29
    "quantile_over_time": ((SCALAR, MATRIX), 0, VECTOR),
    "rad": ((VECTOR,), 0, VECTOR),  # since v2.31
    "range": ((), 0, SCALAR),  # experimental, since v3.12
    "rate": ((MATRIX,), 0, VECTOR),
    "resets": ((MATRIX,), 0, VECTOR),
    "round": ((VECTOR, SCALAR), 1, VECTOR),  # to_nearest defaults to 1
    "scalar": ((VECTOR,), 0, SCALAR),
    "sgn": ((VECTOR,), 0, VECTOR),  # since v2.26
    "sin": ((VECTOR,), 0, VECTOR),  # since v2.31
    "sinh": ((VECTOR,), 0, VECTOR),  # since v2.31
    "sort": ((VECTOR,), 0, VECTOR),
    "sort_by_label": ((VECTOR, STRING), -1, VECTOR),  # experimental, since v2.49
    "sort_by_label_desc": ((VECTOR, STRING), -1, VECTOR),  # experimental, since v2.49
    "sort_desc": ((VECTOR,), 0, VECTOR),
    "sqrt": ((VECTOR,), 0, VECTOR),
    "start": ((), 0, SCALAR),  # experimental, since v3.12 (before: only as `@ start()`)
    "start_timestamp": ((VECTOR,), 0, VECTOR),  # experimental, since v3.14
    "stddev_over_time": ((MATRIX,), 0, VECTOR),
    "stdvar_over_time": ((MATRIX,), 0, VECTOR),
    "step": ((), 0, SCALAR),  # experimental, since v3.12
    "sum_over_time": ((MATRIX,), 0, VECTOR),
    "tan": ((VECTOR,), 0, VECTOR),  # since v2.31
    "tanh": ((VECTOR,), 0, VECTOR),  # since v2.31
    "time": ((), 0, SCALAR),
    "timestamp": ((VECTOR,), 0, VECTOR),
    "ts_of_first_over_time": ((MATRIX,), 0, VECTOR),  # experimental, since v3.7
    "ts_of_last_over_time": ((MATRIX,), 0, VECTOR),  # experimental, since v3.5
    "ts_of_max_over_time": ((MATRIX,), 0, VECTOR),  # experimental, since v3.5
    "ts_of_min_over_time": ((MATRIX,), 0, VECTOR),  # experimental, since v3.5
    "vector": ((SCALAR,), 0, VECTOR),
    "year": ((VECTOR,), 1, VECTOR),  # v defaults to vector(time())
}

# Functions marked Experimental in the newest Prometheus (first_over_time was experimental in v3.7-v3.13).
PROMQL_EXPERIMENTAL: frozenset[str] = frozenset({
    "double_exponential_smoothing", "end", "histogram_quantiles", "info", "mad_over_time", "max_of", "min_of",
    "range", "sort_by_label", "sort_by_label_desc", "start", "start_timestamp", "step", "ts_of_first_over_time",
    "ts_of_last_over_time", "ts_of_max_over_time", "ts_of_min_over_time",
    "limitk", "limit_ratio",  # aggregations
})

# aggregation name -> type of its parameter (None: no parameter), e.g. "topk": SCALAR, "count_values": STRING,
# "sum": None
# Aggregation keywords are case-insensitive in Prometheus (`SUM(x)` is valid); function names are not.
PROMQL_AGGREGATIONS: dict[str, str | None] = {
    "avg": None,
    "bottomk": SCALAR,
    "count": None,
    "count_values": STRING,
    "group": None,  # since v2.20
    "limit_ratio": SCALAR,  # experimental, since v2.54
    "limitk": SCALAR,  # experimental, since v2.54
    "max": None,
    "min": None,
    "quantile": SCALAR,
    "stddev": None,
    "stdvar": None,
    "sum": None,
    "topk": SCALAR,
}

# Names (functions and aggregations) that Prometheus v2.42.0 does not know, with the release that added them;
# promtool 2.42 rejects exactly these (checked). Despite its name PROMQL_SINCE_3 also holds the late 2.x additions.
PROMQL_SINCE: dict[str, str] = {
    "double_exponential_smoothing": "v3.0.0",
    "end": "v3.12.0",
    "first_over_time": "v3.7.0",
    "histogram_avg": "v2.51.0",
    "histogram_quantiles": "v3.11.0",
    "histogram_stddev": "v2.47.0",
    "histogram_stdvar": "v2.47.0",
    "info": "v2.55.0",
    "limit_ratio": "v2.54.0",
    "limitk": "v2.54.0",
    "mad_over_time": "v2.49.0",
    "max_of": "v3.13.0",
    "min_of": "v3.13.0",
    "range": "v3.12.0",
    "sort_by_label": "v2.49.0",
    "sort_by_label_desc": "v2.49.0",
    "start": "v3.12.0",
    "start_timestamp": "v3.14.0",
    "step": "v3.12.0",
    "ts_of_first_over_time": "v3.7.0",
    "ts_of_last_over_time": "v3.5.0",
    "ts_of_max_over_time": "v3.5.0",
    "ts_of_min_over_time": "v3.5.0",
}
PROMQL_SINCE_3: frozenset[str] = frozenset(PROMQL_SINCE)
# Names that a later Prometheus removed: name -> the first release without it.
PROMQL_REMOVED: dict[str, str] = {"holt_winters": "v3.0.0"}

# MetricsQL (lower-case names; MetricsQL function names are case-insensitive)
# take a range vector; `rate(x)` has an implicit window
METRICSQL_ROLLUPS: frozenset[str] = frozenset({
    "absent_over_time", "aggr_over_time", "ascent_over_time", "avg_over_time", "changes", "changes_prometheus",
    "count_eq_over_time", "count_gt_over_time", "count_le_over_time", "count_ne_over_time", "count_over_time",
    "count_values_over_time", "decreases_over_time", "default_rollup", "delta", "delta_prometheus", "deriv",
    "deriv_fast", "descent_over_time", "distinct_over_time", "duration_over_time", "first_over_time",
    "geomean_over_time", "histogram_over_time", "hoeffding_bound_lower", "hoeffding_bound_upper",
    "holt_winters", "idelta", "ideriv", "increase", "increase_prometheus", "increase_pure",
    "increases_over_time", "integrate", "irate", "lag", "last_over_time", "lifetime", "mad_over_time",
    "max_over_time", "median_over_time", "min_over_time", "mode_over_time", "outlier_iqr_over_time",
    "predict_linear", "present_over_time", "quantile_over_time", "quantiles_over_time", "range_over_time",
    "rate", "rate_over_sum", "rate_prometheus", "resets", "rollup", "rollup_candlestick", "rollup_delta",
    "rollup_deriv", "rollup_increase", "rollup_rate", "rollup_scrape_interval", "scrape_interval",
    "share_eq_over_time", "share_gt_over_time", "share_le_over_time", "stale_samples_over_time",
    "stddev_over_time", "stdvar_over_time", "sum2_over_time", "sum_eq_over_time", "sum_gt_over_time",
    "sum_le_over_time", "sum_over_time", "tfirst_over_time", "timestamp", "timestamp_with_name",
    "tlast_change_over_time", "tlast_over_time", "tmax_over_time", "tmin_over_time", "zscore_over_time",
})
# Rollups whose range-vector argument is not the first (metricsql GetRollupArgIdx); -1: the last argument.
METRICSQL_ROLLUP_ARG: dict[str, int] = {
    "aggr_over_time": 1,  # aggr_over_time(("min_over_time", "max_over_time"), m[d])
    "count_values_over_time": 1,  # count_values_over_time("label", m[d])
    "hoeffding_bound_lower": 1,  # hoeffding_bound_lower(phi, m[d])
    "hoeffding_bound_upper": 1,
    "quantile_over_time": 1,  # quantile_over_time(phi, m[d])
    "quantiles_over_time": -1,  # quantiles_over_time("phiLabel", phi1, ..., phiN, m[d])
}
# incl. label_* functions; metricsql also accepts an empty name, `(a, b)`, as a synonym of union(a, b)
METRICSQL_TRANSFORMS: frozenset[str] = frozenset({
    "abs", "absent", "acos", "acosh", "asin", "asinh", "atan", "atanh", "bitmap_and", "bitmap_or", "bitmap_xor",
    "buckets_limit", "ceil", "clamp", "clamp_max", "clamp_min", "cos", "cosh", "day_of_month", "day_of_week",
    "day_of_year", "days_in_month", "deg", "drop_common_labels", "drop_empty_series", "end", "exp", "floor",
    "histogram_avg", "histogram_fraction", "histogram_quantile", "histogram_quantiles", "histogram_share",
    "histogram_stddev", "histogram_stdvar", "hour", "interpolate", "keep_last_value", "keep_next_value",
    "label_copy", "label_del", "label_graphite_group", "label_join", "label_keep", "label_lowercase",
    "label_map", "label_match", "label_mismatch", "label_move", "label_replace", "label_set", "label_transform",
    "label_uppercase", "label_value", "labels_equal", "limit_offset", "ln", "log10", "log2", "minute", "month",
    "now", "pi", "prometheus_buckets", "rad", "rand", "rand_exponential", "rand_normal", "range_avg",
    "range_first", "range_last", "range_linear_regression", "range_mad", "range_max", "range_min",
    "range_normalize", "range_quantile", "range_stddev", "range_stdvar", "range_sum", "range_trim_outliers",
    "range_trim_spikes", "range_trim_zscore", "range_zscore", "remove_resets", "round", "running_avg",
    "running_max", "running_min", "running_sum", "scalar", "sgn", "sin", "sinh", "smooth_exponential", "sort",
    "sort_by_label", "sort_by_label_desc", "sort_by_label_numeric", "sort_by_label_numeric_desc", "sort_desc",
    "sqrt", "start", "step", "tan", "tanh", "time", "timezone_offset", "union", "vector", "year",
})
# Every MetricsQL aggregation takes `by (...)`/`without (...)` and `limit N`; those without a leading parameter
# accept several series arguments, e.g. sum(a, b), aggregated together.
METRICSQL_AGGREGATIONS: frozenset[str] = frozenset({
    "any", "avg", "bottomk", "bottomk_avg", "bottomk_last", "bottomk_max", "bottomk_median", "bottomk_min",
    "count", "count_values", "distinct", "geomean", "group", "histogram", "limitk", "mad", "max", "median",
    "min", "mode", "outliers_iqr", "outliers_mad", "outliersk", "quantile", "quantiles", "share", "stddev",
    "stdvar", "sum", "sum2", "topk", "topk_avg", "topk_last", "topk_max", "topk_median", "topk_min", "zscore",
})
# Aggregations with leading parameters (app/vmselect/promql/aggr.go): name -> types of the parameters before the one
# series argument. quantiles' SCALAR repeats: quantiles("phiLabel", phi1, ..., phiN, q). topk_avg(k, q, "other_label")
# and the other topk_*/bottomk_* take an optional trailing STRING after the series; outliers_iqr(q) takes exactly one
# argument.
METRICSQL_AGGREGATION_PARAMS: dict[str, tuple[str, ...]] = {
    "bottomk": (SCALAR,),
    "bottomk_avg": (SCALAR,),
    "bottomk_last": (SCALAR,),
    "bottomk_max": (SCALAR,),
    "bottomk_median": (SCALAR,),
    "bottomk_min": (SCALAR,),
    "count_values": (STRING,),
    "limitk": (SCALAR,),
    "outliers_mad": (SCALAR,),
    "outliersk": (SCALAR,),
    "quantile": (SCALAR,),
    "quantiles": (STRING, SCALAR),
    "topk": (SCALAR,),
    "topk_avg": (SCALAR,),
    "topk_last": (SCALAR,),
    "topk_max": (SCALAR,),
    "topk_median": (SCALAR,),
    "topk_min": (SCALAR,),
}
# Built-in WITH templates of metricsql (parser.go getDefaultWithArgExprs), usable as functions without a WITH:
# name -> definition. Unlike real functions, their names are case-sensitive (`ALIAS(x, "y")` is `unknown func`).
# `median_over_time(m) = quantile_over_time(0.5, m)` was one of them until VictoriaMetrics v1.94.0 made it a rollup.
METRICSQL_TEMPLATES: dict[str, str] = {
    "alias": 'alias(q, name) = label_set(q, "__name__", name)',
    "range_median": "range_median(q) = range_quantile(0.5, q)",
    "ru": "ru(freev, maxv) = clamp_min(maxv - clamp_min(freev, 0), 0) / clamp_min(maxv, 0) * 100",
    "ttf": "ttf(freev) = smooth_exponential(clamp_max(clamp_max(-freev, 0) / clamp_max(deriv_fast(freev), 0), "
    "365*24*3600), clamp_max(step()/300, 1))",
}
# every name a MetricsQL query may call (the built-in templates included)
METRICSQL_FUNCTIONS: frozenset[str] = (
    METRICSQL_ROLLUPS | METRICSQL_TRANSFORMS | METRICSQL_AGGREGATIONS | frozenset(METRICSQL_TEMPLATES)
)

# MetricsQL names that VictoriaMetrics v1.79.5 (Debian's) rejects with `unknown func` (checked against a running
# v1.79.5), with the first release whose app/vmselect/promql maps hold them. median_over_time is not here: v1.79.5
# knows it as a built-in template (lower-case only).
METRICSQL_SINCE: dict[str, str] = {
    "count_values_over_time": "v1.99.0",  # also in LTS v1.97.3
    "day_of_year": "v1.96.0",
    "drop_empty_series": "v1.95.0",
    "histogram_fraction": "v1.137.0",
    "labels_equal": "v1.95.0",
    "mad_over_time": "v1.88.0",
    "outlier_iqr_over_time": "v1.95.0",
    "outliers_iqr": "v1.95.0",
    "range_linear_regression": "v1.84.0",
    "range_mad": "v1.88.0",
    "range_normalize": "v1.84.0",
    "range_stddev": "v1.84.0",
    "range_stdvar": "v1.84.0",
    "range_trim_outliers": "v1.88.0",
    "range_trim_spikes": "v1.85.0",
    "range_trim_zscore": "v1.88.0",
    "range_zscore": "v1.88.0",
    "rate_prometheus": "v1.120.0",
    "share": "v1.88.0",
    "share_eq_over_time": "v1.93.0",
    "sort_by_label_numeric": "v1.82.0",
    "sort_by_label_numeric_desc": "v1.82.0",
    "sum_eq_over_time": "v1.98.0",
    "sum_gt_over_time": "v1.98.0",
    "sum_le_over_time": "v1.98.0",
}

# MetricsQL rollup functions whose argument count vmselect checks exactly (newRollupFuncOneArg, ...TwoArgs,
# ...OneOrTwoArgs in app/vmselect/promql/rollup.go at b7ef6cc3ed35c607e053a8b7755fc3b896a10eaa): name -> (least, most).
METRICSQL_ROLLUP_ARITY: dict[str, tuple[int, int]] = {
    "absent_over_time": (1, 1), "aggr_over_time": (2, 2), "ascent_over_time": (1, 1), "avg_over_time": (1, 1),
    "changes": (1, 1), "changes_prometheus": (1, 1), "count_over_time": (1, 1), "decreases_over_time": (1, 1),
    "default_rollup": (1, 1), "delta": (1, 1), "delta_prometheus": (1, 1), "deriv": (1, 1), "deriv_fast": (1, 1),
    "descent_over_time": (1, 1), "distinct_over_time": (1, 1), "first_over_time": (1, 1), "geomean_over_time": (1, 1),
    "histogram_over_time": (1, 1), "idelta": (1, 1), "ideriv": (1, 1), "increase": (1, 1),
    "increase_prometheus": (1, 1), "increase_pure": (1, 1), "increases_over_time": (1, 1), "integrate": (1, 1),
    "irate": (1, 1), "lag": (1, 1), "last_over_time": (1, 1), "lifetime": (1, 1), "mad_over_time": (1, 1),
    "max_over_time": (1, 1), "median_over_time": (1, 1), "min_over_time": (1, 1), "mode_over_time": (1, 1),
    "outlier_iqr_over_time": (1, 1), "present_over_time": (1, 1), "range_over_time": (1, 1), "rate": (1, 1),
    "rate_over_sum": (1, 1), "rate_prometheus": (1, 1), "resets": (1, 1), "rollup": (1, 2),
    "rollup_candlestick": (1, 2), "rollup_delta": (1, 2), "rollup_deriv": (1, 2), "rollup_increase": (1, 2),
    "rollup_rate": (1, 2), "rollup_scrape_interval": (1, 2), "scrape_interval": (1, 1),
    "stale_samples_over_time": (1, 1), "stddev_over_time": (1, 1), "stdvar_over_time": (1, 1),
    "sum2_over_time": (1, 1), "sum_over_time": (1, 1), "tfirst_over_time": (1, 1), "timestamp": (1, 1),
    "timestamp_with_name": (1, 1), "tlast_change_over_time": (1, 1), "tlast_over_time": (1, 1),
    "tmax_over_time": (1, 1), "tmin_over_time": (1, 1), "zscore_over_time": (1, 1),
}
