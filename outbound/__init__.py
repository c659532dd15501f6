"""One policy for every request brokerlink makes to a URL someone typed (see outbound.policy)."""
