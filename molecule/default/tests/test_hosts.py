"""Every host runs its own instances, placed as Greenplum's group mirroring places
them: the primary of each segment host is mirrored on the other one."""
from gphosts import ALL_HOSTS, my_nodes, postmaster_pid, state

testinfra_hosts = ALL_HOSTS

PLACEMENT = {"cdw": {"coordinator"}, "sdw1": {"primary0", "mirror1"},
             "sdw2": {"primary1", "mirror0"}}


def test_nodes_placed_by_group_mirroring(host):
    name = host.check_output("hostname")
    assert {n["name"] for n in my_nodes(host)} == PLACEMENT[name]


def test_own_postmasters_run_here_and_no_others(host):
    mine = my_nodes(host)
    for node in mine:
        assert postmaster_pid(host, node["datadir"]), "%s does not run" % node["name"]
    for node in state(host)["nodes"]:
        if node not in mine:
            assert not host.file(node["datadir"]).exists, "%s has data here" % node["name"]


def test_mirrors_stream_across_hosts(host):
    kinds = {n["role"] for n in my_nodes(host)}
    procs = " ".join(p.args for p in host.process.filter(user="gpadmin"))
    if "m" in kinds:
        assert "walreceiver" in procs
        assert "walsender" in procs  # this host's primary feeds its mirror on the other host
