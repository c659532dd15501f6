"""One module per built-in broker; each exposes `PROFILE` (the sandbox: `build_profile()`).

brokers/registry.py lists them explicitly. Values and their sources come from
../shared/brokers.md; every module keeps the doc link beside the value it supports.
"""

from brokers.profile import BrokerProfile
from brokers.profiles import (
    alpaca,
    coinbase,
    questrade,
    sandbox,
    saxo,
    schwab,
    tastytrade,
    tradestation,
    tradier,
    upstox,
)

BUILTIN_PROFILES: tuple[BrokerProfile, ...] = (
    alpaca.PROFILE,
    schwab.PROFILE,
    tradestation.PROFILE,
    tradier.PROFILE,
    questrade.PROFILE,
    saxo.PROFILE,
    coinbase.PROFILE,
    tastytrade.PROFILE,
    upstox.PROFILE,
)
SANDBOX_SLUG = sandbox.SLUG
# Slugs a custom broker may not take.
RESERVED_SLUGS = frozenset({p.slug for p in BUILTIN_PROFILES} | {SANDBOX_SLUG})
