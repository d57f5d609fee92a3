"""Tests of bandits/log/: export, import, backups and pruning."""
