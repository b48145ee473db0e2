# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every gpops.greenplum module does first.

- ``gp_module(argument_spec, rules=None, needs_psycopg=True, **kwargs) -> AnsibleModule``:
  the module's options plus the shared connection options, check mode supported; fails
  with ``missing_required_lib`` when psycopg is missing (unless ``needs_psycopg`` is
  false) and with a message naming the option when any option is bad
  (``validation.check_params``; ``rules``: ``{option: validation.Number}`` for this
  module's own numeric options).
- ``local_module(argument_spec, rules=None, **kwargs) -> AnsibleModule``: the same for a
  module that does not connect (files, /proc, reports): validated options, check mode.
- ``require_privileges(module, needs, what, **result) -> privileges.Privileges``: at the
  start of a module, before anything is read or done: the login role's privileges on the
  coordinator; fails the module (``msg``: ``<what>: login_user X lacks <privilege> (<why>);
  nothing was done``, also in check mode) when one of ``needs`` (``privileges.NEEDS``)
  is missing, or when the coordinator cannot be reached.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import privileges
from ansible_collections.gpops.greenplum.plugins.module_utils.common import validation
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import (
    HAS_PSYCOPG, PSYCOPG_IMPORT_ERROR, GpConnectionError, classify_error, connect,
    connection_argument_spec)


def local_module(argument_spec, rules=None, **kwargs):
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **kwargs)
    validation.validate(module, rules)
    return module


def gp_module(argument_spec, rules=None, needs_psycopg=True, **kwargs):
    spec = connection_argument_spec()
    spec.update(argument_spec)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True, **kwargs)
    if needs_psycopg and not HAS_PSYCOPG:
        module.fail_json(msg=missing_required_lib("psycopg (version 3)"),
                         exception=PSYCOPG_IMPORT_ERROR)
    validation.validate(module, rules)
    return module


def require_privileges(module, needs, what, **result):
    try:
        conn = connect(module.params)
    except GpConnectionError as exc:
        module.fail_json(msg=str(exc), **result)
    try:
        found = privileges.read_privileges(conn)
    except Exception as exc:  # noqa: BLE001 - psycopg errors: the cause is in the message
        module.fail_json(msg="%s: the login role's privileges could not be read (%s); nothing was done"
                         % (what, classify_error(exc)), **result)
    finally:
        conn.close()
    lacking = privileges.missing(found, needs)
    if lacking:
        module.fail_json(msg="%s: %s; nothing was done" % (what, lacking), privileges=found.as_dict(), **result)
    return found
