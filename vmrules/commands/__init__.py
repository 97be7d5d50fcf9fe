"""The commands, each one library function: apply (and backfill), plan, test, query."""
