"""dldna_lite.landscape.cli / dldna_lite.distributed (``python -m dldna_lite.landscape``): 1 process and torchrun's 2 gloo processes give the same bits, a killed
scan resumes to the same file, the CLI's scan equals landscape.scan_2d/scan_1d, and errors say what to do."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import dldna_lite as dl
from dldna_lite import distributed, landscape, models
from dldna_lite.landscape import cli as scan

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
# Every subprocess has a timeout (300 s: margin for a loaded 2-core machine), so a hang fails the test. Device
# "auto": on a 1-GPU machine both ranks compute on cuda:0 and talk over gloo (distributed.setup).
ARRAYS = ("loss", "acc", "xs", "ys", "coords", "seed", "model_hash", "direction_hash", "chunk", "header")


def _env():
    env = dict(os.environ, DLDNA_PROGRESS="0")
    env.pop("MKL_CBWR", None)                 # the CLI must set it itself
    return env


def _cli(args, launcher=(sys.executable,), timeout=300):
    """Run ``python -m dldna_lite.landscape ARGS`` (or under ``launcher``), fail with its output if it fails."""
    proc = subprocess.run([*launcher, "-m", "dldna_lite.landscape", *map(str, args)], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _load(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _assert_same_file(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        assert np.array_equal(a[key], b[key]), f"{key} differs"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A briefly trained 784-100-10 MLP saved with save_checkpoint, and its folder."""
    folder = tmp_path_factory.mktemp("scan")
    X, y = dl.load_fashion_mnist("train", limit=2000, flatten=True)
    dl.seed_everything(0)
    net = models.mlp([784, 100, 10])
    dl.fit(net, torch.optim.SGD(net.parameters(), lr=0.1), (X, y), epochs=1, max_steps=40, progress=False)
    landscape.save_checkpoint(net, folder / "mlp.pt", "mlp", widths=[784, 100, 10])
    return net, folder


# ---------------------------------------------------------------------------------- 1 process vs torchrun (gloo)
MKL = torch.backends.mkl.is_available()


def _common_args(folder):
    return ["--checkpoint", folder / "mlp.pt", "--grid", 9, "--range", -1, 0.8, "--n-eval", 500, "--seed", 3]


@pytest.fixture(scope="module")
def two_process_scan(trained):
    """The scan under torchrun: 2 gloo processes x 1 thread each."""
    net, folder = trained
    out = _cli([*_common_args(folder), "--out", folder / "two.npz", "--threads", 1], launcher=TORCHRUN)
    assert "2 process(es) x 1 thread(s)" in out and "engine first-layer+bmm" in out
    return _load(folder / "two.npz")


@pytest.mark.parametrize("threads", [
    1,       # the same thread count on both sides: the same floating-point operations on any BLAS
    pytest.param(2, marks=pytest.mark.skipif(
        not MKL, reason="1 process x 2 threads against 2 processes x 1 thread is bitwise equal only with MKL's "
                        "strict conditional numerical reproducibility (MKL_CBWR); this torch is built without MKL, "
                        "whose BLAS may split a product differently for 1 and 2 threads")),
])
def test_two_gloo_ranks_give_the_single_process_bits(trained, two_process_scan, threads):
    net, folder = trained
    _cli([*_common_args(folder), "--out", folder / f"one{threads}.npz", "--threads", threads])
    one, two = _load(folder / f"one{threads}.npz"), two_process_scan
    assert set(one) == set(ARRAYS)
    _assert_same_file(one, two)                           # bitwise: losses, accuracies, coordinates, hashes
    assert one["loss"].shape == (9, 9) and np.isfinite(one["loss"]).all()
    assert str(one["model_hash"]) == landscape.model_hash(net) and int(one["seed"]) == 3
    assert not (folder / f"one{threads}.npz.partial.npz").exists() and not (folder / "two.npz.partial.npz").exists()


