"""`visionperf campaign`: the plan a round requires, a practice campaign end to end (interrupted,
then resumed without redoing what was done), resume keys, and Server's bisection and step-down."""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import SYSTEM, visionperf
from visionperf.campaign import Campaign, CampaignOptions
from visionperf.campaign.execute import Outcome, RunOptions
from visionperf.campaign.inputs import BenchInputs
from visionperf.campaign.plan import PlannedRun
from visionperf.campaign.state import FAILED, INVALID, SHORT, VALID, RunRecord, load_state
from visionperf.campaign.targets import STEP_DOWN, Probe, bisect_server
from visionperf.cli.tables import console

EDGE_RUNS = [f"resnet50 {s} {m}" for s in ("SingleStream", "MultiStream", "Offline")
             for m in ("performance", "accuracy", "TEST01", "TEST04")]


def practice_args(model, dataset, out, *more) -> list:
    return ["campaign", "--benchmarks", "resnet50", "--model", model, "--dataset", dataset, "--backend", "null",
            "--duration", "0.3", "--allow-short", "--out", out, "--cache", out / "cache", "--submitter", "Practice",
            "--system", "null_host", "--system-json", out.parent / "system.json", *more]


def plan_rows(stdout: str) -> list[str]:
    """The run names of a --dry-run table, in order."""
    return [" ".join(line.split("│")[2].split()) for line in stdout.splitlines()
            if line.startswith("│") and line.split("│")[1].strip().isdigit()]


def test_dry_run_plans_what_the_round_requires(imagenet_dir, slim_model, tmp_path):
    from visionperf.datasets.synthetic import make_coco

    p = visionperf("campaign", "--benchmarks", "resnet50", "--model", slim_model, "--dataset", imagenet_dir,
                   "--out", tmp_path / "c", "--dry-run")
    assert plan_rows(p.stdout) == EDGE_RUNS
    assert "12 runs, about 1 h 30 min" in p.stdout  # 9 performance runs and audits x (600 s + 4 s to start)
    assert not (tmp_path / "c" / "runs").exists()

    coco = make_coco(tmp_path / "coco", 16, 0)
    p = visionperf("campaign", "--benchmarks", "resnet50,yolo-99", "--model", f"resnet50={slim_model}",
                   "--model", f"yolo-99={slim_model}", "--dataset", f"resnet50={imagenet_dir}",
                   "--dataset", f"yolo-99={coco}", "--out", tmp_path / "c", "--dry-run", "--duration", "2",
                   "--allow-short", "--system-type", "datacenter,edge")
    rows = plan_rows(p.stdout)
    server = [f"resnet50 Server {m}" for m in ("performance", "accuracy", "TEST01", "TEST04")]
    yolo = [f"yolo-99 {s} {m}" for s in ("SingleStream", "MultiStream", "Offline")
            for m in ("performance", "accuracy", "TEST01")]
    assert rows == EDGE_RUNS + server + yolo  # YOLO: edge scenarios only, TEST01 only
    assert "accuracy runs cover 48 images" in p.stdout and "yolo-99: accuracy runs cover 10 images" in p.stdout  # the COCO-safe licences of 16


def test_refusals_name_the_fix(imagenet_dir, slim_model, tmp_path):
    p = visionperf("campaign", "--benchmarks", "resnet50", "--model", slim_model, "--out", tmp_path,
                   "--dry-run", check=False)
    assert p.returncode == 2 and "resnet50 has no --dataset" in p.stderr
    config = tmp_path / "campaign.json"
    config.write_text(json.dumps({"resnet50": {"model": str(slim_model), "dataset": str(imagenet_dir)}}))
    p = visionperf("campaign", "--benchmarks", "resnet50", "--config", config, "--out", tmp_path / "c", "--dry-run")
    assert plan_rows(p.stdout) == EDGE_RUNS
    p = visionperf("campaign", "--benchmarks", "retinanet", "--model", slim_model, "--dataset", imagenet_dir,
                   "--out", tmp_path, "--dry-run", check=False)
    assert p.returncode == 2 and "not a round v6.1 benchmark" in p.stderr
    p = visionperf("campaign", "--benchmarks", "resnet50", "--model", slim_model, "--dataset", imagenet_dir,
                   "--out", tmp_path, "--duration", "1", "--submitter", "S", "--system", "X", check=False)
    assert p.returncode == 2 and "add --allow-short" in p.stderr


