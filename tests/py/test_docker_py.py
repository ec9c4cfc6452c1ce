"""docker-py against wharf: every network and volume method of docker-py's low-level API
and of its models, with the argument combinations docker-py documents, checked the way
docker-py's own integration tests check them against dockerd.

Run by tests/tests/docker_py.rs with DOCKER_HOST set to a wharfd's socket and WHARF set to
the wharf CLI. A sandbox stands where docker-py's tests start a container.

Left out, as they need what wharf does not have:
- creating, starting or exec-ing containers (create_container, network_mode=, links and
  nslookup in a container): wharf runs no containers; sandboxes take their place here;
- overlay networks made through swarm (attachable overlay, ingress): wharf is never in a
  swarm, and an ingress network is refused (checked below);
- duplicate network names with check_duplicate=False: Docker has refused them on every API
  version since 1.44, and so does wharf on every version (checked below);
- legacy container links (the `links` argument): they make names resolvable in a
  container's /etc/hosts, which sandboxes do not have.
"""
import os
import subprocess
import uuid

import docker
import pytest
from docker.types import IPAMConfig, IPAMPool

WHARF = os.environ["WHARF"]
HOST = os.environ["DOCKER_HOST"]


def random_name():
    return "wpytest_" + uuid.uuid4().hex[:12]


def wharf(*args):
    out = subprocess.run([WHARF, "-H", HOST, *args], capture_output=True, text=True)
    assert out.returncode == 0, f"wharf {' '.join(args)}: {out.stderr}"
    return out.stdout


@pytest.fixture
def api():
    client = docker.APIClient(base_url=HOST)
    networks, volumes = [], []
    client.tmp_networks, client.tmp_volumes = networks, volumes
    yield client
    for n in networks:
        try:
            client.remove_network(n)
        except docker.errors.APIError:
            pass
    for v in volumes:
        try:
            client.remove_volume(v, force=True)
        except docker.errors.APIError:
            pass
    # As docker-py's network tests end: wharf answers as a node outside any swarm.
    assert client.leave_swarm(force=True) is True
    client.close()


@pytest.fixture
def client():
    c = docker.DockerClient(base_url=HOST)
    yield c
    c.close()


@pytest.fixture
def sandbox():
    name = random_name()
    wharf("sandbox", "create", name)
    yield name
    wharf("sandbox", "rm", "--force", name)


def ipv6_ipam():
    return IPAMConfig(
        driver="default",
        pool_configs=[IPAMPool(subnet="2001:389::1/64", iprange="2001:389::0/96", gateway="2001:389::ffff")],
    )


def create_network(api, *args, **kwargs):
    name = random_name()
    net_id = api.create_network(name, *args, **kwargs)["Id"]
    api.tmp_networks.append(net_id)
    return name, net_id


# Networks, low-level API.


def test_list_networks(api):
    name, net_id = create_network(api)
    assert net_id in [n["Id"] for n in api.networks()]
    assert [n["Id"] for n in api.networks(names=[name])] == [net_id]
    assert [n["Id"] for n in api.networks(ids=[net_id[:8]])] == [net_id]
    assert [n["Id"] for n in api.networks(filters={"label": "nope"})] == []
    builtin = {n["Name"] for n in api.networks(filters={"type": "builtin"})}
    assert {"bridge", "host", "none"} <= builtin and name not in builtin
    with pytest.raises(docker.errors.APIError) as e:
        api.networks(filters={"type": "weird"})
    assert e.value.response.status_code == 400


def test_inspect_network(api):
    name, net_id = create_network(api)
    net = api.inspect_network(net_id)
    assert list(net)[:2] == ["Name", "Id"]
    assert (net["Id"], net["Name"], net["Driver"], net["Scope"]) == (net_id, name, "bridge", "local")
    assert net["IPAM"]["Driver"] == "default"
    assert api.inspect_network(net_id, verbose=True)["Id"] == net_id
    assert api.inspect_network(name, scope="local")["Id"] == net_id
    with pytest.raises(docker.errors.NotFound):
        api.inspect_network(random_name())


