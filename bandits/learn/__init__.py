"""Learning from the log: the learner's step over due impressions, and warm starts from a dataset.
Imports the log and below.
"""
