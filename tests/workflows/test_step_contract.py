"""Names the workflows spell themselves because they may import from `steps` only the XID catalogue
and the event names: each must stay equal to the steps module that owns it, or a rendered workflow
would mount one directory while the steps write another, or grant access to a resource the steps do
not use."""

from __future__ import annotations

from steps.gpu import toggle
from steps.workload import dynamo
from workflows import roles
from workflows.stages import common


def test_toggle_directory_is_the_steps_default():
    assert common.TOGGLE_DIR_PATH == toggle.DEFAULT_DIR
    assert common.TOGGLE_DIR.host_path == common.TOGGLE_DIR.container_path == toggle.DEFAULT_DIR
    assert common.TOGGLE_FILE.host_path == common.TOGGLE_FILE.container_path == toggle.file_in(toggle.DEFAULT_DIR)


def test_roles_grant_the_operator_resource():
    assert roles.DGD == dynamo.DGD_GROUP
    assert roles.DGD_RESOURCES == (dynamo.DGD_PLURAL,)
