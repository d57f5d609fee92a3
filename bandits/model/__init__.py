"""Policies and their models: settings and overrides, exploration rules, row diversity, model versions
and what is served. Imports the leaves only.
"""
