"""The event log: decisions and rewards, the join rules that turn rewards into labels, the rounds
evaluation reads, import and export, datasets and pruning. Imports decide, model and the leaves.
"""
