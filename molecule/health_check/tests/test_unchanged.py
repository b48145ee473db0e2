"""health_check.yml in check mode changed nothing on any host: the same server
configuration files and postmasters, and on the coordinator's host the same
catalog, sync replication settings and blocking-chain sessions (its holder was
not terminated), as fingerprinted in prepare."""
from gphosts import ALL_HOSTS, BASE_DIR, read_text, state

testinfra_hosts = ALL_HOSTS


def test_host_unchanged(host):
    now = host.check_output("%s/fingerprint.sh %s %s" % (BASE_DIR, BASE_DIR, state(host)["base_port"]))
    assert now == read_text(host, "fingerprint.before").strip()
