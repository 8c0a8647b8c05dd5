"""`dissect lab`: one subcommand per scenario, our errors and their exit codes."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from dissect.errors import ExitCode, PrivilegeError, RefusedError
from dissect.lab import netns
from dissect.lab.cli import lab
from dissect.lab.scenarios import SCENARIOS

can_run_lab = (os.geteuid() == 0 and not netns.missing_privileges()
               and shutil.which("tcpdump") is not None and shutil.which("ip") is not None)


def test_list_names_every_scenario_and_its_capture():
    r = CliRunner().invoke(lab, ["list"])
    assert r.exit_code == 0
    for spec in SCENARIOS.values():
        assert spec.name in r.output and f"pcaps/{spec.pcap}.pcap" in r.output


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_scenario_is_a_subcommand_with_the_documented_options(name):
    r = CliRunner().invoke(lab, [name, "--help"])
    assert r.exit_code == 0
    for opt in ("-w, --write", "--loss", "--seed", "--force"):
        assert opt in r.output


def test_write_is_required_and_loss_is_a_percentage():
    assert CliRunner().invoke(lab, ["udp"]).exit_code == 2
    r = CliRunner().invoke(lab, ["udp", "-w", "x.pcap", "--loss", "100"])
    assert r.exit_code == 2 and "100" in r.output


def test_without_capabilities_the_error_says_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(netns, "_effective_caps", lambda: 0)
    r = CliRunner().invoke(lab, ["udp", "-w", str(tmp_path / "u.pcap")],
                           standalone_mode=False)
    assert isinstance(r.exception, PrivilegeError)
    assert r.exception.exit_code == ExitCode.NEED_PRIVILEGE
    assert "CAP_NET_ADMIN" in str(r.exception)
    assert not (tmp_path / "u.pcap").exists()


def test_dissect_main_maps_the_privilege_error_to_its_exit_code(monkeypatch, tmp_path, capsys):
    from dissect import cli as top

    if "lab" not in top.cli.commands:
        pytest.skip("dissect.cli does not mount the lab group")
    monkeypatch.setattr(netns, "_effective_caps", lambda: 0)
    with pytest.raises(SystemExit) as code:
        top.main(["lab", "udp", "-w", str(tmp_path / "u.pcap")])
    assert code.value.code == ExitCode.NEED_PRIVILEGE
    assert "CAP_SYS_ADMIN" in capsys.readouterr().err


def test_existing_output_is_refused(tmp_path):
    out = tmp_path / "u.pcap"
    out.write_bytes(b"")
    r = CliRunner().invoke(lab, ["udp", "-w", str(out)], standalone_mode=False)
    assert isinstance(r.exception, RefusedError)
    assert r.exception.exit_code == ExitCode.REFUSED


@pytest.mark.skipif(not can_run_lab, reason="the lab needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), "
                                            "iproute2 and tcpdump")
def test_run_writes_capture_and_ground_truth_and_reports_them(tmp_path):
    out = tmp_path / "u.pcap"
    r = CliRunner().invoke(lab, ["udp", "-w", str(out), "--seed", "4"])
    assert r.exit_code == 0, r.output
    truth = json.loads(out.with_suffix(".json").read_text())
    assert truth["seed"] == 4 and truth["scenario"] == "udp"
    assert truth["provenance"].startswith("dissect lab udp -w u.pcap --seed 4")
    assert f"{out}: {truth['capture']['captured']} packets" in r.output
    assert out.read_bytes()[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")


def test_a_missing_package_is_reported_not_faked(monkeypatch, tmp_path):
    import importlib.util

    from dissect.lab import runner

    real = importlib.util.find_spec
    monkeypatch.setattr(runner.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("grpc", "grpc_tools") else real(name, *a))
    r = CliRunner().invoke(lab, ["grpc", "-w", str(tmp_path / "g.pcap")], standalone_mode=False)
    assert isinstance(r.exception, netns.LabError)
    assert "pip install grpcio grpcio-tools" in str(r.exception)
    assert not (tmp_path / "g.pcap").exists()
