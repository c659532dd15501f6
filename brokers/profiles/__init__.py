"""One module per built-in broker; each exposes `PROFILE` (the sandbox: `build_profile()`).

brokers/registry.py lists them explicitly. Values and their sources come from
../shared/brokers.md; every module keeps the doc link beside the value it supports.
"""
