"""The run report: reading every step's events and records, phases, statistics, and the files it writes."""
