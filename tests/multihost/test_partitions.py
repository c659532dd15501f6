import pytest

pytestmark = pytest.mark.slow


def test_smoke(hosts):
    world = hosts.world = hosts.call("world_setup", 6)
    print(world)
    print(hosts.call("person_page"))
    print(hosts.call("system_page"))
    print(hosts.call("metrics"))
