"""A run's own records and how they are undone: the ledger, reverts, guardrails and the janitor's rules."""