_AGREE = """
import sys, torch
from dldna_lite import distributed, landscape
ctx = distributed.setup("cpu")
torch.manual_seed(100 + ctx.rank)                       # the global RNG differs per rank: directions must not care
net, _, _ = landscape.load_checkpoint(sys.argv[1])
dirs = landscape.scan_directions(net, 2, seed=3)
distributed.check_same(ctx, landscape.tensors_hash((str(i), t) for i, t in enumerate(dirs[0] + dirs[1])), "directions")
try:
    distributed.check_same(ctx, ctx.rank, "the rank")
except RuntimeError as err:
    print(f"rank {ctx.rank} of {ctx.world_size}: directions agree; caught: {err}", flush=True)
distributed.teardown(ctx)
"""


def test_ranks_draw_the_same_directions_and_disagreement_is_caught(trained, tmp_path):
    script = tmp_path / "agree.py"
    script.write_text(_AGREE)
    proc = subprocess.run([*TORCHRUN, script, trained[1] / "mlp.pt"], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for rank in (0, 1):
        assert f"rank {rank} of 2: directions agree; caught: ranks disagree on the rank" in proc.stdout


# ------------------------------------------------------------------------------------------------ kill and resume
def test_killed_scan_resumes_with_another_world_size_to_the_same_file(trained):
    """The scan's test hook SIGKILLs the process right after the partial file holds 3 chunks (no race with a
    timer); the rerun under torchrun with 2 processes skips those 3 and writes the file an uninterrupted run
    writes."""
    _, folder = trained
    common = ["--checkpoint", folder / "mlp.pt", "--grid", 11, "--n-eval", 500, "--seed", 1]
    _cli([*common, "--out", folder / "whole.npz"])
    out, partial = folder / "cut.npz", folder / "cut.npz.partial.npz"
    proc = subprocess.run([sys.executable, "-m", "dldna_lite.landscape", *map(str, common), "--out", out], cwd=ROOT,
                          env={**_env(), scan.KILL_AFTER_ENV: "3"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr)
    with np.load(partial) as z:
        assert int(z["done"].sum()) == 3 and len(z["done"]) == 11 and list(np.flatnonzero(z["done"])) == [0, 1, 2]
    assert not out.exists()
    resumed = _cli([*common, "--out", out], launcher=TORCHRUN)   # 1 process first, 2 processes now
    assert "3 chunks resumed" in resumed
    _assert_same_file(_load(out), _load(folder / "whole.npz"))
    assert not partial.exists()


def test_kill_hook_rejects_a_bad_value(trained, monkeypatch):
    monkeypatch.setenv(scan.KILL_AFTER_ENV, "soon")
    with pytest.raises(ValueError, match="must be a positive integer"):
        scan.run_scan(trained[1] / "mlp.pt", trained[1] / "hook.npz", grid=3, n_eval=10)


def test_a_resumed_scan_refuses_another_device(trained, tmp_path):
    """CPU and CUDA round differently: partial results from one device type must not be completed on another."""
    _, folder = trained
    done = scan.run_scan(folder / "mlp.pt", tmp_path / "cpu.npz", grid=3, n_eval=50)
    header = json.loads(str(done["header"]))
    assert header["device"] == "cpu"
    other = distributed.PartialResult(tmp_path / "again.npz.partial.npz", {**header, "device": "cuda"}, 9, 3)
    other.record(0, np.zeros(3), np.zeros(3))
    other.save()
    with pytest.raises(ValueError, match="different scan \\(device: 'cuda' there, 'cpu' now\\).*--restart"):
        scan.run_scan(folder / "mlp.pt", tmp_path / "again.npz", grid=3, n_eval=50)
    again = scan.run_scan(folder / "mlp.pt", tmp_path / "again.npz", grid=3, n_eval=50, restart=True)
    assert np.array_equal(again["loss"], done["loss"])


def test_atomic_write_uses_a_unique_temporary_and_cleans_up(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    seen = []

    def spy(f):
        seen.append(Path(f.name))
        f.write(b"new")

    distributed.atomic_write(target, spy)
    distributed.atomic_write(target, spy)
    assert target.read_bytes() == b"new" and seen[0] != seen[1]               # a fresh name per write
    assert all(p.parent == tmp_path and p.name.startswith("file.bin.") and p.name.endswith(".tmp") for p in seen)

    def crash(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        distributed.atomic_write(target, crash)
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]
    part = distributed.PartialResult(tmp_path / "p.npz", {}, 4, 2)
    part.save()
    (tmp_path / "p.npz.0123abcd.tmp").write_bytes(b"left by a killed write")
    part.remove()
    assert list(tmp_path.iterdir()) == [target]


def test_partial_file_of_another_scan_is_refused_unless_restart(tmp_path):
    header = dict(model_hash="abc", seed=0, grid=5, range=(-1.0, 1.0), n_eval=100, norm="filter", chunk=5)
    part = distributed.PartialResult.open(tmp_path / "p.npz", header, 25, 5)
    part.record(2, np.arange(5.0), np.ones(5))
    part.save()
    again = distributed.PartialResult.open(tmp_path / "p.npz", header, 25, 5)        # tuples read back as lists
    assert again.todo() == [0, 1, 3, 4] and np.array_equal(again.loss[10:15], np.arange(5.0))
    with pytest.raises(ValueError, match=r"different scan \(seed: 0 there, 1 now\).*--restart"):
        distributed.PartialResult.open(tmp_path / "p.npz", {**header, "seed": 1}, 25, 5)
    fresh = distributed.PartialResult.open(tmp_path / "p.npz", {**header, "seed": 1}, 25, 5, restart=True)
    assert fresh.todo() == list(range(5)) and not (tmp_path / "p.npz").exists()
    (tmp_path / "p.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="cannot read the partial results.*--restart"):
        distributed.PartialResult.open(tmp_path / "p.npz", header, 25, 5)


def test_cli_refuses_a_mismatched_partial_file(trained, capsys, monkeypatch):
    _, folder = trained
    monkeypatch.setenv("MKL_CBWR", "AUTO,STRICT")           # main() sets it; keep it from leaking out
    out = folder / "mismatch.npz"
    stale = distributed.PartialResult(f"{out}.partial.npz", dict(seed=99), 25, 5)
    stale.save()
    args = ["--checkpoint", str(folder / "mlp.pt"), "--grid", "5", "--n-eval", "50", "--out", str(out),
            "--threads", str(torch.get_num_threads())]
    assert scan.main(args) == 2
    err = capsys.readouterr().err
    assert "belong to a different scan" in err and "--restart" in err and not out.exists()
    assert scan.main([*args, "--restart"]) == 0
    assert out.exists() and not Path(f"{out}.partial.npz").exists()


# ------------------------------------------------------------------------------------- agreement with landscape
@pytest.mark.parametrize("dims", [1, 2])
def test_scan_equals_landscape_scan_on_the_same_directions(trained, dims):
    net, folder = trained
    grid = 121 if dims == 1 else 7                               # 1D: two chunks of the engine's 64-point batches
    got = scan.run_scan(folder / "mlp.pt", folder / f"inproc{dims}.npz", dims=dims, grid=grid, range_=(-1, 1),
                        seed=5, n_eval=1000)
    dirs = landscape.scan_directions(net, dims, seed=5)
    data = dl.load_fashion_mnist("test", limit=1000, flatten=True)
    xs = np.linspace(-1, 1, grid)
    if dims == 2:
        want = landscape.scan_2d(net, data, *dirs, xs, xs, progress=False)
    else:
        want = landscape.scan_1d(net, data, dirs[0], xs, progress=False)
        assert int(got["chunk"]) < grid                          # several chunks
    assert np.array_equal(got["loss"], want["loss"]) and np.array_equal(got["acc"], want["acc"])
    assert np.array_equal(got["xs"], xs)
    assert got["engine"] == "first-layer+bmm"                  # the MLP fast path, not a silent slow fallback
    # one point by hand: the centre is the trained network itself
    centre = (grid // 2, grid // 2) if dims == 2 else grid // 2
    assert got["loss"][centre] == pytest.approx(dl.evaluate(net, data)[0], rel=1e-6)
    _assert_same_file(_load(folder / f"inproc{dims}.npz"), {k: got[k] for k in _load(folder / f"inproc{dims}.npz")})


def test_evaluate_points_matches_a_plain_forward_pass(trained):
    net, _ = trained
    X, y = dl.load_fashion_mnist("test", limit=200, flatten=True)
    dirs = landscape.scan_directions(net, 2, seed=0)
    coords = np.array([[0.3, -0.2], [0.0, 0.0]])
    loss, acc = landscape.evaluate_points(net, (X, y), dirs, coords)
    probe = models.mlp([784, 100, 10])
    with torch.no_grad():
        for p, q, u, v in zip(probe.parameters(), net.parameters(), *dirs):
            p.copy_(q + 0.3 * u - 0.2 * v)
        assert loss[0] == pytest.approx(F.cross_entropy(probe(X), y).item(), rel=1e-5)
        assert acc[1] == pytest.approx((net(X).argmax(1) == y).double().mean().item())
    with pytest.raises(ValueError, match=r"shape \[G, 2\]"):
        landscape.evaluate_points(net, (X, y), dirs, coords[:, :1])


# ------------------------------------------------------------------------------------------------ the split
@pytest.mark.parametrize("n_points, chunk, world", [(81, 9, 2), (81, 9, 4), (100, 7, 3), (5, 10, 2), (13, 1, 5)])
def test_every_point_is_assigned_exactly_once(n_points, chunk, world):
    bounds = distributed.chunk_bounds(n_points, chunk)
    covered = np.concatenate([np.arange(a, b) for a, b in bounds])
    assert np.array_equal(covered, np.arange(n_points))
    assert all(b - a == chunk for a, b in bounds[:-1])             # fixed size, whatever the world size
    todo = [i for i in range(len(bounds)) if i % 3 != 1]            # as after a resume
    per_rank = [distributed.assign_rounds(todo, world, r) for r in range(world)]
    assert len({len(r) for r in per_rank}) == 1                     # same number of rounds on every rank
    got = sorted(c for rounds in per_rank for c in rounds if c is not None)
    assert got == todo
    with pytest.raises(ValueError, match="rank"):
        distributed.assign_rounds(todo, 2, 2)


def test_threads_share_the_cores():
    assert distributed.threads_per_process(1, cores=2) == 2
    assert distributed.threads_per_process(2, cores=2) == 1
    assert distributed.threads_per_process(4, cores=2) == 1
    assert distributed.threads_per_process(4, cores=16) == 4
    before, seen = torch.get_num_threads(), []
    distributed.warm_up_serially(lambda x: seen.append((x, torch.get_num_threads())), 7)
    assert seen == [(7, 1)] and torch.get_num_threads() == before       # one serial call, threads restored


# ------------------------------------------------------------------------------------------ checkpoints and errors
def test_checkpoint_round_trip_and_stable_hash(trained, tmp_path):
    net, folder = trained
    loaded, name, kwargs = landscape.load_checkpoint(folder / "mlp.pt")
    assert name == "mlp" and kwargs == {"widths": [784, 100, 10]} and not loaded.training
    assert landscape.model_hash(loaded) == landscape.model_hash(net)
    payload = torch.load(folder / "mlp.pt", weights_only=True)
    assert set(payload) == {"format", "model", "kwargs", "state_dict"}
    torch.save(net.state_dict(), tmp_path / "bare.pt")
    bare, _, _ = landscape.load_checkpoint(tmp_path / "bare.pt", "mlp", {"widths": [784, 100, 10]})
    assert landscape.model_hash(bare) == landscape.model_hash(net)
    changed = landscape.build_model("mlp", {"widths": [784, 100, 10]})
    changed.load_state_dict(net.state_dict())
    with torch.no_grad():
        changed[1].weight[0, 0] += 1e-6
    assert landscape.model_hash(changed) != landscape.model_hash(net)
    assert len(landscape.model_hash(net)) == 64


def test_checkpoint_errors_say_what_to_do(trained, tmp_path):
    net, folder = trained
    with pytest.raises(FileNotFoundError, match="does not exist.*save_checkpoint"):
        landscape.load_checkpoint(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((folder / "mlp.pt").read_bytes()[:5000])                       # truncated download
    with pytest.raises(ValueError, match="cannot read checkpoint.*weights_only"):
        landscape.load_checkpoint(corrupt)
    torch.save(net, tmp_path / "pickled_module.pt")                                    # a whole nn.Module
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        landscape.load_checkpoint(tmp_path / "pickled_module.pt")
    torch.save(net.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="bare state_dict: name its model with --model"):
        landscape.load_checkpoint(tmp_path / "bare.pt")
    with pytest.raises(ValueError, match=r"does not fit model 'mlp'.*--model-kwargs"):
        landscape.load_checkpoint(tmp_path / "bare.pt", "mlp", {"widths": [784, 50, 10]})
    with pytest.raises(ValueError, match="holds a 'mlp' model"):
        landscape.load_checkpoint(folder / "mlp.pt", model="cnn")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="neither a save_checkpoint dict"):
        landscape.load_checkpoint(tmp_path / "list.pt")


def test_unknown_model_and_bad_arguments_name_the_choices(trained, tmp_path):
    net, folder = trained
    with pytest.raises(ValueError, match="unknown model 'resnet'; choose one of simple, mlp, cnn, residual"):
        landscape.build_model("resnet")
    with pytest.raises(ValueError, match="unknown model"):
        landscape.save_checkpoint(net, tmp_path / "x.pt", "resnet")
    torch.save(net.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="unknown model 'resnet'; choose one of"):
        landscape.load_checkpoint(tmp_path / "bare.pt", model="resnet")
    with pytest.raises(ValueError, match="do not fit"):
        landscape.save_checkpoint(net, tmp_path / "x.pt", "mlp", widths=[784, 64, 10])
    with pytest.raises(ValueError, match="JSON values"):
        landscape.save_checkpoint(net, tmp_path / "x.pt", "simple", act_func=torch.nn.ReLU())
    for kwargs, match in ((dict(dims=3), "dims must be 1 or 2"), (dict(grid=1), "grid must be"),
                          (dict(range_=(1, -1)), "LO < HI"), (dict(split="val"), "choose one of train, test"),
                          (dict(norm="unit"), "choose one of filter, layer, none"),
                          (dict(n_eval=20000), "has only 10000 images")):
        with pytest.raises(ValueError, match=match):
            scan.run_scan(folder / "mlp.pt", tmp_path / "bad.npz", **{"grid": 3, "n_eval": 10, **kwargs})
    with pytest.raises(ValueError, match="choose one of auto, cpu, cuda"):
        distributed.setup("tpu")


def test_help_describes_the_cli():
    text = scan._parser().format_help()
    for word in ("--checkpoint", "--grid", "--range", "--dims", "--restart", "torchrun", "partial"):
        assert word in text
    assert scan._json_object('{"widths": [784, 10]}') == {"widths": [784, 10]}
    parser = scan._parser()
    for bad in ("[784, 10]", "{widths: 1}"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--checkpoint", "c.pt", "--out", "o.npz", "--model-kwargs", bad])


@pytest.mark.parametrize("flag, value", [("--threads", "0"), ("--chunk", "0"), ("--chunk", "-3"), ("--threads", "two"),
                                         ("--timeout", "0"), ("--timeout", "nan")])
def test_cli_rejects_non_positive_sizes_naming_the_range(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        scan._parser().parse_args(["--checkpoint", "c.pt", "--out", "o.npz", flag, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"argument {flag}: must be" in err
    assert (">= 1" if flag != "--timeout" else "positive number of seconds") in err


def test_cli_out_naming_a_folder_is_one_clear_error(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MKL_CBWR", "AUTO,STRICT")           # main() sets it; keep it from leaking out
    args = ["--checkpoint", str(trained[1] / "mlp.pt"), "--grid", "3", "--n-eval", "20", "--out", str(tmp_path),
            "--threads", str(torch.get_num_threads())]
    assert scan.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("error") == 1 and "Traceback" not in err
    assert f"--out {tmp_path} is an existing folder; name the result file, e.g. {tmp_path / 'scan.npz'}" in err
    (tmp_path / "file").write_text("a file, not a folder")
    assert scan.main([*args[:-4], "--out", str(tmp_path / "file" / "scan.npz"), *args[-2:]]) == 2
    assert "python -m dldna_lite.landscape: error:" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]