def test_create_network_with_ipam_config(api):
    _, net_id = create_network(
        api,
        ipam=IPAMConfig(
            driver="default",
            pool_configs=[
                IPAMPool(
                    subnet="172.28.0.0/16",
                    iprange="172.28.5.0/24",
                    gateway="172.28.5.254",
                    aux_addresses={"a": "172.28.1.5", "b": "172.28.1.6", "c": "172.28.1.7"},
                )
            ],
        ),
    )
    ipam = api.inspect_network(net_id)["IPAM"]
    assert ipam.pop("Options", None) is None
    assert ipam["Driver"] == "default"
    assert ipam["Config"] == [
        {
            "Subnet": "172.28.0.0/16",
            "IPRange": "172.28.5.0/24",
            "Gateway": "172.28.5.254",
            "AuxiliaryAddresses": {"a": "172.28.1.5", "b": "172.28.1.6", "c": "172.28.1.7"},
        }
    ]


def test_create_network_with_ipam_options(api):
    _, net_id = create_network(api, ipam=IPAMConfig(options={"opt": "1"}))
    assert api.inspect_network(net_id)["IPAM"]["Options"] == {"opt": "1"}


def test_create_network_with_driver_options(api):
    bridge = "wpb" + uuid.uuid4().hex[:8]
    _, net_id = create_network(api, driver="bridge", options={"com.docker.network.bridge.name": bridge})
    assert api.inspect_network(net_id)["Options"] == {"com.docker.network.bridge.name": bridge}
    with pytest.raises(TypeError):
        api.create_network(random_name(), options=["not", "a", "dict"])


def test_create_network_with_a_space_in_its_name(api):
    name = random_name() + " with space"
    net_id = api.create_network(name)["Id"]
    api.tmp_networks.append(net_id)
    assert api.inspect_network(net_id)["Name"] == name


def test_create_network_with_host_driver_fails(api):
    with pytest.raises(docker.errors.APIError):
        api.create_network(random_name(), driver="host")


def test_create_network_with_unknown_driver_is_not_found(api):
    with pytest.raises(docker.errors.NotFound):
        api.create_network(random_name(), driver="this-driver-does-not-exist")


def test_remove_network(api):
    name, net_id = create_network(api)
    assert name in [n["Name"] for n in api.networks()]
    api.remove_network(net_id)
    assert name not in [n["Name"] for n in api.networks()]
    with pytest.raises(docker.errors.NotFound):
        api.remove_network(net_id)


def test_connect_and_disconnect_sandbox(api, sandbox):
    _, net_id = create_network(api)
    assert not api.inspect_network(net_id).get("Containers")
    api.connect_container_to_network(sandbox, net_id)
    sandbox_id = api.inspect_container(sandbox)["Id"]
    assert list(api.inspect_network(net_id)["Containers"]) == [sandbox_id]
    with pytest.raises(docker.errors.APIError):
        api.connect_container_to_network(sandbox, net_id)
    api.disconnect_container_from_network(sandbox, net_id)
    assert not api.inspect_network(net_id).get("Containers")
    with pytest.raises(docker.errors.APIError):
        api.disconnect_container_from_network(sandbox, net_id)


def test_connect_and_force_disconnect_sandbox(api, sandbox):
    _, net_id = create_network(api)
    api.connect_container_to_network(sandbox, net_id)
    api.disconnect_container_from_network(sandbox, net_id, True)
    assert not api.inspect_network(net_id).get("Containers")
    with pytest.raises(docker.errors.APIError):
        api.disconnect_container_from_network(sandbox, net_id, force=True)


