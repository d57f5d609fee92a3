"""Tests of bandits/, one folder per layer package."""
