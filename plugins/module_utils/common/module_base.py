# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every gpops.greenplum module that connects to the cluster does first.

- ``gp_module(argument_spec, **kwargs) -> AnsibleModule``: the module's options plus
  the shared connection options, check mode supported; fails with
  ``missing_required_lib`` when psycopg is missing and with a message naming the
  option when a connection option is out of range.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import (
    HAS_PSYCOPG, PSYCOPG_IMPORT_ERROR, connection_argument_spec, validate_connection_params)


def gp_module(argument_spec, **kwargs):
    spec = connection_argument_spec()
    spec.update(argument_spec)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True, **kwargs)
    if not HAS_PSYCOPG:
        module.fail_json(msg=missing_required_lib("psycopg (version 3)"),
                         exception=PSYCOPG_IMPORT_ERROR)
    bad = validate_connection_params(module.params)
    if bad:
        module.fail_json(msg=bad)
    return module
