"""Off-policy evaluation: the estimators (a leaf), candidates scored on the log, background runs,
applying a winner, automatic optimization, apprentice evidence. Reads the log and the model.
"""
