"""Tests of bandits/evaluate/: estimators, candidates, apply, optimization."""
