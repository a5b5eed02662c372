"""Replication rules: RSE expressions, placement, the evaluator and operator interventions."""
