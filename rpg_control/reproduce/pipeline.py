"""One table end to end: plan its runs, run them (in stages where one needs another), write the
table and its plots. Rerunning the same command continues where a killed sweep stopped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rpg.utils.atomic import write_json_atomic, write_text_atomic
from rpg_control.reproduce import paper, plots, tables
from rpg_control.reproduce.plan import (
    CUSTOMIZATION_VARIANTS,
    PRIOR_EVALUATION,
    RunSpec,
    Scale,
    customization_runs,
    file_sha256,
    full_policy_runs,
    prior_candidate_runs,
    table1_runs,
    table3_runs,
)
from rpg_control.reproduce.store import REPO_ROOT, copy_checkpoint_slim, read_json, result_commits, utc_now
from rpg_control.reproduce.sweep import Sweep, SweepReport

DEFAULT_RESULTS_ROOT = REPO_ROOT / "results" / "mujoco"
DEFAULT_RUNS_ROOT = REPO_ROOT / "runs" / "reproduce"


@dataclass
class Reproduction:
    table: int
    envs: list[str]
    scale: Scale
    sweep: Sweep
    out_dir: Path  # results/mujoco/<scale label>/
    command: str = ""
    priors: dict[str, str] = field(default_factory=dict)  # env -> prior checkpoint given on the command line
    variants: tuple[str, ...] = paper.TABLE1_VARIANTS  # Table I columns to run (the table shows all four)
    report: SweepReport = field(default_factory=SweepReport)

    # -- priors (Table II) -----------------------------------------------------------------------
    def prior_path(self, env: str) -> Path:
        return self.out_dir / "priors" / f"{env}.pt"

    def known_prior(self, env: str, report: bool = False) -> dict | None:
        """The prior checkpoint of ``env``: given on the command line, or already picked (and committed)."""
        if env in self.priors:
            path = Path(self.priors[env]).resolve()
            return {
                "path": str(path),
                "display": _relative(path),
                "sha256": file_sha256(path),
                "origin": "given with --prior",
            }
        path = self.prior_path(env)
        if path.exists():
            record = read_json(path.with_suffix(".json")) or {}
            candidates = self.candidates(env)
            same = {s.run_id for s in candidates}
            if report:  # a table of committed results: a candidate made under an earlier config still counts
                same |= {
                    r["matched_config"]
                    for s in candidates
                    if (r := self.sweep.load_for_report(s)) and r.get("matched_config")
                }
            if record.get("source_run") and record["source_run"] not in same:
                # Picked from Soft PPO runs of another config: pick again from the current ones.
                self.sweep.log(
                    f"reproduce: {_relative(path)} came from {record['source_run']}, not a current run; re-picking"
                )
                return None
            record.update(path=str(path.resolve()), display=_relative(path), sha256=file_sha256(path))
            return record
        return None

    def pick_prior(self, env: str) -> dict | None:
        """Table I's best Soft PPO checkpoint (by its best-checkpoint basic reward), copied next to the table.

        Once copied it is fixed: later sweeps customize the same prior even if more Soft PPO runs finish.
        """
        finished = [(spec, self.sweep.load(spec)) for spec in self.candidates(env)]
        finished = [(spec, result) for spec, result in finished if result is not None]
        if not finished:
            return None
        spec, result = max(finished, key=lambda item: item[1]["eval"]["best"]["basic"]["mean"])
        source = self.sweep.returned_best(spec)  # the bytes the run's task returned (any backend)
        if not source.exists():  # results from before tasks returned them: the run folder's own best.pt
            source = Path(result["checkpoints"]["best"])
            source = source if source.is_absolute() else REPO_ROOT / source
        if not source.exists():
            raise FileNotFoundError(f"prior checkpoint {source} of {spec.run_id} is gone; pass --prior {env}=CKPT")
        target = self.prior_path(env)
        copy_checkpoint_slim(source, target)  # without optimizer state: small enough to commit
        record = {
            "origin": f"best Soft PPO checkpoint of {len(finished)} Table I run(s): {spec.run_id}",
            "source_run": spec.run_id,
            "source_checkpoint": _relative(source),
            "eval_best": result["eval"]["best"],
            "picked_at": utc_now(),
            "commits": result_commits(result),
            "source_checkpoint_step": ((result.get("evaluated_checkpoints") or {}).get("best") or {}).get(
                "checkpoint_step"
            ),
        }
        write_json_atomic(target.with_suffix(".json"), record)
        record.update(path=str(target.resolve()), display=_relative(target), sha256=file_sha256(target))
        return record

    # -- plans -----------------------------------------------------------------------------------
    def cells(
        self, priors: dict[str, dict], envs: list[str], to_run: bool = False
    ) -> dict[tuple[str, str], list[RunSpec]]:
        """(env, column) -> the seeds' run specs of one table cell group (``to_run``: only the
        ``--variants`` columns of Table I; the table itself shows every column that has results)."""
        cells: dict[tuple[str, str], list[RunSpec]] = {}
        if self.table == 1:
            for spec in table1_runs(envs, self.scale, self.variants if to_run else paper.TABLE1_VARIANTS):
                cells.setdefault((spec.env, spec.variant), []).append(spec)
        elif self.table == 3:
            for spec in table3_runs(envs, self.scale):
                cells.setdefault((spec.env, "state" if spec.state_std else "global"), []).append(spec)
        else:
            for env in envs:
                cells[(env, "full")] = full_policy_runs(env, self.scale)
                prior = priors.get(env)
                if prior is None:
                    continue
                for spec in customization_runs(env, self.scale, prior["path"], prior["sha256"]):
                    cells.setdefault((env, spec.variant), []).append(spec)
        return {key: self.sweep.identify(specs) for key, specs in cells.items()}

    def candidates(self, env: str) -> list[RunSpec]:
        return self.sweep.identify(prior_candidate_runs(env, self.scale))

    def run(self, execute: bool = True) -> int:
        """Run what is missing (unless ``execute`` is False), then write the tables. Exit code."""
        priors = (
            {env: p for env in self.envs if (p := self.known_prior(env, report=not execute)) is not None}
            if self.table == 2
            else {}
        )
        if execute and self.table == 2:
            # Stage 1: the Soft PPO runs a missing prior is picked from.
            stage1 = [s for env in self.envs if env not in priors for s in self.candidates(env)]
            self._merge(self.sweep.run(stage1))
            for env in self.envs:
                if env not in priors and (picked := self.pick_prior(env)) is not None:
                    priors[env] = picked
        if execute:
            cells = self.cells(priors, self.envs, to_run=True)
            self._merge(self.sweep.run([spec for specs in cells.values() for spec in specs]))
        self.write_outputs(priors)
        missing_priors = [env for env in self.envs if self.table == 2 and env not in priors]
        for env in missing_priors:
            self.sweep.log(f"reproduce: no prior for {env} yet (its Soft PPO runs have not finished)")
        return 1 if self.report.failed or missing_priors else 0

    def _merge(self, report: SweepReport) -> None:
        self.report.finished += report.finished
        self.report.skipped += report.skipped
        self.report.failed += report.failed

    # -- outputs ---------------------------------------------------------------------------------
    def write_outputs(self, priors: dict[str, dict]) -> list[Path]:
        """The table and plots of every env with results at this scale (earlier sweeps' envs included)."""
        if self.table == 2:
            known = {env: p for env in paper.ENVS if (p := self.known_prior(env, report=True)) is not None}
            priors = {**known, **priors}
        all_cells = self.cells(priors, list(paper.ENVS))
        results = {
            s.run_id: r
            for specs in all_cells.values()
            for s in specs
            if (r := self.sweep.load_for_report(s)) is not None
        }
        envs = [
            env
            for env in paper.ENVS
            if env in self.envs
            or any(s.run_id in results for (e, _), specs in all_cells.items() if e == env for s in specs)
        ]
        cells = {key: specs for key, specs in all_cells.items() if key[0] in envs}
        curves = {
            key: [results[s.run_id].get("curve", []) for s in specs if s.run_id in results]
            for key, specs in cells.items()
        }
        grouped: dict[str, dict[str, list]] = {}
        for (env, column), runs in curves.items():
            if runs and column != PRIOR_EVALUATION:
                grouped.setdefault(env, {})[column] = runs
        written = []
        stem = self.out_dir / f"table{self.table}"
        if self.table == 2:
            # Customizations train on r_R + log-prob terms and the full policy on r + r_R: compare on the total.
            key, ylabel, titles = "episode_return_total", "total reward (basic + add-on)", paper.TABLE2_TITLES
        else:
            key, ylabel, titles = (
                "episode_return_basic",
                "basic reward",
                paper.TABLE1_TITLES if self.table == 1 else paper.TABLE3_TITLES,
            )
        curves_png = stem.with_name(f"table{self.table}_curves.png")
        plots.learning_curves(curves_png, envs, grouped, titles, key, ylabel, f"Table {'I' * self.table}")
        written.append(curves_png)
        for mode in tables.EVAL_MODES:  # deterministic: table<N>.md; stochastic: table<N>_stochastic.md
            suffix = "" if mode == "deterministic" else "_stochastic"
            if self.table == 1:
                text = tables.table1_markdown(envs, self.scale, cells, results, self.command, mode)
            elif self.table == 3:
                text = tables.table3_markdown(envs, self.scale, cells, results, self.command, mode)
            else:
                text = tables.table2_markdown(envs, self.scale, cells, results, self.command, priors, mode)
                tradeoff_png = stem.with_name(f"table2_tradeoff{suffix}.png")
                plots.tradeoff(
                    tradeoff_png, envs, tables.table2_rows(envs, cells, results, mode), f"{self.scale.label}, {mode}"
                )
                written.append(tradeoff_png)
            markdown = stem.with_name(f"table{self.table}{suffix}.md")
            write_text_atomic(markdown, text)
            written.insert(0, markdown)
        for path in written:
            self.sweep.log(f"reproduce: wrote {_relative(path)}")
        return written


def _relative(path: Path) -> str:
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


__all__ = ["Reproduction", "DEFAULT_RESULTS_ROOT", "DEFAULT_RUNS_ROOT", "CUSTOMIZATION_VARIANTS"]
