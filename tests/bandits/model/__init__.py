"""Tests of bandits/model/: policy settings, exploration rules, typed rewards."""
