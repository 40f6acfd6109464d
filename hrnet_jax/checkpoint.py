"""orbax checkpoints in WORKDIR/checkpoints: the train state, the data iterator's state, the config;
and in WORKDIR/checkpoints_best, the params and BN statistics of the best evaluated step.

Saves are asynchronous and atomic (orbax writes to a temporary directory and renames it when
complete), so a run killed at any moment resumes from the last complete checkpoint. Restores go
straight into the current mesh's shardings, whatever mesh wrote them. Readers (evaluate, predict,
init_from) open a directory read-only (`Checkpoints.read`).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from hrnet_jax.errors import UserError

# The config fields that fix the network's architecture; checkpoints must agree on them to be used,
# and a run resumes only with the same input size too.
ARCHITECTURE_KEYS = tuple(
    f"model.{k}"
    for k in (
        "num_joints",
        "stem_channels",
        "stage1",
        "stage2",
        "stage3",
        "stage4",
        "final_conv_kernel",
    )
)
RESUME_KEYS = (*ARCHITECTURE_KEYS, "input_size", "heatmap_size")


class CheckpointMismatchError(UserError, ValueError):
    """A checkpoint of another model or input size; the message names the keys and shapes."""


BEST_DIR = "checkpoints_best"


def checkpoint_dir(path: str | pathlib.Path, best: bool = False) -> pathlib.Path:
    """A workdir's checkpoint directory (or its best-AP copy), or the path itself if it is one."""
    path = pathlib.Path(path)
    if path.name in ("checkpoints", BEST_DIR):
        return path
    return path / (BEST_DIR if best else "checkpoints")


def complete_steps(path: str | pathlib.Path, best: bool = False) -> list[int]:
    """The steps of the complete checkpoints under `path`, read without opening a manager (one
    opened on a missing directory would create it)."""
    directory = checkpoint_dir(path, best)
    return sorted(ocp.utils.checkpoint_steps(directory)) if directory.is_dir() else []


def _resolve_step(directory: pathlib.Path, step: int | None, steps: list[int]) -> int:
    if not steps:
        raise FileNotFoundError(f"no complete checkpoint in {directory}")
    if step is None:
        return max(steps)
    if step not in steps:
        raise FileNotFoundError(f"no checkpoint for step {step} in {directory}; it has {steps}")
    return step


def _handlers() -> dict:
    return {
        "state": ocp.PyTreeCheckpointHandler(),
        "data": ocp.JsonCheckpointHandler(),
        "config": ocp.JsonCheckpointHandler(),
    }


def _config_json(config: ml_collections.ConfigDict) -> dict:
    return json.loads(config.to_json_best_effort())


