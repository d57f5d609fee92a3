"""Tests of bandits/decide/: exact probabilities, diversity, reproducible draws."""
