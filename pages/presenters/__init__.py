"""View-models for the connection pages: every phrase a person reads is decided here
("last successful check 2 min ago", "refreshes in 12 min", "retrying 2 of 5 in 40 s"),
so templates only lay them out and tests can check the words without a browser.
"""
