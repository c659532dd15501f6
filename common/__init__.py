"""The few helpers every app shares (as healthchecks' hc/lib), so config/ is only wiring.

Nothing here imports an app or config/: env knobs (`tunables`), the page threads (`threadlanes`).
Staff checks are still `config.staff` (moving them is left for after the security work)."""
