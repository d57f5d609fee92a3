"""Decisions and learning: VW examples, policies, exploration, the event log and the learner."""
