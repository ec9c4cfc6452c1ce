"""A docker-py session against wharf's socket: networks and volumes, as a tool would use them.

Usage: python3 docker_py_session.py unix:///path/to/wharf.sock
Exits non-zero with a message on the first mismatch.
"""
import sys

import docker
from docker.types import IPAMConfig, IPAMPool


def main(base_url):
    client = docker.DockerClient(base_url=base_url)
    assert client.ping()
    assert client.version()["ApiVersion"]

    ipam = IPAMConfig(pool_configs=[IPAMPool(subnet="10.44.0.0/24", gateway="10.44.0.1")])
    net = client.networks.create("pynet", driver="bridge", ipam=ipam, labels={"via": "docker-py"})
    assert net.attrs["IPAM"]["Config"][0]["Subnet"] == "10.44.0.0/24", net.attrs
    found = client.networks.list(filters={"label": "via=docker-py"})
    assert [n.name for n in found] == ["pynet"], found
    assert {n.name for n in client.networks.list()} >= {"pynet", "bridge", "host", "none"}
    net.reload()
    assert net.attrs["Labels"] == {"via": "docker-py"}
    try:
        client.networks.create("pynet", driver="bridge")
        raise AssertionError("a duplicate name was accepted")
    except docker.errors.APIError as e:
        assert e.status_code == 409, e

    client.api.connect_container_to_network("pysb", net.id, ipv4_address="10.44.0.7")
    net.reload()
    addresses = [c["IPv4Address"] for c in net.attrs["Containers"].values()]
    assert addresses == ["10.44.0.7/24"], addresses
    client.api.disconnect_container_from_network("pysb", net.id)
    net.remove()
    try:
        client.networks.get("pynet")
        raise AssertionError("the network is still there")
    except docker.errors.NotFound:
        pass

    vol = client.volumes.create("pyvol", labels={"via": "docker-py"})
    assert vol.attrs["Driver"] == "local" and vol.attrs["Mountpoint"], vol.attrs
    assert [v.name for v in client.volumes.list(filters={"label": "via=docker-py"})] == ["pyvol"]
    vol.remove()
    pruned = client.volumes.prune()
    assert "SpaceReclaimed" in pruned, pruned
    print("docker-py session ok")


if __name__ == "__main__":
    main(sys.argv[1])
