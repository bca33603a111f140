"""Seed groups in MLflow: for every method of an experiment's setting, one summary run holding
each metric's mean, std and n over its seeds, with the seed runs nested under it.

MLflow compares runs, not groups of runs (mlflow/mlflow#3762): a summary run makes a method's
spread over seeds one row of the UI's comparison, next to the other methods' rows. The summary
is a run of the same experiment, tagged `seed_group_summary` (tracking.SUMMARY_TAG) with the
group's key; its metrics are `NAME.mean`, `NAME.std` (seeds > 1) and `NAME.n` for every final
metric of its seed runs, its params the setting's (the seed left out), and each counted seed
run gets the summary as its parent (`mlflow.parentRunId`), so the UI nests them under it.

A group is the runs that computed the same thing but for the seed: compare.parse_run's setting,
method and method options. The latest FINISHED run of each seed counts; an older run of a seed
run again is un-nested and tagged `superseded_by`. A seed whose latest run FAILED or was KILLED
counts as missing, with its reason, never averaged away: the summary's `seeds_missing` tag
names it. `summarize` is idempotent: run again, it updates the same summary runs in place (each
metric's newest value is the current one)."""

from __future__ import annotations

import hashlib
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from .compare import parse_run, row_label

PARENT_TAG = "mlflow.parentRunId"
GROUP_TAG = "seed_group"
MISSING_TAG = "seeds_missing"
SUPERSEDED_TAG = "superseded_by"
# Training runs that did not finish: their seed is missing, for this reason.
UNFINISHED = ("FAILED", "KILLED", "RUNNING", "SCHEDULED")


@dataclass
class SeedGroup:
    key: str  # a short hash of the setting, the method and its options
    method: str
    label: str  # the method, and the options that tell it from another group of its method
    params: dict[str, str]  # the setting's params, the seed left out
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # seed -> latest FINISHED run
    superseded: list[str] = field(default_factory=list)  # older FINISHED run ids of a seed
    missing: dict[str, str] = field(default_factory=dict)  # seed -> why it has no result

    @property
    def seeds(self) -> list[str]:
        return sorted(self.runs, key=_seed_order)

    def values(self, metric: str) -> list[float]:
        """The metric over the counted seeds, in seed order (a seed lacking it left out)."""
        return [
            self.runs[s]["metrics"][metric] for s in self.seeds if metric in self.runs[s]["metrics"]
        ]

    def summary(self) -> dict[str, float]:
        """NAME.mean, NAME.std (n > 1) and NAME.n of every finite final metric of the seeds."""
        names = sorted({k for r in self.runs.values() for k in r["metrics"]})
        out = {}
        for name in names:
            values = [v for v in self.values(name) if math.isfinite(v)]
            if not values:
                continue
            out[f"{name}.mean"] = statistics.fmean(values)
            out[f"{name}.n"] = float(len(values))
            if len(values) > 1:
                out[f"{name}.std"] = statistics.stdev(values)
        return out


def group_runs(
    runs: list[dict[str, Any]], expected_seeds: list[int] | None = None
) -> list[SeedGroup]:
    """The seed groups of an experiment's runs (tracking.experiment_runs with every status).
    `expected_seeds`: the seeds a group should have (a sweep's); one with no run at all is
    missing too."""
    groups: dict[tuple, SeedGroup] = {}
    parsed = [(run, parse_run(run)) for run in runs]
    by_method: dict[str, set] = {}
    for _, found in parsed:
        if found is not None:
            by_method.setdefault(found.method, set()).add(found.options)
    for run, found in sorted(
        (p for p in parsed if p[1] is not None), key=lambda p: p[0].get("start_time") or 0
    ):
        identity = (found.setting, found.method, found.options)
        group = groups.get(identity)
        if group is None:
            digest = hashlib.sha256(repr(identity).encode()).hexdigest()[:12]
            params = {k: v for k, v in run["params"].items() if k != "seed"}
            group = groups[identity] = SeedGroup(
                digest, found.method, row_label(found, by_method[found.method]), params
            )
        seed = found.seed
        if run["status"] == "FINISHED":
            if seed in group.runs:
                group.superseded.append(group.runs[seed]["run_id"])
            group.runs[seed] = run
            group.missing.pop(seed, None)
        elif seed not in group.runs or run["start_time"] > group.runs[seed]["start_time"]:
            # the seed's latest run did not finish: its earlier result no longer stands for it
            if seed in group.runs:
                group.superseded.append(group.runs.pop(seed)["run_id"])
            reason = run["tags"].get("failure_reason", "") or "no reason recorded"
            group.missing[seed] = f"{run['status']} ({reason.splitlines()[0][:160]})"
    for group in groups.values():
        for seed in expected_seeds or []:
            if str(seed) not in group.runs and str(seed) not in group.missing:
                group.missing[str(seed)] = "no run in the store"
    return sorted(groups.values(), key=lambda g: (g.method, g.label, g.key))


