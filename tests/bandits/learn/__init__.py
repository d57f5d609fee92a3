"""Tests of bandits/learn/: the learner, learning, warm start."""