def test_connect_with_aliases_and_mac_address(api, sandbox):
    name, net_id = create_network(api)
    api.connect_container_to_network(sandbox, net_id, aliases=["foo", "bar"], mac_address="02:42:ac:11:00:99")
    settings = api.inspect_container(sandbox)["NetworkSettings"]["Networks"][name]
    assert "foo" in settings["Aliases"] and "bar" in settings["Aliases"]
    assert settings["MacAddress"] == "02:42:ac:11:00:99"


def test_connect_with_ipv4_address(api, sandbox):
    name, net_id = create_network(
        api,
        ipam=IPAMConfig(
            driver="default",
            pool_configs=[IPAMPool(subnet="172.29.0.0/16", iprange="172.29.5.0/24", gateway="172.29.5.254")],
        ),
    )
    api.connect_container_to_network(sandbox, name, ipv4_address="172.29.5.24")
    settings = api.inspect_container(sandbox)["NetworkSettings"]["Networks"][name]
    assert settings["IPAMConfig"]["IPv4Address"] == "172.29.5.24"
    assert settings["IPAddress"] == "172.29.5.24"


def test_connect_with_ipv6_address(api, sandbox):
    name, net_id = create_network(
        api,
        enable_ipv6=True,
        ipam=ipv6_ipam(),
    )
    api.connect_container_to_network(sandbox, name, ipv6_address="2001:389::f00d")
    settings = api.inspect_container(sandbox)["NetworkSettings"]["Networks"][name]
    assert settings["IPAMConfig"]["IPv6Address"] == "2001:389::f00d"


def test_create_internal_networks(api):
    _, net_id = create_network(api, internal=True)
    assert api.inspect_network(net_id)["Internal"] is True


def test_create_attachable_network(api):
    _, net_id = create_network(api, attachable=True)
    assert api.inspect_network(net_id)["Attachable"] is True


def test_create_network_with_scope(api):
    _, net_id = create_network(api, scope="local")
    assert api.inspect_network(net_id)["Scope"] == "local"


def test_create_ingress_network_is_refused(api):
    with pytest.raises(docker.errors.APIError) as e:
        api.create_network(random_name(), ingress=True)
    assert e.value.response.status_code == 400


def test_create_network_with_labels(api):
    _, net_id = create_network(api, labels={"com.docker.py.test": "label"})
    assert api.inspect_network(net_id)["Labels"] == {"com.docker.py.test": "label"}


def test_create_network_with_labels_wrong_type(api):
    with pytest.raises(TypeError):
        create_network(api, labels=["com.docker.py.test=label"])


def test_create_network_ipv6_enabled(api):
    _, net_id = create_network(
        api,
        enable_ipv6=True,
        ipam=ipv6_ipam(),
    )
    assert api.inspect_network(net_id)["EnableIPv6"] is True


def test_create_check_duplicate(api):
    name, _ = create_network(api)
    for check in (True, False, None):
        with pytest.raises(docker.errors.APIError) as e:
            api.create_network(name, check_duplicate=check)
        assert e.value.response.status_code == 409


def test_prune_networks(api, sandbox):
    name, _ = create_network(api)
    used, used_id = create_network(api)
    labelled, _ = create_network(api, labels={"keep": "yes"})
    api.connect_container_to_network(sandbox, used_id)
    assert api.prune_networks(filters={"until": "1h"})["NetworksDeleted"] in ([], None)
    result = api.prune_networks(filters={"label!": "keep=yes"})
    assert name in result["NetworksDeleted"]
    assert used not in result["NetworksDeleted"] and labelled not in result["NetworksDeleted"]
    result = api.prune_networks(filters={"label": "keep=yes", "until": "4000000000"})
    assert result["NetworksDeleted"] == [labelled]
    api.disconnect_container_from_network(sandbox, used_id)


# Volumes, low-level API.


def test_create_volume(api):
    name = random_name()
    api.tmp_volumes.append(name)
    result = api.create_volume(name)
    assert result["Name"] == name and result["Driver"] == "local"
    assert "UsageData" not in result


