"""``dissect lab SCENARIO -w out.pcap [--loss PCT] [--seed N] [--force]`` - wiring only.

One subcommand per entry of the scenario table, plus ``dissect lab list``. Errors are
dissect's own (PrivilegeError when not root, RefusedError when the output exists without
--force, LabError when a tool or child fails); the top-level CLI maps them to exit codes.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from dissect.lab.scenarios import SCENARIOS


@click.group("lab", help="Record real servers and clients on loopback inside a private "
                         "network namespace (needs root): capture + JSON ground truth.")
def lab() -> None:
    pass


@lab.command("list", help="List the scenarios.")
def list_scenarios() -> None:
    width = max(map(len, SCENARIOS))
    for spec in SCENARIOS.values():
        click.echo(f"{spec.name:<{width}}  pcaps/{spec.pcap}.pcap  {spec.summary}")


def _make_command(spec):
    @click.command(spec.name, help=spec.summary + ".",
                   epilog=f"Committed capture: pcaps/{spec.pcap}.pcap")
    @click.option("-w", "--write", "out", required=True, type=click.Path(dir_okay=False),
                  help="Capture file to write (pcap); the ground truth goes beside it as .json.")
    @click.option("--loss", type=click.FloatRange(0, 100, max_open=True), default=0.0,
                  show_default=True,
                  help="Percent of tcp/udp packets nftables drops on input (seeded positions).")
    @click.option("--seed", type=int, default=0, show_default=True,
                  help="Seed for every random choice (jitter, payloads, loss positions).")
    @click.option("--force", is_flag=True, help="Overwrite existing output files.")
    def command(out, loss, seed, force):
        from dissect.lab.runner import run_scenario  # noqa: PLC0415 - keeps `--help` fast

        base = shlex.quote(Path(out).name)
        line = f"dissect lab {spec.name} -w {base} --seed {seed}" + \
            (f" --loss {loss:g}" if loss else "")
        result = run_scenario(spec.name, out, loss=loss, seed=seed, force=force,
                              command_line=line)
        cap = result.truth["capture"]
        click.echo(f"{result.pcap}: {cap.get('captured', '?')} packets "
                   f"({cap.get('dropped_by_kernel', 0)} dropped by the kernel), "
                   f"{result.truth['loss']['dropped_packets']} dropped by --loss")
        click.echo(f"{result.truth_path}: ground truth, client outcome: "
                   f"{result.truth['client'].get('outcome')}")

    return command


for _spec in SCENARIOS.values():
    lab.add_command(_make_command(_spec))
