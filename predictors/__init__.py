"""Latency and energy predictors: features, estimators, evaluation, cross-device transfer."""
