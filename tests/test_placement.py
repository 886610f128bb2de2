"""Topology from sysfs trees and the placement plans, on the paper's three servers (Table IV)."""

import json
import os

import pytest

from conftest import visionperf
from sysfs_fixtures import materialise
from visionperf.errors import UserError
from visionperf.placement import card_plan, core_budget, cpu_partitions, replica_plan
from visionperf.topology import format_cpulist, parse_cpulist, read_topology

# Table IV of the paper: the physical cores of each card.
TABLE_IV = {
    "r282-z93-5": ["0-7", "8-15", "16-23", "24-31", "0-31"],
    "r282-z93-8": ["0-3", "4-7", "8-11", "12-15", "16-19", "20-23", "24-27", "28-31"],
    "g292-z43-16": ["64-71", "72-79", "80-87", "88-95", "96-103", "104-111", "112-119", "120-127",
                    "0-7", "8-15", "16-23", "24-31", "32-39", "40-47", "48-55", "56-63"],
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    return {name: materialise(name, tmp_path_factory.mktemp(name)) for name in TABLE_IV}


def test_cpulists_round_trip():
    assert parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert format_cpulist([11, 0, 1, 2, 3, 8, 10]) == "0-3,8,10-11"
    assert parse_cpulist("") == []


def test_topology_of_the_g292(servers):
    t = read_topology(servers["g292-z43-16"])
    assert len(t.cores) == 128 and len(t.online) == 256 and t.sockets == [0, 1] and t.numa_nodes == [0, 1]
    assert t.cores[0].cpus == (0, 128) and t.cores[127].cpus == (127, 255)  # SMT folded
    assert len(t.l3_groups) == 16 and t.l3_groups[8] == tuple(range(64, 72))
    assert [a.index for a in t.accelerators] == list(range(16))  # the NIC, bridge, audio don't count
    assert all(a.name == "Qualcomm Cloud AI 100" for a in t.accelerators)
    assert [a.socket for a in t.accelerators] == [1] * 8 + [0] * 8
    assert sorted(a.pci for a in t.accelerators) == [a.pci for a in t.accelerators]


@pytest.mark.parametrize("name", list(TABLE_IV))
def test_card_plan_equals_table_iv(servers, name):
    t = read_topology(servers[name])
    plan = card_plan(t, len(TABLE_IV[name]))
    assert [format_cpulist(p.cores) for p in plan] == TABLE_IV[name]
    for p in plan:
        if p.pinned:
            assert {t.core(c).socket for c in p.cores} == {p.socket}, "local socket only"
        # threads pin to every logical CPU of the plan's cores (SMT siblings included)
        assert set(p.cpus) == {x for c in p.cores for x in t.core(c).cpus}
    if name == "r282-z93-5":
        assert not plan[4].pinned and all(p.pinned for p in plan[:4])


def test_replicas_and_the_ddr_arithmetic(servers):
    t = read_topology(servers["g292-z43-16"])
    plan = card_plan(t, 16)
    rates = [22667.0] * 16
    per_device = replica_plan(t, plan, "device", rates, 224 * 224 * 3)
    assert per_device.nodes == [1] * 8 + [0] * 8 and per_device.of_device == list(range(16))
    assert per_device.fill_cpus[0] == plan[0].cpus  # filled by a thread on the card's own cores
    # 8 cards x 22,667/s x 150,528 B = 27.3 GB/s from each node: more than one DDR4-3200 channel
    assert per_device.bandwidth_gbs[1] == pytest.approx(8 * 22667 * 150528 / 1e9)
    assert len(per_device.warnings) == 2
    per_node = replica_plan(t, plan, "node", rates, 224 * 224 * 3, node_bandwidth_gbs=204.8)
    assert per_node.nodes == [0, 1] and per_node.of_device == [1] * 8 + [0] * 8 and not per_node.warnings
    one = replica_plan(t, plan, "one", rates, 224 * 224 * 3, node_bandwidth_gbs=204.8)
    assert one.nodes == [1] and one.bandwidth_gbs[1] == pytest.approx(16 * 22667 * 150528 / 1e9)
    with pytest.raises(UserError, match="unknown --replicas"):
        replica_plan(t, plan, "socket")


def test_simulated_cards_spread_over_sockets(servers):
    t = read_topology(servers["r282-z93-8"])
    t = t.__class__(t.cores, t.l3_groups, (), t.online)  # the same server without its cards
    plan = card_plan(t, 4)
    assert [p.socket for p in plan] == [0, 0, 1, 1]
    assert [format_cpulist(p.cores) for p in plan] == ["0-7", "8-15", "16-23", "24-31"]


def test_cpu_partitions_cover_every_core(servers):
    t = read_topology(servers["g292-z43-16"])
    parts = cpu_partitions(t, 3)
    assert [len(p.cores) for p in parts] == [43, 43, 42]
    assert sorted(c for p in parts for c in p.cores) == list(range(128))
    small = read_topology(servers["r282-z93-5"])
    shared = cpu_partitions(small.__class__(small.cores[:2], small.l3_groups, (), small.online), 5)
    assert [p.cores for p in shared] == [(0,), (1,), (0,), (1,), (0,)] and all(p.shared for p in shared)
    with pytest.raises(UserError, match="at least 1"):
        cpu_partitions(small, 0)


def test_live_topology_is_this_process_cpus():
    t = read_topology()
    assert {c for core in t.cores for c in core.cpus} <= os.sched_getaffinity(0) and t.l3_groups


def test_topology_and_plan_commands(servers):
    out = visionperf("topology", "--sysfs-root", servers["r282-z93-8"]).stdout
    assert "physical cores 32" in out and "Qualcomm Cloud AI 100" in out
    js = json.loads(visionperf("plan", "--devices", "16", "--sysfs-root", servers["g292-z43-16"], "--json").stdout)
    assert [format_cpulist(d["cores"]) for d in js["devices"]] == TABLE_IV["g292-z43-16"]
    assert js["devices"][0]["numa_node"] == 1 and js["devices"][0]["cpus"][:2] == [64, 65]
    text = visionperf("plan", "--devices", "16", "--sysfs-root", servers["g292-z43-16"],
                      "--workload", "resnet50").stdout
    assert "GB/s" in text


def test_core_budget_from_a_measured_host_time_per_sample(servers):
    """16 cards at ResNet50's 22,667/s each, fed at 20 us/sample: 0.45 cores of 8 per card."""
    g292 = read_topology(servers["g292-z43-16"])
    cards = card_plan(g292, 16)
    b = core_budget(g292, cards, [22667.0] * 16, 20.0)
    assert [round(n, 3) for n in b.needed] == [0.453] * 16 and b.given == [8] * 16 and not b.warnings
    assert round(sum(b.needed), 2) == 7.25
    # The 8-card R282 gives each card 4 cores; at 500 us/sample a card would need 11.3.
    r282 = read_topology(servers["r282-z93-8"])
    b = core_budget(r282, card_plan(r282, 8), [22667.0] * 8, 500.0)
    assert len(b.warnings) == 8 and "more than the 4 they have" in b.warnings[0]
    # The unpinned fifth card of the 5-card R282 may use every core.
    r5 = read_topology(servers["r282-z93-5"])
    b = core_budget(r5, card_plan(r5, 5), [22667.0] * 5, 20.0)
    assert b.given == [8, 8, 8, 8, 32] and not b.warnings
    with pytest.raises(UserError, match="must be positive"):
        core_budget(g292, cards, [1.0] * 16, 0)
    js = json.loads(visionperf("plan", "--devices", "16", "--sysfs-root", servers["g292-z43-16"], "--json",
                               "--workload", "resnet50", "--host-us-per-sample", "20").stdout)
    assert js["host_cores"]["given"] == [8] * 16 and js["host_cores"]["needed"][0] == 0.453
    text = visionperf("plan", "--devices", "16", "--sysfs-root", servers["g292-z43-16"],
                      "--workload", "resnet50", "--host-us-per-sample", "20").stdout
    assert "7.25 cores in all" in text


def test_plan_takes_the_host_time_from_a_run_json_and_names_its_input_path(servers, tmp_path):
    """--host-us-per-sample RUN.json: the run's own figure, on the path its rows took (issue 27)."""
    run = tmp_path / "run_1"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"host_cpu_us_per_sample": 2.5, "input_path": "device fetch"}))
    args = ["plan", "--devices", "16", "--sysfs-root", servers["g292-z43-16"], "--workload", "resnet50"]
    js = json.loads(visionperf(*args, "--json", "--host-us-per-sample", run / "run.json").stdout)
    assert js["host_cores"]["host_us_per_sample"] == 2.5 and js["host_cores"]["needed"][0] == 0.057
    assert js["host_cores"]["measured"] == f"device fetch, {run / 'run.json'}"
    text = visionperf(*args, "--host-us-per-sample", run).stdout  # the run's directory will do
    assert "(measured: device fetch" in text and "0.91 cores in all" in text  # 16 cards on one core
    p = visionperf(*args, "--host-us-per-sample", tmp_path / "nothing.json", check=False)
    assert p.returncode == 2 and "--host-us-per-sample" in p.stderr