@pytest.fixture(scope="module")
def campaign(imagenet_dir, slim_model, tmp_path_factory):
    """A practice campaign interrupted (SIGINT) during its third run, then the same command
    again: (its --out, the args, the seconds each part took, the two processes' results)."""
    root = tmp_path_factory.mktemp("campaign")
    (root / "system.json").write_text(json.dumps(SYSTEM))
    out = root / "out"
    args = practice_args(slim_model, imagenet_dir, out)
    started = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "visionperf", *map(str, args)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)  # no terminal: the
    # campaign passes the SIGINT on to its run, as it would a `kill -INT` from elsewhere
    seen = []
    for line in p.stdout:
        seen.append(line)
        if line.startswith("start resnet50 SingleStream TEST01"):
            time.sleep(1.0)  # inside the run
            p.send_signal(signal.SIGINT)
            break
    rest, err = p.communicate(timeout=300)
    first = (p.returncode, "".join(seen) + rest, err)
    interrupted_state = json.loads((out / "campaign.json").read_text())
    t0 = time.monotonic()
    second = visionperf(*args, check=False)
    return {"out": out, "args": args, "first": first, "interrupted_state": interrupted_state,
            "second": second, "first_s": t0 - started, "second_s": time.monotonic() - t0}


def test_interrupted_campaign_resumes_and_assembles(campaign):
    rc, stdout, stderr = campaign["first"]
    assert rc == 130, stderr
    assert "rerun the same command to resume" in stderr
    runs = campaign["interrupted_state"]["runs"]
    assert [runs[n]["status"] for n in EDGE_RUNS[:2]] == [SHORT, SHORT]
    assert runs[EDGE_RUNS[2]]["status"] == "INTERRUPTED"
    assert EDGE_RUNS[3] not in runs
    out = campaign["out"]
    assert not list(out.glob("runs/**/*.partial-*"))  # the child cleaned up after itself

    second = campaign["second"]
    assert second.returncode == 0, second.stdout + second.stderr
    assert [ln.split(":")[0] for ln in second.stdout.splitlines() if ln.startswith("skip")] == \
        [f"skip  {n}" for n in EDGE_RUNS[:2]]
    assert second.stdout.count("\nstart ") + second.stdout.startswith("start ") == 10
    state = load_state(out)
    assert all(state.runs[n].status == SHORT for n in EDGE_RUNS)
    assert state.runs["resnet50 Offline TEST04"].target_qps == state.runs["resnet50 Offline performance"].target_qps
    tree = out / "submission/closed/Practice/results/null_host/resnet50"
    for s in ("SingleStream", "MultiStream", "Offline"):
        assert (tree / s / "performance/run_1/mlperf_log_detail.txt").exists()
        assert (tree / s / "TEST04/verify_performance.txt").exists()
    assert "campaign runs" in second.stdout and "a practice tree" in second.stdout
    assert (out / "summary_resnet50.png").stat().st_size > 10_000  # one figure per benchmark
    print(f"practice campaign: {campaign['first_s']:.1f} s to the interrupt, {campaign['second_s']:.1f} s to finish")


def test_rerun_skips_everything(campaign):
    t0 = time.monotonic()
    p = visionperf(*campaign["args"])
    assert sum(ln.startswith("skip") for ln in p.stdout.splitlines()) == 12
    assert "start " not in p.stdout
    assert time.monotonic() - t0 < 20  # no run: the keys, the checks, the tree


