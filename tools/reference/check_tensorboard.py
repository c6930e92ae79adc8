#!/usr/bin/env python3
"""TensorBoard's own reader on cairn's event files (a CTest entry, run with tools/setup.sh's .venv;
exit 77 = skipped when run outside a virtual environment without the `tensorboard` package).

Trains a tiny run of 12 steps with checkpoints every 4, then resumes it from the step-4 checkpoint
with a different learning rate, so steps 5-12 are written twice with different values. TensorBoard's
EventAccumulator must see every scalar of metrics.jsonl, and for the repeated steps only the
resumed run's values (the SessionLog START event purges the first run's), as `cairn plot` does.

usage: check_tensorboard.py CAIRN CONFIG WORKDIR
"""
import json
import os
import shutil
import subprocess
import sys
import time

try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
except ImportError:
    if sys.prefix != sys.base_prefix:  # the .venv of tools/setup.sh, which installs it
        sys.exit(f"the virtual environment {sys.prefix} has no tensorboard package: rerun tools/setup.sh")
    print("skipped: the tensorboard Python package is not installed (tools/setup.sh puts it into .venv)")
    sys.exit(77)


def main():
    cairn, config, work = sys.argv[1:4]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    text = os.path.join(work, "text")
    with open(text, "w") as f:
        for i in range(300):
            f.write(f"document {i}: {i * 7919 % 1009} quick brown foxes jump over {i % 13} lazy dogs\n%\n")
    data = os.path.join(work, "data")
    subprocess.run([cairn, "prepare", "--out", data, "--input", text, "--split-on", "%"], check=True,
                   stdout=subprocess.DEVNULL)
    run = os.path.join(work, "run")
    common = [cairn, "train", "--config", config, "--set", f"data.train={data}", "--set", f"output.run_dir={run}",
              "--set", "training.steps=12", "--set", "training.log_every=1", "--set", "training.eval_every=4",
              "--set", "training.threads=1", "--set", "training.peak_flops=1e9", "--set", "output.plot=false",
              "--set", "output.progress=false", "--set", "model.seq_len=16", "--set", "checkpoint.every=4",
              "--set", "checkpoint.keep=0"]
    subprocess.run(common, check=True, stdout=subprocess.DEVNULL)
    time.sleep(1.1)  # a later process start: a second event file (names carry the second)
    subprocess.run(common + ["--set", "schedule.lr=1e-4", "--resume", os.path.join(run, "checkpoints", "step_00000004")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # The reference: the last record of each step, as readers of metrics.jsonl take it.
    expected = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            expected[record["step"]] = {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
    tags = sorted({k for r in expected.values() for k in r})

    acc = EventAccumulator(os.path.join(run, "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == tags, (acc.Tags()["scalars"], tags)
    for tag in tags:
        events = acc.Scalars(tag)
        steps = [e.step for e in events]
        assert len(steps) == len(set(steps)), f"{tag}: steps repeat (the first run's were not purged): {steps}"
        seen = {e.step: e.value for e in events}
        want = {step: r[tag] for step, r in expected.items() if tag in r}
        assert sorted(seen) == sorted(want), f"{tag}: steps {sorted(seen)}, metrics.jsonl has {sorted(want)}"
        for step, value in want.items():
            assert abs(seen[step] - value) <= 1e-6 * max(1.0, abs(value)), f"{tag} at step {step}: {seen[step]} != {value}"
    # The repeated steps differ between the two trajectories: the check above proves the purge.
    first = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))][:12]
    assert first[5]["loss"] != expected[6]["loss"], "the resumed run did not change the repeated steps"
    files = [f for f in os.listdir(os.path.join(run, "tb")) if ".tfevents." in f]
    assert len(files) == 2, files
    print(f"TensorBoard reads {len(tags)} scalars at {len(expected)} steps from {len(files)} event file(s), "
          "the resumed steps replacing the first run's")


if __name__ == "__main__":
    main()
