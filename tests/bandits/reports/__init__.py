"""Tests of bandits/reports/: explanations, exposure, the live view."""