def test_changed_model_and_failed_run_are_redone(campaign, tmp_path):
    from visionperf.models import build_resnet50

    out = campaign["out"]
    args = list(campaign["args"])
    # a run whose result vanished (a crash that took it, a user's rm) is run again, and the
    # audits compared with it after it
    gone = out / "runs/resnet50/Offline/performance"
    shutil.rmtree(gone)
    p = visionperf(*args, "--dry-run")
    status = dict(zip(plan_rows(p.stdout), [ln.split("│")[5].strip() for ln in p.stdout.splitlines()
                                              if ln.startswith("│") and ln.split("│")[1].strip().isdigit()]))
    assert status["resnet50 Offline performance"].startswith("run again")
    assert status["resnet50 Offline accuracy"] == "kept" and status["resnet50 MultiStream TEST04"] == "kept"
    assert status["resnet50 Offline TEST04"].startswith("run again")  # after its scenario's own runs
    before = load_state(out).runs
    p = visionperf(*args)
    assert [ln.split(" (")[0] for ln in p.stdout.splitlines() if ln.startswith("start")] == \
        ["start resnet50 Offline performance", "start resnet50 Offline TEST01", "start resnet50 Offline TEST04"]
    assert (gone / "run_1/mlperf_log_detail.txt").exists()
    after = load_state(out).runs
    assert after["resnet50 Offline TEST04"].key != before["resnet50 Offline TEST04"].key
    assert after["resnet50 MultiStream TEST04"].key == before["resnet50 MultiStream TEST04"].key
    # ... and another model makes every run's key differ: all would be redone, the old results set aside
    other = build_resnet50(tmp_path / "other.onnx", width=0.0625)
    i = args.index("--model")
    args[i + 1] = other
    p = visionperf(*args, "--dry-run")
    assert p.stdout.count("run: inputs changed") == 12


def test_a_result_made_from_other_inputs_is_moved_aside(imagenet_dir, slim_model, tmp_path):
    """A run whose key changed is never silently kept: its old result goes to OUT/replaced."""
    from visionperf.campaign.execute import result_path

    o = CampaignOptions("v6.1", ["resnet50"], {"resnet50": BenchInputs(str(slim_model), str(imagenet_dir))},
                        RunOptions("null", 1, None, 0.3, str(tmp_path / "cache")), tmp_path / "out",
                        allow_short=True, submitter="S", system="X")
    c = Campaign(o, console())
    c.state = load_state(o.out)
    c.compute_keys()
    r = c.plan[0]
    old = result_path(c.runs_dir, r)
    (old / "run_1").mkdir(parents=True)
    (old / "run_1/mlperf_log_detail.txt").write_text("old")
    c.state.runs[r.name] = RunRecord("another key", SHORT)

    class Quiet:
        live = False

        def say(self, text):
            self.said = text

    c.view = Quiet()
    c.set_aside_stale(r)
    assert not old.exists()
    moved = list((o.out / "replaced").glob("*/runs/resnet50/SingleStream/performance/run_1/mlperf_log_detail.txt"))
    assert len(moved) == 1 and moved[0].read_text() == "old"
    assert "inputs changed" in c.view.said


def test_bisection_finds_the_highest_valid_target():
    t, probes = bisect_server(lambda q: Probe(q, q <= 120_000), 6.6e6)
    assert 92_000 < t <= 120_000 and len(probes) <= 7
    assert all(p.valid == (p.target_qps <= 120_000) for p in probes)
    t, probes = bisect_server(lambda q: Probe(q, True), 1000)
    assert t == 900 and len(probes) == 1  # the first probe passes: no more


def test_server_campaign_on_null_picks_a_valid_target_and_steps_down(imagenet_dir, slim_model, tmp_path):
    """datacenter,edge adds Server: a real bisection on the null backend, then the full run; a
    full run found INVALID is run again one step lower."""
    o = CampaignOptions("v6.1", ["resnet50"], {"resnet50": BenchInputs(str(slim_model), str(imagenet_dir))},
                        RunOptions("null", 1, None, 0.3, str(tmp_path / "cache")), tmp_path / "out",
                        system_type="datacenter,edge", allow_short=True, submitter="S", system="X", quiet=True)
    c = Campaign(o, console())
    assert [r.scenario for r in c.plan].count("Server") == 4
    c.state = load_state(o.out)
    c.compute_keys()
    from visionperf.campaign.view import CampaignView

    server = next(r for r in c.plan if r.scenario == "Server" and r.is_performance)
    # as the campaign's Offline run would have measured it (null's own, some 6 million/s, makes
    # the first probes schedule millions of queries: slow on a shared machine, same search)
    c.state.rates["resnet50"] = 1.5e6
    with CampaignView(console(), {r.name: 1.0 for r in c.plan}, quiet=True) as c.view:
        c.run_one(server)
    rec = c.state.runs[server.name]
    chosen = c.state.server["resnet50 Server"]
    assert rec.status in (VALID, SHORT), rec
    assert rec.target_qps == pytest.approx(chosen["target_qps"], rel=1e-3) and rec.target_qps > 0
    assert any(p["valid"] for p in chosen["probes"])
    saved = json.loads((o.out / "campaign.json").read_text())
    assert saved["server"]["resnet50 Server"]["target_qps"] == chosen["target_qps"]

    # the step-down, with the full run's verdict made INVALID twice
    targets = []

    def attempt(r, target, label=""):
        targets.append(target)
        status = INVALID if len(targets) < 3 else VALID
        rec = RunRecord(c.keys[r.name], status, target_qps=target)
        c.state.runs[r.name] = rec
        return Outcome(status), rec

    c.attempt = attempt
    first = chosen["target_qps"]
    chosen.pop("stepped_down", None)
    c.run_server(server)  # the bisection is reused (same key): only the full runs
    assert targets == pytest.approx([first, first * STEP_DOWN, first * STEP_DOWN ** 2])
    assert c.state.server["resnet50 Server"]["stepped_down"] == pytest.approx(targets[1:])