class Checkpoints:
    """A run's checkpoints: the latest `keep` train states in WORKDIR/checkpoints, and (`save_best`)
    the params and BN statistics of the best evaluated step in WORKDIR/checkpoints_best.

    Use `Checkpoints.read(path)` to open one without writing anything (evaluate, predict, init_from).
    """

    def __init__(
        self,
        directory: str | pathlib.Path,
        *,
        every_steps: int = 1,
        keep: int = 3,
        use_async: bool = True,
        read_only: bool = False,
    ):
        self.directory = checkpoint_dir(directory)
        self._use_async = use_async
        self._read_only = read_only
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=every_steps,
            preservation_policy=None if read_only else policies.LatestN(n=keep),
            enable_async_checkpointing=use_async,
            cleanup_tmp_directories=not read_only,
            read_only=read_only,
            create=not read_only,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, item_handlers=_handlers(), options=options
        )
        self._best: ocp.CheckpointManager | None = None

    @classmethod
    def read(cls, path: str | pathlib.Path, best: bool = False) -> Checkpoints:
        """Opens a checkpoint directory read-only; a clear error if it holds no complete checkpoint."""
        directory = checkpoint_dir(path, best)
        _resolve_step(directory, None, complete_steps(directory))
        return cls(directory, use_async=False, read_only=True)

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def should_save(self, step: int) -> bool:
        """Whether `step` is a scheduled save (every `every_steps`)."""
        return self._manager.should_save(step)

    def reached_preemption(self, step: int) -> bool:
        """Whether all processes agreed to stop at `step` (jax.distributed's preemption notice)."""
        return self._manager.reached_preemption(step)

    def save(
        self,
        step: int,
        state: Any,
        data_state: dict,
        config: ml_collections.ConfigDict,
        *,
        force: bool = False,
    ) -> bool:
        """Starts an asynchronous save (if `step` is due or `force`); returns whether it did."""
        args = ocp.args.Composite(
            state=ocp.args.PyTreeSave(state),
            data=ocp.args.JsonSave(data_state),
            config=ocp.args.JsonSave(_config_json(config)),
        )
        return self._manager.save(step, args=args, force=force)

    def save_best(
        self, step: int, variables: dict, config: ml_collections.ConfigDict, score: float
    ) -> None:
        """Keeps `variables` in WORKDIR/checkpoints_best if `score` (AP, or PCKh) is the best yet."""
        if self._best is None:
            options = ocp.CheckpointManagerOptions(
                preservation_policy=policies.BestN(
                    get_metric_fn=lambda m: m["score"], n=1, keep_checkpoints_without_metrics=False
                ),
                enable_async_checkpointing=self._use_async,
                cleanup_tmp_directories=True,
            )
            self._best = ocp.CheckpointManager(
                self.directory.parent / BEST_DIR, item_handlers=_handlers(), options=options
            )
        args = ocp.args.Composite(
            state=ocp.args.PyTreeSave(variables), config=ocp.args.JsonSave(_config_json(config))
        )
        self._best.save(step, args=args, metrics={"score": float(score)}, force=True)

    def restore(
        self, abstract_state: Any, config: ml_collections.ConfigDict, step: int | None = None
    ) -> tuple[Any, dict, int]:
        """The state (into `abstract_state`'s shardings) and data state of `step` (default latest)."""
        step = self.resolve_step(step)
        self._check_compatible(step, config, abstract_state, RESUME_KEYS)
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=_restore_args(abstract_state), data=ocp.args.JsonRestore()
            ),
        )
        return restored.state, restored.data, step

    def restore_variables(
        self, abstract_variables: dict, config: ml_collections.ConfigDict, step: int | None = None
    ) -> tuple[dict, int]:
        """Only `params` and `batch_stats` (for evaluation and `init_from`), of any checkpoint."""
        step = self.resolve_step(step)
        self._check_compatible(step, config, abstract_variables, ARCHITECTURE_KEYS)
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(state=_restore_args(abstract_variables, partial=True)),
        )
        return restored.state, step

    def restore_config(self, step: int | None = None) -> ml_collections.ConfigDict:
        """The config that checkpoint `step` (default latest) was written with."""
        from hrnet_jax import config_lib

        return config_lib.from_saved(self._saved_config(self.resolve_step(step)))

    def _saved_config(self, step: int) -> dict:
        args = ocp.args.Composite(config=ocp.args.JsonRestore())
        return self._manager.restore(step, args=args).config

    def resolve_step(self, step: int | None) -> int:
        """`step` if a complete checkpoint has it, the latest for None; else a clear error."""
        return _resolve_step(self.directory, step, self.all_steps())

    def wait(self) -> None:
        self._manager.wait_until_finished()
        if self._best is not None:
            self._best.wait_until_finished()

    def close(self) -> None:
        self._manager.close()
        if self._best is not None:
            self._best.close()

    def _check_compatible(self, step: int, config, abstract: Any, keys: tuple[str, ...]) -> None:
        """Refuses a checkpoint written for another model (or input size), naming keys and shapes."""
        problems = []
        saved, current = self._saved_config(step), _config_json(config)
        for key in keys:
            problems += _diff(_get(saved, key), _get(current, key), key)
        problems += _shape_diff(self._manager.item_metadata(step).state, abstract)
        if problems:
            raise CheckpointMismatchError(
                f"checkpoint {self.directory / str(step)} does not fit this config:\n  "
                + "\n  ".join(problems)
            )


def _restore_args(abstract: Any, partial: bool = False) -> ocp.args.PyTreeRestore:
    return ocp.args.PyTreeRestore(
        item=abstract,
        restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
        partial_restore=partial,
    )


def save_variables(
    directory: str | pathlib.Path, variables: dict, config: ml_collections.ConfigDict, step: int = 0
) -> pathlib.Path:
    """Writes model variables alone as a checkpoint that `init_from` and the evaluator read."""
    directory = checkpoint_dir(directory)
    options = ocp.CheckpointManagerOptions(enable_async_checkpointing=False)
    with ocp.CheckpointManager(directory, item_handlers=_handlers(), options=options) as manager:
        args = ocp.args.Composite(
            state=ocp.args.PyTreeSave(variables), config=ocp.args.JsonSave(_config_json(config))
        )
        manager.save(step, args=args, force=True)
    return directory


def _get(tree: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def _diff(saved: Any, current: Any, name: str) -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        return [
            p
            for k in sorted(set(saved) | set(current))
            for p in _diff(saved.get(k), current.get(k), f"{name}.{k}")
        ]
    if saved != current:
        return [f"{name} is {saved} in the checkpoint but {current} in the config"]
    return []


def _path_name(path) -> str:
    return ".".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def _shape_diff(saved_tree: Any, abstract: Any, limit: int = 20) -> list[str]:
    """Leaves of `abstract` whose shapes differ from (or are missing in) the checkpoint."""
    leaves = jax.tree_util.tree_leaves_with_path
    saved = {_path_name(k): tuple(v.shape) for k, v in leaves(saved_tree) if hasattr(v, "shape")}
    problems = []
    for path, leaf in leaves(abstract):
        name = _path_name(path)
        if name not in saved:
            problems.append(
                f"{name}: missing in the checkpoint (model expects {tuple(leaf.shape)})"
            )
        elif saved[name] != tuple(leaf.shape):
            problems.append(
                f"{name}: shape {saved[name]} in the checkpoint, {tuple(leaf.shape)} in the model"
            )
    more = [f"... and {len(problems) - limit} more"] if len(problems) > limit else []
    return problems[:limit] + more
