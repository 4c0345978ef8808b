"""Watching the models at work: pure figures over frames of decisions, outcomes, cases and claims."""
