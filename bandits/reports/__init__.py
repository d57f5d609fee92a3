"""What operators read: live counts, the dashboard's queries, exposure fairness, explanations of a
decision. Reads the log and the model.
"""
