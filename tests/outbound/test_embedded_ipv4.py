"""Issue 24, low: IPv4 carried inside IPv6 is judged as that IPv4 address (mapped, 6to4, Teredo)."""

from __future__ import annotations

import pytest

from outbound.policy import address_allowed


@pytest.mark.parametrize("address", [
    "::ffff:127.0.0.1", "::ffff:169.254.169.254",
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
    "2002:a00:5::1",  # 6to4 of 10.0.0.5
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "2001:0:4136:e378:8000:63bf:f5ff:fffa",  # Teredo, client 10.0.0.5
    "2001:0:a00:5:8000:63bf:a3ff:fde5",  # Teredo, server 10.0.0.5
])
def test_embedded_private_ipv4_is_refused(address):
    assert address_allowed(address, allow_loopback=False) is False


@pytest.mark.parametrize("address", ["2002:5db8:d70e::1", "93.184.215.14", "2606:4700:4700::1111"])
def test_public_addresses_still_pass(address):
    assert address_allowed(address, allow_loopback=False) is True
