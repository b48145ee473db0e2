"""gpsandbox: a Greenplum-7-compatible sandbox cluster of PostgreSQL 15 servers
for the gpops.greenplum tests and demo (see docs/sandbox.md)."""
from .cluster import Sandbox, SandboxError
from . import scenarios

__all__ = ["Sandbox", "SandboxError", "scenarios"]
