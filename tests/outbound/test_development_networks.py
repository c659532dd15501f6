"""OUTBOUND_DEVELOPMENT_NETWORKS: test networks that count as loopback behind the development
switch (the multi-host tests' sandbox has a private address in their own namespaces)."""

import pytest

from outbound.policy import OutboundRefused, address_allowed, outbound_url_problem, url_target


def test_a_listed_network_counts_as_loopback_while_the_switch_is_on(settings):
    settings.OUTBOUND_ALLOW_LOOPBACK_HTTP = True
    settings.OUTBOUND_DEVELOPMENT_NETWORKS = ["10.213.0.0/16"]
    assert address_allowed("10.213.3.1")
    assert url_target("http://10.213.3.1:9100/oauth/token").host == "10.213.3.1"
    assert outbound_url_problem("http://10.213.3.1:9100/") is None
    # Only the listed network: other private ranges stay refused.
    assert not address_allowed("10.214.3.1")
    assert not address_allowed("192.168.1.1")
    with pytest.raises(OutboundRefused):
        url_target("http://10.214.3.1:9100/")


def test_the_list_changes_nothing_with_the_switch_off(settings):
    settings.OUTBOUND_ALLOW_LOOPBACK_HTTP = False
    settings.OUTBOUND_DEVELOPMENT_NETWORKS = ["10.213.0.0/16"]
    assert not address_allowed("10.213.3.1")
    with pytest.raises(OutboundRefused):
        url_target("http://10.213.3.1:9100/")
    assert outbound_url_problem("https://10.213.3.1/") is not None


def test_nothing_is_listed_by_default(settings):
    settings.OUTBOUND_ALLOW_LOOPBACK_HTTP = True
    assert not settings.OUTBOUND_DEVELOPMENT_NETWORKS
    assert not address_allowed("10.213.3.1")
