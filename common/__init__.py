"""The few helpers every app shares (as healthchecks' hc/lib), so config/ is only wiring.

Nothing here imports an app or config/: env knobs (`tunables`), the page threads (`threadlanes`),
the busy answer (`busy`), staff second-factor checks (`staff`: allauth's records only)."""
