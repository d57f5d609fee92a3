"""Tests of bandits/vw/: the VW text format and the fast path."""