def test_create_volume_with_driver_opts_and_labels(api):
    name = random_name()
    api.tmp_volumes.append(name)
    result = api.create_volume(
        name, driver="local", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}, labels={"k": "v"}
    )
    assert result["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    assert result["Labels"] == {"k": "v"}
    with pytest.raises(TypeError):
        api.create_volume(random_name(), driver_opts="type=tmpfs")


def test_create_volume_invalid_driver(api):
    with pytest.raises(docker.errors.APIError) as e:
        api.create_volume(random_name(), "this-plugin-does-not-exist")
    assert e.value.response.status_code in (400, 404)


def test_list_volumes(api):
    name = random_name()
    api.tmp_volumes.append(name)
    info = api.create_volume(name, labels={"via": name})
    assert info in api.volumes()["Volumes"]
    assert [v["Name"] for v in api.volumes(filters={"label": f"via={name}"})["Volumes"]] == [name]
    assert [v["Name"] for v in api.volumes(filters={"name": name})["Volumes"]] == [name]
    assert name in [v["Name"] for v in api.volumes(filters={"dangling": True})["Volumes"]]
    assert name in [v["Name"] for v in api.volumes(filters={"driver": "local"})["Volumes"]]
    assert name not in [v["Name"] for v in api.volumes(filters={"dangling": False})["Volumes"]]


def test_inspect_volume(api):
    name = random_name()
    api.tmp_volumes.append(name)
    info = api.create_volume(name)
    assert api.inspect_volume(name) == info


def test_inspect_nonexistent_volume(api):
    with pytest.raises(docker.errors.NotFound):
        api.inspect_volume(random_name())


def test_remove_volume(api):
    name = random_name()
    api.create_volume(name)
    api.remove_volume(name)
    with pytest.raises(docker.errors.NotFound):
        api.inspect_volume(name)


def test_force_remove_volume(api):
    name = random_name()
    api.create_volume(name)
    api.remove_volume(name, force=True)
    # docker-py 7.1 drops `force` on the way (it never reaches the query), so this is a plain
    # removal of an absent volume. The docker CLI's `volume rm -f` is tested in volumes.rs.
    with pytest.raises(docker.errors.NotFound):
        api.remove_volume(name, force=True)


def test_remove_of_a_volume_in_use_is_refused(api):
    name = random_name()
    api.tmp_volumes.append(name)
    api.create_volume(name)
    wharf("volume", "mount", name, "--id", "c1")
    with pytest.raises(docker.errors.APIError) as e:
        api.remove_volume(name, force=True)
    assert e.value.response.status_code == 409
    assert api.inspect_volume(name)["Name"] == name
    wharf("volume", "unmount", name, "--id", "c1")


def test_remove_nonexistent_volume(api):
    with pytest.raises(docker.errors.NotFound):
        api.remove_volume(random_name())


def test_prune_volumes(api):
    anonymous = api.create_volume()["Name"]
    named = random_name()
    api.tmp_volumes += [anonymous, named]
    api.create_volume(named)
    result = api.prune_volumes()
    assert anonymous in result["VolumesDeleted"] and named not in result["VolumesDeleted"]
    assert "SpaceReclaimed" in result
    result = api.prune_volumes(filters={"all": True, "label": "nope"})
    assert result["VolumesDeleted"] in ([], None)
    result = api.prune_volumes(filters={"all": True, "label!": "nope"})
    assert named in result["VolumesDeleted"]


def test_prune_volumes_through_api_1_41_takes_named_volumes():
    old = docker.APIClient(base_url=HOST, version="1.41")
    named = random_name()
    old.create_volume(named)
    assert named in old.prune_volumes()["VolumesDeleted"]
    old.close()


# Models.


def test_network_collection_create_get_list_remove(client):
    name = random_name()
    network = client.networks.create(name, labels={"foo": "bar"})
    assert network.name == name
    assert network.attrs["Labels"]["foo"] == "bar"
    assert client.networks.get(network.id).name == name
    assert network.id in [n.id for n in client.networks.list()]
    assert network.id not in [n.id for n in client.networks.list(ids=["fdhjklfdfdshjkfds"])]
    assert network.id in [n.id for n in client.networks.list(ids=[network.id])]
    assert network.id not in [n.id for n in client.networks.list(names=["fdshjklfdsjhkl"])]
    assert network.id in [n.id for n in client.networks.list(names=[name])]
    assert network.id in [n.id for n in client.networks.list(filters={"label": "foo=bar"})]
    network.remove()
    assert network.id not in [n.id for n in client.networks.list()]


def test_network_connect_disconnect(client, sandbox):
    network = client.networks.create(random_name())
    try:
        assert network.containers == []
        network.connect(sandbox, aliases=["web"])
        sandbox_container = client.containers.get(sandbox)
        assert client.networks.get(network.id).containers == [sandbox_container]
        assert [c for n in client.networks.list(ids=[network.id], greedy=True) for c in n.containers] == [
            sandbox_container
        ]
        network.reload()
        assert len(network.attrs["Containers"]) == 1
        network.disconnect(sandbox, force=True)
        network.reload()
        assert network.containers == []
        assert client.networks.get(network.id).containers == []
    finally:
        network.remove()


def test_network_collection_prune(client):
    name = random_name()
    client.networks.create(name)
    assert name in client.networks.prune(filters={"label!": "keep"})["NetworksDeleted"]


def test_volume_collection_create_get_list_remove_prune(client):
    volume = client.volumes.create("wpytest_1", driver="local", labels={"labelkey": "labelvalue"})
    assert volume.id and volume.name == "wpytest_1"
    assert volume.attrs["Labels"] == {"labelkey": "labelvalue"}
    assert client.volumes.get(volume.id).name == "wpytest_1"
    assert volume in client.volumes.list()
    assert volume in client.volumes.list(filters={"name": "wpytest_"})
    assert volume not in client.volumes.list(filters={"name": "foobar"})
    volume.reload()
    volume.remove(force=True)
    assert volume not in client.volumes.list()
    anonymous = client.volumes.create()
    assert anonymous.name in client.volumes.prune()["VolumesDeleted"]


def test_connect_with_link_local_ips_and_driver_opt(api, sandbox):
    name, net_id = create_network(api)
    api.connect_container_to_network(
        sandbox, net_id, link_local_ips=["169.254.7.7"], driver_opt={"com.example.opt": "1"}
    )
    settings = api.inspect_container(sandbox)["NetworkSettings"]["Networks"][name]
    assert settings["IPAMConfig"]["LinkLocalIPs"] == ["169.254.7.7"]
    assert settings["DriverOpts"] == {"com.example.opt": "1"}


def test_events_and_df(api):
    import time

    since = int(time.time()) - 1
    name, net_id = create_network(api)
    volume = random_name()
    api.tmp_volumes.append(volume)
    api.create_volume(volume)
    api.remove_network(net_id)
    until = int(time.time()) + 1
    seen = [
        (e["Type"], e["Action"], e["Actor"]["Attributes"].get("name", e["Actor"]["ID"]))
        for e in api.events(since=since, until=until, decode=True)
    ]
    assert ("network", "create", name) in seen and ("network", "destroy", name) in seen, seen
    assert ("volume", "create", volume) in seen, seen
    only = list(api.events(since=since, until=until, filters={"type": "volume"}, decode=True))
    assert {e["Type"] for e in only} == {"volume"}, only
    usage = api.df()
    assert volume in [v["Name"] for v in usage["Volumes"]]
    assert all(v["UsageData"]["RefCount"] == 0 for v in usage["Volumes"])


def test_info_and_version(api):
    info = api.info()
    assert info["Swarm"]["LocalNodeState"] == "inactive"
    assert info["ID"] and info["DockerRootDir"] and info["MemTotal"] > 0
    version = api.version()
    assert version["ApiVersion"] == "1.50" and version["GoVersion"].startswith("rustc")