def summarize(
    experiment: str, expected_seeds: list[int] | None = None, client=None
) -> list[SeedGroup]:
    """Create or update one summary run per seed group of `experiment`, nest its seed runs under
    it; returns the groups."""
    from .tracking import SUMMARY_TAG, connect, experiment_runs

    client = client or connect()
    runs = experiment_runs(experiment, statuses=("FINISHED", *UNFINISHED))
    groups = group_runs(runs, expected_seeds)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    existing = {
        r.data.tags[GROUP_TAG]: r
        for r in client.search_runs(
            [experiment_id], f"tags.{SUMMARY_TAG} = 'true'", max_results=1000
        )
        if GROUP_TAG in r.data.tags
    }
    for group in groups:
        _write_summary(client, experiment_id, group, existing.get(group.key))
    return groups


def _write_summary(client, experiment_id: str, group: SeedGroup, summary_run) -> None:
    from .tracking import SUMMARY_TAG, log_batch

    tags = {
        SUMMARY_TAG: "true",
        GROUP_TAG: group.key,
        "method": group.method,
        "seeds": ",".join(group.seeds),
        "seed_runs": ",".join(group.runs[s]["run_id"] for s in group.seeds),
        MISSING_TAG: "; ".join(f"seed {s}: {why}" for s, why in sorted(group.missing.items()))
        or "none",
        "mlflow.note.content": _note(group),
    }
    if summary_run is None:
        summary_run = client.create_run(
            experiment_id, run_name=f"{group.label} (mean of seeds)", tags=tags
        )
        log_batch(client, summary_run.info.run_id, params=group.params)
        step = 0
    else:
        # a metric's newest value is the one the UI shows: a re-summary logs at the next step
        history = client.get_metric_history(summary_run.info.run_id, "summary_revision")
        step = 1 + max((m.step for m in history), default=0)
    run_id = summary_run.info.run_id
    metrics = {**group.summary(), "summary_revision": float(step)}
    log_batch(client, run_id, metrics=metrics, tags=tags, step=step)
    for seed in group.seeds:
        member = group.runs[seed]["run_id"]
        client.set_tag(member, PARENT_TAG, run_id)
        client.set_tag(member, GROUP_TAG, group.key)
    for old in group.superseded:
        client.set_tag(old, SUPERSEDED_TAG, "a later run of the same seed")
        try:
            client.delete_tag(old, PARENT_TAG)
        except Exception:  # never nested: nothing to undo
            pass
    client.set_terminated(run_id, "FINISHED")


def _note(group: SeedGroup) -> str:
    missing = "".join(f"\n- seed {s}: {why}" for s, why in sorted(group.missing.items()))
    return (
        f"Mean, std and n over the seeds {', '.join(group.seeds) or 'none'} of {group.label} "
        f"(metrics NAME.mean, NAME.std, NAME.n); the seed runs are nested below."
        + (f"\n\nMissing, not averaged:{missing}" if missing else "")
    )


def _seed_order(seed: str):
    return (0, int(seed), "") if seed.lstrip("-").isdigit() else (1, 0, seed)
