"""The runtime spec built from image configs: args, env, user, isolation."""

from __future__ import annotations

import pytest

from gstacks_agent.errors import InvalidArgument
from gstacks_agent.sandboxes.runtime_spec import (
    DEFAULT_PATH,
    build_runtime_spec,
    merged_env,
    process_args,
    resolve_user,
)

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
# a comment line
app:x:1000:1000:App:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/:/bin/false
"""
GROUP = """\
root:x:0:
app:x:1000:
audio:x:29:app,other
staff:x:50:app
"""


def image(**config):
    return {"architecture": "amd64", "os": "linux", "config": config}


def test_entrypoint_and_cmd_are_joined():
    spec = build_runtime_spec(
        image(Entrypoint=["/bin/tini", "--"], Cmd=["sh"]), hostname="box"
    )
    assert spec["process"]["args"] == ["/bin/tini", "--", "sh"]


def test_command_replaces_cmd_but_keeps_entrypoint():
    config = {"Entrypoint": ["/entry"], "Cmd": ["default"]}
    assert process_args(config, ["override", "-x"]) == ["/entry", "override", "-x"]


def test_empty_command_override_leaves_only_entrypoint():
    assert process_args({"Entrypoint": ["/e"], "Cmd": ["c"]}, []) == ["/e"]


def test_image_without_anything_to_run_is_refused():
    with pytest.raises(InvalidArgument, match="no Entrypoint or Cmd"):
        build_runtime_spec(image(), hostname="box")


def test_command_given_as_a_string_is_refused():
    with pytest.raises(InvalidArgument, match="command must be a list"):
        process_args({}, "sh -c true")


def test_env_overrides_replace_image_values_in_place():
    env = merged_env(["PATH=/bin", "A=1", "B=2"], {"A": "x", "C": "3"})
    assert env == ["PATH=/bin", "A=x", "B=2", "C=3"]


def test_env_gets_a_default_path():
    assert merged_env(["A=1"], None) == ["A=1", f"PATH={DEFAULT_PATH}"]


def test_env_value_may_contain_equals_signs():
    assert merged_env(["OPTS=a=b"], None)[0] == "OPTS=a=b"


@pytest.mark.parametrize("name", ["", "1A", "A-B", "A=B"])
def test_env_override_with_a_bad_name_is_refused(name):
    with pytest.raises(InvalidArgument, match="env name"):
        merged_env([], {name: "v"})


def test_cwd_defaults_to_root_and_follows_working_dir():
    default = build_runtime_spec(image(Cmd=["sh"]), hostname="box")
    assert default["process"]["cwd"] == "/"
    spec = build_runtime_spec(image(Cmd=["sh"], WorkingDir="/srv"), hostname="box")
    assert spec["process"]["cwd"] == "/srv"


def test_relative_working_dir_is_refused():
    with pytest.raises(InvalidArgument, match="WorkingDir must be absolute"):
        build_runtime_spec(image(Cmd=["sh"], WorkingDir="srv"), hostname="box")


def test_no_user_runs_as_root():
    assert resolve_user("", PASSWD, GROUP).uid == 0
    assert resolve_user("", PASSWD, GROUP).gid == 0


def test_numeric_uid_and_gid_need_no_passwd():
    user = resolve_user("4000:5000", "", "")
    assert (user.uid, user.gid, user.additional_gids) == (4000, 5000, ())


def test_numeric_uid_takes_primary_group_from_passwd():
    assert resolve_user("1000", PASSWD, GROUP).gid == 1000


def test_numeric_uid_unknown_to_passwd_gets_group_zero():
    assert resolve_user("4242", PASSWD, GROUP).gid == 0


def test_user_name_resolves_with_primary_and_supplementary_groups():
    user = resolve_user("app", PASSWD, GROUP)
    assert (user.uid, user.gid) == (1000, 1000)
    assert user.additional_gids == (29, 50)


def test_user_and_group_names_resolve():
    user = resolve_user("app:audio", PASSWD, GROUP)
    assert (user.uid, user.gid) == (1000, 29)
    assert user.additional_gids == (50,)


def test_unknown_user_name_is_refused():
    with pytest.raises(InvalidArgument, match="'ghost' is not in"):
        resolve_user("ghost", PASSWD, GROUP)


def test_unknown_group_name_is_refused():
    with pytest.raises(InvalidArgument, match="'wheel' is not in"):
        resolve_user("app:wheel", PASSWD, GROUP)


def test_user_name_without_passwd_file_is_refused():
    with pytest.raises(InvalidArgument):
        resolve_user("app", "", "")


def test_user_lands_in_the_process_section():
    spec = build_runtime_spec(
        image(Cmd=["sh"], User="app"), hostname="box", passwd=PASSWD, group=GROUP
    )
    assert spec["process"]["user"] == {
        "uid": 1000,
        "gid": 1000,
        "additionalGids": [29, 50],
    }


@pytest.mark.parametrize("hostname", ["", "Box", "-box", "box-", "a.b", "x" * 64])
def test_bad_hostname_is_refused(hostname):
    with pytest.raises(InvalidArgument, match="hostname"):
        build_runtime_spec(image(Cmd=["sh"]), hostname=hostname)


def test_isolation_defaults():
    spec = build_runtime_spec(
        image(Cmd=["sh"]), hostname="box", cgroups_path="/gstacks/box"
    )
    process = spec["process"]
    assert process["terminal"] is False
    assert process["noNewPrivileges"] is True
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    bounding = process["capabilities"]["bounding"]
    assert {"CAP_CHOWN", "CAP_SETUID", "CAP_KILL"} <= set(bounding)
    assert not {"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_NET_RAW"} & set(bounding)
    assert spec["hostname"] == "box"
    assert spec["root"] == {"path": "rootfs", "readonly": False}

    linux = spec["linux"]
    # No "path": every namespace is new, the network one empty but for lo.
    assert sorted(ns["type"] for ns in linux["namespaces"]) == [
        "ipc",
        "mount",
        "network",
        "pid",
        "uts",
    ]
    assert all("path" not in ns for ns in linux["namespaces"])
    assert "/proc/kcore" in linux["maskedPaths"]
    assert "/proc/sys" in linux["readonlyPaths"]
    assert linux["cgroupsPath"] == "/gstacks/box"


def test_standard_mounts_are_present_and_sys_is_read_only():
    mounts = {
        m["destination"]: m
        for m in build_runtime_spec(image(Cmd=["sh"]), hostname="box")["mounts"]
    }
    assert {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"} <= set(
        mounts
    )
    assert "ro" in mounts["/sys"]["options"]
    assert "newinstance" in mounts["/dev/pts"]["options"]