def test_a_failing_run_is_retried_then_reported(imagenet_dir, slim_model, tmp_path):
    o = CampaignOptions("v6.1", ["resnet50"], {"resnet50": BenchInputs(str(slim_model), str(imagenet_dir))},
                        RunOptions("null", 1, None, 0.3, None), tmp_path / "out", allow_short=True,
                        submitter="S", system="X", max_retries=1)
    c = Campaign(o, console())
    c.state = load_state(o.out)
    c.compute_keys()
    calls = []

    def attempt(r, target, label=""):
        calls.append(label)
        rec = RunRecord(c.keys[r.name], FAILED, "the engine crashed", "see its log")
        c.state.runs[r.name] = rec
        return Outcome(FAILED), rec

    c.attempt = attempt
    c.run_one(PlannedRun("resnet50", "resnet50", "Offline", "performance"))
    assert calls == ["", " (retry 1)"]


def test_a_rebuilt_cache_makes_its_runs_redone(campaign):
    """A result stands only while the cache it read is the one it read: a rebuilt (or damaged)
    cache under the same path makes every run that read it be run again."""
    out = campaign["out"]
    state = load_state(out)
    caches = {rec.cache.get("path") for rec in state.runs.values()}
    assert len(caches) == 1 and None not in caches  # every run, performance runs included
    c = Campaign(CampaignOptions("v6.1", ["resnet50"], {}, RunOptions("null", 1, None, 0.3, None), out,
                                 allow_short=True), console())
    c.state = state
    c.keys = {name: rec.key for name, rec in state.runs.items()}
    run = c.plan[0]
    assert c.reusable(run)
    c.state.runs[run.name].cache["fingerprint"] = "another"
    assert not c.reusable(run)


def test_checker_verdict_is_shown(campaign, tmp_path):
    """--checker runs the checkout's modular checker (`python -m submission_checker.main`, from
    its folder) on the tree; a practice tree's failure is shown, not counted against it."""
    pkg = tmp_path / "inference/tools/submission/submission_checker"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "main.py").write_text(
        "import sys\n"
        "args = dict(zip(sys.argv[1::2], sys.argv[2::2]))\n"
        "print(f\"[t main.py:1 ERROR] {args['--input']}/closed/Practice performance_sample_count, found 48\")\n"
        "print(f\"[t main.py:2 INFO] version {args['--version']} submitter {args['--submitter']}\")\n"
        "print('[t main.py:361 ERROR] SUMMARY: submission has errors')\n"
        "sys.exit(1)\n")
    p = visionperf(*campaign["args"], "--checker", tmp_path / "inference")
    assert "official checker (-m submission_checker.main --input): FAILED" in p.stdout
    assert "  closed/Practice performance_sample_count, found 48" in p.stdout
    assert "a practice tree fails it by construction" in p.stdout and "SUMMARY: submission has errors" in p.stdout
    p = visionperf(*campaign["args"], "--checker", tmp_path, check=False)
    assert p.returncode == 2 and "holds no MLCommons submission checker" in p.stderr
    assert "skip" not in p.stdout  # refused before any work
