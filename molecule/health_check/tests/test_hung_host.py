"""The diagnosis ran while segment host sdw2 was frozen (`podman pause`: its
servers accept TCP connections and never answer). It finished within its
timeouts and named the hung host."""
import json

from gphosts import COORDINATOR_HOST, read_json

testinfra_hosts = [COORDINATOR_HOST]
# gp_connect_timeout 3 s and gp_statement_timeout 10 s (molecule.yml): the dispatched
# query and the per-node utility-mode queries are each bounded by them.
BOUND_S = 60


def test_finished_within_timeouts(host):
    assert read_json(host, "health.json")["elapsed_s"] < BOUND_S


def test_names_the_hung_host(host):
    health = read_json(host, "health.json")
    unreachable = [f for f in health["findings"] if f["class"] == "node_unreachable"]
    assert unreachable, health["summary"]
    assert "sdw2" in json.dumps(unreachable)
    assert "sdw1" not in json.dumps(unreachable)


def test_blocking_chain_still_reported(host):
    health = read_json(host, "health.json")
    assert "blocking_chain" in [f["class"] for f in health["findings"]], health["summary"]
